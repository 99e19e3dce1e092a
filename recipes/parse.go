package recipes

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize is the largest recipe file Parse accepts.
const MaxFileSize = 16 << 20

// Parse reads one recipe file: a YAML list of recipes. It returns the valid recipes in file
// order and one error per problem (each an *Error, one line). A recipe with any problem is
// left out; the others are returned. Names must be unique within the file.
func Parse(file string, data []byte) ([]*Recipe, []error) {
	if len(data) > MaxFileSize {
		return nil, []error{&Error{File: file, Line: 1,
			Msg: fmt.Sprintf("file is %d bytes, over the %d byte limit", len(data), MaxFileSize)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // empty file
		}
		return nil, []error{yamlError(file, err)}
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, []error{&Error{File: file, Line: next.Line,
			Msg: "a second YAML document: a recipe file is one list of recipes"}}
	case !errors.Is(err, io.EOF):
		return nil, []error{yamlError(file, err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return nil, nil
		}
		root = root.Content[0]
	}
	root = deref(root)
	if isNull(root) {
		return nil, nil
	}
	if root.Kind != yaml.SequenceNode {
		return nil, []error{&Error{File: file, Line: root.Line,
			Msg: "expected a list of recipes (each starting with \"- \"), got " + describe(root)}}
	}

	ctx := newParseContext()
	var out []*Recipe
	var errs []error
	seen := map[string]int{} // name -> line of its first definition
	for i, n := range root.Content {
		r, name, nameLine, rerrs := ctx.parseRecipe(file, i, deref(n))
		if name != "" {
			if first, dup := seen[name]; dup {
				rerrs = append(rerrs, &Error{File: file, Line: nameLine, Recipe: name, Field: "name",
					Msg: fmt.Sprintf("duplicate name (first defined at %s:%d)", file, first)})
			} else {
				seen[name] = nameLine
			}
		}
		if len(rerrs) > 0 {
			errs = append(errs, rerrs...)
			continue
		}
		out = append(out, r)
	}
	return out, errs
}

// parseContext holds what is compiled once per Parse call (no package state).
type parseContext struct {
	jsProcess *regexp.Regexp
}

func newParseContext() *parseContext {
	// Conservative heuristic for "the reaction defines process": a function declaration
	// (possibly async or a generator), a const/let/var binding, or a plain assignment. It can
	// be fooled by a definition inside a comment or a string; the sandbox then reports the
	// missing function at run time.
	return &parseContext{jsProcess: regexp.MustCompile(
		`(?:^|[^\w$.])(?:async\s+)?function\s*\*?\s*process\s*\(` +
			`|(?:^|[^\w$.])(?:const|let|var)\s+process\s*=` +
			`|(?:^|[^\w$.]|globalThis\.)process\s*=(?:[^=>]|$)`)}
}

// recipeFields lists every field a recipe may have.
func recipeFields() []string {
	return []string{"kind", "name", "enabled", "version", "description", "documentation",
		"breed", "mechanism", "tactic", "technique", "subtechnique", "importance",
		"file_actions", "file_actions_how", "file_actions_excl", "base", "dir", "regex", "bases",
		"protocol", "local_cidrs", "remote_cidrs", "local_port", "remote_port",
		"remote_domains", "remote_domains_type", "remote_domains_trie_type",
		"flow_actions", "flow_actions_how", "flow_actions_excl",
		"arbitrary", "times", "reactions", "prevent", "mode"}
}

type parser struct {
	ctx    *parseContext
	file   string
	label  string
	errs   []error
	fields map[string]field
}

type field struct {
	key *yaml.Node
	val *yaml.Node // dereferenced
}

func (p *parser) fail(line int, fieldName, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Recipe: p.label, Field: fieldName,
		Msg: fmt.Sprintf(format, args...)})
}

// get returns a field's value, nil when absent or null.
func (p *parser) get(name string) *yaml.Node {
	f, ok := p.fields[name]
	if !ok || isNull(f.val) {
		return nil
	}
	return f.val
}

