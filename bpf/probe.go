package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// FeatureStatus is the result of one real load (and attach, when harmless)
// of a tiny program or object.
type FeatureStatus struct {
	Name      string
	Available bool
	Err       error  // why it is unavailable
	Fallback  string // what jibril uses instead
	Note      string // how it is available (e.g. where tracefs was found)
}

// Features is what the running kernel allows, measured by Probe.
type Features struct {
	BPFLSM           FeatureStatus
	Fentry           FeatureStatus
	Kprobe           FeatureStatus
	TpBTF            FeatureStatus
	RawTracepoint    FeatureStatus
	Tracepoint       FeatureStatus // the syscalls tracepoints (need tracefs) of the file and net sensors
	RingBuf          FeatureStatus
	CgroupSKB        FeatureStatus
	SendSignal       FeatureStatus
	FanotifyExecPerm FeatureStatus
}

// List returns every probed feature in a stable order.
func (f Features) List() []FeatureStatus {
	return []FeatureStatus{f.BPFLSM, f.Fentry, f.Kprobe, f.TpBTF, f.RawTracepoint,
		f.Tracepoint, f.RingBuf, f.CgroupSKB, f.SendSignal, f.FanotifyExecPerm}
}

// Lines renders one human line per feature, e.g.
// "fentry: unavailable (EPERM) -> fallback tracepoints (tp_btf, raw_tp)".
func (f Features) Lines() []string {
	var out []string
	for _, s := range f.List() {
		if s.Available {
			line := s.Name + ": available"
			if s.Note != "" {
				line += " (" + s.Note + ")"
			}
			out = append(out, line)
			continue
		}
		line := fmt.Sprintf("%s: unavailable (%s)", s.Name, reason(s.Err))
		if s.Fallback != "" {
			line += " -> fallback " + s.Fallback
		}
		out = append(out, line)
	}
	return out
}

const enotsupp = syscall.Errno(524) // the kernel's internal ENOTSUPP

// reason names the errno behind err when there is one.
func reason(err error) string {
	if err == nil {
		return "unknown"
	}
	if errors.Is(err, enotsupp) {
		return "ENOTSUPP"
	}
	for _, e := range []unix.Errno{unix.EPERM, unix.EACCES, unix.EINVAL, unix.ENOENT,
		unix.EOPNOTSUPP, unix.ENOSYS, unix.E2BIG, unix.ENODEV, unix.EBADF} {
		if errors.Is(err, e) {
			return unix.ErrnoName(e)
		}
	}
	if errors.Is(err, ebpf.ErrNotSupported) {
		return "not supported"
	}
	s := err.Error()
	if len(s) > 120 {
		s = s[:120] + "..."
	}
	return s
}

func ret0() asm.Instructions { return asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()} }

// Probe measures, with real loads, which kernel mechanisms work here. BPF
// LSM and fentry load failures often come with an empty verifier log and
// EPERM: the error is reported as such, not blamed on memlock. It mounts
// tracefs at /sys/kernel/tracing when it is nowhere (the Tracepoint note
// says so), as Open does.
func Probe(ctx context.Context) Features { return probe(ctx, true) }

// ProbeOnly is Probe for a report (jibril version): it changes nothing on the
// host, and without tracefs it says the syscalls tracepoints are not probed.
func ProbeOnly(ctx context.Context) Features { return probe(ctx, false) }

func probe(ctx context.Context, mount bool) Features {
	var f Features
	// Before any probe: cilium/ebpf looks tracefs up once per process.
	tfs, tfsErr := tracefs{}, error(nil)
	if ctx.Err() == nil {
		tfs, tfsErr = ensureTracefs(mount)
	}
	probeTracepoint := func() error {
		if tfsErr != nil {
			return tfsErr
		}
		return probeSyscallTracepoint()
	}
	probes := []struct {
		dst      *FeatureStatus
		name     string
		fallback string
		fn       func() error
	}{
		{&f.BPFLSM, "bpf_lsm", "bpf_send_signal at exec (kill) and fanotify (deny)", probeLSM},
		{&f.Fentry, "fentry", "tracepoints (tp_btf, raw_tp)", probeFentry},
		{&f.Kprobe, "kprobe", "tracepoints (tp_btf, raw_tp)", probeKprobe},
		{&f.TpBTF, "tp_btf", "raw_tp", probeTpBTF},
		{&f.RawTracepoint, "raw_tp", "none: the process, file and network sensors cannot load", probeRawTP},
		{&f.Tracepoint, "tracepoint", "raw_tp/sys_enter for the file and connect/sendto/sendmsg sensors (runs on every system call)", probeTracepoint},
		{&f.RingBuf, "ringbuf", "none: no sensor can load", probeRingBuf},
		{&f.CgroupSKB, "cgroup_skb", "none: no DNS sensor", probeCgroupSKB},
		{&f.SendSignal, "bpf_send_signal", "a user-space kill after the event (not preventive)", probeSendSignal},
		{&f.FanotifyExecPerm, "fanotify_exec_perm", "none for prevent: deny (kill-on-exec still works)", probeFanotify},
	}
	for _, p := range probes {
		*p.dst = FeatureStatus{Name: p.name, Fallback: p.fallback}
		if err := ctx.Err(); err != nil {
			p.dst.Err = err
			continue
		}
		if err := p.fn(); err != nil {
			p.dst.Err = err
			continue
		}
		p.dst.Available = true
		p.dst.Fallback = ""
	}
	if f.Tracepoint.Available {
		f.Tracepoint.Note = tfs.String()
	}
	return f
}

