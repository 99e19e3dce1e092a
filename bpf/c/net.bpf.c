//go:build ignore

// Network stream: TCP state changes (inet_sock_set_state) and the peers of
// connect/sendto/sendmsg system calls (UDP peers in particular), seen by one
// tracepoint program per call (tracepoint/syscalls/sys_enter_X, needs
// tracefs) or, as a fallback, by one raw_tp/sys_enter program that runs on
// every system call of the machine. Both share peer_call.

#include "common.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

#define NET_OP_STATE 1
#define NET_OP_CONNECT 2
#define NET_OP_SENDTO 3
#define NET_OP_SENDMSG 4

#define NET_F_NO_OWNER 0x1 // TCP state change of a socket whose owner is unknown
#define NET_F_NO_SOCK 0x2  // the fd of a system call is not an inet socket

struct net_event {
	struct ev_hdr h;
	u64 sock; // kernel address of the socket: an opaque flow id
	u64 cgroup_id;
	u32 pid;
	u32 tgid;
	u32 uid;
	u16 family;
	u8 proto;
	u8 op;
	u16 sport; // host byte order
	u16 dport;
	u8 oldstate;
	u8 newstate;
	u16 pad;
	u8 saddr[16];
	u8 daddr[16];
	char comm[TASK_COMM_LEN];
};
_Static_assert(sizeof(struct net_event) == 104, "net_event layout");

// Keep the record type in BTF: user space checks its decoder against it.
const struct net_event *btf_net_event __attribute__((unused));

struct owner {
	u64 cgroup_id;
	u32 pid;
	u32 tgid;
	u32 uid;
	u32 pad;
	char comm[TASK_COMM_LEN];
};

struct peer_key {
	u32 tgid;
	u16 family;
	u16 dport;
	u8 daddr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
} net_rb SEC(".maps");

// The process that connected or listened, for the later state changes of
// the socket that run in softirq context.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, u64);
	__type(value, struct owner);
} sk_owner SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct peer_key);
	__type(value, u64);
} udp_seen SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u32);
} ignore_tgid SEC(".maps");

DECLARE_CFG();
DECLARE_LOST();

