// Package match compiles recipes into matchers evaluated on each event as it arrives.
//
// A Matcher is immutable after Compile and safe for concurrent use. What a recipe's fields
// mean is documented in package recipes; in short:
//
//   - file_access events: the file's actions (file_actions_how any/all, file_actions_excl)
//     and its path (file.file, lexically cleaned when absolute) against the path entries.
//   - execution events: process.exe (file.file when exe is empty) against the path entries.
//   - network_peer events: protocol, ports, local/remote CIDRs, remote domains (flow.remote.name
//     and names) and flow actions (flow.flags; "created" reads the started flag).
//   - then every arbitrary group must keep the event.
//
// The times limiter is separate (Limiter) so that the engine decides when a match counts.
package match

import (
	"fmt"
	"net/netip"
	"path"
	"regexp"
	"strings"

	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/engine/lexpath"
	"github.com/jibril-rt/jibril/recipes"
)

// Matcher is a compiled recipe.
type Matcher struct {
	r *recipes.Recipe

	files, execs, network bool

	// file actions, as bit masks in recipes.FileActions() order
	want, excl uint32
	allActions bool

	paths pathSet

	// network
	proto                 recipes.Protocol
	localPort, remotePort uint16
	localNets, remoteNets cidrSet
	domains               domainSet
	flowWant, flowExcl    uint16
	allFlows              bool

	groups []group
}

// Compile builds a matcher. It fails when the recipe is nil, has no mechanism, or carries a
// regex, CIDR or enum value that a hand-built Recipe got wrong (Parse already checks these).
func Compile(r *recipes.Recipe) (*Matcher, error) {
	if r == nil {
		return nil, fmt.Errorf("compile recipe: nil recipe")
	}
	m := &Matcher{r: r}
	switch {
	case r.Mechanism.MatchesNetwork():
		m.network = true
	case r.Mechanism.MatchesFiles() || r.Mechanism.MatchesExecutions():
		m.files = r.Mechanism.MatchesFiles()
		m.execs = r.Mechanism.MatchesExecutions()
	default:
		return nil, fmt.Errorf("compile recipe %s (%s): unknown mechanism %q", r.Name, r.Where(), r.Mechanism)
	}
	if err := m.compileFiles(r); err != nil {
		return nil, fmt.Errorf("compile recipe %s (%s): %w", r.Name, r.Where(), err)
	}
	if err := m.compileNetwork(r); err != nil {
		return nil, fmt.Errorf("compile recipe %s (%s): %w", r.Name, r.Where(), err)
	}
	for i, g := range r.Arbitrary {
		cg, err := compileGroup(g)
		if err != nil {
			return nil, fmt.Errorf("compile recipe %s (%s): arbitrary[%d]: %w", r.Name, r.Where(), i, err)
		}
		m.groups = append(m.groups, cg)
	}
	return m, nil
}

// Recipe returns the recipe the matcher was compiled from.
func (m *Matcher) Recipe() *recipes.Recipe { return m.r }

func (m *Matcher) compileFiles(r *recipes.Recipe) error {
	if !m.files && !m.execs {
		return nil
	}
	for _, a := range r.FileActions {
		i := a.Index()
		if i < 0 {
			return fmt.Errorf("unknown file action %q", a)
		}
		m.want |= 1 << i
	}
	for _, a := range r.FileActionsExcl {
		i := a.Index()
		if i < 0 {
			return fmt.Errorf("unknown file action %q", a)
		}
		m.excl |= 1 << i
	}
	m.want &^= m.excl
	if m.want == 0 {
		m.want = (1 << len(recipes.FileActions())) - 1 // no list: any action
		m.want &^= m.excl
	}
	switch r.FileActionsHow {
	case recipes.HowAll:
		m.allActions = true
	case recipes.HowAny, "":
	default:
		return fmt.Errorf("unknown file_actions_how %q", r.FileActionsHow)
	}
	ps, err := compilePaths(r.Paths)
	if err != nil {
		return err
	}
	m.paths = ps
	return nil
}

