package confine

import "golang.org/x/sys/unix"

// Kept is a capability the daemon keeps after start-up, and why.
type Kept struct {
	Cap Cap
	Why string
}

// DaemonCaps are the capabilities `jibril run` keeps once its BPF programs are loaded and
// attached, the nftables table is open and the fanotify group exists. Each was measured:
// engine/confine's tests run the daemon's post-start operations with exactly this set.
//
// Dropped although the start-up needed them:
//   - CAP_BPF, CAP_PERFMON: creating maps and loading programs. Updating our maps
//     (KillOnExec, SetFilePrefixes, IgnoreProcess), reading them and the ring buffers, and
//     re-attaching a detached cgroup link go through descriptors we hold: no capability
//     on this kernel (BPF_MAP_UPDATE_ELEM checks the descriptor's mode, not the caller).
//   - CAP_SYS_ADMIN: fanotify_init(FAN_CLASS_CONTENT) and setns. The daemon creates its
//     fanotify group before confining (inode marks on a privileged group need no
//     capability), and netblock dials without setns in its own namespace.
//   - CAP_SYS_NICE, only with sensors.realtime_exec: the exec ring reader's thread is put on
//     SCHED_FIFO at start.
//   - CAP_SYS_RESOURCE, CAP_IPC_LOCK: memlock is not charged on memcg kernels.
func DaemonCaps() []Kept {
	return []Kept{
		{unix.CAP_NET_ADMIN, "nftables: every nfnetlink message (blocks, listing, restoring the table) is checked against it"},
		{unix.CAP_KILL, "KillCurrent/KillProcess/Freeze: pidfd_send_signal to processes of other users"},
		{unix.CAP_SYS_PTRACE, "/proc/PID/{exe,cwd,fd,environ,maps} of other users' and non-dumpable processes: path resolution, process.exe, evidence"},
		{unix.CAP_DAC_READ_SEARCH, "reading files and directories of other users: ReadFile, HashFile, evidence exe hash, fanotify marks and kill-on-exec targets"},
	}
}

// DaemonKeep is the capability list of DaemonCaps.
func DaemonKeep() []Cap {
	var out []Cap
	for _, k := range DaemonCaps() {
		out = append(out, k.Cap)
	}
	return out
}
