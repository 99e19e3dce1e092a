//go:build ignore

// File stream: path-based file system calls seen at their entry, by one
// program attached to the syscalls tracepoint of each of them
// (tracepoint/syscalls/sys_enter_X: it runs only on those calls, but needs
// tracefs to attach), or, as a fallback, by one raw_tp/sys_enter program
// (it runs on every system call of the machine). Both build the record with
// the same code, driven by one descriptor table that covers the legacy and
// the *at variants. Paths are read from user memory,
// bounded to PATH_CAP bytes, and filtered in the kernel against a trie of
// path prefixes when user space turns the filter on. Each prefix carries the
// operations wanted under it (a mask of OPB_* bits): an event passes when a
// path matches a prefix whose mask shares a bit with the event's operations.

#include "common.h"

char LICENSE[] SEC("license") = "GPL";

// Kernel-level operations (file_event.op); user space expands OP_OPEN into
// open/create/write/truncate from the flags.
#define OP_OPEN 1
#define OP_TRUNCATE 2
#define OP_UNLINK 3
#define OP_RMDIR 4
#define OP_RENAME 5
#define OP_LINK 6
#define OP_SYMLINK 7
#define OP_MKDIR 8
#define OP_CHMOD 9
#define OP_CHOWN 10

// Operation bits of the filter masks: bit (1 << Op) of the Go side's Op
// (events.go), so that an OP_OPEN expands exactly as FileEvent.Actions does.
#define OPB_OPEN (1 << 1)
#define OPB_CREATE (1 << 2)
#define OPB_WRITE (1 << 3)
#define OPB_TRUNCATE (1 << 4)
#define OPB_UNLINK (1 << 5)
#define OPB_RMDIR (1 << 6)
#define OPB_RENAME (1 << 7)
#define OPB_LINK (1 << 8)
#define OPB_SYMLINK (1 << 9)
#define OPB_MKDIR (1 << 10)
#define OPB_CHMOD (1 << 11)
#define OPB_CHOWN (1 << 12)

#define F_REL1 0x1       // path1 is relative (to dirfd1 or the cwd)
#define F_REL2 0x2       // path2 is relative
#define F_TRUNC1 0x4     // path1 filled PATH_CAP: may be truncated
#define F_TRUNC2 0x8     // path2 may be truncated
#define F_ERR1 0x10      // path1 could not be read
#define F_ERR2 0x20      // path2 could not be read
#define F_FDONLY 0x40    // operation on a file descriptor, no path
#define F_NONCANON 0x80  // a path has "//", "/./" or "/../" components
#define F_MATCH 0x100    // a path matched a prefix of the filter
#define F_HOW_ERR 0x200  // openat2: struct open_how could not be read

#define AT_REMOVEDIR 0x200
#define O_WRONLY 01
#define O_RDWR 02
#define O_CREAT 0100
#define O_TRUNC 01000
#define O_TMPFILE (020000000 | 0200000)
#define O_CREAT_WRONLY_TRUNC (O_CREAT | O_WRONLY | O_TRUNC)

struct file_event {
	struct ev_hdr h;
	u64 cgroup_id;
	u64 arg; // open flags, rename/link/unlinkat/chmod flags, truncate length
	u32 pid;
	u32 tgid;
	u32 uid;
	u32 gid;
	u32 op;
	u32 nr; // system call number
	s32 dirfd1;
	s32 dirfd2;
	s32 fd;
	u32 mode;
	u32 owner;
	u32 group;
	char comm[TASK_COMM_LEN];
	u32 path1_bits; // doubles as the LPM trie key header of path1
	char path1[PATH_CAP];
	u32 path2_bits;
	char path2[PATH_CAP];
};
_Static_assert(sizeof(struct file_event) == 616, "file_event layout");
_Static_assert(__builtin_offsetof(struct file_event, path2_bits) == 356,
	       "file_event one-path size");

