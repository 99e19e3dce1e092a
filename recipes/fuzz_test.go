package recipes

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary recipe files to Parse. Seeds: the built-in library
// (testdata/fuzz/FuzzParse) and hostile YAML.
//
// Properties: no panic; every error is an *Error naming the file and a line, printed on one
// line; accepted recipes are complete (kind in snake_case, a valid and unique name, a known
// mechanism) and round-trip: each one, written back as YAML with every field spelled out,
// parses alone to the same recipe. The round trip catches normalisations that are not
// idempotent, values the parser accepts but could not read back, and defaults that depend on
// how a field was written.
func FuzzParse(f *testing.F) {
	f.Add([]byte(base))
	f.Add([]byte(netBase + "  remote_domains: [a.com]\n  flow_actions: created|ended\n"))
	f.Add([]byte(execBase + "  prevent: kill\n  arbitrary:\n    - items: [{what: uid, number: 0}]\n"))
	f.Add([]byte("- &a\n  kind: *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rs, errs := Parse("f.yaml", data)
		for _, e := range errs {
			var pe *Error
			if !errors.As(e, &pe) || pe.File != "f.yaml" || pe.Line < 1 {
				t.Fatalf("error %#v does not name the file and a line", e)
			}
			if s := e.Error(); strings.ContainsAny(s, "\r\n") || !strings.HasPrefix(s, "f.yaml:") {
				t.Fatalf("bad error %q", s)
			}
		}
		names := map[string]bool{}
		for _, r := range rs {
			if r.Kind == "" || SnakeCase(r.Kind) != r.Kind || !validName(r.Name) || names[r.Name] ||
				!r.Mechanism.MatchesFiles() && !r.Mechanism.MatchesExecutions() && !r.Mechanism.MatchesNetwork() {
				t.Fatalf("accepted an incomplete recipe: %+v", r)
			}
			names[r.Name] = true
			out := renderRecipe(r)
			back, errs := Parse("back.yaml", []byte(out))
			if len(errs) > 0 || len(back) != 1 {
				t.Fatalf("recipe %s written back is refused: %v\n%s", r.Name, errs, out)
			}
			if a, b := sansPosition(r), sansPosition(back[0]); !reflect.DeepEqual(a, b) {
				t.Fatalf("recipe %s round trip differs:\n%+v\n%+v\n%s", r.Name, a, b, out)
			}
		}
	})
}

// sansPosition copies r without what depends on where it was written (file, lines, index) and
// with times in UTC (the same instant may come back in another location).
func sansPosition(r *Recipe) Recipe {
	c := *r
	c.File, c.Line, c.Index, c.nameLine = "", 0, 0, 0
	c.Paths = append([]PathMatch(nil), r.Paths...)
	for i := range c.Paths {
		c.Paths[i].Line = 0
	}
	c.Arbitrary = append([]Group(nil), r.Arbitrary...)
	for i := range c.Arbitrary {
		g := &c.Arbitrary[i]
		g.Line = 0
		g.Items = append([]Item(nil), g.Items...)
		for j := range g.Items {
			g.Items[j].Line = 0
			g.Items[j].Time = g.Items[j].Time.UTC()
		}
	}
	c.Times = append([]Times(nil), r.Times...)
	for i := range c.Times {
		c.Times[i].Line = 0
	}
	c.Reactions = append([]Reaction(nil), r.Reactions...)
	for i := range c.Reactions {
		c.Reactions[i].Line = 0
	}
	return c
}

