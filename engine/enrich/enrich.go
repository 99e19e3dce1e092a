// Package enrich turns sensor events (package bpf) into SPEC §3 events: the process from the
// event and the process table, background.ancestry on every event, remote names from the DNS
// cache, the host scenario, a random uuid and the timestamp. Metadata is per recipe and is
// filled by WithRecipe when a recipe matched.
//
// Decisions:
//   - process.exe is the executed file: the execve path made absolute (cwd for a relative
//     one), /proc/PID/exe for fexecve. For a #! script that is the script; the interpreter
//     the kernel loaded is not reported separately.
//   - process.comm, uid and gid come from the event (the kernel's view at that moment); the
//     rest from the table. process.envs and loader are left empty: the environment of other
//     processes is not read (secrets).
//   - file actions: rmdir maps to unlink, symlink and mkdir to create; chmod and chown have
//     no Jibril action and give an event without actions (note says what happened). The new
//     path of rename/link and the target of symlink are written in note.
//   - background.files and background.flows hold the event's own file or flow (the engine
//     may aggregate more later).
//   - WithRecipe gives each detection its own uuid: one sensor event matched by two recipes
//     makes two detections.
package enrich

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/engine/procfs"
	"github.com/jibril-rt/jibril/engine/proctable"
	"github.com/jibril-rt/jibril/recipes"
)

// ProcessTable is what enrichment needs of the process table (*proctable.Table).
type ProcessTable interface {
	Get(pid int32) (proctable.Proc, bool)
	Ancestry(pid int32) []event.Ancestor
	WallTime(mono uint64) time.Time
}

// NameResolver gives the DNS names of an address (*dnscache.Cache).
type NameResolver interface {
	Names(ip netip.Addr) []string
}

// Options configures an Enricher.
type Options struct {
	Procs    ProcessTable     // required
	DNS      NameResolver     // nil: no names
	ProcRoot string           // "" = /proc
	Proc     procfs.ProcFS    // the links of /proc/PID (exe, cwd); nil = read ProcRoot directly
	Now      func() time.Time // nil = time.Now; used when an event has no time
	// Scenario overrides the host description computed at New (tests, containers).
	Scenario *event.Scenario
}

// Enricher builds events. It is safe for concurrent use.
type Enricher struct {
	procs    ProcessTable
	dns      NameResolver
	procRoot string
	proc     procfs.ProcFS
	now      func() time.Time
	scenario event.Scenario
	cgroups  *cgroupResolver
	dirs     dirCache

	mu    sync.Mutex
	socks map[uint64]*sockState // TCP/UDP socket -> what is known of its flow
}

// maxSocks bounds the flow-direction memory.
const maxSocks = 1 << 16

type sockState struct {
	dir     string // "outgoing" or "incoming"
	endedBy string
	seen    bool
}

// New returns an Enricher; the scenario is computed once here.
func New(o Options) *Enricher {
	e := &Enricher{procs: o.Procs, dns: o.DNS, procRoot: o.ProcRoot, now: o.Now,
		socks: map[uint64]*sockState{}}
	if e.procRoot == "" {
		e.procRoot = proctable.DefaultProcRoot
	}
	e.procRoot = strings.TrimRight(e.procRoot, "/")
	e.proc = o.Proc
	if e.proc == nil {
		e.proc = procfs.Direct{Root: e.procRoot}
	}
	if e.now == nil {
		e.now = time.Now
	}
	if o.Scenario != nil {
		e.scenario = *o.Scenario
	} else {
		e.scenario = HostScenario()
	}
	e.cgroups = newCgroupResolver(e.procRoot)
	return e
}

// Scenario returns the host description put on every event.
func (e *Enricher) Scenario() event.Scenario { return e.scenario }

// newEvent fills what every event carries.
func (e *Enricher) newEvent(kind string, t time.Time) *event.Event {
	if t.IsZero() {
		t = e.now()
	}
	return &event.Event{UUID: NewUUID(), Timestamp: event.Stamp(t), EventType: kind,
		Scenario: []event.Scenario{e.scenario}}
}

