// Package event is the detection event handed to printers and reactions (SPEC §3, Jibril v2.4
// compatible). JSON field order follows struct order, so JSON output is stable. Every array is
// written as [] when empty, never null, and process and background.ancestry are always
// present. "base" is written as an alias of "background" (Jibril's documentation reads
// data.base.background).
//
// Conventions: timestamps are strings in RFC 3339 with nine fraction digits in UTC (Stamp);
// process.cmd is the full command line (argv joined by spaces), process.args the arguments
// after argv[0] joined by spaces, process.argv the array; background.ancestry goes from the
// oldest ancestor to the triggering process, which is last. Encoding bounds what the observed
// system chose (command lines, paths, depth): see bound.go.
package event

import (
	"encoding/json"
	"math"
	"path"
	"strings"
	"time"
)

// Event types.
const (
	TypeFileAccess  = "file_access"
	TypeExecution   = "execution"
	TypeNetworkPeer = "network_peer"
)

// StampLayout is RFC 3339 with nanoseconds, fixed width.
const StampLayout = "2006-01-02T15:04:05.000000000Z07:00"

// Stamp formats t for the event (UTC, nine fraction digits); the zero time gives "".
func Stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.Format(StampLayout)
	}
	// Every event is stamped, several times with its ancestry: digits are written directly
	// (90 ns against 234 for Format, which interprets the layout each time).
	hour, minute, sec := t.Clock()
	var b [30]byte
	put := func(at, width, v int) {
		for i := at + width - 1; i >= at; i-- {
			b[i] = byte('0' + v%10)
			v /= 10
		}
	}
	put(0, 4, year)
	b[4] = '-'
	put(5, 2, int(month))
	b[7] = '-'
	put(8, 2, day)
	b[10] = 'T'
	put(11, 2, hour)
	b[13] = ':'
	put(14, 2, minute)
	b[16] = ':'
	put(17, 2, sec)
	b[19] = '.'
	put(20, 9, t.Nanosecond())
	b[29] = 'Z'
	return string(b[:])
}

// ParseStamp reads a timestamp written by Stamp (any RFC 3339 form is accepted).
func ParseStamp(s string) (time.Time, error) {
	return time.Parse(time.RFC3339Nano, s)
}

// Event is one detection.
type Event struct {
	UUID       string     `json:"uuid"`
	Timestamp  string     `json:"timestamp"`
	EventType  string     `json:"event_type"`
	Note       string     `json:"note"`
	Metadata   Metadata   `json:"metadata"`
	Process    Process    `json:"process"`
	File       *File      `json:"file,omitempty"`
	Flow       *Flow      `json:"flow,omitempty"`
	Background Background `json:"background"`
	Scenario   []Scenario `json:"scenario"`
}

// Metadata describes the recipe that produced the event.
type Metadata struct {
	Kind          string `json:"kind"`
	Name          string `json:"name"`
	Format        string `json:"format"`
	Version       string `json:"version"`
	Description   string `json:"description"`
	Documentation string `json:"documentation"`
	Importance    string `json:"importance"`
	Tactic        string `json:"tactic"`
	Technique     string `json:"technique"`
	Subtechnique  string `json:"subtechnique"`
}

// Process is the triggering process.
type Process struct {
	Start       string   `json:"start"`
	Exit        string   `json:"exit"`
	Retcode     int      `json:"retcode"`
	UID         uint32   `json:"uid"`
	GID         uint32   `json:"gid"`
	PID         int32    `json:"pid"`
	PPID        int32    `json:"ppid"`
	Comm        string   `json:"comm"`
	Cmd         string   `json:"cmd"`
	Exe         string   `json:"exe"`
	Args        string   `json:"args"`
	Argv        []string `json:"argv"`
	Envs        string   `json:"envs"`
	Loader      string   `json:"loader"`
	PrevExe     string   `json:"prev_exe"`
	PrevArgs    string   `json:"prev_args"`
	Cgroup      string   `json:"cgroup"`
	ContainerID string   `json:"container_id"`
}

// SetArgv sets argv and derives cmd and args from it.
func (p *Process) SetArgv(argv []string) {
	p.Argv = append([]string(nil), argv...)
	p.Cmd = strings.Join(argv, " ")
	if len(argv) > 1 {
		p.Args = strings.Join(argv[1:], " ")
	} else {
		p.Args = ""
	}
}

