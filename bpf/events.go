package bpf

import (
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// FileID identifies a file by the st_dev of stat(2) (user-space encoding)
// and its inode number.
type FileID struct {
	Dev uint64
	Ino uint64
}

func (id FileID) String() string {
	return fmt.Sprintf("%d:%d/%d", unix.Major(id.Dev), unix.Minor(id.Dev), id.Ino)
}

// ExecEvent is one successful execve/execveat, seen after the new image is
// loaded and before it runs its first instruction.
type ExecEvent struct {
	Time  time.Time
	Ktime uint64 // CLOCK_MONOTONIC ns when the event was taken
	PID   uint32 // thread id (== TGID after exec)
	TGID  uint32
	PPID  uint32 // TGID of the real parent
	// OldPID is the thread id that called execve; it differs from PID when
	// a non-leader thread executed.
	OldPID uint32
	// StartTime is the task's start time (CLOCK_MONOTONIC ns): with TGID it
	// identifies a process across PID reuse.
	StartTime uint64
	UID       uint32
	GID       uint32
	EUID      uint32
	EGID      uint32
	CgroupID  uint64
	Comm      string
	// Filename is the path given to execve (relative, or /dev/fd/N for
	// fexecve); Interp is the interpreter of a #! script, else Filename.
	Filename string
	Interp   string
	Argv     []string
	// Exe is the image the kernel loaded: the interpreter for scripts.
	Exe            FileID
	ArgvTruncated  bool
	ArgvUnreadable bool
	// Prevented is set when Exe is in the kill-on-exec set: SIGKILL was
	// sent before any user instruction of the new image.
	Prevented  bool
	KillFailed bool
}

// ForkEvent is the creation of a new process (threads are not reported).
type ForkEvent struct {
	Time       time.Time
	Ktime      uint64
	ParentPID  uint32 // thread that forked
	ParentTGID uint32
	ChildPID   uint32 // == child TGID
	ChildStart uint64 // CLOCK_MONOTONIC ns, see ExecEvent.StartTime
	Comm       string // the parent's comm
}

// ExitEvent is the end of a process: its last thread exited.
type ExitEvent struct {
	Time      time.Time
	Ktime     uint64
	TGID      uint32
	StartTime uint64
	Comm      string
	// Status is the wait(2) status; ExitCode and Signal decode it.
	Status   uint32
	ExitCode int // valid when Signal == 0
	Signal   int // terminating signal, 0 for a normal exit
	CoreDump bool
}

// Op is a file operation. The kernel reports OpOpen for every open;
// FileEvent.Actions expands it into create, write and truncate from the
// flags.
type Op uint8

const (
	OpOpen Op = iota + 1
	OpCreate
	OpWrite
	OpTruncate
	OpUnlink
	OpRmdir
	OpRename
	OpLink
	OpSymlink
	OpMkdir
	OpChmod
	OpChown
)

var opNames = [...]string{
	OpOpen: "open", OpCreate: "create", OpWrite: "write", OpTruncate: "truncate",
	OpUnlink: "unlink", OpRmdir: "rmdir", OpRename: "rename", OpLink: "link",
	OpSymlink: "symlink", OpMkdir: "mkdir", OpChmod: "chmod", OpChown: "chown",
}

func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// AtFDCWD is the dirfd value meaning "relative to the working directory".
const AtFDCWD = unix.AT_FDCWD

// FileEvent is a path-based file system call, seen at entry (the call may
// still fail). Strings come from user memory: treat them as hostile.
type FileEvent struct {
	Time     time.Time
	Ktime    uint64
	PID      uint32
	TGID     uint32
	UID      uint32
	GID      uint32
	CgroupID uint64
	Comm     string
	Op       Op
	Syscall  uint32 // x86-64 system call number
	// Path is the operated path as given (rename/link: the old path;
	// symlink: the new link). Path2 is the new path of rename/link and the
	// target of symlink.
	Path  string
	Path2 string
	// AbsPath and AbsPath2 are Path/Path2 made absolute from /proc when
	// they were relative (best effort: empty when the process was gone).
	AbsPath  string
	AbsPath2 string
	DirFD    int32 // AtFDCWD when the call has no dirfd
	DirFD2   int32
	FD       int32 // ftruncate/fchmod/fchown: the descriptor; else -1
	// Flags: open flags (O_*), rename/link/unlinkat/fchownat/fchmodat2
	// flags, or the length of truncate.
	Flags uint64
	Mode  uint32 // open/mkdir/chmod mode
	Owner uint32 // chown: new owner, 0xffffffff when unchanged
	Group uint32

	Relative        bool // Path is relative to DirFD or the cwd
	Relative2       bool
	PathTruncated   bool // Path filled the 256-byte buffer
	Path2Truncated  bool
	PathUnreadable  bool
	Path2Unreadable bool
	FDOnly          bool // no path: the operation names a descriptor
	NonCanonical    bool // "//", "/./" or "/../" in a path
	Matched         bool // a path matched a prefix of the kernel filter
}

// Actions lists the operations the event performs, in Jibril's order: an
// open with O_CREAT|O_WRONLY|O_TRUNC is open, create, write and truncate.
func (e FileEvent) Actions() []Op {
	if e.Op != OpOpen {
		return []Op{e.Op}
	}
	m := e.Ops()
	ops := []Op{OpOpen}
	for _, o := range [...]Op{OpCreate, OpWrite, OpTruncate} {
		if m.Has(o) {
			ops = append(ops, o)
		}
	}
	return ops
}

// OpMask is a set of file operations: bit 1<<Op for each Op. The kernel
// filter uses the same bits (OPB_* in c/file.bpf.c).
type OpMask uint32

// AllOps holds every Op.
const AllOps OpMask = 1<<(OpChown+1) - 1<<OpOpen

// MaskOf returns the set of ops.
func MaskOf(ops ...Op) OpMask {
	var m OpMask
	for _, o := range ops {
		if o >= OpOpen && o <= OpChown {
			m |= 1 << o
		}
	}
	return m
}

// Has reports whether o is in the set.
func (m OpMask) Has(o Op) bool { return o >= OpOpen && o <= OpChown && m&(1<<o) != 0 }

func (m OpMask) String() string {
	if m == 0 {
		return "none"
	}
	var b []byte
	for o := OpOpen; o <= OpChown; o++ {
		if m.Has(o) {
			if len(b) > 0 {
				b = append(b, '|')
			}
			b = append(b, o.String()...)
		}
	}
	if rest := m &^ AllOps; rest != 0 {
		b = fmt.Appendf(b, "|%#x", uint32(rest))
	}
	return string(b)
}

// Ops is the set of Actions: the bits the kernel filter tests. It does not
// allocate: the feed asks it of every file event.
func (e FileEvent) Ops() OpMask {
	if e.Op != OpOpen {
		return MaskOf(e.Op)
	}
	m := MaskOf(OpOpen)
	f := e.Flags
	if f&unix.O_CREAT != 0 || f&unix.O_TMPFILE == unix.O_TMPFILE {
		m |= 1 << OpCreate
	}
	if f&(unix.O_WRONLY|unix.O_RDWR) != 0 {
		m |= 1 << OpWrite
	}
	if f&unix.O_TRUNC != 0 {
		m |= 1 << OpTruncate
	}
	return m
}

// NetOp says which hook produced a NetEvent.
type NetOp uint8

const (
	NetState   NetOp = iota + 1 // TCP state change
	NetConnect                  // connect(2)
	NetSendTo                   // sendto(2) with an address
	NetSendMsg                  // sendmsg(2) with an address
)

func (o NetOp) String() string {
	switch o {
	case NetState:
		return "state"
	case NetConnect:
		return "connect"
	case NetSendTo:
		return "sendto"
	case NetSendMsg:
		return "sendmsg"
	}
	return fmt.Sprintf("netop(%d)", uint8(o))
}

// TCPState is the kernel's TCP state (TCP_ESTABLISHED = 1 ...).
type TCPState uint8

var tcpStateNames = [...]string{
	1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN",
	11: "CLOSING", 12: "NEW_SYN_RECV", 13: "BOUND_INACTIVE",
}

const (
	TCPEstablished TCPState = 1
	TCPSynSent     TCPState = 2
	TCPSynRecv     TCPState = 3
	TCPClose       TCPState = 7
	TCPListen      TCPState = 10
)

func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) && tcpStateNames[s] != "" {
		return tcpStateNames[s]
	}
	return fmt.Sprintf("tcpstate(%d)", uint8(s))
}

