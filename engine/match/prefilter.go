package match

import (
	"net/netip"
	"path"
	"sort"

	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/engine/lexpath"
	"github.com/jibril-rt/jibril/recipes"
)

// Prefilter is the part of a recipe cheap enough to push into BPF maps. It is a superset: an
// event it rejects never matches the recipe, an event it passes may still not (regexes,
// arbitrary groups, how: all and exclusions are left to Match).
//
// File and execution events pass when their path's basename is in Bases, the path is in
// Paths, or the path is or lies under one of DirPrefixes; file events must also carry at
// least one of Actions (nil: any action). Network events pass when every non-empty condition
// holds: Protocol, LocalPort, RemotePort, LocalCIDRs, RemoteCIDRs, and RemoteDomains compared
// as DomainMatch says (the names come from DNS, not from the packet).
type Prefilter struct {
	EventTypes []string

	Actions     []string
	Bases       []string
	Paths       []string
	DirPrefixes []string

	Protocol      string
	LocalPort     uint16
	RemotePort    uint16
	LocalCIDRs    []netip.Prefix
	RemoteCIDRs   []netip.Prefix
	RemoteDomains []string
	DomainMatch   string
}

// Prefilter returns the recipe's cheap filter, or nil when none exists: a path entry that is
// a bare regex, or a network recipe with no CIDR, domain or port to key on.
func (m *Matcher) Prefilter() *Prefilter {
	pf := &Prefilter{}
	if m.files {
		pf.EventTypes = append(pf.EventTypes, event.TypeFileAccess)
	}
	if m.execs {
		pf.EventTypes = append(pf.EventTypes, event.TypeExecution)
	}
	if m.network {
		pf.EventTypes = append(pf.EventTypes, event.TypeNetworkPeer)
		return m.networkPrefilter(pf)
	}
	if m.files {
		all := uint32(1)<<len(recipes.FileActions()) - 1
		if m.want != all {
			for i, a := range event.ActionNames() {
				if m.want&(1<<i) != 0 {
					pf.Actions = append(pf.Actions, a)
				}
			}
		}
	}
	bases := map[string]bool{}
	paths := map[string]bool{}
	dirs := map[string]bool{}
	for _, pm := range m.r.Paths {
		dir := ""
		if pm.Dir != "" {
			dir = path.Clean(pm.Dir)
		}
		switch {
		case dir != "" && pm.Base != "":
			paths[path.Join(dir, pm.Base)] = true
		case pm.Base != "":
			bases[pm.Base] = true
		case dir != "":
			dirs[dir] = true
		default:
			return nil // a bare regex can match anything
		}
	}
	pf.Bases = sortedSet(bases)
	pf.Paths = sortedSet(paths)
	pf.DirPrefixes = sortedSet(dirs)
	if len(pf.Bases)+len(pf.Paths)+len(pf.DirPrefixes) == 0 {
		return nil
	}
	return pf
}

func (m *Matcher) networkPrefilter(pf *Prefilter) *Prefilter {
	r := m.r
	if len(r.LocalCIDRs)+len(r.RemoteCIDRs)+len(r.RemoteDomains) == 0 && r.LocalPort == 0 && r.RemotePort == 0 {
		return nil
	}
	pf.Protocol = string(r.Protocol)
	pf.LocalPort, pf.RemotePort = r.LocalPort, r.RemotePort
	pf.LocalCIDRs = append([]netip.Prefix(nil), r.LocalCIDRs...)
	pf.RemoteCIDRs = append([]netip.Prefix(nil), r.RemoteCIDRs...)
	if len(r.RemoteDomains) > 0 {
		pf.RemoteDomains = append([]string(nil), r.RemoteDomains...)
		pf.DomainMatch = string(r.RemoteDomainsType)
		if pf.DomainMatch == "" {
			pf.DomainMatch = string(recipes.DomainExact)
		}
	}
	return pf
}

// Pass reports whether an event passes the prefilter, as the kernel side would decide. It
// exists so that the superset property can be tested against Match.
func (pf *Prefilter) Pass(e *event.Event) bool {
	if pf == nil {
		return true
	}
	if e == nil {
		return false
	}
	typeOK := false
	for _, t := range pf.EventTypes {
		typeOK = typeOK || t == e.EventType
	}
	if !typeOK {
		return false
	}
	switch e.EventType {
	case event.TypeFileAccess:
		if e.File == nil {
			return false
		}
		if len(pf.Actions) > 0 {
			has := false
			for _, a := range pf.Actions {
				has = has || e.File.Has(a)
			}
			if !has {
				return false
			}
		}
		return pf.passPath(filePath(e.File))
	case event.TypeExecution:
		return pf.passPath(execPath(e)) || (e.File != nil && pf.passPath(filePath(e.File)))
	case event.TypeNetworkPeer:
		return pf.passNetwork(e)
	}
	return false
}

func (pf *Prefilter) passPath(p string) bool {
	if p == "" {
		return false
	}
	p = lexpath.Clean(p)
	base := path.Base(p)
	for _, b := range pf.Bases {
		if b == base {
			return true
		}
	}
	for _, x := range pf.Paths {
		if x == p {
			return true
		}
	}
	for _, d := range pf.DirPrefixes {
		if underDir(p, d) {
			return true
		}
	}
	return false
}

func (pf *Prefilter) passNetwork(e *event.Event) bool {
	f := e.Flow
	if f == nil {
		return false
	}
	if !protoMatches(recipes.Protocol(pf.Protocol), f.Proto) {
		return false
	}
	if (pf.LocalPort != 0 && f.Local.Port != pf.LocalPort) || (pf.RemotePort != 0 && f.Remote.Port != pf.RemotePort) {
		return false
	}
	inNets := func(nets []netip.Prefix, addr string) bool {
		if len(nets) == 0 {
			return true
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return false
		}
		s := newCIDRSet(nets)
		return s.contains(a)
	}
	if !inNets(pf.LocalCIDRs, f.Local.Address) || !inNets(pf.RemoteCIDRs, f.Remote.Address) {
		return false
	}
	if len(pf.RemoteDomains) > 0 {
		ds, err := newDomainSet(pf.RemoteDomains, recipes.DomainMatch(pf.DomainMatch))
		if err != nil {
			return false
		}
		ok := ds.match(f.Remote.Name)
		for _, n := range f.Remote.Names {
			ok = ok || ds.match(n)
		}
		return ok
	}
	return true
}

func sortedSet(m map[string]bool) []string {
	if len(m) == 0 {
		return nil
	}
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