static __always_inline void sock_addrs(const struct sock *sk, u16 family,
				       struct net_event *e)
{
	e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
	e->dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
	if (family == AF_INET) {
		u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
		u32 d = BPF_CORE_READ(sk, __sk_common.skc_daddr);
		__builtin_memcpy(e->saddr, &s, 4);
		__builtin_memcpy(e->daddr, &d, 4);
	} else {
		BPF_CORE_READ_INTO(&e->saddr, sk,
				   __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		BPF_CORE_READ_INTO(&e->daddr, sk,
				   __sk_common.skc_v6_daddr.in6_u.u6_addr8);
	}
}

static __always_inline int on_state(const struct sock *sk, int oldstate,
				    int newstate)
{
	u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	u16 proto = BPF_CORE_READ(sk, sk_protocol);
	if (proto != IPPROTO_TCP)
		return 0;

	u64 key = (u64)sk;
	if (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN) {
		// connect() and listen() run in the owner's context.
		struct owner o = {};
		u64 pt = bpf_get_current_pid_tgid();
		o.pid = (u32)pt;
		o.tgid = pt >> 32;
		o.uid = (u32)bpf_get_current_uid_gid();
		o.cgroup_id = bpf_get_current_cgroup_id();
		bpf_get_current_comm(o.comm, sizeof(o.comm));
		bpf_map_update_elem(&sk_owner, &key, &o, BPF_ANY);
	}

	struct jcfg *c = get_cfg(&cfg);
	struct net_event *e = bpf_ringbuf_reserve(&net_rb, sizeof(*e), 0);
	if (!e) {
		COUNT_LOST(STREAM_NET);
		goto out;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->h.kind = EV_NET;
	e->h.ktime = bpf_ktime_get_ns();
	e->sock = key;
	e->family = family;
	e->proto = IPPROTO_TCP;
	e->op = NET_OP_STATE;
	e->oldstate = oldstate;
	e->newstate = newstate;
	sock_addrs(sk, family, e);
	struct owner *o = bpf_map_lookup_elem(&sk_owner, &key);
	if (o) {
		e->pid = o->pid;
		e->tgid = o->tgid;
		e->uid = o->uid;
		e->cgroup_id = o->cgroup_id;
		__builtin_memcpy(e->comm, o->comm, sizeof(e->comm));
	} else {
		e->h.flags = NET_F_NO_OWNER;
	}
	bpf_ringbuf_submit(e, batch_wakeup(&net_rb, c, sizeof(*e)));
out:
	if (newstate == TCP_CLOSE)
		bpf_map_delete_elem(&sk_owner, &key);
	return 0;
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(state_btf, const struct sock *sk, const int oldstate,
	     const int newstate)
{
	return on_state(sk, oldstate, newstate);
}

SEC("raw_tp/inet_sock_set_state")
int state_raw(struct bpf_raw_tracepoint_args *ctx)
{
	return on_state((const struct sock *)ctx->args[0], (int)ctx->args[1],
			(int)ctx->args[2]);
}

#define S_IFMT 0170000
#define S_IFSOCK 0140000

// fd_sock returns the sock behind a file descriptor of the current task, or
// NULL when it is not a socket.
static __always_inline struct sock *fd_sock(int fd, u16 *type)
{
	if (fd < 0)
		return 0;
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	struct fdtable *fdt = BPF_CORE_READ(t, files, fdt);
	u32 max = BPF_CORE_READ(fdt, max_fds);
	if ((u32)fd >= max)
		return 0;
	struct file **fds = BPF_CORE_READ(fdt, fd);
	struct file *f = 0;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]) < 0 || !f)
		return 0;
	u16 mode = BPF_CORE_READ(f, f_inode, i_mode);
	if ((mode & S_IFMT) != S_IFSOCK)
		return 0;
	struct socket *so = BPF_CORE_READ(f, private_data);
	*type = BPF_CORE_READ(so, type);
	return BPF_CORE_READ(so, sk);
}

#define SA_CAP 28 // sizeof(struct sockaddr_in6)

