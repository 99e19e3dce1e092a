// Package proctable keeps the table of processes the engine enriches events with: filled from
// /proc at start (Scan), kept current by the exec, fork and exit sensors, and read lazily from
// /proc for a process it has not seen yet. Exited processes stay a while (late file and
// network events still find them), then are evicted; the table is bounded.
//
// Start times are CLOCK_MONOTONIC nanoseconds, the clock of bpf.ExecEvent.StartTime; times
// read from /proc (USER_HZ ticks of CLOCK_BOOTTIME) are converted, with 10 ms resolution.
//
// One writer (the sensor loop calling OnExec/OnFork/OnExit) and any number of readers may use
// a Table concurrently. Entries are immutable once stored: a Proc returned by Get shares its
// slices with the table and must not be modified.
package proctable

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/engine/procfs"
)

// Defaults applied to zero Options fields.
const (
	DefaultProcRoot  = "/proc"
	DefaultMax       = 1 << 16
	DefaultExitedTTL = 30 * time.Second
	DefaultMaxDepth  = 64
)

// startTolerance is how far two start times of one process may differ: /proc gives 10 ms
// ticks, and the boot/monotonic offset is read at a slightly different moment.
const startTolerance = 100 * time.Millisecond

// negativeTTL is how long a pid that could not be read from /proc is not retried, and
// maxNegative bounds how many such pids are remembered.
const (
	negativeTTL = time.Second
	maxNegative = 4096
)

// Options configures a Table.
type Options struct {
	ProcRoot  string           // "" = /proc
	Proc      procfs.ProcFS    // the links of /proc/PID (exe, cwd); nil = read ProcRoot directly
	Max       int              // maximum entries (0 = DefaultMax)
	ExitedTTL time.Duration    // how long exited processes are kept (0 = DefaultExitedTTL)
	MaxDepth  int              // longest ancestry returned (0 = DefaultMaxDepth)
	Now       func() time.Time // nil = time.Now; drives exit eviction
}

// Proc is one process.
type Proc struct {
	PID       int32
	PPID      int32
	UID       uint32
	GID       uint32
	Comm      string
	Argv      []string
	Exe       string
	Cgroup    string // cgroup path (v2), "" when unknown
	CgroupID  uint64 // from the sensors, 0 when unknown
	Start     uint64 // CLOCK_MONOTONIC ns, 0 when unknown
	StartTime time.Time
	// PrevExe and PrevArgv are the image and arguments before the last exec seen.
	PrevExe  string
	PrevArgv []string
	Exited   bool
	ExitTime time.Time
	ExitCode int // valid when Exited and Signal == 0
	Signal   int
	// FromProc is set when the entry was read from /proc (Start has tick resolution).
	FromProc bool
}

// Cmd is the command line: argv joined by spaces.
func (p *Proc) Cmd() string { return strings.Join(p.Argv, " ") }

// Args are the arguments after argv[0] joined by spaces.
func (p *Proc) Args() string {
	if len(p.Argv) < 2 {
		return ""
	}
	return strings.Join(p.Argv[1:], " ")
}

// Ancestor is the process as an element of background.ancestry.
func (p *Proc) Ancestor() event.Ancestor {
	return event.Ancestor{PID: p.PID, PPID: p.PPID, UID: p.UID, Comm: p.Comm, Cmd: p.Cmd(),
		Exe: p.Exe, Args: p.Args(), Start: event.Stamp(p.StartTime)}
}

// Table is the process table.
type Table struct {
	root      string
	proc      procfs.ProcFS
	max       int
	exitedTTL time.Duration
	maxDepth  int
	now       func() time.Time
	clk       clock

	mu    sync.RWMutex
	procs map[int32]*entry
	exitq []*entry // exited entries, oldest exit first
	seq   uint64
	neg   map[int32]time.Time // pids /proc did not have, until when
}

type entry struct {
	Proc
	anc     event.Ancestor // Proc.Ancestor(), built once: file storms ask for it per event
	seq     uint64
	expires time.Time // exited entries only
}

// live reports whether the entry may be served: present, and not an exited entry whose
// time is up (eviction happens on the next write).
func (e *entry) live(now time.Time) bool {
	return e != nil && (!e.Exited || e.expires.After(now))
}

// New returns an empty table.
func New(o Options) *Table {
	t := &Table{root: o.ProcRoot, max: o.Max, exitedTTL: o.ExitedTTL, maxDepth: o.MaxDepth,
		now: o.Now, procs: map[int32]*entry{}, neg: map[int32]time.Time{}, clk: newClock()}
	if t.root == "" {
		t.root = DefaultProcRoot
	}
	t.root = strings.TrimRight(t.root, "/")
	t.proc = o.Proc
	if t.proc == nil {
		t.proc = procfs.Direct{Root: t.root}
	}
	if t.max <= 0 {
		t.max = DefaultMax
	}
	if t.exitedTTL <= 0 {
		t.exitedTTL = DefaultExitedTTL
	}
	if t.maxDepth <= 0 {
		t.maxDepth = DefaultMaxDepth
	}
	if t.now == nil {
		t.now = time.Now
	}
	return t
}