func (ctx *parseContext) parseRecipe(file string, idx int, n *yaml.Node) (r *Recipe, name string, nameLine int, errs []error) {
	p := &parser{ctx: ctx, file: file, label: fmt.Sprintf("#%d", idx), fields: map[string]field{}}
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, "", "expected a mapping of fields, got %s", describe(n))
		return nil, "", 0, p.errs
	}
	// The label is needed by every message, so the name is looked up first.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k, v := n.Content[i], deref(n.Content[i+1]); k.Value == "name" && v.Kind == yaml.ScalarNode &&
			validName(v.Value) {
			p.label, name, nameLine = v.Value, v.Value, v.Line
			break
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.fail(k.Line, "", "field names must be strings, got %s", describe(k))
			continue
		}
		if prev, dup := p.fields[k.Value]; dup {
			p.fail(k.Line, k.Value, "given twice (first at line %d)", prev.key.Line)
			continue
		}
		p.fields[k.Value] = field{key: k, val: v}
	}
	for _, k := range sortedKeys(p.fields) {
		if !contains(recipeFields(), k) {
			msg := "unknown field" + suggest(k, recipeFields())
			if k == "<<" {
				msg = "YAML merge keys are not supported"
			}
			p.fail(p.fields[k].key.Line, k, "%s", msg)
		}
	}
	r = &Recipe{File: file, Line: n.Line, Index: idx, Enabled: true, nameLine: nameLine}
	p.fill(r)
	p.validate(r)
	if len(p.errs) > 0 {
		return nil, name, nameLine, sortErrors(p.errs)
	}
	return r, name, nameLine, nil
}

// fill reads every known field into r, reporting type and value errors.
func (p *parser) fill(r *Recipe) {
	if v := p.get("kind"); v != nil {
		if s, ok := p.str("kind", v); ok {
			r.Kind = SnakeCase(s)
			if r.Kind == "" {
				p.fail(v.Line, "kind", "%q has no letters or digits", s)
			}
		}
	}
	if v := p.get("name"); v != nil {
		if s, ok := p.str("name", v); ok {
			if validName(s) {
				r.Name = s
			} else {
				p.fail(v.Line, "name", "invalid name %q (want 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit)", s)
			}
		}
	}
	if v := p.get("enabled"); v != nil {
		if b, ok := p.boolean("enabled", v); ok {
			r.Enabled = b
		}
	}
	for _, f := range []struct {
		name string
		dst  *string
	}{{"version", &r.Version}, {"description", &r.Description}, {"documentation", &r.Documentation},
		{"tactic", &r.Tactic}, {"technique", &r.Technique}, {"subtechnique", &r.Subtechnique}} {
		if v := p.get(f.name); v != nil {
			if s, ok := p.str(f.name, v); ok {
				*f.dst = strings.TrimSpace(s)
			}
		}
	}
	if s, ok := p.enumField("breed", "file_access", "execution", "remote_domains", "remote_cidrs",
		"remote_ips", "local_domains", "local_ips"); ok {
		r.Breed = Breed(s)
	}
	if s, ok := p.enumField("mechanism", "file_access", "execution", "file_access_and_execution",
		"network_peers", "network_flows"); ok {
		r.Mechanism = Mechanism(s)
	}
	r.Importance = ImportanceMedium
	if s, ok := p.enumField("importance", "low", "medium", "high", "critical"); ok {
		r.Importance = Importance(s)
	}

	// File and execution matching.
	r.FileActionsHow = HowAny
	if s, ok := p.enumField("file_actions_how", "any", "all"); ok {
		r.FileActionsHow = How(s)
	}
	r.FileActions = p.fileActions("file_actions")
	r.FileActionsExcl = p.fileActions("file_actions_excl")
	r.Paths = p.paths()

	// Network matching.
	if s, ok := p.enumField("protocol", "tcp", "udp", "icmp"); ok {
		r.Protocol = Protocol(s)
	}
	r.LocalCIDRs = p.cidrs("local_cidrs")
	r.RemoteCIDRs = p.cidrs("remote_cidrs")
	r.LocalPort = p.port("local_port")
	r.RemotePort = p.port("remote_port")
	r.RemoteDomainsType = DomainExact
	typeField := "remote_domains_type"
	if p.get("remote_domains_trie_type") != nil {
		if p.get("remote_domains_type") != nil {
			p.fail(p.fields["remote_domains_trie_type"].key.Line, "remote_domains_trie_type",
				"remote_domains_type is also set; give one of them")
		}
		typeField = "remote_domains_trie_type"
	}
	if s, ok := p.enumField(typeField, "exact", "suffix", "prefix"); ok {
		r.RemoteDomainsType = DomainMatch(s)
	}
	r.RemoteDomains = p.domains("remote_domains", r.RemoteDomainsType)
	r.FlowActionsHow = HowAny
	if s, ok := p.enumField("flow_actions_how", "any", "all"); ok {
		r.FlowActionsHow = How(s)
	}
	r.FlowActions = p.flowActions("flow_actions")
	r.FlowActionsExcl = p.flowActions("flow_actions_excl")

	r.Arbitrary = p.groups()
	r.Times = p.times()
	r.Reactions = p.reactions()
	if s, ok := p.enumField("prevent", "kill", "deny"); ok {
		r.Prevent = Prevent(s)
	}
	if s, ok := p.enumField("mode", "enforce", "dry-run", "off"); ok {
		r.Mode = Mode(s)
	}
}

