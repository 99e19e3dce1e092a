package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.yaml.in/yaml/v3"
)

// maxFileSize bounds what Load reads; real policies are a few hundred bytes.
const maxFileSize = 1 << 20

// FileSuffix ends the name of every policy file: <recipe name>.policy.yaml.
const FileSuffix = ".policy.yaml"

// Error is a validation error: one line naming file, line and field.
type Error struct {
	File  string
	Line  int    // 0 when unknown
	Field string // dotted path such as "capabilities.fs.read[2]"; may be empty
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File == "" {
		b.WriteString("<policy>")
	}
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return printable(b.String())
}

// printable escapes every non-printable rune of s, so that an error stays
// one line and hostile keys cannot inject terminal escapes into logs.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRuneToASCII(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}

// Load reads and validates the policy file at path. See Parse.
func Load(path string, ceiling Limits) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open policy %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat policy %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, &Error{File: path, Msg: "not a regular file"}
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, &Error{File: path, Msg: fmt.Sprintf("file larger than %s", formatSize(maxFileSize))}
	}
	return Parse(path, data, ceiling)
}

// Parse validates a policy file's content; file names it in errors and
// becomes Policy.Source. Limits the file leaves out take DefaultLimits
// (narrowed to ceiling); limits it sets must not exceed ceiling, whose zero
// fields impose nothing. Capabilities it leaves out are not granted (log
// always is). Every error is an *Error.
func Parse(file string, data []byte, ceiling Limits) (*Policy, error) {
	return (&parser{file: file}).parse(data, ceiling)
}

type parser struct{ file string }

func (p *parser) errf(n *yaml.Node, field, format string, args ...any) *Error {
	e := &Error{File: p.file, Field: field, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line = n.Line
	}
	return e
}

// yamlErr turns a yaml.v3 error ("yaml: line N: problem") into an *Error.
func (p *parser) yamlErr(err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		num, problem, _ := strings.Cut(rest, ": ")
		if line, err := strconv.Atoi(num); err == nil && problem != "" {
			if isYAMLParserProblem(problem) {
				line++
			}
			return &Error{File: p.file, Line: line, Msg: "invalid YAML: " + problem}
		}
	}
	return &Error{File: p.file, Msg: "invalid YAML: " + msg}
}

// isYAMLParserProblem reports whether msg is one of yaml.v3's parser (as
// opposed to scanner) errors, whose line it reports 0-based.
func isYAMLParserProblem(msg string) bool {
	for _, pre := range []string{"did not find expected", "found duplicate %", "found incompatible YAML document", "found undefined tag handle"} {
		if strings.HasPrefix(msg, pre) {
			return true
		}
	}
	return false
}

func (p *parser) parse(data []byte, ceiling Limits) (*Policy, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: p.file, Msg: "empty file, want a mapping with recipe, mode, limits and capabilities"}
		}
		return nil, p.yamlErr(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, p.errf(&extra, "", "more than one YAML document")
	case !errors.Is(err, io.EOF):
		return nil, p.yamlErr(err)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if err := p.checkTree(root, ""); err != nil {
		return nil, err
	}
	if root.Kind != yaml.MappingNode {
		return nil, p.errf(root, "", "not a mapping, want recipe, mode, limits and capabilities")
	}

	pol := &Policy{Mode: ModeEnforce, Source: p.file, Limits: DefaultLimits().Within(ceiling)}
	var recipeNode *yaml.Node
	for i := 0; i < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		var err error
		switch k.Value {
		case "recipe":
			recipeNode = v
			if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
				err = p.errf(v, "recipe", "empty recipe name")
				break
			}
			pol.Recipe, err = p.str(v, "recipe")
			if err == nil && strings.TrimSpace(pol.Recipe) == "" {
				err = p.errf(v, "recipe", "empty recipe name")
			}
		case "mode":
			err = p.mode(v, pol)
			pol.ModeSet = err == nil
		case "limits":
			err = p.limits(v, ceiling, &pol.Limits)
		case "capabilities":
			err = p.capabilities(v, pol)
		default:
			err = p.errf(k, k.Value, "unknown field (known: capabilities, limits, mode, recipe)")
		}
		if err != nil {
			return nil, err
		}
	}
	if recipeNode == nil {
		return nil, p.errf(root, "recipe", "missing (name the recipe this policy applies to)")
	}
	// A policy saying it is for another recipe than its file name is a
	// copy-paste accident that would grant the wrong recipe; refuse it.
	if base := filepath.Base(p.file); strings.HasSuffix(base, FileSuffix) {
		if want := strings.TrimSuffix(base, FileSuffix); want != pol.Recipe {
			return nil, p.errf(recipeNode, "recipe", "%q does not match the file name (want %q)", pol.Recipe, want)
		}
	}
	return pol, nil
}

