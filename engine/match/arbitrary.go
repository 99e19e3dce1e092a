package match

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/recipes"
)

// group is a compiled arbitrary group; see package recipes for the semantics.
type group struct {
	or         bool
	irrelevant bool
	items      []item
}

type item struct {
	what    string
	flip    bool // the item's polarity is the opposite of its group's
	value   recipes.ValueKind
	mode    recipes.MatchMode
	pattern string
	re      *regexp.Regexp
	number  int64
	numbers []int64
	time    time.Time
	cidr    netip.Prefix
	when    recipes.When
}

func compileGroup(g recipes.Group) (group, error) {
	cg := group{}
	switch g.How {
	case recipes.GroupAND, "":
	case recipes.GroupOR:
		cg.or = true
	default:
		return cg, fmt.Errorf("unknown how %q", g.How)
	}
	switch g.Which {
	case recipes.Pertinent, "":
	case recipes.Irrelevant:
		cg.irrelevant = true
	default:
		return cg, fmt.Errorf("unknown which %q", g.Which)
	}
	if len(g.Items) == 0 {
		return cg, fmt.Errorf("no items")
	}
	groupPol := recipes.Pertinent
	if cg.irrelevant {
		groupPol = recipes.Irrelevant
	}
	for j, it := range g.Items {
		ci, err := compileItem(it, groupPol)
		if err != nil {
			return cg, fmt.Errorf("items[%d]: %w", j, err)
		}
		cg.items = append(cg.items, ci)
	}
	return cg, nil
}

func compileItem(it recipes.Item, groupPol recipes.Polarity) (item, error) {
	ci := item{what: it.What, value: it.Value, mode: it.Match, pattern: it.Pattern,
		number: it.Number, numbers: it.Numbers, time: it.Time, cidr: it.CIDR, when: it.When}
	if recipes.KindOfWhat(it.What) == recipes.WhatUnknown {
		return ci, fmt.Errorf("unknown what %q", it.What)
	}
	switch it.Which {
	case "":
	case recipes.Pertinent, recipes.Irrelevant:
		ci.flip = it.Which != groupPol
	default:
		return ci, fmt.Errorf("unknown which %q", it.Which)
	}
	if ci.mode == "" {
		ci.mode = recipes.MatchRegex
	}
	if ci.when == "" {
		ci.when = recipes.WhenEqual
	}
	if it.Value == recipes.ValuePattern && ci.mode == recipes.MatchRegex {
		re, err := regexp.Compile(it.Pattern)
		if err != nil {
			return ci, fmt.Errorf("invalid regex: %w", err)
		}
		ci.re = re
	}
	return ci, nil
}

// keep reports whether the group lets the event through.
func (g *group) keep(e *event.Event) bool {
	var result bool
	if g.or {
		result = false
		for i := range g.items {
			if g.items[i].holds(e) {
				result = true
				break
			}
		}
	} else {
		result = true
		for i := range g.items {
			if !g.items[i].holds(e) {
				result = false
				break
			}
		}
	}
	if g.irrelevant {
		return !result
	}
	return result
}

// holds is the item's truth value inside its group: its condition, negated when the item's
// polarity is the opposite of the group's.
func (it *item) holds(e *event.Event) bool {
	return it.cond(e) != it.flip
}

func (it *item) cond(e *event.Event) bool {
	switch it.value {
	case recipes.ValuePattern:
		if recipes.KindOfWhat(it.what) == recipes.WhatNumber {
			n, ok := numberOf(e, it.what)
			return ok && it.matchString(strconv.FormatInt(n, 10))
		}
		for _, s := range stringsOf(e, it.what) {
			if it.matchString(s) {
				return true
			}
		}
		return false
	case recipes.ValueNumber:
		n, ok := numberOf(e, it.what)
		return ok && compare(n, it.number, it.when)
	case recipes.ValueNumbers:
		n, ok := numberOf(e, it.what)
		if !ok {
			return false
		}
		for _, x := range it.numbers {
			if n == x {
				return true
			}
		}
		return false
	case recipes.ValueTime:
		t, ok := timeOf(e, it.what)
		if !ok {
			return false
		}
		return compare(t.UnixNano(), it.time.UnixNano(), it.when)
	case recipes.ValueCIDR:
		a, ok := ipOf(e, it.what)
		return ok && it.cidr.Contains(a)
	}
	return false
}