// validate applies the checks that involve more than one field.
func (p *parser) validate(r *Recipe) {
	line := func(name string) int {
		if f, ok := p.fields[name]; ok {
			return f.val.Line
		}
		return r.Line
	}
	if _, ok := p.fields["kind"]; !ok || p.get("kind") == nil {
		p.fail(line("kind"), "kind", "missing (every recipe needs a kind)")
	}
	if _, ok := p.fields["name"]; !ok || p.get("name") == nil {
		p.fail(line("name"), "name", "missing (every recipe needs a unique name)")
	}
	if p.get("mechanism") == nil {
		p.fail(line("mechanism"), "mechanism",
			"missing (want file_access, execution, file_access_and_execution, network_peers or network_flows)")
		return
	}
	if r.Mechanism == "" {
		return // already reported as a bad value
	}

	fileFields := []string{"file_actions", "file_actions_excl", "base", "dir", "regex", "bases"}
	// The *_how and *_type switches are left out: alone they change nothing, and recipes
	// written from a template often carry them.
	netFields := []string{"protocol", "local_cidrs", "remote_cidrs", "local_port", "remote_port",
		"remote_domains", "flow_actions", "flow_actions_excl"}
	if r.Mechanism.MatchesNetwork() {
		for _, f := range fileFields {
			if v := p.get(f); v != nil && !emptyValue(v) {
				p.fail(v.Line, f, "not valid for mechanism %s (file fields need file_access, execution or file_access_and_execution)", r.Mechanism)
			}
		}
		if len(r.FlowActions) > 0 && len(r.FlowActionsExcl) > 0 {
			excl := map[FlowAction]bool{}
			for _, a := range r.FlowActionsExcl {
				excl[a] = true
			}
			kept := r.FlowActions[:0:0]
			for _, a := range r.FlowActions {
				if !excl[a] {
					kept = append(kept, a)
				}
			}
			if len(kept) == 0 {
				p.fail(line("flow_actions_excl"), "flow_actions_excl", "excludes every action of flow_actions")
			}
			r.FlowActions = kept
		}
	} else {
		for _, f := range netFields {
			if v := p.get(f); v != nil && !emptyValue(v) {
				p.fail(v.Line, f, "not valid for mechanism %s (network fields need network_peers or network_flows)", r.Mechanism)
			}
		}
		p.validateFileActions(r, line)
		if len(r.Paths) == 0 && p.pathFieldsValid() {
			p.fail(line("bases"), "bases", "missing: a %s recipe needs base, dir, regex or bases (regex: .* matches every path)", r.Mechanism)
		}
	}
	p.validatePrevent(r, line)
}

func (p *parser) validateFileActions(r *Recipe, line func(string) int) {
	given := p.get("file_actions") != nil
	if p.fileActionsHadErrors() {
		return
	}
	excl := map[FileAction]bool{}
	for _, a := range r.FileActionsExcl {
		excl[a] = true
	}
	if !given {
		if r.Mechanism == MechExecution {
			r.FileActions = []FileAction{ActExecve}
		} else {
			r.FileActions = FileActions()
		}
	}
	if r.Mechanism == MechExecution && given && !containsAction(r.FileActions, ActExecve) {
		p.fail(line("file_actions"), "file_actions", "an execution recipe matches execve: include execve (or use mechanism file_access)")
		return
	}
	kept := r.FileActions[:0:0]
	for _, a := range r.FileActions {
		if !excl[a] {
			kept = append(kept, a)
		}
	}
	if len(kept) == 0 {
		p.fail(line("file_actions_excl"), "file_actions_excl", "excludes every action of file_actions")
		return
	}
	if r.Mechanism == MechExecution && excl[ActExecve] {
		p.fail(line("file_actions_excl"), "file_actions_excl", "an execution recipe cannot exclude execve")
		return
	}
	r.FileActions = kept
}

func (p *parser) validatePrevent(r *Recipe, line func(string) int) {
	if r.Prevent == PreventNone {
		return
	}
	l := line("prevent")
	if r.Mechanism != MechExecution {
		p.fail(l, "prevent", "only execution recipes can prevent (mechanism is %s)", r.Mechanism)
		return
	}
	for i, pm := range r.Paths {
		what := fmt.Sprintf("bases[%d]", i)
		if i == 0 && p.topLevelPath() {
			what = "the top-level base/dir/regex"
		}
		switch {
		case pm.Regex != "":
			p.fail(l, "prevent", "needs an exact match: %s uses a regex (give base, or dir and base)", what)
		case pm.Base == "":
			p.fail(l, "prevent", "needs an exact match: %s has no base (give base, or dir and base)", what)
		}
	}
	if len(r.Arbitrary) > 0 {
		p.fail(l, "prevent", "arbitrary groups cannot be evaluated before the exec: remove them or drop prevent")
	}
}