struct prefix_key {
	u32 prefixlen;
	u8 data[PATH_CAP];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} file_rb SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct prefix_key);
	__type(value, u32); // OPB_* mask, already the union with its ancestors'
} prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, u32);
	__type(value, u32);
} ignore_tgid SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct file_event);
} file_scratch SEC(".maps");

DECLARE_CFG();
DECLARE_LOST();

// A descriptor packs, per system call, the op and the argument index of
// each field (NA: absent).
#define NA 7
#define SP_NONE 0
#define SP_CREAT 1
#define SP_OPENAT2 2
#define SP_UNLINKAT 3
#define DESC(op, sp, p1, d1, p2, d2, fl, md, fd, ow, gr)                       \
	((u64)(op) | (u64)(sp) << 4 | (u64)(p1) << 8 | (u64)(d1) << 11 |       \
	 (u64)(p2) << 14 | (u64)(d2) << 17 | (u64)(fl) << 20 |                 \
	 (u64)(md) << 23 | (u64)(fd) << 26 | (u64)(ow) << 29 |                 \
	 (u64)(gr) << 32)
#define D_OP(d) ((d) & 0xf)
#define D_SP(d) (((d) >> 4) & 0xf)
#define D_IDX(d, shift) (((d) >> (shift)) & 7)

static __always_inline u64 describe(long nr)
{
	switch (nr) {
	case 2: // open(path, flags, mode)
		return DESC(OP_OPEN, SP_NONE, 0, NA, NA, NA, 1, 2, NA, NA, NA);
	case 85: // creat(path, mode)
		return DESC(OP_OPEN, SP_CREAT, 0, NA, NA, NA, NA, 1, NA, NA, NA);
	case 257: // openat(dfd, path, flags, mode)
		return DESC(OP_OPEN, SP_NONE, 1, 0, NA, NA, 2, 3, NA, NA, NA);
	case 437: // openat2(dfd, path, how, size)
		return DESC(OP_OPEN, SP_OPENAT2, 1, 0, NA, NA, NA, NA, NA, NA, NA);
	case 76: // truncate(path, length)
		return DESC(OP_TRUNCATE, SP_NONE, 0, NA, NA, NA, 1, NA, NA, NA, NA);
	case 77: // ftruncate(fd, length)
		return DESC(OP_TRUNCATE, SP_NONE, NA, NA, NA, NA, 1, NA, 0, NA, NA);
	case 87: // unlink(path)
		return DESC(OP_UNLINK, SP_NONE, 0, NA, NA, NA, NA, NA, NA, NA, NA);
	case 263: // unlinkat(dfd, path, flags)
		return DESC(OP_UNLINK, SP_UNLINKAT, 1, 0, NA, NA, 2, NA, NA, NA, NA);
	case 84: // rmdir(path)
		return DESC(OP_RMDIR, SP_NONE, 0, NA, NA, NA, NA, NA, NA, NA, NA);
	case 82: // rename(old, new)
		return DESC(OP_RENAME, SP_NONE, 0, NA, 1, NA, NA, NA, NA, NA, NA);
	case 264: // renameat(olddfd, old, newdfd, new)
		return DESC(OP_RENAME, SP_NONE, 1, 0, 3, 2, NA, NA, NA, NA, NA);
	case 316: // renameat2(olddfd, old, newdfd, new, flags)
		return DESC(OP_RENAME, SP_NONE, 1, 0, 3, 2, 4, NA, NA, NA, NA);
	case 86: // link(old, new)
		return DESC(OP_LINK, SP_NONE, 0, NA, 1, NA, NA, NA, NA, NA, NA);
	case 265: // linkat(olddfd, old, newdfd, new, flags)
		return DESC(OP_LINK, SP_NONE, 1, 0, 3, 2, 4, NA, NA, NA, NA);
	case 88: // symlink(target, linkpath): path1 is the new link
		return DESC(OP_SYMLINK, SP_NONE, 1, NA, 0, NA, NA, NA, NA, NA, NA);
	case 266: // symlinkat(target, newdfd, linkpath)
		return DESC(OP_SYMLINK, SP_NONE, 2, 1, 0, NA, NA, NA, NA, NA, NA);
	case 83: // mkdir(path, mode)
		return DESC(OP_MKDIR, SP_NONE, 0, NA, NA, NA, NA, 1, NA, NA, NA);
	case 258: // mkdirat(dfd, path, mode)
		return DESC(OP_MKDIR, SP_NONE, 1, 0, NA, NA, NA, 2, NA, NA, NA);
	case 90: // chmod(path, mode)
		return DESC(OP_CHMOD, SP_NONE, 0, NA, NA, NA, NA, 1, NA, NA, NA);
	case 91: // fchmod(fd, mode)
		return DESC(OP_CHMOD, SP_NONE, NA, NA, NA, NA, NA, 1, 0, NA, NA);
	case 268: // fchmodat(dfd, path, mode)
		return DESC(OP_CHMOD, SP_NONE, 1, 0, NA, NA, NA, 2, NA, NA, NA);
	case 452: // fchmodat2(dfd, path, mode, flags)
		return DESC(OP_CHMOD, SP_NONE, 1, 0, NA, NA, 3, 2, NA, NA, NA);
	case 92: // chown(path, owner, group)
	case 94: // lchown(path, owner, group)
		return DESC(OP_CHOWN, SP_NONE, 0, NA, NA, NA, NA, NA, NA, 1, 2);
	case 93: // fchown(fd, owner, group)
		return DESC(OP_CHOWN, SP_NONE, NA, NA, NA, NA, NA, NA, 0, 1, 2);
	case 260: // fchownat(dfd, path, owner, group, flags)
		return DESC(OP_CHOWN, SP_NONE, 1, 0, NA, NA, 4, NA, NA, 2, 3);
	}
	return 0;
}

