//go:build amd64 || arm64

package confine

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data (little-endian: an argument's low 32 bits come first).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// writeFlags are the open flags of a write, a creation or a truncation. O_TMPFILE is counted
// by its own bit (it includes O_DIRECTORY, which a read-only listing uses).
const writeFlags = unix.O_WRONLY | unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC | unix.O_APPEND | (unix.O_TMPFILE &^ unix.O_DIRECTORY)

// brokerDenied are the system calls the broker never makes: changing the file system,
// executing, the network, reaching into other processes, file handles (open_by_handle_at with
// CAP_DAC_READ_SEARCH opens any file), io_uring (its operations bypass the filter),
// namespaces, mounts, BPF, modules.
func brokerDenied() []uintptr {
	return append([]uintptr{
		unix.SYS_EXECVE, unix.SYS_EXECVEAT,
		unix.SYS_UNLINKAT, unix.SYS_RENAMEAT, unix.SYS_RENAMEAT2, unix.SYS_MKDIRAT, unix.SYS_MKNODAT,
		unix.SYS_LINKAT, unix.SYS_SYMLINKAT, unix.SYS_FCHMOD, unix.SYS_FCHMODAT, unix.SYS_FCHMODAT2,
		unix.SYS_FCHOWN, unix.SYS_FCHOWNAT, unix.SYS_TRUNCATE, unix.SYS_FTRUNCATE, unix.SYS_FALLOCATE,
		unix.SYS_UTIMENSAT, unix.SYS_SETXATTR, unix.SYS_LSETXATTR, unix.SYS_FSETXATTR,
		unix.SYS_REMOVEXATTR, unix.SYS_LREMOVEXATTR, unix.SYS_FREMOVEXATTR, unix.SYS_OPENAT2,
		unix.SYS_NAME_TO_HANDLE_AT, unix.SYS_OPEN_BY_HANDLE_AT,
		unix.SYS_SOCKET, unix.SYS_SOCKETPAIR, unix.SYS_CONNECT, unix.SYS_BIND, unix.SYS_LISTEN, unix.SYS_ACCEPT4,
		unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV, unix.SYS_PIDFD_GETFD,
		unix.SYS_PIDFD_SEND_SIGNAL, unix.SYS_TKILL, unix.SYS_PROCESS_MADVISE,
		unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
		unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT, unix.SYS_SETNS, unix.SYS_UNSHARE,
		unix.SYS_OPEN_TREE, unix.SYS_MOVE_MOUNT, unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT,
		unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
		unix.SYS_BPF, unix.SYS_PERF_EVENT_OPEN, unix.SYS_FANOTIFY_INIT, unix.SYS_FANOTIFY_MARK,
		unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE, unix.SYS_KEXEC_LOAD,
		unix.SYS_REBOOT, unix.SYS_ACCT, unix.SYS_SWAPON, unix.SYS_SWAPOFF,
	}, legacyDenied()...)
}

// brokerFilter builds the broker's classic BPF program: another architecture's system calls
// kill the process, the denied ones fail with EPERM, open and openat only without write
// flags, signals only to self (the Go runtime signals its own threads); everything else runs.
func brokerFilter(self int) ([]unix.SockFilter, error) {
	if self <= 0 {
		return nil, fmt.Errorf("system call filter: pid %d", self)
	}
	const (
		ld    = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq   = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jset  = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret   = unix.BPF_RET | unix.BPF_K
		eperm = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
		allow = unix.SECCOMP_RET_ALLOW
	)
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jump := func(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
	}
	p := []unix.SockFilter{
		stmt(ld, offArch),
		jump(jeq, auditArch, 1, 0),
		stmt(ret, unix.SECCOMP_RET_KILL_PROCESS),
		stmt(ld, offNr),
	}
	if x32Bit != 0 {
		p = append(p, jump(jset, x32Bit, 0, 1), stmt(ret, eperm))
	}
	for _, nr := range brokerDenied() {
		p = append(p, jump(jeq, uint32(nr), 0, 1), stmt(ret, eperm))
	}
	// argCheck: for system call nr, argument arg decides (the accumulator is reloaded with
	// the number afterwards for the next checks).
	argCheck := func(nr uintptr, arg int, test unix.SockFilter) {
		p = append(p,
			jump(jeq, uint32(nr), 0, 4),
			stmt(ld, uint32(offArgs+8*arg)),
			test, // true: the next instruction (EPERM); false: skip it (allow)
			stmt(ret, eperm),
			stmt(ret, allow),
			stmt(ld, offNr))
	}
	argCheck(unix.SYS_OPENAT, 2, jump(jset, writeFlags, 0, 1))
	if nr := openNr; nr >= 0 {
		argCheck(uintptr(nr), 1, jump(jset, writeFlags, 0, 1))
	}
	for _, nr := range []uintptr{unix.SYS_KILL, unix.SYS_TGKILL, unix.SYS_RT_SIGQUEUEINFO, unix.SYS_RT_TGSIGQUEUEINFO} {
		argCheck(nr, 0, jump(jeq, uint32(self), 1, 0))
	}
	p = append(p, stmt(ret, allow))
	if len(p) > unix.BPF_MAXINSNS {
		return nil, fmt.Errorf("system call filter of %d instructions", len(p))
	}
	return p, nil
}

// allThreadsSeccomp installs the filter on every thread at once (SECCOMP_FILTER_FLAG_TSYNC);
// threads created afterwards inherit it. Not through psx: psx reaches the other threads with
// tkill, which the filter refuses once the first thread has it.
func allThreadsSeccomp(prog []unix.SockFilter) error {
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, e := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	if e != 0 {
		return fmt.Errorf("seccomp: %w", e)
	}
	if r != 0 {
		return fmt.Errorf("seccomp: thread %d could not be synchronized", r)
	}
	return nil
}
