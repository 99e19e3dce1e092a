//go:build ignore

// Process stream: exec (with the kill-on-exec fast path), fork, exit.

#include "common.h"

char LICENSE[] SEC("license") = "GPL";

#define ARGV_CAP 1024

#define EXEC_F_PREVENTED 0x1   // the exe matched kill_on_exec
#define EXEC_F_KILL_FAILED 0x2 // bpf_send_signal refused
#define EXEC_F_ARGV_TRUNC 0x4  // argv longer than ARGV_CAP
#define EXEC_F_ARGV_ERR 0x8    // argv could not be read

struct exec_event {
	struct ev_hdr h;
	u64 start_ns; // task start_time (CLOCK_MONOTONIC)
	u64 cgroup_id;
	u64 ino;
	u32 dev; // kernel dev_t of the exe's super block (major<<20|minor)
	u32 pid;
	u32 tgid;
	u32 ppid;
	u32 old_pid;
	u32 uid;
	u32 gid;
	u32 euid;
	u32 egid;
	u16 argv_len;
	u16 pad;
	char comm[TASK_COMM_LEN];
	char filename[PATH_CAP];
	char interp[PATH_CAP];
	char argv[ARGV_CAP];
};
_Static_assert(sizeof(struct exec_event) == 1632, "exec_event layout");

struct fork_event {
	struct ev_hdr h;
	u64 child_start;
	u32 parent_pid;
	u32 parent_tgid;
	u32 child_pid;
	u32 pad;
	char comm[TASK_COMM_LEN];
};
_Static_assert(sizeof(struct fork_event) == 56, "fork_event layout");

struct exit_event {
	struct ev_hdr h;
	u64 start_ns;
	u32 tgid;
	u32 status; // wait(2) status
	char comm[TASK_COMM_LEN];
};
_Static_assert(sizeof(struct exit_event) == 48, "exit_event layout");

// Keep the record types in BTF: user space checks its decoders against them.
const struct exec_event *btf_exec_event __attribute__((unused));
const struct fork_event *btf_fork_event __attribute__((unused));
const struct exit_event *btf_exit_event __attribute__((unused));

struct file_key {
	u64 ino;
	u32 dev;
	u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} proc_rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct file_key);
	__type(value, u32);
} kill_on_exec SEC(".maps");

// A name as the kernel stores task->comm: at most 15 bytes, NUL-padded.
struct comm_key {
	char name[TASK_COMM_LEN];
};

// Names whose execs wake the reader at once when cfg.exec_wake_all is 0:
// the base names enforcing recipes act on. Other execs are batched.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct comm_key);
	__type(value, u8);
} urgent_comm SEC(".maps");

DECLARE_CFG();
DECLARE_LOST();

// An exec is urgent when something may act on it: every exec in wake-all
// mode, a prevented one, or one whose comm (the basename execve was given)
// or loaded file's name (the target of a symlink or of /proc/self/fd/N,
// the interpreter of a script) is in urgent_comm. Looking up both names
// keeps an exec via another path to the same file from losing its
// wake-up; an extra wake-up only costs time.
static __always_inline int exec_urgent(struct jcfg *c, u32 flags,
				       struct linux_binprm *bprm)
{
	if (!c || c->exec_wake_all || (flags & EXEC_F_PREVENTED))
		return 1;
	struct comm_key k = {};
	bpf_get_current_comm(k.name, sizeof(k.name));
	if (bpf_map_lookup_elem(&urgent_comm, &k))
		return 1;
	struct comm_key f = {};
	const unsigned char *name = BPF_CORE_READ(bprm, file, f_path.dentry, d_name.name);
	if (bpf_probe_read_kernel_str(f.name, sizeof(f.name), name) > 0 &&
	    bpf_map_lookup_elem(&urgent_comm, &f))
		return 1;
	return 0;
}

static __always_inline int on_exec(struct task_struct *p, pid_t old_pid,
				   struct linux_binprm *bprm)
{
	struct file_key key = {};
	struct inode *ino = BPF_CORE_READ(bprm, file, f_inode);
	key.ino = BPF_CORE_READ(ino, i_ino);
	key.dev = BPF_CORE_READ(ino, i_sb, s_dev);

	u32 flags = 0;
	if (bpf_map_lookup_elem(&kill_on_exec, &key)) {
		// SIGKILL is pending before the new image runs its first
		// instruction: the task dies on its way back to user space.
		flags |= EXEC_F_PREVENTED;
		if (bpf_send_signal(9) < 0)
			flags |= EXEC_F_KILL_FAILED;
	}

	struct exec_event *e = bpf_ringbuf_reserve(&proc_rb, sizeof(*e), 0);
	if (!e) {
		COUNT_LOST(STREAM_EXEC);
		return 0;
	}
	e->h.kind = EV_EXEC;
	e->h.ktime = bpf_ktime_get_ns();
	e->start_ns = BPF_CORE_READ(p, start_time);
	e->cgroup_id = bpf_get_current_cgroup_id();
	e->ino = key.ino;
	e->dev = key.dev;
	e->pid = BPF_CORE_READ(p, pid);
	e->tgid = BPF_CORE_READ(p, tgid);
	e->ppid = BPF_CORE_READ(p, real_parent, tgid);
	e->old_pid = old_pid;
	const struct cred *cred = BPF_CORE_READ(p, cred);
	e->uid = BPF_CORE_READ(cred, uid.val);
	e->gid = BPF_CORE_READ(cred, gid.val);
	e->euid = BPF_CORE_READ(cred, euid.val);
	e->egid = BPF_CORE_READ(cred, egid.val);
	e->pad = 0;
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (bpf_probe_read_kernel_str(e->filename, sizeof(e->filename),
				      BPF_CORE_READ(bprm, filename)) < 0)
		e->filename[0] = 0;
	if (bpf_probe_read_kernel_str(e->interp, sizeof(e->interp),
				      BPF_CORE_READ(bprm, interp)) < 0)
		e->interp[0] = 0;