func (m *Matcher) compileNetwork(r *recipes.Recipe) error {
	if !m.network {
		return nil
	}
	switch r.Protocol {
	case recipes.ProtoAny, recipes.ProtoTCP, recipes.ProtoUDP, recipes.ProtoICMP:
		m.proto = r.Protocol
	default:
		return fmt.Errorf("unknown protocol %q", r.Protocol)
	}
	m.localPort, m.remotePort = r.LocalPort, r.RemotePort
	m.localNets = newCIDRSet(r.LocalCIDRs)
	m.remoteNets = newCIDRSet(r.RemoteCIDRs)
	ds, err := newDomainSet(r.RemoteDomains, r.RemoteDomainsType)
	if err != nil {
		return err
	}
	m.domains = ds
	for _, a := range r.FlowActions {
		i := flowIndex(a)
		if i < 0 {
			return fmt.Errorf("unknown flow action %q", a)
		}
		m.flowWant |= 1 << i
	}
	for _, a := range r.FlowActionsExcl {
		i := flowIndex(a)
		if i < 0 {
			return fmt.Errorf("unknown flow action %q", a)
		}
		m.flowExcl |= 1 << i
	}
	m.flowWant &^= m.flowExcl
	switch r.FlowActionsHow {
	case recipes.HowAll:
		m.allFlows = true
	case recipes.HowAny, "":
	default:
		return fmt.Errorf("unknown flow_actions_how %q", r.FlowActionsHow)
	}
	return nil
}

// Match reports whether the event satisfies the recipe (times limits aside).
func (m *Matcher) Match(e *event.Event) bool {
	if e == nil {
		return false
	}
	var ok bool
	switch e.EventType {
	case event.TypeFileAccess:
		ok = m.files && m.matchFile(e)
	case event.TypeExecution:
		ok = m.execs && m.matchExec(e)
	case event.TypeNetworkPeer:
		ok = m.network && m.matchNetwork(e)
	}
	if !ok {
		return false
	}
	for i := range m.groups {
		if !m.groups[i].keep(e) {
			return false
		}
	}
	return true
}

// MatchFile reports whether a file event's path and actions satisfy the recipe, leaving out
// the arbitrary groups (they read the process, which is not known yet when this is asked): a
// superset of Match for file events, cheap enough to decide whether to enrich an event at all.
func (m *Matcher) MatchFile(e *event.Event) bool {
	return e != nil && e.EventType == event.TypeFileAccess && m.files && m.matchFile(e)
}

// WantsFile is MatchFile before any event is built: a file event on path p carrying the
// actions of mask (bit i for recipes.FileActions()[i]).
func (m *Matcher) WantsFile(p string, mask uint32) bool {
	return m.files && m.wantsActions(mask) && m.paths.match(p)
}

func (m *Matcher) matchFile(e *event.Event) bool {
	f := e.File
	return f != nil && m.wantsActions(f.Mask()) && m.paths.match(filePath(f))
}

func (m *Matcher) wantsActions(mask uint32) bool {
	if mask&m.excl != 0 {
		return false
	}
	if m.allActions {
		return mask&m.want == m.want
	}
	return mask&m.want != 0
}

// matchExec matches the image the kernel loaded (process.exe) and the path that was executed
// (file.file): a symbolic link named like something harmless must not hide a miner, and a
// recipe naming the link must still see it.
func (m *Matcher) matchExec(e *event.Event) bool {
	if m.paths.match(execPath(e)) {
		return true
	}
	return e.File != nil && filePath(e.File) != e.Process.Exe && m.paths.match(filePath(e.File))
}

// filePath is file.file, or dir/basename when only those are known.
func filePath(f *event.File) string {
	if f.File == "" && f.Dir != "" && f.Basename != "" {
		return f.Dir + "/" + f.Basename
	}
	return f.File
}