// The arguments of one system call: read from the pt_regs of
// raw_tp/sys_enter (raw, a literal at every call site so that the compiler
// keeps one side only), or copied from a syscalls tracepoint's record.
struct sysargs {
	struct pt_regs *regs;
	u64 a[8]; // a[6], a[7]: zero, so that any 3-bit index stays in bounds
};

static __always_inline u64 call_arg(const struct sysargs *sa, int raw, u64 idx)
{
	if (raw)
		return sys_arg(sa->regs, idx);
	return sa->a[idx & 7];
}

static __always_inline u64 arg_or(const struct sysargs *sa, int raw, u64 idx,
				  u64 dflt)
{
	if (idx == NA)
		return dflt;
	return call_arg(sa, raw, idx);
}

// read_path copies a NUL-terminated path from user memory and returns the
// F_* flags describing it (shifted by `second` for path2).
static __always_inline u32 read_path(char *dst, u32 *bits, u64 uptr,
				     int second)
{
	long n = bpf_probe_read_user_str(dst, PATH_CAP, (void *)uptr);
	if (n <= 0) {
		dst[0] = 0;
		*bits = 0;
		return second ? F_ERR2 : F_ERR1;
	}
	u32 f = 0;
	if (n >= PATH_CAP)
		f |= second ? F_TRUNC2 : F_TRUNC1;
	if (dst[0] != '/')
		f |= second ? F_REL2 : F_REL1;
	*bits = (u32)(n - 1) * 8;
	return f;
}

struct pathbuf {
	char s[PATH_CAP];
};

// path_noncanon reports "//", "/./", "/../" or a trailing "/." or "/..":
// the kernel resolves them, a prefix comparison would be fooled by them.
// A global function: the verifier checks its loop once, not per call site
// and branch (that took ~0.8 s at load time).
__noinline int path_noncanon(const struct pathbuf *pb, u32 len)
{
	if (!pb)
		return 1;
	const char *p = pb->s;
	for (u32 i = 0; i < PATH_CAP - 1; i++) {
		if (i >= len)
			break;
		if (p[i] != '/')
			continue;
		char a = p[(i + 1) & (PATH_CAP - 1)];
		if (a == '/')
			return 1;
		if (a != '.')
			continue;
		char b = p[(i + 2) & (PATH_CAP - 1)];
		if (b == '/' || b == 0)
			return 1;
		if (b != '.')
			continue;
		char c = p[(i + 3) & (PATH_CAP - 1)];
		if (c == '/' || c == 0)
			return 1;
	}
	return 0;
}

