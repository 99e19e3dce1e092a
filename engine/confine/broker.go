package confine

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// BrokerCaps are the capabilities the /proc broker (engine/procfs) keeps, and why. The broker
// runs as root (uid 0) and reads /proc of every process for the Landlocked daemon. Measured by
// engine/procfs's tests, which run it with each one missing against a process of another user:
//   - CAP_SYS_PTRACE: /proc/PID/{exe,cwd,root,fd/N,environ,maps} pass ptrace_may_access
//     (PTRACE_MODE_READ_FSCREDS), which needs it for another user's process and for every
//     non-dumpable one (setuid programs, prctl(PR_SET_DUMPABLE, 0)).
//   - CAP_DAC_READ_SEARCH: /proc/PID/fd (0500) and /proc/PID/environ (0400) belong to the
//     process's user: searching the one and reading the other need it for another user's
//     process, and so does opening an executable without read permission (mode 0711) through
//     /proc/PID/exe to hash it.
func BrokerCaps() []Kept {
	return []Kept{
		{unix.CAP_SYS_PTRACE, "ptrace_may_access on /proc/PID/{exe,cwd,root,fd,environ,maps} of other users' and non-dumpable processes"},
		{unix.CAP_DAC_READ_SEARCH, "search /proc/PID/fd and read /proc/PID/environ of other users, open unreadable executables to hash them"},
	}
}

// BrokerKeep is the capability list of BrokerCaps.
func BrokerKeep() []Cap {
	var out []Cap
	for _, k := range BrokerCaps() {
		out = append(out, k.Cap)
	}
	return out
}

// ApplyBroker confines the /proc broker: every capability but keep (BrokerKeep in the daemon)
// leaves every set, no_new_privs is set, the process is made non-dumpable, and a system call
// filter refuses (EPERM) what the broker never does: opening a file for writing, changing the
// file system, executing, sockets, signalling other processes, reaching into other processes
// (ptrace, process_vm_*, pidfd_getfd), file handles, io_uring, namespaces, BPF, modules.
// Landlock is not applied: it would refuse the broker the very /proc entries it serves. Like
// Apply it is one-way and fails closed: on error the process must exit.
func ApplyBroker(keep []Cap) (Report, error) {
	rep, err := Apply(Options{Keep: keep, Landlock: LandlockOff})
	if err != nil {
		return rep, err
	}
	if err := allThreadsPrctl(unix.PR_SET_DUMPABLE, 0, 0); err != nil {
		return rep, fmt.Errorf("confine: not dumpable: %w", err)
	}
	prog, err := brokerFilter(os.Getpid())
	if err != nil {
		return rep, fmt.Errorf("confine: %w", err)
	}
	if err := allThreadsSeccomp(prog); err != nil {
		return rep, fmt.Errorf("confine: system call filter: %w", err)
	}
	threads, err := Threads()
	if err != nil {
		return rep, fmt.Errorf("confine: verify: %w", err)
	}
	for _, t := range threads {
		if t.Seccomp != 2 {
			return rep, fmt.Errorf("confine: verify: thread %d has seccomp mode %d, want 2 (filter)", t.TID, t.Seccomp)
		}
	}
	return rep, nil
}