// Len returns the number of entries.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.procs)
}

// WallTime converts a CLOCK_MONOTONIC ns timestamp (a bpf start time) to wall-clock time.
func (t *Table) WallTime(mono uint64) time.Time { return t.clk.monoToWall(mono) }

// Scan reads every process of ProcRoot into the table. Entries the sensors already reported
// are kept. Processes that vanish or have unreadable stat files are skipped; Scan fails only
// when ProcRoot cannot be listed or ctx ends.
func (t *Table) Scan(ctx context.Context) error {
	d, err := os.Open(t.root)
	if err != nil {
		return fmt.Errorf("scan processes: open %s: %w", t.root, err)
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(256)
		for _, name := range names {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("scan processes in %s: %w", t.root, err)
			}
			pid, ok := parsePID(name)
			if !ok {
				continue
			}
			p, rerr := readProc(t.root, t.proc, pid, t.clk)
			if rerr != nil {
				continue
			}
			t.mu.Lock()
			if e := t.procs[pid]; !e.live(t.now()) {
				t.insertLocked(p)
			}
			t.mu.Unlock()
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("scan processes: list %s: %w", t.root, err)
		}
	}
}

func parsePID(name string) (int32, bool) {
	if name == "" || name[0] < '1' || name[0] > '9' {
		return 0, false
	}
	v, err := strconv.ParseInt(name, 10, 32)
	return int32(v), err == nil && v > 0
}

// Get returns the process, reading it from /proc when the table does not know it (at most
// once a second per pid).
func (t *Table) Get(pid int32) (Proc, bool) {
	if pid <= 0 {
		return Proc{}, false
	}
	now := t.now()
	t.mu.RLock()
	e := t.procs[pid]
	negUntil, negative := t.neg[pid]
	t.mu.RUnlock()
	if e.live(now) {
		return e.Proc, true
	}
	if negative && now.Before(negUntil) {
		return Proc{}, false
	}
	p, err := readProc(t.root, t.proc, pid, t.clk)
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.procs[pid]; e.live(now) { // the writer was faster
		return e.Proc, true
	}
	if err != nil {
		if len(t.neg) >= maxNegative {
			clear(t.neg)
		}
		t.neg[pid] = t.now().Add(negativeTTL)
		return Proc{}, false
	}
	delete(t.neg, pid)
	return t.insertLocked(p).Proc, true
}

// Ancestry returns the process and its ancestors, oldest first, the process itself last. It
// stops at pid 0, a pid already met (cycles), a parent that started after its child (a
// reused pid), an unknown parent, or MaxDepth entries.
func (t *Table) Ancestry(pid int32) []event.Ancestor {
	chain := make([]event.Ancestor, 0, 8)
	var child *entry
	now := t.now()
	for cur := pid; cur > 0 && len(chain) < t.maxDepth && !inChain(chain, cur); {
		t.mu.RLock()
		e := t.procs[cur]
		t.mu.RUnlock()
		if !e.live(now) {
			if _, ok := t.Get(cur); !ok { // not known yet: read it from /proc once
				break
			}
			t.mu.RLock()
			e = t.procs[cur]
			t.mu.RUnlock()
			if !e.live(now) {
				break
			}
		}
		if child != nil && startedAfter(&e.Proc, &child.Proc) {
			break
		}
		chain = append(chain, e.anc)
		child = e
		cur = e.PPID
	}
	slices.Reverse(chain)
	return chain
}

// inChain reports whether pid is already in the chain (a cycle).
func inChain(chain []event.Ancestor, pid int32) bool {
	for i := range chain {
		if chain[i].PID == pid {
			return true
		}
	}
	return false
}

// startedAfter reports whether parent started (clearly) after child: parent is then not the
// real parent but a later process that reused its pid.
func startedAfter(parent, child *Proc) bool {
	if parent.Start == 0 || child.Start == 0 {
		return false
	}
	return parent.Start > child.Start+uint64(startTolerance)
}

// sameProc reports whether a stored entry and a start time denote one process.
func sameProc(e *entry, start uint64) bool {
	if e.Start == 0 || start == 0 {
		return true
	}
	d := int64(e.Start) - int64(start)
	if d < 0 {
		d = -d
	}
	if e.FromProc {
		return d <= int64(startTolerance)
	}
	return d == 0
}

// OnExec records an exec: a new image for a known process (its previous image becomes
// PrevExe/PrevArgv), or a new entry.
func (t *Table) OnExec(ev bpf.ExecEvent) {
	pid := int32(ev.TGID)
	if pid <= 0 {
		return
	}
	p := &Proc{PID: pid, PPID: int32(ev.PPID), UID: ev.UID, GID: ev.GID, Comm: ev.Comm,
		Argv: slices.Clone(ev.Argv), Exe: ExePath(ev, t.proc), CgroupID: ev.CgroupID,
		Start: ev.StartTime}
	p.StartTime = t.clk.monoToWall(p.Start)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.evictExpiredLocked()
	if old := t.procs[pid]; old != nil && !old.Exited && sameProc(old, ev.StartTime) {
		p.PrevExe, p.PrevArgv = old.Exe, old.Argv
		if old.FromProc && old.Exe == p.Exe && slices.Equal(old.Argv, p.Argv) {
			// Read from /proc after this exec already happened: not a previous image.
			p.PrevExe, p.PrevArgv = old.PrevExe, old.PrevArgv
		}
		if old.CgroupID == ev.CgroupID || old.CgroupID == 0 {
			p.Cgroup = old.Cgroup
		}
		if p.Start == 0 {
			p.Start, p.StartTime, p.FromProc = old.Start, old.StartTime, old.FromProc
		}
	}
	delete(t.neg, pid)
	t.insertLocked(p)
}