func (it *item) matchString(s string) bool {
	switch it.mode {
	case recipes.MatchExact:
		return s == it.pattern
	case recipes.MatchPrefix:
		return strings.HasPrefix(s, it.pattern)
	case recipes.MatchSuffix:
		return strings.HasSuffix(s, it.pattern)
	case recipes.MatchContains:
		return strings.Contains(s, it.pattern)
	}
	return it.re != nil && it.re.MatchString(s)
}

// compare evaluates "event value <when> item value".
func compare(got, want int64, when recipes.When) bool {
	switch when {
	case recipes.WhenSmaller:
		return got < want
	case recipes.WhenBigger:
		return got > want
	}
	return got == want
}

// stringsOf returns the values of a string attribute; none when the event lacks it.
func stringsOf(e *event.Event, what string) []string {
	p := &e.Process
	switch what {
	case "exe":
		return []string{p.Exe}
	case "comm":
		return []string{p.Comm}
	case "cmd":
		return []string{p.Cmd}
	case "args":
		return []string{p.Args}
	case "file":
		if e.File != nil {
			return []string{e.File.File}
		}
		return nil
	case "remote_domain":
		if e.Flow == nil {
			return nil
		}
		out := make([]string, 0, len(e.Flow.Remote.Names)+1)
		if e.Flow.Remote.Name != "" {
			out = append(out, e.Flow.Remote.Name)
		}
		return append(out, e.Flow.Remote.Names...)
	case "ancient_exe":
		anc := e.Ancestors()
		out := make([]string, 0, len(anc))
		for _, a := range anc {
			out = append(out, a.Exe)
		}
		return out
	}
	par := e.Parent()
	switch what {
	case "task_or_parent_exe":
		if par == nil {
			return []string{p.Exe}
		}
		return []string{p.Exe, par.Exe}
	case "task_or_parent_args":
		if par == nil {
			return []string{p.Args}
		}
		return []string{p.Args, par.Args}
	}
	if par == nil {
		return nil
	}
	switch what {
	case "parent_exe":
		return []string{par.Exe}
	case "parent_comm":
		return []string{par.Comm}
	case "parent_cmd":
		return []string{par.Cmd}
	case "parent_args":
		return []string{par.Args}
	}
	return nil
}

func numberOf(e *event.Event, what string) (int64, bool) {
	p := &e.Process
	switch what {
	case "uid":
		return int64(p.UID), true
	case "gid":
		return int64(p.GID), true
	case "pid":
		return int64(p.PID), true
	case "ppid":
		return int64(p.PPID), true
	case "local_port":
		if e.Flow != nil {
			return int64(e.Flow.Local.Port), true
		}
	case "remote_port":
		if e.Flow != nil {
			return int64(e.Flow.Remote.Port), true
		}
	case "parent_uid":
		if par := e.Parent(); par != nil {
			return int64(par.UID), true
		}
	case "parent_pid":
		if par := e.Parent(); par != nil {
			return int64(par.PID), true
		}
	}
	return 0, false
}

func timeOf(e *event.Event, what string) (time.Time, bool) {
	var s string
	switch what {
	case "start":
		s = e.Process.Start
	case "parent_start":
		if par := e.Parent(); par != nil {
			s = par.Start
		}
	}
	if s == "" {
		return time.Time{}, false
	}
	t, err := event.ParseStamp(s)
	return t, err == nil
}

func ipOf(e *event.Event, what string) (netip.Addr, bool) {
	if e.Flow == nil {
		return netip.Addr{}, false
	}
	var s string
	switch what {
	case "local_ip":
		s = e.Flow.Local.Address
	case "remote_ip":
		s = e.Flow.Remote.Address
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap().WithZone(""), true
}