func (p *parser) topLevelPath() bool {
	return p.get("base") != nil || p.get("dir") != nil || p.get("regex") != nil
}

// pathFieldsValid reports whether no path field had an error (to avoid a second message).
func (p *parser) pathFieldsValid() bool {
	for _, e := range p.errs {
		var pe *Error
		if errors.As(e, &pe) && (pe.Field == "base" || pe.Field == "dir" || pe.Field == "regex" ||
			strings.HasPrefix(pe.Field, "bases")) {
			return false
		}
	}
	return true
}

func (p *parser) fileActionsHadErrors() bool {
	for _, e := range p.errs {
		var pe *Error
		if errors.As(e, &pe) && strings.HasPrefix(pe.Field, "file_actions") {
			return true
		}
	}
	return false
}

// emptyValue reports an empty list or empty string: Jibril files carry "remote_domains: []"
// on file recipes, which is harmless.
func emptyValue(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.SequenceNode, yaml.MappingNode:
		return len(n.Content) == 0
	case yaml.ScalarNode:
		return n.Value == "" || (n.ShortTag() == "!!int" && n.Value == "0")
	}
	return false
}

// --- scalar helpers ---

func (p *parser) str(fieldName string, v *yaml.Node) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		p.fail(v.Line, fieldName, "expected a string, got %s", describe(v))
		return "", false
	}
	if t := v.ShortTag(); !strings.HasPrefix(t, "!!") || t == "!!binary" {
		p.fail(v.Line, fieldName, "unsupported YAML tag %s", t)
		return "", false
	}
	if strings.ContainsRune(v.Value, 0) {
		p.fail(v.Line, fieldName, "contains a NUL byte")
		return "", false
	}
	return v.Value, true
}

func (p *parser) boolean(fieldName string, v *yaml.Node) (bool, bool) {
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!bool" {
		if b, err := strconv.ParseBool(strings.ToLower(v.Value)); err == nil {
			return b, true
		}
	}
	p.fail(v.Line, fieldName, "expected true or false, got %s", describe(v))
	return false, false
}

func (p *parser) integer(fieldName string, v *yaml.Node) (int64, bool) {
	if v.Kind == yaml.ScalarNode {
		t := v.ShortTag()
		if t == "!!int" || t == "!!str" {
			if n, err := strconv.ParseInt(strings.TrimSpace(v.Value), 10, 64); err == nil {
				return n, true
			}
		}
	}
	p.fail(v.Line, fieldName, "expected an integer, got %s", describe(v))
	return 0, false
}

// enumOf matches s case-insensitively against allowed and returns the canonical spelling.
func (p *parser) enumOf(fieldName string, v *yaml.Node, allowed ...string) (string, bool) {
	s, ok := p.str(fieldName, v)
	if !ok {
		return "", false
	}
	ls := strings.ToLower(strings.TrimSpace(s))
	for _, a := range allowed {
		if strings.ToLower(a) == ls {
			return a, true
		}
	}
	p.fail(v.Line, fieldName, "unknown value %q (want %s)", s, orList(allowed))
	return "", false
}

func (p *parser) enumField(name string, allowed ...string) (string, bool) {
	v := p.get(name)
	if v == nil {
		return "", false
	}
	return p.enumOf(name, v, allowed...)
}

type listItem struct {
	s    string
	line int
	path string
}

// strList accepts one string or a list of strings.
func (p *parser) strList(fieldName string, v *yaml.Node) ([]listItem, bool) {
	switch v.Kind {
	case yaml.ScalarNode:
		s, ok := p.str(fieldName, v)
		if !ok {
			return nil, false
		}
		return []listItem{{s, v.Line, fieldName}}, true
	case yaml.SequenceNode:
		out := make([]listItem, 0, len(v.Content))
		ok := true
		for i, c := range v.Content {
			c = deref(c)
			path := fmt.Sprintf("%s[%d]", fieldName, i)
			if isNull(c) || c.Kind != yaml.ScalarNode {
				p.fail(c.Line, path, "expected a string, got %s", describe(c))
				ok = false
				continue
			}
			s, sok := p.str(path, c)
			if !sok {
				ok = false
				continue
			}
			out = append(out, listItem{s, c.Line, path})
		}
		return out, ok
	}
	p.fail(v.Line, fieldName, "expected a string or a list of strings, got %s", describe(v))
	return nil, false
}

func (p *parser) fileActions(name string) []FileAction {
	v := p.get(name)
	if v == nil {
		return nil
	}
	items, _ := p.strList(name, v)
	var names []string
	for _, it := range items {
		parts := splitActions(it.s)
		if len(parts) == 0 {
			p.fail(it.line, it.path, "empty action")
			continue
		}
		for _, part := range parts {
			if _, ok := ExpandFileAction(part); !ok {
				_, err := expandFileActions([]string{part})
				p.fail(it.line, it.path, "%v", err)
				continue
			}
			names = append(names, part)
		}
	}
	acts, _ := expandFileActions(names)
	return acts
}