// execPath is the executed program: process.exe, or file.file when exe is unknown.
func execPath(e *event.Event) string {
	if e.Process.Exe == "" && e.File != nil {
		return filePath(e.File)
	}
	return e.Process.Exe
}

// --- paths ---

type pathEntry struct {
	dir  string // "" when not given
	base string
	full string // dir/base when both are given
	re   *regexp.Regexp
}

type pathSet struct {
	bases   map[string]struct{} // entries with only a base
	fulls   map[string]struct{} // entries with only dir and base
	entries []pathEntry         // everything else
}

func compilePaths(pms []recipes.PathMatch) (pathSet, error) {
	ps := pathSet{bases: map[string]struct{}{}, fulls: map[string]struct{}{}}
	for i, pm := range pms {
		var pe pathEntry
		if pm.Dir != "" {
			if !strings.HasPrefix(pm.Dir, "/") {
				return ps, fmt.Errorf("path entry %d: dir %q is not absolute", i, pm.Dir)
			}
			pe.dir = path.Clean(pm.Dir)
		}
		if strings.Contains(pm.Base, "/") {
			return ps, fmt.Errorf("path entry %d: base %q contains '/'", i, pm.Base)
		}
		pe.base = pm.Base
		if pe.dir != "" && pe.base != "" {
			pe.full = path.Join(pe.dir, pe.base)
		}
		if pm.Regex != "" {
			re, err := regexp.Compile(pm.Regex)
			if err != nil {
				return ps, fmt.Errorf("path entry %d: invalid regex: %w", i, err)
			}
			pe.re = re
		}
		switch {
		case pe.re == nil && pe.dir == "" && pe.base != "":
			ps.bases[pe.base] = struct{}{}
		case pe.re == nil && pe.full != "":
			ps.fulls[pe.full] = struct{}{}
		case pe.re == nil && pe.dir == "" && pe.base == "":
			return ps, fmt.Errorf("path entry %d is empty", i)
		default:
			ps.entries = append(ps.entries, pe)
		}
	}
	return ps, nil
}

func underDir(p, dir string) bool {
	if dir == "/" {
		return strings.HasPrefix(p, "/")
	}
	return p == dir || (strings.HasPrefix(p, dir) && len(p) > len(dir) && p[len(dir)] == '/')
}

func (ps *pathSet) match(p string) bool {
	if p == "" {
		return false
	}
	p = lexpath.Clean(p)
	base := path.Base(p)
	if _, ok := ps.bases[base]; ok {
		return true
	}
	if _, ok := ps.fulls[p]; ok {
		return true
	}
	for i := range ps.entries {
		pe := &ps.entries[i]
		switch {
		case pe.full != "":
			if p != pe.full {
				continue
			}
		case pe.dir != "":
			if !underDir(p, pe.dir) {
				continue
			}
		case pe.base != "":
			if base != pe.base {
				continue
			}
		}
		if pe.re != nil && !pe.re.MatchString(p) {
			continue
		}
		return true
	}
	return false
}

// --- network ---

type cidrSet struct {
	hosts    map[netip.Addr]struct{}
	prefixes []netip.Prefix
}

func newCIDRSet(pfs []netip.Prefix) cidrSet {
	var s cidrSet
	for _, pf := range pfs {
		if pf.IsSingleIP() {
			if s.hosts == nil {
				s.hosts = map[netip.Addr]struct{}{}
			}
			s.hosts[pf.Addr().Unmap()] = struct{}{}
			continue
		}
		s.prefixes = append(s.prefixes, pf)
	}
	return s
}

func (s *cidrSet) empty() bool { return len(s.hosts) == 0 && len(s.prefixes) == 0 }