// checkTree rejects, anywhere in the document, aliases (a policy has no use
// for them and they hide what is granted) and duplicate mapping keys (which
// one wins would be a parser detail).
func (p *parser) checkTree(n *yaml.Node, field string) error {
	switch n.Kind {
	case yaml.AliasNode:
		return p.errf(n, field, "YAML aliases are not allowed in a policy")
	case yaml.MappingNode:
		seen := map[string]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			name := join(field, k.Value)
			if k.Kind != yaml.ScalarNode {
				return p.errf(k, field, "mapping keys must be plain names")
			}
			if line, dup := seen[k.Value]; dup {
				return p.errf(k, name, "duplicate key (first at line %d)", line)
			}
			seen[k.Value] = k.Line
			if err := p.checkTree(n.Content[i+1], name); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := p.checkTree(c, fmt.Sprintf("%s[%d]", field, i)); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func (p *parser) str(n *yaml.Node, field string) (string, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		return "", p.errf(n, field, "want a string")
	}
	return n.Value, nil
}

func (p *parser) boolean(n *yaml.Node, field string) (bool, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		return false, p.errf(n, field, "want true or false")
	}
	var b bool
	if err := n.Decode(&b); err != nil {
		return false, p.errf(n, field, "want true or false")
	}
	return b, nil
}

func (p *parser) positiveInt(n *yaml.Node, field string) (int, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
		return 0, p.errf(n, field, "want a whole number")
	}
	var v int
	if err := n.Decode(&v); err != nil {
		return 0, p.errf(n, field, "want a whole number")
	}
	if v <= 0 {
		return 0, p.errf(n, field, "must be positive, got %d", v)
	}
	return v, nil
}

func (p *parser) positiveDuration(n *yaml.Node, field string) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return 0, p.errf(n, field, "want a duration such as 200ms or 1m")
	}
	s := n.Value
	d, err := parseDuration(s)
	if err != nil {
		return 0, p.errf(n, field, "%v", err)
	}
	if d <= 0 {
		return 0, p.errf(n, field, "must be positive, got %s", s)
	}
	return d, nil
}

func (p *parser) mode(n *yaml.Node, pol *Policy) error {
	s, err := p.str(n, "mode")
	if err == nil {
		switch m := Mode(s); m {
		case ModeEnforce, ModeDryRun, ModeOff:
			pol.Mode = m
			return nil
		}
	}
	return p.errf(n, "mode", "bad mode %q (want enforce, dry-run or off)", n.Value)
}

// mapping returns n's key/value pairs; a null value counts as empty.
func (p *parser) mapping(n *yaml.Node, field string) ([]*yaml.Node, error) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil, nil
	}
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(n, field, "want a mapping")
	}
	return n.Content, nil
}