// File is the file an event is about. Actions and the booleans always agree when built with
// SetActions or read with Decode.
type File struct {
	File     string   `json:"file"`
	Dir      string   `json:"dir"`
	Basename string   `json:"basename"`
	Actions  []string `json:"actions"`
	Fasync   bool     `json:"fasync"`
	Flock    bool     `json:"flock"`
	Fsync    bool     `json:"fsync"`
	Llseek   bool     `json:"llseek"`
	Mmap     bool     `json:"mmap"`
	Open     bool     `json:"open"`
	Read     bool     `json:"read"`
	Write    bool     `json:"write"`
	Rename   bool     `json:"rename"`
	Truncate bool     `json:"truncate"`
	Unlink   bool     `json:"unlink"`
	Create   bool     `json:"create"`
	Close    bool     `json:"close"`
	Link     bool     `json:"link"`
	Execve   bool     `json:"execve"`
}

// ActionNames lists the file action names in canonical order (same as recipes.FileActions).
func ActionNames() []string {
	a := actionNames()
	return a[:]
}

// actionNames is ActionNames as an array value: the hot paths iterate it without allocating.
func actionNames() [15]string {
	return [15]string{"fasync", "flock", "fsync", "llseek", "mmap", "open", "read", "write",
		"rename", "truncate", "unlink", "create", "close", "link", "execve"}
}

// flag returns the boolean of an action, nil for an unknown name.
func (f *File) flag(action string) *bool {
	switch action {
	case "fasync":
		return &f.Fasync
	case "flock":
		return &f.Flock
	case "fsync":
		return &f.Fsync
	case "llseek":
		return &f.Llseek
	case "mmap":
		return &f.Mmap
	case "open":
		return &f.Open
	case "read":
		return &f.Read
	case "write":
		return &f.Write
	case "rename":
		return &f.Rename
	case "truncate":
		return &f.Truncate
	case "unlink":
		return &f.Unlink
	case "create":
		return &f.Create
	case "close":
		return &f.Close
	case "link":
		return &f.Link
	case "execve":
		return &f.Execve
	}
	return nil
}

// SetActions sets the action list (canonical order, no duplicates) and the booleans. It
// reports false when a name is not an action; known names are still applied.
func (f *File) SetActions(actions ...string) bool {
	ok := true
	names := actionNames()
	var set uint32 // bit i: names[i]; a file event carries a handful of actions at most
	for _, a := range actions {
		found := false
		for i := range names {
			if names[i] == a {
				set |= 1 << i
				found = true
				break
			}
		}
		ok = ok && found
	}
	f.Actions = f.Actions[:0]
	for i := range names {
		on := set&(1<<i) != 0
		*f.flag(names[i]) = on
		if on {
			f.Actions = append(f.Actions, names[i])
		}
	}
	return ok
}

// Mask is the set of actions the file carries (by boolean or by list), bit i for
// ActionNames()[i].
func (f *File) Mask() uint32 {
	names := actionNames()
	var m uint32
	for i := range names {
		if *f.flag(names[i]) {
			m |= 1 << i
		}
	}
	for _, a := range f.Actions {
		for i := range names {
			if names[i] == a {
				m |= 1 << i
			}
		}
	}
	return m
}

// Has reports whether the file carries an action (by boolean or by list).
func (f *File) Has(action string) bool {
	if b := f.flag(action); b != nil && *b {
		return true
	}
	for _, a := range f.Actions {
		if a == action {
			return true
		}
	}
	return false
}

// SetPath sets file, dir and basename from an absolute path.
func (f *File) SetPath(p string) {
	f.File = p
	f.Dir = path.Dir(p)
	f.Basename = path.Base(p)
}

// Flow is the network flow of a network_peer event.
type Flow struct {
	IPVersion   int    `json:"ip_version"`
	Proto       string `json:"proto"`
	Local       Node   `json:"local"`
	Remote      Node   `json:"remote"`
	ServicePort uint16 `json:"service_port"`
	Flags       Flags  `json:"flags"`
	Phase       Phase  `json:"phase"`
}

// Node is one end of a flow.
type Node struct {
	Address string   `json:"address"`
	Name    string   `json:"name"`
	Names   []string `json:"names"`
	Port    uint16   `json:"port"`
}

// Flags are the flow's state bits.
type Flags struct {
	Ingress    bool `json:"ingress"`
	Egress     bool `json:"egress"`
	Incoming   bool `json:"incoming"`
	Outgoing   bool `json:"outgoing"`
	Started    bool `json:"started"`
	Ongoing    bool `json:"ongoing"`
	Ended      bool `json:"ended"`
	Terminator bool `json:"terminator"`
	Terminated bool `json:"terminated"`
}

// Phase describes who started and ended the flow.
type Phase struct {
	Direction   string `json:"direction"`
	InitiatedBy string `json:"initiated_by"`
	Status      string `json:"status"`
	EndedBy     string `json:"ended_by"`
}

// Background is the context of the event.
type Background struct {
	Ancestry []Ancestor `json:"ancestry"`
	Files    Files      `json:"files"`
	Flows    Flows      `json:"flows"`
}

