package netblock

import "golang.org/x/sys/unix"

// dialNS is the namespace descriptor to dial with: 0 (no setns) when fd names the
// namespace the calling thread is already in. Entering a namespace with setns needs
// CAP_SYS_ADMIN, which the daemon drops after start-up (engine/confine), while every
// redial after a desync must still work; unlocked threads are always in the process's own
// namespace, so the socket lands where it would have with setns.
func dialNS(fd int) int {
	var want, cur unix.Stat_t
	if unix.Fstat(fd, &want) != nil || unix.Stat("/proc/thread-self/ns/net", &cur) != nil {
		return fd
	}
	if want.Dev == cur.Dev && want.Ino == cur.Ino {
		return 0
	}
	return fd
}