// Exec builds an execution event.
func (e *Enricher) Exec(ev bpf.ExecEvent) *event.Event {
	out := e.newEvent(event.TypeExecution, ev.Time)
	pid := int32(ev.TGID)
	executed := proctable.ExePath(ev, e.proc)
	p := event.Process{PID: pid, PPID: int32(ev.PPID), UID: ev.UID, GID: ev.GID, Comm: ev.Comm,
		Exe: e.loadedImage(pid, executed, ev.Exe)}
	p.SetArgv(ev.Argv)
	if ev.StartTime != 0 {
		p.Start = event.Stamp(e.procs.WallTime(ev.StartTime))
	}
	// The table may hold this process before the exec (then it is the previous image) or
	// after it (then it knows the previous image).
	if old, ok := e.procs.Get(pid); ok && !old.Exited && sameStart(old.Start, ev.StartTime, old.FromProc) {
		if old.Exe == p.Exe && slices.Equal(old.Argv, ev.Argv) {
			p.PrevExe, p.PrevArgs = old.PrevExe, joinArgs(old.PrevArgv)
		} else if !old.FromProc {
			p.PrevExe, p.PrevArgs = old.Exe, old.Args()
		}
	}
	p.Cgroup = e.cgroups.path(pid, ev.CgroupID)
	p.ContainerID = ContainerID(p.Cgroup)
	out.Process = p

	// Ancestry: the parent's chain (as the table knows it), then this process as it is now.
	anc := e.procs.Ancestry(p.PPID)
	for i, a := range anc {
		if a.PID == pid { // a cycle through ourselves: keep what is above us only
			anc = anc[:i]
			break
		}
	}
	out.Background.Ancestry = append(anc, event.Ancestor{PID: p.PID, PPID: p.PPID, UID: p.UID,
		Comm: p.Comm, Cmd: p.Cmd, Exe: p.Exe, Args: p.Args, Start: p.Start})

	if executed == "" {
		executed = p.Exe
	}
	if executed != "" {
		f := &event.File{}
		f.SetPath(executed)
		f.SetActions(string(recipes.ActExecve))
		out.File = f
		out.Background.Files = event.FileTree(executed, f.Actions)
	}
	return out
}

// loadedImage is the file the kernel actually loaded (/proc/PID/exe): process.exe names the
// image, file.file the path that was executed, which differ for a symbolic link (a link named
// like a kernel thread pointing at a miner) or a script (its interpreter). /proc shows the
// process as it is now, which may already be a later exec: the link is used only when it
// still leads to the very file this event loaded (id, from the kernel); otherwise, and when the
// process is gone, the executed path stands in.
func (e *Enricher) loadedImage(pid int32, executed string, id bpf.FileID) string {
	if id.Ino == 0 {
		return executed
	}
	if real, ok := e.dirs.sameImage(executed, id); ok {
		return real
	}
	ctx, link := context.Background(), procfs.Ref{PID: pid, Item: procfs.Exe}
	real, err := e.proc.Readlink(ctx, link)
	if err != nil || !path.IsAbs(real) {
		return executed
	}
	if st, err := e.proc.Stat(ctx, link); err != nil || st.Ino != id.Ino || st.Dev != id.Dev {
		return executed
	}
	return real
}

// dirCache remembers directories with their symbolic links resolved: an exec storm resolves
// /usr/bin (or /bin) thousands of times a second. A stale entry cannot mislead sameImage, which
// checks the file it finds under the resolved directory against the very id the kernel loaded.
type dirCache struct {
	mu   sync.Mutex
	dirs map[string]string
}

// maxDirs bounds the cache; past it the cache starts over.
const maxDirs = 1024

