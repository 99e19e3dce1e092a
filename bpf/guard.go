package bpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// LinkState is one attachment of the sensors and whether it still holds.
type LinkState struct {
	ID       link.ID
	Program  string // the program's name in the kernel (truncated to 15 bytes)
	Hook     string // "raw_tp sched_process_exec", "cgroup inet_ingress (cgroup 1)"
	Attached bool
	Err      error // the link could not be inspected
}

func (l LinkState) String() string {
	s := fmt.Sprintf("link %d %s on %s", l.ID, l.Program, l.Hook)
	if l.Err != nil {
		return s + ": " + l.Err.Error()
	}
	if !l.Attached {
		return s + ": detached"
	}
	return s
}

// CheckLinks inspects every link of the sensors. Tracepoint links (tp_btf, raw_tp, and the
// perf event links of the syscalls tracepoints) cannot be detached by another process (the
// kernel answers BPF_LINK_DETACH with EOPNOTSUPP; only closing our descriptors ends them); a
// cgroup link can (bpftool link detach), after which the kernel reports it on cgroup 0.
func (s *Sensors) CheckLinks() ([]LinkState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	out := make([]LinkState, 0, len(s.links))
	for _, l := range s.links {
		out = append(out, s.linkState(l))
	}
	return out, nil
}

func (s *Sensors) linkState(l link.Link) LinkState {
	info, err := l.Info()
	if _, perf := l.(link.PerfEvent); perf && errors.Is(err, link.ErrNotSupported) {
		// Before 5.15 a tracepoint program is set on its perf event with an ioctl: no
		// BPF link, nothing to inspect, and nothing another process can detach.
		return LinkState{Hook: "tracepoint (perf event ioctl)", Attached: true}
	}
	if err != nil {
		return LinkState{Hook: "?", Err: fmt.Errorf("link info: %w", err)}
	}
	st := LinkState{ID: info.ID, Program: s.progName(info.Program), Attached: true}
	switch {
	case info.RawTracepoint() != nil:
		st.Hook = "raw_tp " + info.RawTracepoint().Name
	case info.PerfEvent() != nil:
		st.Hook = "perf event"
		if tp := info.PerfEvent().Tracepoint(); tp != nil {
			st.Hook = "tracepoint " + tp.Tracepoint
		}
	case info.Tracing() != nil:
		st.Hook = fmt.Sprintf("tp_btf (btf id %d)", info.Tracing().TargetBtfId)
	case info.Cgroup() != nil:
		c := info.Cgroup()
		st.Hook = fmt.Sprintf("cgroup %s (cgroup %d)", ebpf.AttachType(c.AttachType), c.CgroupId)
		st.Attached = c.CgroupId != 0
	default:
		st.Hook = fmt.Sprintf("link type %d", info.Type)
	}
	return st
}

// progName finds the name of one of our programs by id ("" when it is not ours).
func (s *Sensors) progName(id ebpf.ProgramID) string {
	if p := s.progByID(id); p != nil {
		return s.progIDs[id].name
	}
	return ""
}

// progByID finds a program of ours by its kernel ID. The IDs and names are read once (each
// Info is a /proc fdinfo read) and kept: the watchdog asks for every link every second.
// s.mu is held.
func (s *Sensors) progByID(id ebpf.ProgramID) *ebpf.Program {
	if _, ok := s.progIDs[id]; !ok {
		s.progIDs = nil // an Info that failed before may answer now: read them again
	}
	if s.progIDs == nil {
		s.progIDs = map[ebpf.ProgramID]progRef{}
		for _, c := range s.colls {
			for _, p := range c.Programs {
				info, err := p.Info()
				if err != nil {
					continue
				}
				if pid, ok := info.ID(); ok {
					s.progIDs[pid] = progRef{p, info.Name}
				}
			}
		}
	}
	return s.progIDs[id].prog
}

// progRef is one of our programs as the watchdog finds it by ID.
type progRef struct {
	prog *ebpf.Program
	name string
}

// Reattach attaches every detached cgroup link again, with the same program on the same
// cgroup, and returns what it repaired. A link it cannot repair is in the error; the
// others are still repaired.
func (s *Sensors) Reattach() ([]LinkState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	var fixed []LinkState
	var errs []error
	for i, l := range s.links {
		st := s.linkState(l)
		if st.Err != nil || st.Attached {
			continue
		}
		info, err := l.Info()
		if err != nil || info.Cgroup() == nil {
			errs = append(errs, fmt.Errorf("reattach %s: not a cgroup link", st))
			continue
		}
		nl, err := s.reattachCgroup(info)
		if err != nil {
			errs = append(errs, fmt.Errorf("reattach %s: %w", st, err))
			continue
		}
		s.links[i] = nl
		_ = l.Close()
		fixed = append(fixed, s.linkState(nl))
	}
	return fixed, errors.Join(errs...)
}

func (s *Sensors) reattachCgroup(info *link.Info) (link.Link, error) {
	prog := s.progByID(info.Program)
	if prog == nil {
		return nil, fmt.Errorf("program %d is not one of ours", info.Program)
	}
	path := s.cfg.CgroupPath
	if path == "" {
		var err error
		if path, err = cgroup2Path(); err != nil {
			return nil, err
		}
	}
	return link.AttachCgroup(link.CgroupOptions{
		Path:    path,
		Attach:  ebpf.AttachType(info.Cgroup().AttachType),
		Program: prog,
	})
}