func (p *parser) limits(n *yaml.Node, ceiling Limits, out *Limits) error {
	kv, err := p.mapping(n, "limits")
	if err != nil {
		return err
	}
	for i := 0; i < len(kv); i += 2 {
		k, v := kv[i], kv[i+1]
		field := "limits." + k.Value
		switch k.Value {
		case "timeout":
			d, err := p.positiveDuration(v, field)
			if err != nil {
				return err
			}
			if ceiling.Timeout > 0 && d > ceiling.Timeout {
				return p.errf(v, field, "%s exceeds the daemon's ceiling %s", v.Value, formatDuration(ceiling.Timeout))
			}
			out.Timeout = d
		case "memory":
			size, err := p.size(v, field)
			if err != nil {
				return err
			}
			if ceiling.MemoryBytes > 0 && size > ceiling.MemoryBytes {
				return p.errf(v, field, "%s exceeds the daemon's ceiling %s", v.Value, formatSize(ceiling.MemoryBytes))
			}
			out.MemoryBytes = size
		case "helper_calls":
			c, err := p.positiveInt(v, field)
			if err != nil {
				return err
			}
			if ceiling.HelperCalls > 0 && c > ceiling.HelperCalls {
				return p.errf(v, field, "%d exceeds the daemon's ceiling %d", c, ceiling.HelperCalls)
			}
			out.HelperCalls = c
		case "rate":
			if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
				return p.errf(v, field, "want a rate such as 50/s, 100/m or 10/h")
			}
			s := v.Value
			r, err := parseRate(s)
			if err != nil {
				return p.errf(v, field, "%v", err)
			}
			if rateWider(r, ceiling.Rate) {
				return p.errf(v, field, "%s exceeds the daemon's ceiling %s", s, ceiling.Rate)
			}
			out.Rate = r
		case "disarm":
			d, err := p.disarm(v, field)
			if err != nil {
				return err
			}
			if disarmWider(d, ceiling.Disarm) {
				return p.errf(v, field, "%s exceeds the daemon's ceiling %s", d, ceiling.Disarm)
			}
			out.Disarm = d
		default:
			return p.errf(k, field, "unknown limit (known: disarm, helper_calls, memory, rate, timeout)")
		}
	}
	return nil
}

func (p *parser) size(n *yaml.Node, field string) (uint64, error) {
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!str" && n.ShortTag() != "!!int") {
		return 0, p.errf(n, field, "want a size such as 32MiB")
	}
	v, err := parseSize(n.Value)
	if err != nil {
		return 0, p.errf(n, field, "%v", err)
	}
	if v == 0 {
		return 0, p.errf(n, field, "must be positive, got %s", n.Value)
	}
	return v, nil
}

func (p *parser) disarm(n *yaml.Node, field string) (Disarm, error) {
	if n.Kind != yaml.MappingNode {
		return Disarm{}, p.errf(n, field, "want a mapping {max_targets: N, per: DURATION}")
	}
	var d Disarm
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		var err error
		switch k.Value {
		case "max_targets":
			d.MaxTargets, err = p.positiveInt(v, field+".max_targets")
		case "per":
			d.Per, err = p.positiveDuration(v, field+".per")
		default:
			err = p.errf(k, field+"."+k.Value, "unknown field (known: max_targets, per)")
		}
		if err != nil {
			return Disarm{}, err
		}
	}
	switch {
	case d.MaxTargets == 0:
		return Disarm{}, p.errf(n, field+".max_targets", "missing")
	case d.Per == 0:
		return Disarm{}, p.errf(n, field+".per", "missing")
	}
	return d, nil
}