// op_bits returns the OPB_* bits of an event, as FileEvent.Actions expands
// it: an open is always "open", plus create, write and truncate from flags.
static __always_inline u32 op_bits(u32 op, u64 fl)
{
	switch (op) {
	case OP_OPEN: {
		u32 b = OPB_OPEN;
		if ((fl & O_CREAT) || (fl & O_TMPFILE) == O_TMPFILE)
			b |= OPB_CREATE;
		if (fl & (O_WRONLY | O_RDWR))
			b |= OPB_WRITE;
		if (fl & O_TRUNC)
			b |= OPB_TRUNCATE;
		return b;
	}
	case OP_TRUNCATE:
		return OPB_TRUNCATE;
	case OP_UNLINK:
		return OPB_UNLINK;
	case OP_RMDIR:
		return OPB_RMDIR;
	case OP_RENAME:
		return OPB_RENAME;
	case OP_LINK:
		return OPB_LINK;
	case OP_SYMLINK:
		return OPB_SYMLINK;
	case OP_MKDIR:
		return OPB_MKDIR;
	case OP_CHMOD:
		return OPB_CHMOD;
	case OP_CHOWN:
		return OPB_CHOWN;
	}
	return ~0u; // unknown: let it through
}

// keep_path decides whether one path passes the filter. Relative,
// unreadable, truncated and non-canonical paths always pass: the kernel
// cannot prove them irrelevant (fail closed). A truncated path may hold a
// "/../" past the bytes read.
static __always_inline int keep_path(u32 *key, const char *path, u32 pflags,
				     u32 bits, u32 *evflags)
{
	if (pflags & (F_REL1 | F_REL2 | F_ERR1 | F_ERR2 | F_TRUNC1 | F_TRUNC2))
		return 1;
	u32 *mask = bpf_map_lookup_elem(&prefixes, key);
	if (mask && (*mask & bits)) {
		*evflags |= F_MATCH;
		return 1;
	}
	if (path_noncanon((const struct pathbuf *)path, *key / 8)) {
		*evflags |= F_NONCANON;
		return 1;
	}
	return 0;
}