// renderRecipe writes r as a one-recipe file with every field explicit. Path entries are all
// written under bases; lists the parser keeps as empty (not nil) are written as [].
func renderRecipe(r *Recipe) string {
	var b strings.Builder
	field := func(k, v string) { fmt.Fprintf(&b, "  %s: %s\n", k, v) }
	b.WriteString("- kind: " + yq(r.Kind) + "\n")
	field("name", yq(r.Name))
	field("enabled", strconv.FormatBool(r.Enabled))
	for _, s := range []struct{ k, v string }{{"version", r.Version}, {"description", r.Description},
		{"documentation", r.Documentation}, {"tactic", r.Tactic}, {"technique", r.Technique},
		{"subtechnique", r.Subtechnique}} {
		field(s.k, yq(s.v))
	}
	if r.Breed != "" {
		field("breed", string(r.Breed))
	}
	field("mechanism", string(r.Mechanism))
	field("importance", string(r.Importance))
	field("file_actions_how", string(r.FileActionsHow))
	field("flow_actions_how", string(r.FlowActionsHow))
	field("remote_domains_type", string(r.RemoteDomainsType))
	if !r.Mechanism.MatchesNetwork() {
		field("file_actions", list(r.FileActions))
		if r.FileActionsExcl != nil {
			field("file_actions_excl", list(r.FileActionsExcl))
		}
	}
	if len(r.Paths) > 0 {
		b.WriteString("  bases:\n")
		for _, p := range r.Paths {
			var kv []string
			for _, s := range []struct{ k, v string }{{"dir", p.Dir}, {"base", p.Base}, {"regex", p.Regex}} {
				if s.v != "" {
					kv = append(kv, s.k+": "+yq(s.v))
				}
			}
			fmt.Fprintf(&b, "    - {%s}\n", strings.Join(kv, ", "))
		}
	}
	if r.Protocol != "" {
		field("protocol", string(r.Protocol))
	}
	for _, c := range []struct {
		k string
		v any
	}{{"local_cidrs", r.LocalCIDRs}, {"remote_cidrs", r.RemoteCIDRs}, {"remote_domains", r.RemoteDomains},
		{"flow_actions", r.FlowActions}, {"flow_actions_excl", r.FlowActionsExcl}} {
		if !reflect.ValueOf(c.v).IsNil() {
			field(c.k, list(c.v))
		}
	}
	if r.LocalPort != 0 {
		field("local_port", strconv.Itoa(int(r.LocalPort)))
	}
	if r.RemotePort != 0 {
		field("remote_port", strconv.Itoa(int(r.RemotePort)))
	}
	if len(r.Arbitrary) > 0 {
		b.WriteString("  arbitrary:\n")
		for _, g := range r.Arbitrary {
			fmt.Fprintf(&b, "    - how: %s\n      which: %s\n      items:\n", g.How, g.Which)
			for _, it := range g.Items {
				kv := []string{"what: " + yq(it.What)}
				if it.Which != "" {
					kv = append(kv, "which: "+string(it.Which))
				}
				switch it.Value {
				case ValuePattern:
					kv = append(kv, "match: "+string(it.Match), "pattern: "+yq(it.Pattern))
				case ValueNumber:
					kv = append(kv, "number: "+strconv.FormatInt(it.Number, 10))
				case ValueNumbers:
					kv = append(kv, "numbers: "+list(it.Numbers))
				case ValueTime:
					kv = append(kv, "time: "+yq(it.Time.Format(time.RFC3339Nano)))
				case ValueCIDR:
					kv = append(kv, "cidr: "+yq(it.CIDR.String()))
				}
				if it.When != WhenEqual {
					kv = append(kv, "when: "+string(it.When))
				}
				fmt.Fprintf(&b, "        - {%s}\n", strings.Join(kv, ", "))
			}
		}
	}
	if len(r.Times) > 0 {
		b.WriteString("  times:\n")
		for _, tm := range r.Times {
			fmt.Fprintf(&b, "    - {kind: %s, max: %d}\n", tm.Kind, tm.Max)
		}
	}
	if len(r.Reactions) > 0 {
		b.WriteString("  reactions:\n")
		for _, re := range r.Reactions {
			fmt.Fprintf(&b, "    - {format: %s, code: %s}\n", re.Format, yq(re.Code))
		}
	}
	if r.Prevent != "" {
		field("prevent", string(r.Prevent))
	}
	if r.Mode != "" {
		field("mode", string(r.Mode))
	}
	return b.String()
}

// list writes a slice as a YAML flow sequence of quoted strings (numbers stay numbers).
func list(v any) string {
	rv := reflect.ValueOf(v)
	items := make([]string, rv.Len())
	for i := range items {
		switch e := rv.Index(i).Interface().(type) {
		case int64:
			items[i] = strconv.FormatInt(e, 10)
		case fmt.Stringer:
			items[i] = yq(e.String())
		default:
			items[i] = yq(fmt.Sprint(e))
		}
	}
	return "[" + strings.Join(items, ", ") + "]"
}

// yq writes s as a double-quoted YAML scalar of printable ASCII.
func yq(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			fmt.Fprintf(&b, `\U%08X`, r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
