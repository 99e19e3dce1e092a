package confine

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
	"kernel.org/pub/linux/libs/security/libcap/psx"
)

// Cap is a Linux capability number (CAP_KILL is 5).
type Cap int

// Mask is a set of capabilities, bit n for capability n, as /proc/PID/status prints them.
type Mask uint64

// MaskOf returns the set holding caps.
func MaskOf(caps ...Cap) Mask {
	var m Mask
	for _, c := range caps {
		if c >= 0 && c < 64 {
			m |= 1 << uint(c)
		}
	}
	return m
}

// Has reports whether c is in m.
func (m Mask) Has(c Cap) bool { return c >= 0 && c < 64 && m&(1<<uint(c)) != 0 }

// Caps lists the capabilities in m, lowest first.
func (m Mask) Caps() []Cap {
	var out []Cap
	for c := Cap(0); c < 64; c++ {
		if m.Has(c) {
			out = append(out, c)
		}
	}
	return out
}

// String prints m as /proc/PID/status does (16 hex digits).
func (m Mask) String() string { return fmt.Sprintf("%016x", uint64(m)) }

// Names lists the names of the capabilities in m.
func (m Mask) Names() []string {
	var out []string
	for _, c := range m.Caps() {
		out = append(out, c.String())
	}
	return out
}

// capNames are the names of capabilities 0..40 (linux/capability.h, 6.x).
func capNames() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
		"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
		"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
		"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
		"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
		"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
		"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
		"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE",
	}
}

func (c Cap) String() string {
	if n := capNames(); c >= 0 && int(c) < len(n) {
		return n[c]
	}
	return "CAP_" + strconv.Itoa(int(c))
}

// ParseCap reads a capability name, with or without the CAP_ prefix, in any case.
func ParseCap(s string) (Cap, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(u, "CAP_") {
		u = "CAP_" + u
	}
	for i, n := range capNames() {
		if n == u {
			return Cap(i), nil
		}
	}
	return -1, fmt.Errorf("unknown capability %q", s)
}

// lastCap is the highest capability this kernel knows.
func lastCap() (Cap, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("read cap_last_cap: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("cap_last_cap: %q is not a capability number", strings.TrimSpace(string(b)))
	}
	return Cap(n), nil
}

// capSets are the per-thread capability sets capget/capset exchange.
type capSets struct{ eff, prm, inh Mask }

// capget reads the calling thread's sets.
func capget() (capSets, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capSets{}, fmt.Errorf("capget: %w", err)
	}
	join := func(lo, hi uint32) Mask { return Mask(uint64(hi)<<32 | uint64(lo)) }
	return capSets{
		eff: join(data[0].Effective, data[1].Effective),
		prm: join(data[0].Permitted, data[1].Permitted),
		inh: join(data[0].Inheritable, data[1].Inheritable),
	}, nil
}

// Every change below is made on every thread of the process at once through psx: in
// Linux, credentials (capability sets, the bounding set, no_new_privs) belong to a
// thread, not to the process, and the Go runtime runs goroutines on threads it chooses.
// psx is also what go-landlock uses to enforce a ruleset on all threads: with cgo (our
// SQLite driver) it reaches the C-created threads too, which syscall.AllThreadsSyscall
// refuses to do (ENOTSUP under cgo). Threads created afterwards inherit the new
// credentials from their creator.

// allThreadsCapset sets the three sets of every thread.
func allThreadsCapset(s capSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	data[0] = unix.CapUserData{Effective: uint32(s.eff), Permitted: uint32(s.prm), Inheritable: uint32(s.inh)}
	data[1] = unix.CapUserData{Effective: uint32(s.eff >> 32), Permitted: uint32(s.prm >> 32), Inheritable: uint32(s.inh >> 32)}
	_, _, e := psx.Syscall3(unix.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0)
	if e != 0 {
		return fmt.Errorf("capset(eff=%s prm=%s inh=%s): %w", s.eff, s.prm, s.inh, e)
	}
	return nil
}

// allThreadsPrctl runs prctl on every thread.
func allThreadsPrctl(option, arg2, arg3 uintptr) error {
	_, _, e := psx.Syscall6(unix.SYS_PRCTL, option, arg2, arg3, 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