// peer_call reports the peer of a connect, sendto or sendmsg: uaddr/alen
// the sockaddr of connect and sendto, msg the user msghdr of sendmsg.
static __always_inline int peer_call(u8 op, int fd, u64 uaddr, u32 alen,
				     u64 msg)
{
	u64 pt = bpf_get_current_pid_tgid();
	u32 tgid = pt >> 32;
	if (bpf_map_lookup_elem(&ignore_tgid, &tgid))
		return 0;
	if (op == NET_OP_SENDMSG) {
		struct {
			u64 name;
			s32 namelen;
			s32 pad;
		} mh = {};
		if (bpf_probe_read_user(&mh, sizeof(mh), (void *)msg) < 0)
			return 0;
		uaddr = mh.name;
		alen = (u32)mh.namelen;
	}
	if (uaddr == 0 || alen < 8)
		return 0;
	if (alen > SA_CAP)
		alen = SA_CAP;

	u8 sa[32] = {};
	u64 n = alen;
	barrier_var(n); // keep the mask below: it is what the verifier checks
	n &= 31;        // alen <= SA_CAP < 32: a no-op
	if (bpf_probe_read_user(sa, n, (void *)uaddr) < 0)
		return 0;
	u16 family = sa[0] | (u16)sa[1] << 8;
	if (family != AF_INET && family != AF_INET6)
		return 0;
	if (family == AF_INET6 && alen < 24)
		return 0;

	u16 type = 0;
	struct sock *sk = fd_sock(fd, &type);
	u8 proto = 0;
	if (sk)
		proto = BPF_CORE_READ(sk, sk_protocol);
	// A TCP socket ignores the address of sendto/sendmsg.
	if (op != NET_OP_CONNECT && proto == IPPROTO_TCP)
		return 0;

	struct jcfg *c = get_cfg(&cfg);
	u64 now = bpf_ktime_get_ns();
	// Datagrams repeat per packet: report a peer once per window. connect()
	// is rare and always reported.
	if (op != NET_OP_CONNECT && c && c->udp_window_ns) {
		struct peer_key k = {};
		k.tgid = tgid;
		k.family = family;
		k.dport = (u16)sa[2] << 8 | sa[3];
		if (family == AF_INET)
			__builtin_memcpy(k.daddr, &sa[4], 4);
		else
			__builtin_memcpy(k.daddr, &sa[8], 16);
		u64 *last = bpf_map_lookup_elem(&udp_seen, &k);
		if (last && now - *last < c->udp_window_ns)
			return 0;
		bpf_map_update_elem(&udp_seen, &k, &now, BPF_ANY);
	}

	struct net_event *e = bpf_ringbuf_reserve(&net_rb, sizeof(*e), 0);
	if (!e) {
		COUNT_LOST(STREAM_NET);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->h.kind = EV_NET;
	e->h.ktime = now;
	e->op = op;
	e->family = family;
	e->proto = proto;
	e->pid = (u32)pt;
	e->tgid = tgid;
	e->uid = (u32)bpf_get_current_uid_gid();
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (sk) {
		e->sock = (u64)sk;
		e->sport = BPF_CORE_READ(sk, __sk_common.skc_num);
		if (family == AF_INET) {
			u32 s = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
			__builtin_memcpy(e->saddr, &s, 4);
		} else {
			BPF_CORE_READ_INTO(&e->saddr, sk,
					   __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
		}
	} else {
		e->h.flags = NET_F_NO_SOCK;
	}
	e->dport = (u16)sa[2] << 8 | sa[3];
	if (family == AF_INET)
		__builtin_memcpy(e->daddr, &sa[4], 4);
	else
		__builtin_memcpy(e->daddr, &sa[8], 16);
	bpf_ringbuf_submit(e, batch_wakeup(&net_rb, c, sizeof(*e)));
	return 0;
}

// The fallback: every system call of the machine, dispatched on its number.
SEC("raw_tp/sys_enter")
int net_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	u64 uaddr = 0, msg = 0;
	u32 alen = 0;
	u8 op;
	switch ((long)ctx->args[1]) {
	case 42:
		op = NET_OP_CONNECT;
		uaddr = sys_arg(regs, 1);
		alen = (u32)sys_arg(regs, 2);
		break;
	case 44:
		op = NET_OP_SENDTO;
		uaddr = sys_arg(regs, 4);
		alen = (u32)sys_arg(regs, 5);
		break;
	case 46:
		op = NET_OP_SENDMSG;
		msg = sys_arg(regs, 1);
		break;
	default:
		return 0;
	}
	if (in_compat_syscall())
		return 0;
	return peer_call(op, (int)sys_arg(regs, 0), uaddr, alen, msg);
}

// The syscalls tracepoint programs, one per number of arguments (see
// TP_ARGS): net_syscall3 for connect and sendmsg, net_syscall6 for sendto
// (bpf/sysenter.go). They skip 32-bit calls on x86
// (ARCH_TRACE_IGNORE_COMPAT_SYSCALLS): no compat check here.
static __always_inline int net_tp(struct trace_event_raw_sys_enter *ctx,
				  const u64 *a)
{
	u64 uaddr = 0, msg = 0;
	u32 alen = 0;
	u8 op;
	switch ((int)ctx->id) {
	case 42:
		op = NET_OP_CONNECT;
		uaddr = a[1];
		alen = (u32)a[2];
		break;
	case 44:
		op = NET_OP_SENDTO;
		uaddr = a[4];
		alen = (u32)a[5];
		break;
	case 46:
		op = NET_OP_SENDMSG;
		msg = a[1];
		break;
	default:
		return 0;
	}
	return peer_call(op, (int)a[0], uaddr, alen, msg);
}

#define NET_SYSCALL(n)                                                         \
	SEC("tracepoint")                                                      \
	int net_syscall##n(struct trace_event_raw_sys_enter *ctx)              \
	{                                                                      \
		u64 a[6];                                                      \
		TP_ARGS(ctx, n, a);                                            \
		return net_tp(ctx, a);                                         \
	}

NET_SYSCALL(3)
NET_SYSCALL(6)