func (p *parser) flowActions(name string) []FlowAction {
	v := p.get(name)
	if v == nil {
		return nil
	}
	items, _ := p.strList(name, v)
	var names []string
	for _, it := range items {
		parts := splitActions(it.s)
		if len(parts) == 0 {
			p.fail(it.line, it.path, "empty action")
			continue
		}
		for _, part := range parts {
			if _, err := expandFlowActions([]string{part}); err != nil {
				p.fail(it.line, it.path, "%v", err)
				continue
			}
			names = append(names, part)
		}
	}
	acts, _ := expandFlowActions(names)
	return acts
}

func (p *parser) port(name string) uint16 {
	v := p.get(name)
	if v == nil {
		return 0
	}
	n, ok := p.integer(name, v)
	if !ok {
		return 0
	}
	if n < 0 || n > 65535 {
		p.fail(v.Line, name, "port %d out of range 0-65535 (0 means any)", n)
		return 0
	}
	return uint16(n)
}

// ParseCIDR accepts "addr/bits" (host bits are cleared) or a bare address (a host prefix).
func ParseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		pf, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q (want address/bits)", s)
		}
		if pf.Addr().Is4In6() {
			bits := pf.Bits() - 96
			if bits < 0 {
				return netip.Prefix{}, fmt.Errorf("invalid CIDR %q (an IPv4-mapped prefix shorter than /96)", s)
			}
			pf = netip.PrefixFrom(pf.Addr().Unmap(), bits)
		}
		return pf.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q (want address/bits or an address)", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (p *parser) cidrs(name string) []netip.Prefix {
	v := p.get(name)
	if v == nil {
		return nil
	}
	items, _ := p.strList(name, v)
	out := make([]netip.Prefix, 0, len(items))
	for _, it := range items {
		pf, err := ParseCIDR(it.s)
		if err != nil {
			p.fail(it.line, it.path, "%v", err)
			continue
		}
		out = append(out, pf)
	}
	return out
}

// NormalizeDomain lower-cases a domain and drops its trailing dot.
func NormalizeDomain(s string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(s)), ".")
}

func (p *parser) domains(name string, kind DomainMatch) []string {
	v := p.get(name)
	if v == nil {
		return nil
	}
	items, _ := p.strList(name, v)
	out := make([]string, 0, len(items))
	for _, it := range items {
		d := NormalizeDomain(it.s)
		if msg := checkDomain(d, kind); msg != "" {
			p.fail(it.line, it.path, "invalid domain %q: %s", it.s, msg)
			continue
		}
		out = append(out, d)
	}
	return out
}

func checkDomain(d string, kind DomainMatch) string {
	if d == "" {
		return "empty"
	}
	if len(d) > 253 {
		return "longer than 253 characters"
	}
	// Only one final dot is dropped: a second one is an empty label, and keeping it would give
	// a pattern that no name (always without its final dot) ever matches.
	if d[len(d)-1] == '.' {
		return "ends with an empty label"
	}
	for i, r := range d {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
		case r == '.':
			if i == 0 && kind == DomainExact {
				return "starts with a dot (only suffix and prefix matching allow it)"
			}
			if i > 0 && d[i-1] == '.' {
				return "empty label"
			}
		default:
			return fmt.Sprintf("character %q is not allowed", r)
		}
	}
	return ""
}

// --- paths ---

func (p *parser) paths() []PathMatch {
	var out []PathMatch
	if p.topLevelPath() {
		pm, ok := p.pathEntry("", p.get("dir"), p.get("base"), p.get("regex"))
		if ok {
			out = append(out, pm)
		}
	}
	v := p.get("bases")
	if v == nil {
		return out
	}
	for _, el := range p.elements("bases", v, "{dir, base, regex}", "dir", "base", "regex") {
		c, fp, m := el.n, el.fp, el.m
		pm, ok := p.pathEntry(fp+".", m["dir"], m["base"], m["regex"])
		if !ok {
			continue
		}
		if pm.Dir == "" && pm.Base == "" && pm.Regex == "" {
			p.fail(c.Line, fp, "empty entry (want dir, base or regex)")
			continue
		}
		pm.Line = c.Line
		out = append(out, pm)
	}
	return out
}

// element is one mapping of a list field, its keys checked.
type element struct {
	fp string // field path, "times[2]"
	n  *yaml.Node
	m  map[string]*yaml.Node
}