func (s *cidrSet) contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	if _, ok := s.hosts[a]; ok {
		return true
	}
	for _, pf := range s.prefixes {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

type domainSet struct {
	kind     recipes.DomainMatch
	exact    map[string]struct{} // exact names, and suffixes matching the name itself
	dotted   map[string]struct{} // ".evil.com": sub-domains only
	prefixes []string
}

func newDomainSet(ds []string, kind recipes.DomainMatch) (domainSet, error) {
	s := domainSet{kind: kind, exact: map[string]struct{}{}, dotted: map[string]struct{}{}}
	for _, d := range ds {
		d = recipes.NormalizeDomain(d)
		if d == "" {
			return s, fmt.Errorf("empty remote domain")
		}
		switch kind {
		case recipes.DomainExact, "":
			s.exact[d] = struct{}{}
		case recipes.DomainSuffix:
			if strings.HasPrefix(d, ".") {
				s.dotted[d] = struct{}{}
			} else {
				s.exact[d] = struct{}{}
				s.dotted["."+d] = struct{}{}
			}
		case recipes.DomainPrefix:
			s.prefixes = append(s.prefixes, d)
		default:
			return s, fmt.Errorf("unknown remote_domains_type %q", kind)
		}
	}
	return s, nil
}

func (s *domainSet) empty() bool {
	return len(s.exact) == 0 && len(s.dotted) == 0 && len(s.prefixes) == 0
}

func (s *domainSet) match(name string) bool {
	name = recipes.NormalizeDomain(name)
	if name == "" {
		return false
	}
	if _, ok := s.exact[name]; ok {
		return true
	}
	if len(s.dotted) > 0 {
		// Walk the label boundaries: a.b.evil.com -> .b.evil.com -> .evil.com -> .com
		for i := 0; i < len(name); i++ {
			if name[i] == '.' {
				if _, ok := s.dotted[name[i:]]; ok {
					return true
				}
			}
		}
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func flowIndex(a recipes.FlowAction) int {
	for i, f := range recipes.FlowActions() {
		if f == a {
			return i
		}
	}
	return -1
}

func flowMask(f *event.Flags) uint16 {
	bits := []bool{f.Started, f.Ingress, f.Egress, f.Incoming, f.Outgoing, f.Ongoing, f.Started,
		f.Ended, f.Terminator, f.Terminated} // recipes.FlowActions() order; created = started
	var mask uint16
	for i, b := range bits {
		if b {
			mask |= 1 << i
		}
	}
	return mask
}

func protoMatches(want recipes.Protocol, got string) bool {
	got = strings.ToLower(got)
	switch want {
	case recipes.ProtoAny:
		return true
	case recipes.ProtoICMP:
		return got == "icmp" || got == "icmpv6" || got == "icmp6" || got == "ipv6-icmp"
	}
	return got == string(want)
}

func (m *Matcher) matchNetwork(e *event.Event) bool {
	f := e.Flow
	if f == nil {
		return false
	}
	if !protoMatches(m.proto, f.Proto) {
		return false
	}
	if m.localPort != 0 && f.Local.Port != m.localPort {
		return false
	}
	if m.remotePort != 0 && f.Remote.Port != m.remotePort {
		return false
	}
	if !m.localNets.empty() {
		a, err := netip.ParseAddr(f.Local.Address)
		if err != nil || !m.localNets.contains(a) {
			return false
		}
	}
	if !m.remoteNets.empty() {
		a, err := netip.ParseAddr(f.Remote.Address)
		if err != nil || !m.remoteNets.contains(a) {
			return false
		}
	}
	if !m.domains.empty() && !m.remoteNameMatches(f) {
		return false
	}
	if m.flowWant != 0 || m.flowExcl != 0 {
		mask := flowMask(&f.Flags)
		if mask&m.flowExcl != 0 {
			return false
		}
		if m.allFlows {
			if mask&m.flowWant != m.flowWant {
				return false
			}
		} else if m.flowWant != 0 && mask&m.flowWant == 0 {
			return false
		}
	}
	return true
}

func (m *Matcher) remoteNameMatches(f *event.Flow) bool {
	if m.domains.match(f.Remote.Name) {
		return true
	}
	for _, n := range f.Remote.Names {
		if m.domains.match(n) {
			return true
		}
	}
	return false
}