// Ancestor is one process of the ancestry.
type Ancestor struct {
	PID   int32  `json:"pid"`
	PPID  int32  `json:"ppid"`
	UID   uint32 `json:"uid"`
	Comm  string `json:"comm"`
	Cmd   string `json:"cmd"`
	Exe   string `json:"exe"`
	Args  string `json:"args"`
	Start string `json:"start"`
}

// Files is the tree of files the process touched.
type Files struct {
	Root FSDir `json:"root"`
}

// FSDir is a directory of the file tree.
type FSDir struct {
	AbsPath  string   `json:"abs_path"`
	BaseName string   `json:"base_name"`
	Dirs     []FSDir  `json:"dirs"`
	Files    []FSFile `json:"files"`
}

// FSFile is a file of the file tree.
type FSFile struct {
	AbsPath  string   `json:"abs_path"`
	BaseName string   `json:"base_name"`
	Actions  []string `json:"actions"`
}

// Flows aggregates the process's flows.
type Flows struct {
	IPVersion int          `json:"ip_version"`
	Protocols []ProtoFlows `json:"protocols"`
}

// ProtoFlows are the flows of one protocol.
type ProtoFlows struct {
	Proto string `json:"proto"`
	Pairs []Pair `json:"pairs"`
}

// Pair is one local/remote pair and its ports.
type Pair struct {
	Nodes      PairNodes   `json:"nodes"`
	PortMatrix []PortEntry `json:"port_matrix"`
}

// PairNodes are the two ends of a pair.
type PairNodes struct {
	Local  Peer `json:"local"`
	Remote Peer `json:"remote"`
}

// Peer is one end of a pair.
type Peer struct {
	Address string   `json:"address"`
	Name    string   `json:"name"`
	Names   []string `json:"names"`
}

// PortEntry is one port pair seen between two peers.
type PortEntry struct {
	SrcPort uint16 `json:"src_port"`
	DstPort uint16 `json:"dst_port"`
	Phase   string `json:"phase"`
}

// Scenario is the host the event happened on.
type Scenario struct {
	Hostname string `json:"hostname"`
	IP       string `json:"ip"`
	MAC      string `json:"mac"`
	OS       string `json:"os"`
	Arch     string `json:"arch"`
}

// wire is the JSON form: Event plus the base alias, in SPEC order.
type wire struct {
	UUID       string      `json:"uuid"`
	Timestamp  string      `json:"timestamp"`
	EventType  string      `json:"event_type"`
	Note       string      `json:"note"`
	Metadata   Metadata    `json:"metadata"`
	Process    Process     `json:"process"`
	File       *File       `json:"file,omitempty"`
	Flow       *Flow       `json:"flow,omitempty"`
	Background *Background `json:"background"`
	Base       wireBase    `json:"base"`
	Scenario   []Scenario  `json:"scenario"`
}

type wireBase struct {
	Background *Background `json:"background"`
}

// wire returns the JSON form with every nil slice replaced by an empty one, cut to c. It
// copies what it changes and never writes to e, so concurrent encodings of one event are safe.
func (e *Event) wire(c cuts) wire {
	bg := normBackground(e.Background, c)
	md := e.Metadata
	md.Description, md.Documentation = bound(md.Description, c.str), bound(md.Documentation, c.str)
	return wire{
		UUID: e.UUID, Timestamp: e.Timestamp, EventType: e.EventType, Note: bound(e.Note, c.path),
		Metadata: md, Process: normProcess(e.Process, c), File: normFile(e.File, c),
		Flow: normFlow(e.Flow, c), Background: &bg, Base: wireBase{Background: &bg},
		Scenario: orEmpty(firstN(e.Scenario, c.width)),
	}
}

// MarshalJSON writes the SPEC §3 shape, bounded like JSON.
func (e Event) MarshalJSON() ([]byte, error) {
	return e.JSON()
}

// JSON returns the event as compact JSON with a fixed field order; arrays are [] when empty.
// It is cut, level by level, until it fits MaxEventBytes (bound.go).
func (e *Event) JSON() ([]byte, error) {
	var b []byte
	for _, c := range levels() {
		var err error
		if b, err = json.Marshal(e.wire(c)); err != nil || len(b) <= MaxEventBytes {
			return b, err
		}
	}
	return b, nil
}

// Parent returns the parent of the triggering process from the ancestry, nil when unknown.
func (e *Event) Parent() *Ancestor {
	anc := e.Background.Ancestry
	for i := len(anc) - 1; i >= 0; i-- {
		if anc[i].PID == e.Process.PPID && anc[i].PID != e.Process.PID {
			return &anc[i]
		}
	}
	return nil
}