// elements checks that v, the value of field, is a list of mappings with the allowed keys; it
// reports the list or each element that is not (listOf names the list's elements in errors)
// and returns the others.
func (p *parser) elements(field string, v *yaml.Node, listOf string, allowed ...string) []element {
	if v.Kind != yaml.SequenceNode {
		p.fail(v.Line, field, "expected a list of %s, got %s", listOf, describe(v))
		return nil
	}
	shape := "{" + strings.Join(allowed, ", ") + "}"
	var out []element
	for i, c := range v.Content {
		c = deref(c)
		fp := fmt.Sprintf("%s[%d]", field, i)
		if c.Kind != yaml.MappingNode {
			p.fail(c.Line, fp, "expected a mapping %s, got %s", shape, describe(c))
			continue
		}
		if m, ok := p.mapping(fp, c, allowed...); ok {
			out = append(out, element{fp: fp, n: c, m: m})
		}
	}
	return out
}

// mapping checks a nested mapping's keys and returns its non-null values.
func (p *parser) mapping(fp string, n *yaml.Node, allowed ...string) (map[string]*yaml.Node, bool) {
	out := map[string]*yaml.Node{}
	lines := map[string]int{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.fail(k.Line, fp, "field names must be strings, got %s", describe(k))
			ok = false
			continue
		}
		if !contains(allowed, k.Value) {
			p.fail(k.Line, fp+"."+k.Value, "unknown field%s (want %s)", suggest(k.Value, allowed), orList(allowed))
			ok = false
			continue
		}
		if prev, dup := lines[k.Value]; dup {
			p.fail(k.Line, fp+"."+k.Value, "given twice (first at line %d)", prev)
			ok = false
			continue
		}
		lines[k.Value] = k.Line
		if !isNull(v) {
			out[k.Value] = v
		}
	}
	return out, ok
}

func (p *parser) pathEntry(prefix string, dirN, baseN, regexN *yaml.Node) (PathMatch, bool) {
	var pm PathMatch
	ok := true
	if dirN != nil {
		pm.Line = dirN.Line
		if s, sok := p.str(prefix+"dir", dirN); sok {
			s = strings.TrimSpace(s)
			c := path.Clean(s)
			switch {
			case !strings.HasPrefix(s, "/"):
				p.fail(dirN.Line, prefix+"dir", "%q is not an absolute directory", s)
				ok = false
			case strings.TrimSpace(c) != c:
				// "/ /" cleans to "/ ", which reads back as "/": refuse rather than let the
				// meaning depend on how the path was spelled.
				p.fail(dirN.Line, prefix+"dir", "%q ends with white space once cleaned", s)
				ok = false
			default:
				pm.Dir = c
			}
		} else {
			ok = false
		}
	}
	if baseN != nil {
		if pm.Line == 0 {
			pm.Line = baseN.Line
		}
		if s, sok := p.str(prefix+"base", baseN); sok {
			switch {
			case s == "" || s == "." || s == "..":
				p.fail(baseN.Line, prefix+"base", "%q is not a file name", s)
				ok = false
			case strings.Contains(s, "/"):
				p.fail(baseN.Line, prefix+"base", "%q contains '/': base is a file name (put the directory in dir)", s)
				ok = false
			default:
				pm.Base = s
			}
		} else {
			ok = false
		}
	}
	if regexN != nil {
		if pm.Line == 0 {
			pm.Line = regexN.Line
		}
		if s, sok := p.str(prefix+"regex", regexN); sok {
			if s == "" {
				p.fail(regexN.Line, prefix+"regex", "empty regex (use .* to match every path)")
				ok = false
			} else if _, err := regexp.Compile(s); err != nil {
				p.fail(regexN.Line, prefix+"regex", "invalid regex: %v", err)
				ok = false
			} else {
				pm.Regex = s
			}
		} else {
			ok = false
		}
	}
	return pm, ok
}

// --- arbitrary ---

func (p *parser) groups() []Group {
	v := p.get("arbitrary")
	if v == nil {
		return nil
	}
	var out []Group
	for _, el := range p.elements("arbitrary", v, "groups", "how", "which", "items") {
		c, fp, m, ok := el.n, el.fp, el.m, true
		g := Group{How: GroupAND, Which: Pertinent, Line: c.Line}
		if hv := m["how"]; hv != nil {
			s, sok := p.enumOf(fp+".how", hv, "AND", "OR")
			ok = ok && sok
			g.How = GroupHow(s)
		}
		if wv := m["which"]; wv != nil {
			s, sok := p.enumOf(fp+".which", wv, "pertinent", "irrelevant")
			ok = ok && sok
			g.Which = Polarity(s)
		}
		iv := m["items"]
		if iv == nil || (iv.Kind == yaml.SequenceNode && len(iv.Content) == 0) {
			p.fail(c.Line, fp+".items", "missing or empty (a group needs at least one item)")
			continue
		}
		if iv.Kind != yaml.SequenceNode {
			p.fail(iv.Line, fp+".items", "expected a list of items, got %s", describe(iv))
			continue
		}
		for j, in := range iv.Content {
			it, iok := p.item(fmt.Sprintf("%s.items[%d]", fp, j), deref(in))
			ok = ok && iok
			g.Items = append(g.Items, it)
		}
		if ok {
			out = append(out, g)
		}
	}
	return out
}