// loadAttach loads spec and, if attach is set, attaches and detaches it.
func loadAttach(spec *ebpf.ProgramSpec, attach func(*ebpf.Program) (link.Link, error)) error {
	if spec.License == "" {
		spec.License = "GPL"
	}
	prog, err := ebpf.NewProgram(spec)
	if errors.Is(err, unix.EPERM) && os.Geteuid() == 0 {
		// cilium/ebpf suggests raising memlock; as root on a memcg-accounted
		// kernel that is never the cause: the program type is refused.
		return fmt.Errorf("load %s program: the kernel refused it: %w", spec.Type, unix.EPERM)
	}
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	defer prog.Close()
	if attach == nil {
		return nil
	}
	l, err := attach(prog)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	return l.Close()
}

func probeLSM() error {
	err := loadAttach(&ebpf.ProgramSpec{
		Type: ebpf.LSM, AttachType: ebpf.AttachLSMMac, AttachTo: "bprm_check_security",
		Instructions: ret0(),
	}, func(p *ebpf.Program) (link.Link, error) { return link.AttachLSM(link.LSMOptions{Program: p}) })
	if err != nil {
		if lsms, rerr := os.ReadFile("/sys/kernel/security/lsm"); rerr == nil &&
			!strings.Contains(","+strings.TrimSpace(string(lsms))+",", ",bpf,") {
			return fmt.Errorf("%w (bpf is not in the active LSMs %q)", err, strings.TrimSpace(string(lsms)))
		}
	}
	return err
}

// probeTarget is a kernel function present on every kernel we support,
// called only on exec: attaching to it for a moment costs nothing.
const probeTarget = "security_bprm_check"

func probeFentry() error {
	return loadAttach(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceFEntry, AttachTo: probeTarget,
		Instructions: ret0(),
	}, func(p *ebpf.Program) (link.Link, error) { return link.AttachTracing(link.TracingOptions{Program: p}) })
}

func probeKprobe() error {
	if _, err := os.Stat("/sys/bus/event_source/devices/kprobe"); err != nil {
		if _, terr := os.Stat("/sys/kernel/tracing/kprobe_events"); terr != nil {
			return fmt.Errorf("no kprobe PMU and no tracefs kprobe_events (kernel without kprobes?): %w", unix.ENOENT)
		}
	}
	return loadAttach(&ebpf.ProgramSpec{Type: ebpf.Kprobe, Instructions: ret0()},
		func(p *ebpf.Program) (link.Link, error) { return link.Kprobe(probeTarget, p, nil) })
}

func probeTpBTF() error {
	return loadAttach(&ebpf.ProgramSpec{
		Type: ebpf.Tracing, AttachType: ebpf.AttachTraceRawTp, AttachTo: "sched_process_exec",
		Instructions: ret0(),
	}, func(p *ebpf.Program) (link.Link, error) { return link.AttachTracing(link.TracingOptions{Program: p}) })
}

func probeRawTP() error {
	return loadAttach(&ebpf.ProgramSpec{Type: ebpf.RawTracepoint, Instructions: ret0()},
		func(p *ebpf.Program) (link.Link, error) {
			return link.AttachRawTracepoint(link.RawTracepointOptions{Name: "sched_process_exec", Program: p})
		})
}

// probeSyscallTracepoint attaches to the tracepoint of openat, one of those
// the file sensor uses, for a moment.
func probeSyscallTracepoint() error {
	return loadAttach(&ebpf.ProgramSpec{Type: ebpf.TracePoint, Instructions: ret0()},
		func(p *ebpf.Program) (link.Link, error) {
			return link.Tracepoint("syscalls", "sys_enter_openat", p, nil)
		})
}

func probeRingBuf() error {
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.RingBuf, MaxEntries: uint32(os.Getpagesize())})
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	return m.Close()
}

// probeCgroupSKB attaches to a new, empty cgroup: no traffic is touched.
func probeCgroupSKB() error {
	root, err := cgroup2Path()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(root, "jibril-probe-")
	if err != nil {
		return fmt.Errorf("create probe cgroup: %w", err)
	}
	defer os.Remove(dir)
	return loadAttach(&ebpf.ProgramSpec{
		Type: ebpf.CGroupSKB, AttachType: ebpf.AttachCGroupInetIngress,
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 1), asm.Return()},
	}, func(p *ebpf.Program) (link.Link, error) {
		return link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: ebpf.AttachCGroupInetIngress, Program: p})
	})
}

// probeSendSignal loads (never attaches) a program calling bpf_send_signal.
func probeSendSignal() error {
	return loadAttach(&ebpf.ProgramSpec{Type: ebpf.RawTracepoint, Instructions: asm.Instructions{
		asm.Mov.Imm(asm.R1, 0),
		asm.FnSendSignal.Call(),
		asm.Mov.Imm(asm.R0, 0),
		asm.Return(),
	}}, nil)
}

// probeFanotify marks a temporary file for exec permission events.
func probeFanotify() error {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fanotify_init: %w", err)
	}
	defer unix.Close(fd)
	dir, err := os.MkdirTemp("", "jibril-probe-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "exe")
	if err := os.WriteFile(p, nil, 0o700); err != nil {
		return err
	}
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD, unix.FAN_OPEN_EXEC_PERM, unix.AT_FDCWD, p); err != nil {
		return fmt.Errorf("fanotify_mark FAN_OPEN_EXEC_PERM: %w", err)
	}
	return nil
}
