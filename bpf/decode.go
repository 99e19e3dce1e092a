package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Record kinds and sizes, mirroring c/*.bpf.c (decode_test.go checks them
// against the BTF of the compiled objects).
const (
	kindExec = 1
	kindFork = 2
	kindExit = 3
	kindFile = 4
	kindNet  = 5
	kindDNS  = 6

	execSize    = 1632
	forkSize    = 56
	exitSize    = 48
	fileSize1   = 356 // one path, at most: the record ends with the path's NUL
	fileSize2   = 616 // two paths
	filePath1   = 100 // offset of path1
	fileSizeMin = filePath1 + 1
	netSize     = 104
	dnsSize     = 584
	pathCap     = 256
	argvCap     = 1024
	dnsCap      = 512
	taskCommLen = 16
)

// Flags of the C records.
const (
	execPrevented  = 0x1
	execKillFailed = 0x2
	execArgvTrunc  = 0x4
	execArgvErr    = 0x8

	fileRel1     = 0x1
	fileRel2     = 0x2
	fileTrunc1   = 0x4
	fileTrunc2   = 0x8
	fileErr1     = 0x10
	fileErr2     = 0x20
	fileFDOnly   = 0x40
	fileNonCanon = 0x80
	fileMatch    = 0x100

	netNoOwner = 0x1
	netNoSock  = 0x2

	dnsTrunc = 0x1
)

var errShort = errors.New("record too short")

// rec reads a fixed-layout little-endian record sequentially. The caller
// checks the length once; rec never reads past it.
type rec struct {
	b   []byte
	off int
}

func (r *rec) u8() uint8   { v := r.b[r.off]; r.off++; return v }
func (r *rec) u16() uint16 { v := binary.LittleEndian.Uint16(r.b[r.off:]); r.off += 2; return v }
func (r *rec) u32() uint32 { v := binary.LittleEndian.Uint32(r.b[r.off:]); r.off += 4; return v }
func (r *rec) u64() uint64 { v := binary.LittleEndian.Uint64(r.b[r.off:]); r.off += 8; return v }
func (r *rec) raw(n int) []byte {
	v := r.b[r.off : r.off+n]
	r.off += n
	return v
}
func (r *rec) str(n int) string { return cstring(r.raw(n)) }

// strIn is str through an interner (nil: str); ended says whether a NUL ended the string
// within the n bytes.
func (r *rec) strIn(in *interner, n int) (s string, ended bool) {
	b := r.raw(n)
	i := bytes.IndexByte(b, 0)
	if i >= 0 {
		b = b[:i]
	}
	return in.str(b), i >= 0
}

// interner hands out one string per distinct byte sequence it has seen, up to internMax of
// them: a stream's comms and paths repeat, and each event would otherwise allocate its own
// copies (and the collector find them). Not safe for concurrent use: one per reader.
type interner struct{ m map[string]string }

// internMax bounds an interner: at most 4096 strings of at most 256 bytes.
const internMax = 4096

func (in *interner) str(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in.m[string(b)]; ok { // the lookup does not allocate
		return s
	}
	s := string(b)
	if in.m == nil || len(in.m) >= internMax {
		in.m = make(map[string]string, 256) // a stream of distinct strings starts over
	}
	in.m[s] = s
	return s
}

func cstring(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// recordKind returns the kind of a raw record.
func recordKind(b []byte) (uint32, error) {
	if len(b) < 16 {
		return 0, errShort
	}
	return binary.LittleEndian.Uint32(b), nil
}

// header reads the common ev_hdr: kind, flags, ktime.
func header(b []byte, min int) (*rec, uint32, uint64, error) {
	if len(b) < min {
		return nil, 0, 0, fmt.Errorf("%w: %d bytes, want %d", errShort, len(b), min)
	}
	r := &rec{b: b}
	r.u32() // kind
	flags := r.u32()
	return r, flags, r.u64(), nil
}

// kernelDevToUser converts the kernel's dev_t (major<<20|minor) to the
// st_dev encoding of stat(2).
func kernelDevToUser(kdev uint32) uint64 {
	return unix.Mkdev(kdev>>20, kdev&(1<<20-1))
}

// userDevToKernel converts st_dev to the kernel's dev_t.
func userDevToKernel(dev uint64) (uint32, error) {
	maj, min := unix.Major(dev), unix.Minor(dev)
	if maj >= 1<<12 || min >= 1<<20 {
		return 0, fmt.Errorf("device %d:%d does not fit the kernel dev_t", maj, min)
	}
	return maj<<20 | min, nil
}

func decodeExec(b []byte, wall func(uint64) time.Time) (ExecEvent, error) {
	r, flags, kt, err := header(b, execSize)
	if err != nil {
		return ExecEvent{}, err
	}
	e := ExecEvent{Ktime: kt, Time: wall(kt)}
	e.StartTime = r.u64()
	e.CgroupID = r.u64()
	e.Exe.Ino = r.u64()
	e.Exe.Dev = kernelDevToUser(r.u32())
	e.PID = r.u32()
	e.TGID = r.u32()
	e.PPID = r.u32()
	e.OldPID = r.u32()
	e.UID = r.u32()
	e.GID = r.u32()
	e.EUID = r.u32()
	e.EGID = r.u32()
	argvLen := int(r.u16())
	r.u16() // pad
	e.Comm = r.str(taskCommLen)
	e.Filename = r.str(pathCap)
	e.Interp = r.str(pathCap)
	argv := r.raw(argvCap)
	if argvLen > argvCap {
		return ExecEvent{}, fmt.Errorf("exec record: argv length %d > %d", argvLen, argvCap)
	}
	e.Argv = splitArgv(argv[:argvLen])
	e.Prevented = flags&execPrevented != 0
	e.KillFailed = flags&execKillFailed != 0
	e.ArgvTruncated = flags&execArgvTrunc != 0
	e.ArgvUnreadable = flags&execArgvErr != 0
	return e, nil
}

// splitArgv splits the NUL-separated argument area of a process.
func splitArgv(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	return strings.Split(string(b), "\x00")
}

func decodeFork(b []byte, wall func(uint64) time.Time) (ForkEvent, error) {
	r, _, kt, err := header(b, forkSize)
	if err != nil {
		return ForkEvent{}, err
	}
	e := ForkEvent{Ktime: kt, Time: wall(kt)}
	e.ChildStart = r.u64()
	e.ParentPID = r.u32()
	e.ParentTGID = r.u32()
	e.ChildPID = r.u32()
	r.u32() // pad
	e.Comm = r.str(taskCommLen)
	return e, nil
}

func decodeExit(b []byte, wall func(uint64) time.Time) (ExitEvent, error) {
	r, _, kt, err := header(b, exitSize)
	if err != nil {
		return ExitEvent{}, err
	}
	e := ExitEvent{Ktime: kt, Time: wall(kt)}
	e.StartTime = r.u64()
	e.TGID = r.u32()
	e.Status = r.u32()
	e.Comm = r.str(taskCommLen)
	ws := unix.WaitStatus(e.Status)
	switch {
	case ws.Signaled():
		e.Signal = int(ws.Signal())
		e.CoreDump = ws.CoreDump()
	default:
		e.ExitCode = ws.ExitStatus()
	}
	return e, nil
}

// kernelOps maps the C OP_* values to Op.
var kernelOps = [...]Op{1: OpOpen, 2: OpTruncate, 3: OpUnlink, 4: OpRmdir, 5: OpRename,
	6: OpLink, 7: OpSymlink, 8: OpMkdir, 9: OpChmod, 10: OpChown}

func decodeFile(b []byte, wall func(uint64) time.Time, in *interner) (FileEvent, error) {
	r, flags, kt, err := header(b, fileSizeMin)
	if err != nil {
		return FileEvent{}, err
	}
	e := FileEvent{Ktime: kt, Time: wall(kt)}
	e.CgroupID = r.u64()
	e.Flags = r.u64()
	e.PID = r.u32()
	e.TGID = r.u32()
	e.UID = r.u32()
	e.GID = r.u32()
	op := r.u32()
	if op == 0 || op >= uint32(len(kernelOps)) {
		return FileEvent{}, fmt.Errorf("file record: unknown op %d", op)
	}
	e.Op = kernelOps[op]
	e.Syscall = r.u32()
	e.DirFD = int32(r.u32())
	e.DirFD2 = int32(r.u32())
	e.FD = int32(r.u32())
	e.Mode = r.u32()
	e.Owner = r.u32()
	e.Group = r.u32()
	e.Comm, _ = r.strIn(in, taskCommLen)
	r.u32() // path1_bits
	var ended bool
	e.Path, ended = r.strIn(in, min(pathCap, len(b)-filePath1))
	// The kernel ends a one-path record with the path's NUL: a shorter record cut the path.
	cut := len(b) < fileSize1 && !ended
	if len(b) >= fileSize2 {
		r.u32() // path2_bits
		e.Path2, _ = r.strIn(in, pathCap)
	}
	e.Relative = flags&fileRel1 != 0
	e.Relative2 = flags&fileRel2 != 0
	e.PathTruncated = flags&fileTrunc1 != 0 || cut
	e.Path2Truncated = flags&fileTrunc2 != 0
	e.PathUnreadable = flags&fileErr1 != 0
	e.Path2Unreadable = flags&fileErr2 != 0
	e.FDOnly = flags&fileFDOnly != 0
	e.NonCanonical = flags&fileNonCanon != 0
	e.Matched = flags&fileMatch != 0
	return e, nil
}

func addrFrom(family uint16, raw []byte) (netip.Addr, bool) {
	switch family {
	case unix.AF_INET:
		return netip.AddrFrom4([4]byte(raw[:4])), true
	case unix.AF_INET6:
		return netip.AddrFrom16([16]byte(raw[:16])).Unmap(), true
	}
	return netip.Addr{}, false
}

func decodeNet(b []byte, wall func(uint64) time.Time) (NetEvent, error) {
	r, flags, kt, err := header(b, netSize)
	if err != nil {
		return NetEvent{}, err
	}
	e := NetEvent{Ktime: kt, Time: wall(kt)}
	e.Sock = r.u64()
	e.CgroupID = r.u64()
	e.PID = r.u32()
	e.TGID = r.u32()
	e.UID = r.u32()
	family := r.u16()
	e.Proto = r.u8()
	e.Op = NetOp(r.u8())
	if e.Op < NetState || e.Op > NetSendMsg {
		return NetEvent{}, fmt.Errorf("net record: unknown op %d", e.Op)
	}
	sport := r.u16()
	dport := r.u16()
	e.OldState = TCPState(r.u8())
	e.NewState = TCPState(r.u8())
	r.u16() // pad
	saddr, ok := addrFrom(family, r.raw(16))
	if !ok {
		return NetEvent{}, fmt.Errorf("net record: unknown address family %d", family)
	}
	daddr, _ := addrFrom(family, r.raw(16))
	e.Comm = r.str(taskCommLen)
	e.Local = netip.AddrPortFrom(saddr, sport)
	e.Remote = netip.AddrPortFrom(daddr, dport)
	e.OwnerUnknown = flags&netNoOwner != 0
	e.NotSocket = flags&netNoSock != 0
	return e, nil
}

func decodeDNS(b []byte, wall func(uint64) time.Time) (DNSEvent, error) {
	r, flags, kt, err := header(b, dnsSize)
	if err != nil {
		return DNSEvent{}, err
	}
	e := DNSEvent{Ktime: kt, Time: wall(kt)}
	e.CgroupID = r.u64()
	e.Ifindex = r.u32()
	family := r.u16()
	sport := r.u16()
	dport := r.u16()
	r.u16() // full length
	caplen := int(r.u16())
	r.u16() // pad
	saddr, ok := addrFrom(family, r.raw(16))
	if !ok {
		return DNSEvent{}, fmt.Errorf("dns record: unknown address family %d", family)
	}
	daddr, _ := addrFrom(family, r.raw(16))
	payload := r.raw(dnsCap)
	if caplen > dnsCap {
		return DNSEvent{}, fmt.Errorf("dns record: captured length %d > %d", caplen, dnsCap)
	}
	e.Server = netip.AddrPortFrom(saddr, sport)
	e.Client = netip.AddrPortFrom(daddr, dport)
	e.Truncated = flags&dnsTrunc != 0
	if err := parseDNS(payload[:caplen], &e); err != nil {
		return DNSEvent{}, err
	}
	return e, nil
}