func (p *parser) item(fp string, n *yaml.Node) (Item, bool) {
	it := Item{Match: MatchRegex, When: WhenEqual, Line: n.Line}
	if n.Kind != yaml.MappingNode {
		p.fail(n.Line, fp, "expected a mapping {what, which, pattern, ...}, got %s", describe(n))
		return it, false
	}
	m, ok := p.mapping(fp, n, "what", "which", "match", "pattern", "number", "numbers", "time",
		"cidr", "when")
	if !ok {
		return it, false
	}
	wv := m["what"]
	if wv == nil {
		p.fail(n.Line, fp+".what", "missing (want one of %s)", strings.Join(Whats(), ", "))
		return it, false
	}
	what, sok := p.str(fp+".what", wv)
	if !sok {
		return it, false
	}
	it.What = strings.ToLower(strings.TrimSpace(what))
	kind := KindOfWhat(it.What)
	if kind == WhatUnknown {
		p.fail(wv.Line, fp+".what", "unknown value %q%s (want one of %s)", what,
			suggest(it.What, Whats()), strings.Join(Whats(), ", "))
		return it, false
	}
	if v := m["which"]; v != nil {
		s, sok := p.enumOf(fp+".which", v, "pertinent", "irrelevant", "regex", "exact", "prefix",
			"suffix", "contains")
		if !sok {
			return it, false
		}
		switch s {
		case "pertinent", "irrelevant":
			it.Which = Polarity(s)
		default:
			if m["match"] != nil {
				p.fail(v.Line, fp+".which", "which gives the match mode %s and match is also set; give one of them", s)
				return it, false
			}
			it.Match = MatchMode(s)
		}
	}
	if v := m["match"]; v != nil {
		s, sok := p.enumOf(fp+".match", v, "regex", "exact", "prefix", "suffix", "contains")
		if !sok {
			return it, false
		}
		it.Match = MatchMode(s)
	}

	var given []string
	for _, k := range []string{"pattern", "number", "numbers", "time", "cidr"} {
		if m[k] != nil {
			given = append(given, k)
		}
	}
	if len(given) != 1 {
		msg := "missing: give one of pattern, number, numbers, time or cidr"
		if len(given) > 1 {
			msg = fmt.Sprintf("give only one of pattern, number, numbers, time or cidr (got %s)", strings.Join(given, " and "))
		}
		p.fail(n.Line, fp, "%s", msg)
		return it, false
	}
	it.Value = ValueKind(given[0])
	vn := m[given[0]]
	vp := fp + "." + given[0]
	wantKind := map[ValueKind]WhatKind{ValueNumber: WhatNumber, ValueNumbers: WhatNumber,
		ValueTime: WhatTime, ValueCIDR: WhatIP}
	switch it.Value {
	case ValuePattern:
		if kind != WhatString && kind != WhatNumber {
			p.fail(vn.Line, vp, "what %s takes %s, not a pattern", it.What, valueFor(kind))
			return it, false
		}
		s, sok := p.str(vp, vn)
		if !sok {
			return it, false
		}
		if s == "" {
			p.fail(vn.Line, vp, "empty pattern")
			return it, false
		}
		if it.Match == MatchRegex {
			if _, err := regexp.Compile(s); err != nil {
				p.fail(vn.Line, vp, "invalid regex: %v", err)
				return it, false
			}
		}
		it.Pattern = s
	case ValueNumber, ValueNumbers, ValueTime, ValueCIDR:
		if kind != wantKind[it.Value] {
			p.fail(vn.Line, vp, "what %s takes %s, not %s", it.What, valueFor(kind), it.Value)
			return it, false
		}
	}
	switch it.Value {
	case ValueNumber:
		num, nok := p.integer(vp, vn)
		if !nok {
			return it, false
		}
		it.Number = num
	case ValueNumbers:
		if vn.Kind != yaml.SequenceNode || len(vn.Content) == 0 {
			p.fail(vn.Line, vp, "expected a non-empty list of integers, got %s", describe(vn))
			return it, false
		}
		for k, c := range vn.Content {
			num, nok := p.integer(fmt.Sprintf("%s[%d]", vp, k), deref(c))
			if !nok {
				return it, false
			}
			it.Numbers = append(it.Numbers, num)
		}
	case ValueTime:
		s, sok := p.str(vp, vn)
		if !sok {
			return it, false
		}
		t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(s))
		if err != nil {
			p.fail(vn.Line, vp, "invalid time %q (want RFC 3339, e.g. 2024-01-01T00:00:00Z)", s)
			return it, false
		}
		it.Time = t
	case ValueCIDR:
		s, sok := p.str(vp, vn)
		if !sok {
			return it, false
		}
		pf, err := ParseCIDR(s)
		if err != nil {
			p.fail(vn.Line, vp, "%v", err)
			return it, false
		}
		it.CIDR = pf
	}
	if v := m["when"]; v != nil {
		s, sok := p.enumOf(fp+".when", v, "smaller", "bigger", "equal")
		if !sok {
			return it, false
		}
		it.When = When(s)
		if it.Value != ValueNumber && it.Value != ValueTime && !(it.Value == ValueNumbers && it.When == WhenEqual) {
			p.fail(v.Line, fp+".when", "only number and time can be compared (%s is %s)", it.Value, it.When)
			return it, false
		}
	}
	if it.Value != ValuePattern && m["match"] != nil {
		p.fail(m["match"].Line, fp+".match", "only a pattern has a match mode")
		return it, false
	}
	return it, true
}