func (c *dirCache) resolve(dir string) (string, error) {
	c.mu.Lock()
	real, ok := c.dirs[dir]
	c.mu.Unlock()
	if ok {
		return real, nil
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.dirs == nil || len(c.dirs) >= maxDirs {
		c.dirs = map[string]string{}
	}
	c.dirs[dir] = real
	c.mu.Unlock()
	return real, nil
}

// sameImage resolves the executed path in our own mount namespace (every symbolic link, as
// /proc/PID/exe would show it) and reports whether it names, now, a regular file with the very
// id the kernel loaded: then that is the image, found without reading /proc (under Landlock
// a /proc read is a round trip to the broker, twice per exec). A link swapped since, another
// mount namespace, a deleted file: no match, and /proc decides.
func (c *dirCache) sameImage(executed string, id bpf.FileID) (string, bool) {
	if !path.IsAbs(executed) {
		return "", false
	}
	executed = path.Clean(executed)
	dir, base := path.Split(executed)
	if base == "" || base == ".." {
		return "", false
	}
	rdir, err := c.resolve(dir)
	if err != nil {
		return "", false
	}
	real := filepath.Join(rdir, base)
	var st unix.Stat_t
	if unix.Lstat(real, &st) != nil {
		return "", false
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK { // the file itself is a link: resolve it whole
		if real, err = filepath.EvalSymlinks(real); err != nil || unix.Lstat(real, &st) != nil {
			return "", false
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Ino != id.Ino || st.Dev != id.Dev {
		return "", false
	}
	return real, true
}

func sameStart(a, b uint64, coarse bool) bool {
	if a == 0 || b == 0 {
		return true
	}
	d := int64(a) - int64(b)
	if d < 0 {
		d = -d
	}
	if coarse {
		return d <= int64(100*time.Millisecond)
	}
	return d == 0
}

func joinArgs(argv []string) string {
	if len(argv) < 2 {
		return ""
	}
	return strings.Join(argv[1:], " ")
}

// process builds the triggering process of a file or network event from the table, with the
// event's own view of comm and ids.
func (e *Enricher) process(pid int32, comm string, uid, gid uint32, cgroupID uint64) event.Process {
	p := event.Process{PID: pid, Comm: comm, UID: uid, GID: gid}
	if pid <= 0 {
		return p
	}
	if tp, ok := e.procs.Get(pid); ok {
		p.PPID = tp.PPID
		p.Exe = tp.Exe
		p.SetArgv(tp.Argv)
		p.Start = event.Stamp(tp.StartTime)
		p.PrevExe, p.PrevArgs = tp.PrevExe, joinArgs(tp.PrevArgv)
		p.Cgroup = tp.Cgroup
		if tp.Exited {
			p.Exit = event.Stamp(tp.ExitTime)
			p.Retcode = tp.ExitCode
			if tp.Signal != 0 {
				p.Retcode = 128 + tp.Signal
			}
		}
		if p.Comm == "" {
			p.Comm = tp.Comm
		}
	}
	if cg := e.cgroups.path(pid, cgroupID); cg != "" {
		p.Cgroup = cg
	}
	p.ContainerID = ContainerID(p.Cgroup)
	return p
}

// ancestryOf returns the table's ancestry of pid, made to end with the event's process.
func (e *Enricher) ancestryOf(p event.Process) []event.Ancestor {
	if p.PID <= 0 {
		return nil
	}
	anc := e.procs.Ancestry(p.PID)
	self := event.Ancestor{PID: p.PID, PPID: p.PPID, UID: p.UID, Comm: p.Comm, Cmd: p.Cmd,
		Exe: p.Exe, Args: p.Args, Start: p.Start}
	if n := len(anc); n > 0 && anc[n-1].PID == p.PID {
		anc[n-1] = self
		return anc
	}
	return append(anc, self)
}

// File builds a file_access event.
func (e *Enricher) File(ev bpf.FileEvent) *event.Event {
	out := e.newEvent(event.TypeFileAccess, ev.Time)
	out.Process = e.process(int32(ev.TGID), ev.Comm, ev.UID, ev.GID, ev.CgroupID)
	out.Background.Ancestry = e.ancestryOf(out.Process)

	f := &event.File{}
	p := ev.AbsPath
	if p == "" {
		p = ev.Path
	}
	if path.IsAbs(p) {
		p = path.Clean(p)
	}
	if p != "" {
		f.SetPath(p)
	}
	f.SetActions(ActionNames(ev)...)
	out.File = f
	if path.IsAbs(p) {
		out.Background.Files = event.FileTree(p, f.Actions)
	}
	out.Note = fileNote(ev)
	return out
}

// ActionNames are the Jibril file actions of a sensor event, in canonical order
// (recipes.FileActions).
func ActionNames(ev bpf.FileEvent) []string {
	mask := ActionMask(ev)
	var out []string
	for i, a := range recipes.FileActions() {
		if mask&(1<<i) != 0 {
			out = append(out, string(a))
		}
	}
	return out
}

// ActionMask is ActionNames as a bit mask (bit i for recipes.FileActions()[i]), without
// allocating: the feed computes it for every file event.
func ActionMask(ev bpf.FileEvent) uint32 {
	var mask uint32
	add := func(op bpf.Op) {
		var a recipes.FileAction
		switch op {
		case bpf.OpOpen:
			a = recipes.ActOpen
		case bpf.OpCreate, bpf.OpSymlink, bpf.OpMkdir:
			a = recipes.ActCreate
		case bpf.OpWrite:
			a = recipes.ActWrite
		case bpf.OpTruncate:
			a = recipes.ActTruncate
		case bpf.OpUnlink, bpf.OpRmdir:
			a = recipes.ActUnlink
		case bpf.OpRename:
			a = recipes.ActRename
		case bpf.OpLink:
			a = recipes.ActLink
		default: // chmod, chown: no Jibril action
			return
		}
		mask |= 1 << a.Index()
	}
	ops := ev.Ops()
	for op := bpf.OpOpen; op <= bpf.OpChown; op++ {
		if ops.Has(op) {
			add(op)
		}
	}
	return mask
}

func fileNote(ev bpf.FileEvent) string {
	second := ev.AbsPath2
	if second == "" {
		second = ev.Path2
	}
	switch ev.Op {
	case bpf.OpRename:
		return "rename to " + second
	case bpf.OpLink:
		return "link as " + second
	case bpf.OpSymlink:
		return "symlink to " + second
	case bpf.OpRmdir, bpf.OpMkdir, bpf.OpChmod, bpf.OpChown:
		return ev.Op.String()
	}
	return ""
}

// Flow builds a network_peer event, nil for what is not a flow between two peers (a listen,
// a non-socket descriptor, a missing remote address).
func (e *Enricher) Flow(ev bpf.NetEvent) *event.Event {
	if ev.NotSocket || !ev.Remote.Addr().IsValid() || ev.Remote.Addr().IsUnspecified() ||
		(ev.Op == bpf.NetState && ev.NewState == bpf.TCPListen) {
		return nil
	}
	out := e.newEvent(event.TypeNetworkPeer, ev.Time)
	if !ev.OwnerUnknown {
		out.Process = e.process(int32(ev.TGID), ev.Comm, ev.UID, 0, ev.CgroupID)
		if pe, ok := e.procs.Get(int32(ev.TGID)); ok {
			out.Process.GID = pe.GID
		}
		out.Background.Ancestry = e.ancestryOf(out.Process)
	}

	remote, local := ev.Remote.Addr().Unmap(), ev.Local.Addr().Unmap()
	f := &event.Flow{IPVersion: 6, Proto: protoName(ev.Proto)}
	if remote.Is4() {
		f.IPVersion = 4
	}
	f.Local = e.node(local, ev.Local.Port())
	f.Remote = e.node(remote, ev.Remote.Port())
	f.Flags, f.Phase = e.flowState(ev)
	f.ServicePort = ev.Remote.Port()
	src, dst := ev.Local.Port(), ev.Remote.Port()
	if f.Phase.Direction == "incoming" {
		f.ServicePort = ev.Local.Port()
		src, dst = dst, src
	}
	out.Flow = f
	out.Background.Flows = event.Flows{IPVersion: f.IPVersion, Protocols: []event.ProtoFlows{{
		Proto: f.Proto,
		Pairs: []event.Pair{{
			Nodes: event.PairNodes{
				Local:  event.Peer{Address: f.Local.Address, Name: f.Local.Name, Names: slices.Clone(f.Local.Names)},
				Remote: event.Peer{Address: f.Remote.Address, Name: f.Remote.Name, Names: slices.Clone(f.Remote.Names)},
			},
			PortMatrix: []event.PortEntry{{SrcPort: src, DstPort: dst, Phase: f.Phase.Status}},
		}},
	}}}
	return out
}

func (e *Enricher) node(a netip.Addr, port uint16) event.Node {
	n := event.Node{Port: port, Names: []string{}}
	if a.IsValid() {
		n.Address = a.String()
	}
	if e.dns != nil && a.IsValid() {
		if names := e.dns.Names(a); len(names) > 0 {
			n.Names = names
			n.Name = names[0]
		}
	}
	return n
}

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		return "icmp"
	}
	return ""
}

// flowState derives flags and phase from the event and what earlier events said about the
// socket (who initiated, who ended).
func (e *Enricher) flowState(ev bpf.NetEvent) (event.Flags, event.Phase) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.socks[ev.Sock]
	if ev.Sock == 0 {
		st = nil
	}
	remember := func() *sockState {
		if st == nil {
			st = &sockState{}
			if ev.Sock != 0 {
				if len(e.socks) >= maxSocks {
					clear(e.socks) // lose direction memory rather than grow
				}
				e.socks[ev.Sock] = st
			}
		}
		return st
	}
	status := "ongoing"
	switch ev.Op {
	case bpf.NetConnect:
		s := remember()
		s.dir, s.seen = "outgoing", true
		status = "started"
	case bpf.NetSendTo, bpf.NetSendMsg:
		s := remember()
		if s.dir == "" {
			s.dir = "outgoing"
		}
		if !s.seen {
			status = "started"
		}
		s.seen = true
	case bpf.NetState:
		s := remember()
		switch ev.NewState {
		case bpf.TCPSynSent:
			s.dir, status = "outgoing", "started"
		case bpf.TCPSynRecv, 12: // NEW_SYN_RECV
			s.dir, status = "incoming", "started"
		case bpf.TCPEstablished:
			if s.dir == "" {
				switch ev.OldState {
				case bpf.TCPSynSent:
					s.dir = "outgoing"
				case bpf.TCPSynRecv, 12:
					s.dir = "incoming"
				}
			}
		case 4: // FIN_WAIT1: we closed first
			status = "ended"
			if s.endedBy == "" {
				s.endedBy = "local"
			}
		case 8: // CLOSE_WAIT: the peer closed first
			status = "ended"
			if s.endedBy == "" {
				s.endedBy = "remote"
			}
		case 5, 6, 9, 11: // FIN_WAIT2, TIME_WAIT, LAST_ACK, CLOSING
			status = "ended"
		case bpf.TCPClose:
			status = "ended"
			delete(e.socks, ev.Sock)
		}
		s.seen = true
	}
	dir := "outgoing"
	if st != nil && st.dir != "" {
		dir = st.dir
	}
	var fl event.Flags
	ph := event.Phase{Direction: dir, Status: status}
	if dir == "incoming" {
		fl.Ingress, fl.Incoming, ph.InitiatedBy = true, true, "remote"
	} else {
		fl.Egress, fl.Outgoing, ph.InitiatedBy = true, true, "local"
	}
	switch status {
	case "started":
		fl.Started = true
	case "ongoing":
		fl.Ongoing = true
	case "ended":
		fl.Ended = true
		if st != nil {
			ph.EndedBy = st.endedBy
		}
		switch ph.EndedBy {
		case "local":
			fl.Terminator = true
		case "remote":
			fl.Terminated = true
		}
	}
	return fl, ph
}

// WithRecipe returns a copy of ev for a detection by r: metadata filled from the recipe and a
// fresh uuid. ev itself is not changed, so one enriched event can serve several recipes.
func WithRecipe(ev *event.Event, r *recipes.Recipe) *event.Event {
	if ev == nil {
		return nil
	}
	c := Clone(ev)
	c.UUID = NewUUID()
	if r != nil {
		c.Metadata = event.Metadata{Kind: r.Kind, Name: r.Name, Format: c.EventType,
			Version: r.Version, Description: r.Description, Documentation: r.Documentation,
			Importance: string(r.Importance), Tactic: r.Tactic, Technique: r.Technique,
			Subtechnique: r.Subtechnique}
	}
	return c
}

// Clone deep-copies an event: the copy shares no slice with the original.
func Clone(ev *event.Event) *event.Event {
	c := *ev
	c.Process.Argv = slices.Clone(ev.Process.Argv)
	if ev.File != nil {
		f := *ev.File
		f.Actions = slices.Clone(f.Actions)
		c.File = &f
	}
	if ev.Flow != nil {
		f := *ev.Flow
		f.Local.Names = slices.Clone(f.Local.Names)
		f.Remote.Names = slices.Clone(f.Remote.Names)
		c.Flow = &f
	}
	c.Background.Ancestry = slices.Clone(ev.Background.Ancestry)
	c.Background.Files.Root = cloneDir(ev.Background.Files.Root)
	c.Background.Flows.Protocols = make([]event.ProtoFlows, len(ev.Background.Flows.Protocols))
	for i, p := range ev.Background.Flows.Protocols {
		p.Pairs = slices.Clone(p.Pairs)
		for j := range p.Pairs {
			pr := &p.Pairs[j]
			pr.Nodes.Local.Names = slices.Clone(pr.Nodes.Local.Names)
			pr.Nodes.Remote.Names = slices.Clone(pr.Nodes.Remote.Names)
			pr.PortMatrix = slices.Clone(pr.PortMatrix)
		}
		c.Background.Flows.Protocols[i] = p
	}
	if ev.Background.Flows.Protocols == nil {
		c.Background.Flows.Protocols = nil
	}
	c.Scenario = slices.Clone(ev.Scenario)
	return &c
}

func cloneDir(d event.FSDir) event.FSDir {
	d.Files = slices.Clone(d.Files)
	for i := range d.Files {
		d.Files[i].Actions = slices.Clone(d.Files[i].Actions)
	}
	if d.Dirs != nil {
		dirs := make([]event.FSDir, len(d.Dirs))
		for i, sub := range d.Dirs {
			dirs[i] = cloneDir(sub)
		}
		d.Dirs = dirs
	}
	return d
}

// NewUUID returns a random (version 4) UUID.
func NewUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		// crypto/rand does not fail on Linux (getrandom); a zero uuid would still be unique
		// enough to notice.
		return "00000000-0000-4000-8000-000000000000"
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

// hostname is os.Hostname without failing.
func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return h
}
