package bpf

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// The file and net sensors watch system calls either with one program
// attached to the syscalls tracepoint of each call they want
// (tracepoint/syscalls/sys_enter_X: it runs on those calls only, but the
// tracepoints are attached through tracefs), or with one raw_tp/sys_enter
// program that runs on every system call of the machine and dispatches on
// its number: the fallback.

// sysCall is a system call a sensor watches and its number of arguments:
// its tracepoint gets the program for that many (TP_ARGS in c/common.h).
type sysCall struct {
	name string
	args int
}

// fileSyscalls are the system calls describe() in c/file.bpf.c handles.
// TestSysEnterPaths makes each of them on both paths.
func fileSyscalls() []sysCall {
	return []sysCall{{"open", 3}, {"creat", 2}, {"openat", 4}, {"openat2", 4},
		{"truncate", 2}, {"ftruncate", 2}, {"unlink", 1}, {"unlinkat", 3}, {"rmdir", 1},
		{"rename", 2}, {"renameat", 4}, {"renameat2", 5}, {"link", 2}, {"linkat", 5},
		{"symlink", 2}, {"symlinkat", 3}, {"mkdir", 2}, {"mkdirat", 3},
		{"chmod", 2}, {"fchmod", 2}, {"fchmodat", 3}, {"fchmodat2", 4},
		{"chown", 3}, {"lchown", 3}, {"fchown", 3}, {"fchownat", 5}}
}

// netSyscalls are the system calls net_tp in c/net.bpf.c handles.
func netSyscalls() []sysCall { return []sysCall{{"connect", 3}, {"sendto", 6}, {"sendmsg", 3}} }

// sysEnterProgs names a sensor's system call programs: the raw_tp one, and
// the prefix of the tracepoint ones (prefix + number of arguments), with
// the calls those are attached to.
type sysEnterProgs struct {
	tp, raw string
	calls   []sysCall
}

func (p sysEnterProgs) tpProg(c sysCall) string { return p.tp + strconv.Itoa(c.args) }

// isTP reports whether name is one of the tracepoint programs p needs.
func (p sysEnterProgs) isTP(name string) bool {
	return slices.ContainsFunc(p.calls, func(c sysCall) bool { return p.tpProg(c) == name })
}

// openSysEnter loads a collection of the file or net sensor through load
// and attaches its system call programs: the tracepoint programs on the
// syscalls tracepoint of each of p.calls when tracefs is usable, else, or
// when any of that fails, p.raw on raw_tp/sys_enter. load loads the system
// call programs keep accepts, and the sensor's other programs, which it
// attaches. The returned text says which path is in use and why.
func (s *Sensors) openSysEnter(spec *ebpf.CollectionSpec, p sysEnterProgs,
	load func(keep func(string) bool) (*ebpf.Collection, []link.Link, error)) (*ebpf.Collection, []link.Link, string, error) {
	why := "forced by the configuration"
	if !s.cfg.rawSysEnter {
		coll, links, how, err := s.syscallTracepoints(p, load)
		if err == nil {
			return coll, links, how, nil
		}
		why = strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	coll, links, err := load(func(name string) bool { return name == p.raw })
	if err != nil {
		return nil, nil, "", err
	}
	if err := s.ignoreSelf(coll); err != nil {
		closeAll(coll, links)
		return nil, nil, "", err
	}
	l, err := attachTP(coll.Programs[p.raw], "sys_enter")
	if err != nil {
		closeAll(coll, links)
		return nil, nil, "", fmt.Errorf("attach %s to raw_tp/sys_enter (the syscalls tracepoints failed too: %s): %w", p.raw, why, err)
	}
	return coll, append(links, l), "raw_tp/sys_enter (fallback: " + why + ")", nil
}

// syscallTracepoints is the tracepoint path of openSysEnter.
func (s *Sensors) syscallTracepoints(p sysEnterProgs, load func(keep func(string) bool) (*ebpf.Collection, []link.Link, error)) (*ebpf.Collection, []link.Link, string, error) {
	tfs, err := ensureTracefs(true)
	if err != nil {
		return nil, nil, "", err
	}
	coll, links, err := load(p.isTP)
	if err != nil {
		return nil, nil, "", fmt.Errorf("load the syscalls tracepoint programs: %w", err)
	}
	if err := s.ignoreSelf(coll); err != nil {
		closeAll(coll, links)
		return nil, nil, "", err
	}
	var absent []string
	n := 0
	for _, c := range p.calls {
		name, event := p.tpProg(c), "sys_enter_"+c.name
		prog := coll.Programs[name]
		if prog == nil {
			closeAll(coll, links)
			return nil, nil, "", fmt.Errorf("object has no program %s", name)
		}
		l, err := link.Tracepoint("syscalls", event, prog, nil)
		if err != nil && errors.Is(err, os.ErrNotExist) && syscallAbsent(event) {
			absent = append(absent, c.name)
			continue
		}
		if err != nil {
			closeAll(coll, links)
			return nil, nil, "", fmt.Errorf("attach %s to tracepoint syscalls/%s: %w", name, event, err)
		}
		links = append(links, l)
		n++
	}
	how := fmt.Sprintf("tracepoint/syscalls/sys_enter_* (%d system calls", n)
	if len(absent) > 0 {
		how += "; not in this kernel: " + strings.Join(absent, ", ")
	}
	return coll, links, how + "; " + tfs.String() + ")", nil
}

// syscallAbsent reports whether the tracepoint event is that of a system
// call the sensors watch that kernels older than its addition lack, and the
// kernel lacks it (ENOSYS): then its tracepoint is missing for a good
// reason. Every argument is -1, a bad descriptor, pointer, size and flags:
// a kernel that has the call refuses it before doing anything.
func syscallAbsent(event string) bool {
	var nr uintptr
	switch event {
	case "sys_enter_openat2": // 5.6
		nr = unix.SYS_OPENAT2
	case "sys_enter_fchmodat2": // 6.6
		nr = unix.SYS_FCHMODAT2
	default:
		return false
	}
	const bad = ^uintptr(0)
	_, _, errno := unix.Syscall6(nr, bad, bad, bad, bad, bad, bad)
	return errno == unix.ENOSYS
}