func (p *parser) capabilities(n *yaml.Node, pol *Policy) error {
	kv, err := p.mapping(n, "capabilities")
	if err != nil {
		return err
	}
	for i := 0; i < len(kv); i += 2 {
		k, v := kv[i], kv[i+1]
		field := "capabilities." + k.Value
		var err error
		switch k.Value {
		case CapLog:
			var b bool
			if b, err = p.boolean(v, field); err == nil && !b {
				err = p.errf(v, field, "log is always granted and cannot be turned off (remove the line)")
			}
		case CapProcessKill:
			pol.Kill, err = p.killScope(v, field)
		case CapProcessFreeze:
			pol.Freeze, err = p.boolean(v, field)
		case CapNetBlockIP:
			pol.NetBlockIP, err = p.netIP(v, field)
		case CapNetBlockDomain:
			pol.NetBlockDomain, err = p.boolean(v, field)
		case CapFSRead:
			pol.FSRead, err = p.globs(v, field, false)
		case CapFSWrite:
			pol.FSWrite, err = p.globs(v, field, true)
		case CapTempdir:
			pol.Tempdir, err = p.boolean(v, field)
		case CapStore:
			pol.Store, err = p.boolean(v, field)
		case CapEvidence:
			pol.Evidence, err = p.boolean(v, field)
		case CapShell:
			pol.Shell, err = p.boolean(v, field)
		case CapPower:
			pol.Power, err = p.boolean(v, field)
		default:
			err = p.errf(k, field, "unknown capability (known: %s)", strings.Join(KnownCapabilities(), ", "))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *parser) killScope(n *yaml.Node, field string) (KillScope, error) {
	const want = "want true, false or a list of current, parent, ancestry, any"
	if n.Kind == yaml.ScalarNode {
		if n.ShortTag() != "!!bool" {
			return KillScope{}, p.errf(n, field, "%s", want)
		}
		b, err := p.boolean(n, field)
		if err != nil || !b {
			return KillScope{}, err
		}
		return KillScope{Current: true, Parent: true, Ancestry: true}, nil
	}
	if n.Kind != yaml.SequenceNode {
		return KillScope{}, p.errf(n, field, "%s", want)
	}
	var k KillScope
	seen := map[string]bool{}
	for i, c := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, err := p.str(c, f)
		if err != nil {
			return KillScope{}, p.errf(c, f, "%s", want)
		}
		if seen[s] {
			return KillScope{}, p.errf(c, f, "duplicate scope %q", s)
		}
		seen[s] = true
		switch s {
		case "current":
			k.Current = true
		case "parent":
			k.Parent = true
		case "ancestry":
			k.Ancestry = true
		case "any":
			k = KillScope{Current: true, Parent: true, Ancestry: true, Any: true}
		default:
			return KillScope{}, p.errf(c, f, "unknown kill scope %q (known: current, parent, ancestry, any)", s)
		}
	}
	return k, nil
}

func (p *parser) netIP(n *yaml.Node, field string) (NetIP, error) {
	if n.Kind == yaml.ScalarNode {
		if n.ShortTag() != "!!bool" {
			return NetIP{}, p.errf(n, field, "want true, false or {allow, max_ttl, never}")
		}
		b, err := p.boolean(n, field)
		return NetIP{Allow: b}, err
	}
	if n.Kind != yaml.MappingNode {
		return NetIP{}, p.errf(n, field, "want true, false or {allow, max_ttl, never}")
	}
	var out NetIP
	haveAllow := false
	for i := 0; i < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		f := field + "." + k.Value
		var err error
		switch k.Value {
		case "allow":
			haveAllow = true
			out.Allow, err = p.boolean(v, f)
		case "max_ttl":
			out.MaxTTL, err = p.positiveDuration(v, f)
		case "never":
			out.Never, err = p.prefixes(v, f)
		default:
			err = p.errf(k, f, "unknown field (known: allow, max_ttl, never)")
		}
		if err != nil {
			return NetIP{}, err
		}
	}
	if !haveAllow {
		return NetIP{}, p.errf(n, field+".allow", "missing (say allow: true or allow: false)")
	}
	return out, nil
}

func (p *parser) prefixes(n *yaml.Node, field string) ([]netip.Prefix, error) {
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, field, "want a list of CIDRs")
	}
	out := make([]netip.Prefix, 0, len(n.Content))
	for i, c := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, err := p.str(c, f)
		if err != nil {
			return nil, p.errf(c, f, "want a CIDR such as 10.0.0.0/8")
		}
		pfx, err := netip.ParsePrefix(s)
		if err != nil {
			// A bare address stands for itself.
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, p.errf(c, f, "bad CIDR %q", s)
			}
			pfx = netip.PrefixFrom(a, a.BitLen())
		}
		// Masking can only widen a "never" entry, which is the safe direction.
		out = append(out, unmapPrefix(pfx))
	}
	return out, nil
}

func (p *parser) globs(n *yaml.Node, field string, write bool) ([]string, error) {
	const want = `want a list of absolute globs, e.g. ["/proc/**"]`
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		var b bool
		if err := n.Decode(&b); err == nil && !b {
			return nil, nil
		}
		return nil, p.errf(n, field, `%s (true is ambiguous: write ["/**"] to grant everything)`, want)
	}
	if n.Kind != yaml.SequenceNode {
		return nil, p.errf(n, field, "%s", want)
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		f := fmt.Sprintf("%s[%d]", field, i)
		s, err := p.str(c, f)
		if err != nil {
			return nil, p.errf(c, f, "%s", want)
		}
		if err := validateGlob(s); err != nil {
			return nil, p.errf(c, f, "glob %q: %v", s, err)
		}
		// The safety floor never lets a reaction write there; say so now.
		if write {
			if segs := splitPath(s); len(segs) > 0 && slices.Contains([]string{"proc", "sys", "dev"}, segs[0]) {
				return nil, p.errf(c, f, "glob %q: /%s is never writable", s, segs[0])
			}
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}
