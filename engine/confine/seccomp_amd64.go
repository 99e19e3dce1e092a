package confine

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_X86_64
	// x32Bit marks the x32 ABI's system call numbers, refused as a whole.
	x32Bit = 0x40000000
	// openNr is open(2), checked like openat (-1 where the architecture has none).
	openNr = unix.SYS_OPEN
)

// legacyDenied are the architecture's older forms of the denied calls.
func legacyDenied() []uintptr {
	return []uintptr{unix.SYS_CREAT, unix.SYS_UNLINK, unix.SYS_RENAME, unix.SYS_MKDIR, unix.SYS_RMDIR,
		unix.SYS_LINK, unix.SYS_SYMLINK, unix.SYS_CHMOD, unix.SYS_CHOWN, unix.SYS_LCHOWN, unix.SYS_MKNOD,
		unix.SYS_UTIME, unix.SYS_UTIMES, unix.SYS_FUTIMESAT, unix.SYS_ACCEPT, unix.SYS_USELIB}
}