// NetEvent is a TCP state change or the peer address of a connect/sendto/
// sendmsg. Addresses are unmapped (::ffff:a.b.c.d becomes a.b.c.d).
type NetEvent struct {
	Time  time.Time
	Ktime uint64
	Op    NetOp
	// PID/TGID/UID/Comm/CgroupID: the caller for system calls; for TCP
	// state changes the process that connected or listened on the socket,
	// zero with OwnerUnknown when the socket was accepted or predates us.
	PID          uint32
	TGID         uint32
	UID          uint32
	CgroupID     uint64
	Comm         string
	Proto        uint8 // unix.IPPROTO_TCP, IPPROTO_UDP, 0 when unknown
	Local        netip.AddrPort
	Remote       netip.AddrPort
	OldState     TCPState
	NewState     TCPState
	Sock         uint64 // opaque socket id, stable for the socket's life
	OwnerUnknown bool
	NotSocket    bool // the system call's fd was not an inet socket
}

// DNSEvent is a DNS answer received over UDP from port 53.
type DNSEvent struct {
	Time     time.Time
	Ktime    uint64
	CgroupID uint64 // cgroup of the receiving socket
	Ifindex  uint32
	Server   netip.AddrPort
	Client   netip.AddrPort
	ID       uint16
	RCode    uint16
	// Name is the question name, lower case, without the final dot.
	Name  string
	QType uint16
	// CNAMEs are the aliases met in the answer section, in order.
	CNAMEs []string
	Addrs  []netip.Addr // A and AAAA answers
	TTL    uint32       // smallest TTL of the A/AAAA answers
	// Truncated: the message was longer than the 512 bytes captured or had
	// the TC bit; Addrs holds what could be parsed.
	Truncated bool
}