	// argv lives in the new image's stack, already in place at this point.
	struct mm_struct *mm = BPF_CORE_READ(p, mm);
	u64 start = BPF_CORE_READ(mm, arg_start);
	u64 end = BPF_CORE_READ(mm, arg_end);
	u64 n = end > start ? end - start : 0;
	if (n > ARGV_CAP) {
		n = ARGV_CAP;
		flags |= EXEC_F_ARGV_TRUNC;
	}
	barrier_var(n);
	if (n > 0 && n <= ARGV_CAP) {
		if (bpf_probe_read_user(e->argv, n, (void *)start) < 0) {
			n = 0;
			flags |= EXEC_F_ARGV_ERR;
		}
	} else {
		n = 0;
	}
	e->argv_len = n;
	e->h.flags = flags;
	// An exec something may act on wakes the reader now (a wake-up costs
	// the exec'ing process 12-21 us). Forced: the default (adaptive)
	// wake-up is skipped when batched records are still unread ahead of
	// this one. The others wait for the reader's poll like fork and exit.
	struct jcfg *c = get_cfg(&cfg);
	if (exec_urgent(c, flags, bprm))
		bpf_ringbuf_submit(e, BPF_RB_FORCE_WAKEUP);
	else
		bpf_ringbuf_submit(e, batch_wakeup(&proc_rb, c, sizeof(*e)));
	return 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(exec_btf, struct task_struct *p, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	return on_exec(p, old_pid, bprm);
}

SEC("raw_tp/sched_process_exec")
int exec_raw(struct bpf_raw_tracepoint_args *ctx)
{
	return on_exec((struct task_struct *)ctx->args[0], (pid_t)ctx->args[1],
		       (struct linux_binprm *)ctx->args[2]);
}

static __always_inline int on_fork(struct task_struct *parent,
				   struct task_struct *child)
{
	u32 pid = BPF_CORE_READ(child, pid);
	u32 tgid = BPF_CORE_READ(child, tgid);
	if (pid != tgid)
		return 0; // a new thread, not a new process

	struct jcfg *c = get_cfg(&cfg);
	struct fork_event *e = bpf_ringbuf_reserve(&proc_rb, sizeof(*e), 0);
	if (!e) {
		COUNT_LOST(STREAM_FORK);
		return 0;
	}
	e->h.kind = EV_FORK;
	e->h.flags = 0;
	e->h.ktime = bpf_ktime_get_ns();
	e->child_start = BPF_CORE_READ(child, start_time);
	e->parent_pid = BPF_CORE_READ(parent, pid);
	e->parent_tgid = BPF_CORE_READ(parent, tgid);
	e->child_pid = pid;
	e->pad = 0;
	BPF_CORE_READ_STR_INTO(&e->comm, parent, comm);
	bpf_ringbuf_submit(e, batch_wakeup(&proc_rb, c, sizeof(*e)));
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(fork_btf, struct task_struct *parent, struct task_struct *child)
{
	return on_fork(parent, child);
}

SEC("raw_tp/sched_process_fork")
int fork_raw(struct bpf_raw_tracepoint_args *ctx)
{
	return on_fork((struct task_struct *)ctx->args[0],
		       (struct task_struct *)ctx->args[1]);
}

#define SIGNAL_GROUP_EXIT 0x00000004

static __always_inline int on_exit(struct task_struct *p)
{
	// Report the process once: when its last thread is gone. The
	// tracepoint runs after signal->live was decremented.
	struct signal_struct *sig = BPF_CORE_READ(p, signal);
	if (BPF_CORE_READ(sig, live.counter) != 0)
		return 0;

	u32 status = BPF_CORE_READ(p, exit_code);
	if (BPF_CORE_READ(sig, flags) & SIGNAL_GROUP_EXIT)
		status = BPF_CORE_READ(sig, group_exit_code);

	struct jcfg *c = get_cfg(&cfg);
	struct exit_event *e = bpf_ringbuf_reserve(&proc_rb, sizeof(*e), 0);
	if (!e) {
		COUNT_LOST(STREAM_EXIT);
		return 0;
	}
	e->h.kind = EV_EXIT;
	e->h.flags = 0;
	e->h.ktime = bpf_ktime_get_ns();
	e->start_ns = BPF_CORE_READ(p, group_leader, start_time);
	e->tgid = BPF_CORE_READ(p, tgid);
	e->status = status;
	BPF_CORE_READ_STR_INTO(&e->comm, p, comm);
	bpf_ringbuf_submit(e, batch_wakeup(&proc_rb, c, sizeof(*e)));
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(exit_btf, struct task_struct *p)
{
	return on_exit(p);
}

SEC("raw_tp/sched_process_exit")
int exit_raw(struct bpf_raw_tracepoint_args *ctx)
{
	return on_exit((struct task_struct *)ctx->args[0]);
}