// file_call builds, filters and emits the record of system call nr.
static __always_inline int file_call(long nr, const struct sysargs *sa, int raw)
{
	u64 d = describe(nr);
	if (d == 0)
		return 0;

	u64 pt = bpf_get_current_pid_tgid();
	u32 tgid = pt >> 32;
	if (bpf_map_lookup_elem(&ignore_tgid, &tgid))
		return 0;
	// 32-bit calls reach the raw tracepoint with other numbers; the
	// syscalls tracepoints skip them on x86 (ARCH_TRACE_IGNORE_COMPAT_SYSCALLS).
	if (raw && in_compat_syscall())
		return 0;

	u32 zero = 0;
	struct file_event *e = bpf_map_lookup_elem(&file_scratch, &zero);
	if (!e)
		return 0;
	struct jcfg *c = get_cfg(&cfg);

	u32 flags = 0;
	u32 op = D_OP(d);
	u32 sp = D_SP(d);
	// What the filter needs first (flags, paths); the rest only for the
	// events it keeps: most are dropped.
	e->arg = arg_or(sa, raw, D_IDX(d, 20), 0);
	e->mode = (u32)arg_or(sa, raw, D_IDX(d, 23), 0);
	if (sp == SP_CREAT) {
		e->arg = O_CREAT_WRONLY_TRUNC;
	} else if (sp == SP_OPENAT2) {
		u64 how[2] = {}; // struct open_how { u64 flags; u64 mode; ... }
		if (bpf_probe_read_user(how, sizeof(how),
					(void *)call_arg(sa, raw, 2)) < 0)
			flags |= F_HOW_ERR;
		e->arg = how[0];
		e->mode = (u32)how[1];
	} else if (sp == SP_UNLINKAT && (e->arg & AT_REMOVEDIR)) {
		op = OP_RMDIR;
	}
	if (op != OP_TRUNCATE)
		e->arg = (u32)e->arg; // an int: the upper register half is noise
	e->op = op;

	u32 p1 = D_IDX(d, 8), p2 = D_IDX(d, 14);
	u32 f1 = 0, f2 = 0;
	if (p1 != NA) {
		f1 = read_path(e->path1, &e->path1_bits, call_arg(sa, raw, p1),
			       0);
	} else {
		e->path1[0] = 0;
		e->path1_bits = 0;
		flags |= F_FDONLY;
	}
	if (p2 != NA)
		f2 = read_path(e->path2, &e->path2_bits, call_arg(sa, raw, p2),
			       1);
	flags |= f1 | f2;

	if (c && c->filter_on && !(flags & (F_FDONLY | F_HOW_ERR))) {
		u32 bits = op_bits(op, e->arg);
		int keep = keep_path(&e->path1_bits, e->path1, f1, bits, &flags);
		if (!keep && p2 != NA)
			keep = keep_path(&e->path2_bits, e->path2, f2, bits,
					 &flags);
		if (!keep)
			return 0;
	}

	e->h.kind = EV_FILE;
	e->nr = nr;
	e->pid = (u32)pt;
	e->tgid = tgid;
	u64 ug = bpf_get_current_uid_gid();
	e->uid = (u32)ug;
	e->gid = ug >> 32;
	e->dirfd1 = (s32)arg_or(sa, raw, D_IDX(d, 11), (u64)-100);
	e->dirfd2 = (s32)arg_or(sa, raw, D_IDX(d, 17), (u64)-100);
	e->fd = (s32)arg_or(sa, raw, D_IDX(d, 26), (u64)-1);
	e->owner = (u32)arg_or(sa, raw, D_IDX(d, 29), (u64)-1);
	e->group = (u32)arg_or(sa, raw, D_IDX(d, 32), (u64)-1);
	e->h.flags = flags;
	e->h.ktime = bpf_ktime_get_ns();
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));

	// A one-path record ends with its path's NUL: paths are mostly far shorter
	// than PATH_CAP, and a storm copied (and read back) the rest for every event.
	u64 size = sizeof(*e);
	if (p2 == NA) {
		u64 n = (e->path1_bits >> 3) + 1;
		if (n > PATH_CAP)
			n = PATH_CAP;
		size = __builtin_offsetof(struct file_event, path1) + n;
	}
	if (bpf_ringbuf_output(&file_rb, e, size,
			       band_wakeup(c, bpf_ringbuf_query(&file_rb, BPF_RB_PROD_POS), size)) < 0)
		COUNT_LOST(STREAM_FILE);
	return 0;
}

// The fallback: every system call of the machine, dispatched on its number.
SEC("raw_tp/sys_enter")
int file_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	struct sysargs sa = {.regs = (struct pt_regs *)ctx->args[0]};
	return file_call((long)ctx->args[1], &sa, 1);
}

// The syscalls tracepoint programs, one per number of arguments (see
// TP_ARGS): user space attaches file_syscallN to the tracepoint of each call
// of describe() that has N arguments (bpf/sysenter.go lists them). They run
// only on those calls, and have the arguments in their record.
#define FILE_SYSCALL(n)                                                        \
	SEC("tracepoint")                                                      \
	int file_syscall##n(struct trace_event_raw_sys_enter *ctx)             \
	{                                                                      \
		struct sysargs sa = {};                                        \
		TP_ARGS(ctx, n, sa.a);                                         \
		/* The record's nr is an int: the upper half of id is padding. */ \
		return file_call((int)ctx->id, &sa, 0);                        \
	}

FILE_SYSCALL(1)
FILE_SYSCALL(2)
FILE_SYSCALL(3)
FILE_SYSCALL(4)
FILE_SYSCALL(5)