// OnFork records a new process, a copy of its parent until it execs.
func (t *Table) OnFork(ev bpf.ForkEvent) {
	pid, ppid := int32(ev.ChildPID), int32(ev.ParentTGID)
	if pid <= 0 {
		return
	}
	parent, ok := t.Get(ppid)
	var p *Proc
	if ok {
		p = &Proc{PID: pid, PPID: ppid, UID: parent.UID, GID: parent.GID, Comm: parent.Comm,
			Argv: parent.Argv, Exe: parent.Exe, Cgroup: parent.Cgroup, CgroupID: parent.CgroupID}
	} else if rp, err := readProc(t.root, t.proc, pid, t.clk); err == nil {
		p = rp
	} else {
		p = &Proc{PID: pid, PPID: ppid, Comm: ev.Comm}
	}
	p.PPID = ppid
	if ev.ChildStart != 0 {
		p.Start, p.FromProc = ev.ChildStart, false
		p.StartTime = t.clk.monoToWall(p.Start)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.evictExpiredLocked()
	delete(t.neg, pid)
	t.insertLocked(p)
}

// OnExit marks a process exited; it is evicted ExitedTTL later.
func (t *Table) OnExit(ev bpf.ExitEvent) {
	pid := int32(ev.TGID)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.evictExpiredLocked()
	old := t.procs[pid]
	if old == nil || old.Exited || !sameProc(old, ev.StartTime) {
		return
	}
	p := old.Proc
	p.Exited = true
	p.ExitTime = ev.Time
	if p.ExitTime.IsZero() {
		p.ExitTime = t.now()
	}
	p.ExitCode, p.Signal = ev.ExitCode, ev.Signal
	e := t.insertLocked(&p)
	e.expires = t.now().Add(t.exitedTTL)
	t.exitq = append(t.exitq, e)
}

// insertLocked stores p (replacing the entry of its pid), making room first.
func (t *Table) insertLocked(p *Proc) *entry {
	if _, replace := t.procs[p.PID]; !replace && len(t.procs) >= t.max {
		t.makeRoomLocked()
	}
	t.seq++
	e := &entry{Proc: *p, seq: t.seq}
	e.anc = e.Proc.Ancestor()
	t.procs[p.PID] = e
	return e
}

// evictExpiredLocked drops exited entries whose time is up.
func (t *Table) evictExpiredLocked() {
	now := t.now()
	n := 0
	for ; n < len(t.exitq); n++ {
		e := t.exitq[n]
		if e.expires.After(now) {
			break
		}
		if t.procs[e.PID] == e {
			delete(t.procs, e.PID)
		}
	}
	t.exitq = t.exitq[n:]
}

// makeRoomLocked frees at least one slot: the oldest exited entry first; when none has
// exited, the least recently updated 1/64 of the entries (their exits were probably lost).
func (t *Table) makeRoomLocked() {
	for len(t.exitq) > 0 {
		e := t.exitq[0]
		t.exitq = t.exitq[1:]
		if t.procs[e.PID] == e {
			delete(t.procs, e.PID)
			return
		}
	}
	all := make([]*entry, 0, len(t.procs))
	for _, e := range t.procs {
		all = append(all, e)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].seq < all[j].seq })
	for _, e := range all[:max(1, len(all)/64)] {
		delete(t.procs, e.PID)
	}
}

// ExePath is the executable path of an exec event: the path given to execve when absolute,
// made absolute with the process's working directory when relative, and /proc/PID/exe for
// descriptors (fexecve) or when the rest fails. "" when nothing is known. The links are read
// through proc (nil = /proc directly).
func ExePath(ev bpf.ExecEvent, proc procfs.ProcFS) string {
	if proc == nil {
		proc = procfs.Direct{}
	}
	name := ev.Filename
	pid := int32(min(ev.TGID, procfs.MaxPID+1)) // out of range: refused by proc
	switch {
	case name == "" || strings.HasPrefix(name, "/dev/fd/") || strings.HasPrefix(name, "/proc/"):
	case path.IsAbs(name):
		return path.Clean(name)
	default:
		if cwd := readLink(proc, procfs.Ref{PID: pid, Item: procfs.Cwd}); path.IsAbs(cwd) {
			return filepath.Join(cwd, name)
		}
	}
	if ev.TGID == 0 {
		return ""
	}
	return readLink(proc, procfs.Ref{PID: pid, Item: procfs.Exe})
}
