//go:build ignore

// Shared definitions of the jibril sensors. Every event starts with
// struct ev_hdr so that a ring carrying several kinds can be demultiplexed.
// The layouts here are mirrored by hand in ../decode.go: keep them in sync
// (the _Static_asserts below and decode_test.go check the sizes).

#pragma once

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>

#define TASK_COMM_LEN 16
#define PATH_CAP 256

// Event kinds (ev_hdr.kind).
#define EV_EXEC 1
#define EV_FORK 2
#define EV_EXIT 3
#define EV_FILE 4
#define EV_NET 5
#define EV_DNS 6

// Stream indexes of the per-CPU loss counters (lost map).
#define STREAM_EXEC 0
#define STREAM_FORK 1
#define STREAM_EXIT 2
#define STREAM_FILE 3
#define STREAM_NET 4
#define STREAM_DNS 5
#define STREAM_MAX 8

struct ev_hdr {
	u32 kind;
	u32 flags;
	u64 ktime; // bpf_ktime_get_ns (CLOCK_MONOTONIC)
};

// Runtime knobs written by user space (index 0 of the cfg array map).
struct jcfg {
	u64 wake_bytes;    // batched streams: force a wake-up above this many queued bytes
	u64 udp_window_ns; // net: report a UDP peer of a process at most once per window
	u32 filter_on;     // file: drop events whose paths match no prefix
	u32 exec_wake_all; // proc: wake the reader for every exec (else urgent ones only)
};

#define DECLARE_CFG()                                                          \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_ARRAY);                              \
		__uint(max_entries, 1);                                        \
		__type(key, u32);                                              \
		__type(value, struct jcfg);                                    \
	} cfg SEC(".maps")

#define DECLARE_LOST()                                                         \
	struct {                                                               \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                       \
		__uint(max_entries, STREAM_MAX);                               \
		__type(key, u32);                                              \
		__type(value, u64);                                            \
	} lost SEC(".maps")

#define COUNT_LOST(stream)                                                     \
	do {                                                                   \
		u32 __k = (stream);                                            \
		u64 *__c = bpf_map_lookup_elem(&lost, &__k);                   \
		if (__c)                                                       \
			*__c += 1;                                             \
	} while (0)

static __always_inline struct jcfg *get_cfg(void *cfgmap)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(cfgmap, &zero);
}

// Wake the reader once per wake_bytes produced: when this record takes the
// producer position across a multiple of wake_bytes. A wake-up costs the
// producing process 12-21 us (an irq_work self-IPI, a VM exit under KVM).
// Waking whenever the backlog is above the threshold instead would wake on
// every record while the reader is held back, which cost a file storm 1.3 us
// of every open. rec is the record's size without its 8-byte header; start is
// the producer position before it.
// Racing producers may both miss a crossing: the reader's periodic flush
// (Config.FlushInterval) bounds the delay then.
static __always_inline u64 band_wakeup(struct jcfg *c, u64 start, u64 rec)
{
	u64 threshold = c ? c->wake_bytes : 0;
	if (threshold == 0)
		return 0;
	u64 end = start + ((rec + 8 + 7) & ~7ULL);
	if (start / threshold != end / threshold)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

// batch_wakeup is band_wakeup for a record already reserved: the producer
// position includes it.
static __always_inline u64 batch_wakeup(void *ring, struct jcfg *c, u64 rec)
{
	u64 pos = bpf_ringbuf_query(ring, BPF_RB_PROD_POS);
	u64 len = (rec + 8 + 7) & ~7ULL;
	return band_wakeup(c, pos >= len ? pos - len : 0, rec);
}

// x86-64 system call arguments from the pt_regs of sys_enter.
static __always_inline u64 sys_arg(struct pt_regs *regs, int i)
{
	switch (i) {
	case 0:
		return BPF_CORE_READ(regs, di);
	case 1:
		return BPF_CORE_READ(regs, si);
	case 2:
		return BPF_CORE_READ(regs, dx);
	case 3:
		return BPF_CORE_READ(regs, r10);
	case 4:
		return BPF_CORE_READ(regs, r8);
	case 5:
		return BPF_CORE_READ(regs, r9);
	}
	return 0;
}

#define TS_COMPAT 0x0002

// 32-bit system calls (int 0x80) use other numbers and registers: the
// sys_enter programs skip them rather than misreport them.
static __always_inline int in_compat_syscall(void)
{
	struct task_struct *t = (struct task_struct *)bpf_get_current_task();
	u32 status = BPF_CORE_READ(t, thread_info.status);
	return (status & TS_COMPAT) != 0;
}

// TP_ARGS copies the first n system call arguments of a syscalls tracepoint
// record into a[0..5] (zero past n). The kernel refuses to attach a program
// to an event whose record ends before the furthest offset the program reads
// (max_ctx_offset): a program shared by several calls reads no more
// arguments than the shortest of them has, hence one program per count.
#define TP_ARG(ctx, n, i) ((i) < (n) ? (u64)(ctx)->args[(i) < (n) ? (i) : 0] : 0)
// Each load done at once, at a constant offset: clang would otherwise pick
// an offset at run time (a[1] or a[4]...), which the verifier refuses.
#define TP_ARGS(ctx, n, a)                                                     \
	do {                                                                   \
		u64 __a0 = TP_ARG(ctx, n, 0), __a1 = TP_ARG(ctx, n, 1);        \
		u64 __a2 = TP_ARG(ctx, n, 2), __a3 = TP_ARG(ctx, n, 3);        \
		u64 __a4 = TP_ARG(ctx, n, 4), __a5 = TP_ARG(ctx, n, 5);        \
		barrier_var(__a0);                                             \
		barrier_var(__a1);                                             \
		barrier_var(__a2);                                             \
		barrier_var(__a3);                                             \
		barrier_var(__a4);                                             \
		barrier_var(__a5);                                             \
		(a)[0] = __a0;                                                 \
		(a)[1] = __a1;                                                 \
		(a)[2] = __a2;                                                 \
		(a)[3] = __a3;                                                 \
		(a)[4] = __a4;                                                 \
		(a)[5] = __a5;                                                 \
	} while (0)