// Ancestors returns the ancestry without the triggering process itself.
func (e *Event) Ancestors() []Ancestor {
	anc := e.Background.Ancestry
	if n := len(anc); n > 0 && anc[n-1].PID == e.Process.PID {
		return anc[:n-1]
	}
	return anc
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func normProcess(p Process, c cuts) Process {
	p.Argv = orEmpty(boundArgv(p.Argv, c.cmd, c.argc))
	p.Cmd, p.Args = bound(p.Cmd, c.cmd), bound(p.Args, c.cmd)
	p.PrevArgs, p.Envs = bound(p.PrevArgs, c.cmd), bound(p.Envs, c.cmd)
	p.Comm, p.Cgroup, p.ContainerID = bound(p.Comm, c.str), bound(p.Cgroup, c.str), bound(p.ContainerID, c.str)
	p.Exe, p.PrevExe, p.Loader = bound(p.Exe, c.subject), bound(p.PrevExe, c.path), bound(p.Loader, c.path)
	return p
}

func normFile(f *File, c cuts) *File {
	if f == nil {
		return nil
	}
	d := *f
	d.Actions = orEmpty(d.Actions)
	d.File, d.Dir, d.Basename = bound(d.File, c.subject), bound(d.Dir, c.path), bound(d.Basename, c.path)
	return &d
}

func normFlow(f *Flow, c cuts) *Flow {
	if f == nil {
		return nil
	}
	d := *f
	d.Local.Names, d.Remote.Names = boundNames(d.Local.Names, c), boundNames(d.Remote.Names, c)
	d.Local.Name, d.Remote.Name = bound(d.Local.Name, c.str), bound(d.Remote.Name, c.str)
	return &d
}

// normBackground copies b cut to c. A cut ancestry keeps its nearest entries, so the
// triggering process stays last.
func normBackground(b Background, c cuts) Background {
	src := b.Ancestry
	if c.ancestors > 0 && len(src) > c.ancestors {
		src = src[len(src)-c.ancestors:]
	}
	anc := make([]Ancestor, len(src))
	for i, a := range src {
		a.Cmd, a.Args = bound(a.Cmd, c.ancestor), bound(a.Args, c.ancestor)
		a.Comm, a.Exe = bound(a.Comm, c.str), bound(a.Exe, c.bgPath)
		anc[i] = a
	}
	b.Ancestry = anc
	keep := c.treeDirs
	if keep == 0 {
		keep = math.MaxInt
	}
	b.Files.Root = normDir(b.Files.Root, keep, c)
	protos := make([]ProtoFlows, 0, len(b.Flows.Protocols))
	for _, p := range firstN(b.Flows.Protocols, c.width) {
		pairs := make([]Pair, 0, len(p.Pairs))
		for _, pr := range firstN(p.Pairs, c.width) {
			for _, n := range []*Peer{&pr.Nodes.Local, &pr.Nodes.Remote} {
				n.Names, n.Name = boundNames(n.Names, c), bound(n.Name, c.str)
			}
			pr.PortMatrix = orEmpty(firstN(pr.PortMatrix, c.width))
			pairs = append(pairs, pr)
		}
		p.Pairs = pairs
		protos = append(protos, p)
	}
	b.Flows.Protocols = protos
	return b
}

// normDir copies the tree below d, cut to c, keeping keep levels of directories below d; the
// directories deeper than that which hold files hang from the last level kept.
func normDir(d FSDir, keep int, c cuts) FSDir {
	d.AbsPath, d.BaseName = bound(d.AbsPath, c.bgPath), bound(d.BaseName, c.bgPath)
	files := make([]FSFile, 0, len(d.Files))
	for _, f := range firstN(d.Files, c.width) {
		f.AbsPath, f.BaseName, f.Actions = bound(f.AbsPath, c.bgPath), bound(f.BaseName, c.bgPath), orEmpty(f.Actions)
		files = append(files, f)
	}
	var dirs []FSDir
	for _, sub := range d.Dirs {
		if keep > 0 {
			dirs = append(dirs, normDir(sub, keep-1, c))
		} else {
			dirs = appendHolders(dirs, sub, c)
		}
	}
	d.Dirs, d.Files = orEmpty(firstN(dirs, c.width)), files
	return d
}

// appendHolders appends d and every directory below it that holds files, each without its
// subdirectories, so that a tree cut in depth still names its files.
func appendHolders(out []FSDir, d FSDir, c cuts) []FSDir {
	if c.width > 0 && len(out) >= c.width {
		return out
	}
	if len(d.Files) > 0 {
		out = append(out, normDir(FSDir{AbsPath: d.AbsPath, BaseName: d.BaseName, Files: d.Files}, 0, c))
	}
	for _, sub := range d.Dirs {
		out = appendHolders(out, sub, c)
	}
	return out
}