func valueFor(k WhatKind) string {
	switch k {
	case WhatString:
		return "a pattern"
	case WhatNumber:
		return "a number, numbers or a pattern"
	case WhatTime:
		return "a time"
	case WhatIP:
		return "a cidr"
	}
	return "nothing"
}

// --- times and reactions ---

func (p *parser) times() []Times {
	v := p.get("times")
	if v == nil {
		return nil
	}
	var out []Times
	seen := map[TimesKind]int{}
	for _, el := range p.elements("times", v, "{kind, max}", "kind", "max") {
		c, fp, m := el.n, el.fp, el.m
		kn, mn := m["kind"], m["max"]
		if kn == nil {
			p.fail(c.Line, fp+".kind", "missing")
			continue
		}
		if mn == nil {
			p.fail(c.Line, fp+".max", "missing")
			continue
		}
		s, sok := p.enumOf(fp+".kind", kn, string(TimesPerProc), string(TimesPerExe),
			string(TimesPerParentProc), string(TimesPerParentExe), string(TimesPerCmd),
			string(TimesPerFullAncestry), string(TimesInTotal), string(timesPerHostAlias),
			string(timesPerHostnameAlias))
		if !sok {
			continue
		}
		kind := TimesKind(s)
		if kind == timesPerHostAlias || kind == timesPerHostnameAlias {
			kind = TimesInTotal
		}
		max, nok := p.integer(fp+".max", mn)
		if !nok {
			continue
		}
		if max < 1 || max > 1<<31-1 {
			p.fail(mn.Line, fp+".max", "%d out of range (want 1 to 2147483647)", max)
			continue
		}
		if prev, dup := seen[kind]; dup {
			p.fail(kn.Line, fp+".kind", "%s given twice (first at line %d)", kind, prev)
			continue
		}
		seen[kind] = kn.Line
		out = append(out, Times{Kind: kind, Max: int(max), Line: c.Line})
	}
	return out
}

func (p *parser) reactions() []Reaction {
	v := p.get("reactions")
	if v == nil {
		return nil
	}
	var out []Reaction
	for _, el := range p.elements("reactions", v, "{format, code}", "format", "code") {
		c, fp, m := el.n, el.fp, el.m
		fn, cn := m["format"], m["code"]
		if fn == nil {
			p.fail(c.Line, fp+".format", "missing (want js or shell)")
			continue
		}
		f, fok := p.enumOf(fp+".format", fn, "js", "shell")
		if !fok {
			continue
		}
		if cn == nil {
			p.fail(c.Line, fp+".code", "missing")
			continue
		}
		code, cok := p.str(fp+".code", cn)
		if !cok {
			continue
		}
		if strings.TrimSpace(code) == "" {
			p.fail(cn.Line, fp+".code", "empty")
			continue
		}
		if Format(f) == FormatJS && !p.ctx.jsProcess.MatchString(code) {
			p.fail(cn.Line, fp+".code", "a js reaction must define function process(data)")
			continue
		}
		out = append(out, Reaction{Format: Format(f), Code: code, Line: c.Line})
	}
	return out
}

// --- small helpers ---

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func containsAction(list []FileAction, a FileAction) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]field) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	// Report in file order.
	sort.Slice(keys, func(i, j int) bool {
		a, b := m[keys[i]].key, m[keys[j]].key
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return keys
}

// sortErrors orders a recipe's errors by line, keeping discovery order on ties.
func sortErrors(errs []error) []error {
	line := func(e error) int {
		var pe *Error
		if errors.As(e, &pe) {
			return pe.Line
		}
		return 0
	}
	sort.SliceStable(errs, func(i, j int) bool { return line(errs[i]) < line(errs[j]) })
	return errs
}
