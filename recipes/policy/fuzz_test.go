package policy

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode"
)

// FuzzParse feeds arbitrary policy files to Parse, under no ceiling and under a tight one.
// Seeds: every built-in policy (testdata/fuzz/FuzzParse) and hostile YAML.
//
// Properties: no panic; every error is an *Error naming the file, printed on one line of
// printable characters; an accepted policy stays within the ceiling, is accepted without the
// ceiling too (with the same grants, and limits that narrow to the same ones), is accepted
// again when the file is named after its recipe, and round-trips: written back as YAML it
// parses to the same policy.
func FuzzParse(f *testing.F) {
	f.Add([]byte("recipe: x\nmode: dry-run\ncapabilities:\n  process.kill: [current]\n  fs.read: [\"/proc/**\"]\n"))
	tight := Limits{Timeout: time.Second, MemoryBytes: 64 << 20, HelperCalls: 1000,
		Rate: Rate{N: 600, Per: time.Minute}, Disarm: Disarm{MaxTargets: 20, Per: time.Minute}}
	const file = "fuzz.yaml"
	f.Fuzz(func(t *testing.T, data []byte) {
		free, ferr := Parse(file, data, Limits{})
		checkErr(t, file, ferr)
		pol, err := Parse(file, data, tight)
		checkErr(t, file, err)
		if err != nil {
			return
		}
		if ferr != nil {
			t.Fatalf("accepted under a ceiling, refused without: %v", ferr)
		}
		l := pol.Limits
		if l.Timeout <= 0 || l.Timeout > tight.Timeout || l.MemoryBytes == 0 || l.MemoryBytes > tight.MemoryBytes ||
			l.HelperCalls <= 0 || l.HelperCalls > tight.HelperCalls || rateWider(l.Rate, tight.Rate) ||
			disarmWider(l.Disarm, tight.Disarm) {
			t.Fatalf("limits %+v beyond the ceiling %+v", l, tight)
		}
		if want := free.Limits.Within(tight); want != l {
			t.Fatalf("limits %+v under the ceiling, %+v without (narrowed: %+v)", l, free.Limits, want)
		}
		free.Limits = l
		if !reflect.DeepEqual(free, pol) {
			t.Fatalf("grants depend on the ceiling:\n%+v\n%+v", free, pol)
		}
		if pol.Source != file || pol.Mode == "" || pol.Recipe == "" {
			t.Fatalf("incomplete policy %+v", pol)
		}
		if !strings.ContainsAny(pol.Recipe, `/\`) {
			named := pol.Recipe + FileSuffix
			got, err := Parse(named, data, tight)
			if err != nil {
				t.Fatalf("refused when named after its recipe %q: %v", pol.Recipe, err)
			}
			got.Source = file
			if !reflect.DeepEqual(got, pol) {
				t.Fatalf("named after its recipe, parses differently:\n%+v\n%+v", got, pol)
			}
		}
		out := render(pol)
		back, err := Parse(file, []byte(out), tight)
		if err != nil {
			t.Fatalf("written back, refused: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, pol) {
			t.Fatalf("round trip differs:\n%+v\n%+v\n%s", pol, back, out)
		}
	})
}

func checkErr(t *testing.T, file string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var pe *Error
	if !errors.As(err, &pe) || pe.File != file || pe.Line < 0 {
		t.Fatalf("error %#v is not an *Error naming %s", err, file)
	}
	msg := err.Error()
	if !strings.HasPrefix(msg, file+":") {
		t.Fatalf("error %q does not start with the file", msg)
	}
	for _, r := range msg {
		if !unicode.IsPrint(r) {
			t.Fatalf("error %q holds the non-printable %U", msg, r)
		}
	}
}

// render writes p as a policy file, every limit and capability spelled out.
func render(p *Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "recipe: %s\n", yamlQuote(p.Recipe))
	if p.ModeSet {
		fmt.Fprintf(&b, "mode: %s\n", p.Mode)
	}
	l := p.Limits
	fmt.Fprintf(&b, "limits:\n  timeout: %s\n  memory: %s\n  helper_calls: %d\n",
		formatDuration(l.Timeout), formatSize(l.MemoryBytes), l.HelperCalls)
	if !l.Rate.Unlimited() {
		fmt.Fprintf(&b, "  rate: %s\n", l.Rate)
	}
	if !l.Disarm.Off() {
		fmt.Fprintf(&b, "  disarm: {max_targets: %d, per: %s}\n", l.Disarm.MaxTargets, formatDuration(l.Disarm.Per))
	}
	b.WriteString("capabilities:\n")
	var kill []string
	for _, s := range []struct {
		on   bool
		name string
	}{{p.Kill.Current, "current"}, {p.Kill.Parent, "parent"}, {p.Kill.Ancestry, "ancestry"}, {p.Kill.Any, "any"}} {
		if s.on {
			kill = append(kill, s.name)
		}
	}
	fmt.Fprintf(&b, "  process.kill: [%s]\n", strings.Join(kill, ", "))
	fmt.Fprintf(&b, "  net.block.ip: {allow: %t", p.NetBlockIP.Allow)
	if p.NetBlockIP.MaxTTL > 0 {
		fmt.Fprintf(&b, ", max_ttl: %s", formatDuration(p.NetBlockIP.MaxTTL))
	}
	if p.NetBlockIP.Never != nil {
		var never []string
		for _, n := range p.NetBlockIP.Never {
			never = append(never, yamlQuote(n.String()))
		}
		fmt.Fprintf(&b, ", never: [%s]", strings.Join(never, ", "))
	}
	b.WriteString("}\n")
	for _, g := range []struct {
		name  string
		globs []string
	}{{CapFSRead, p.FSRead}, {CapFSWrite, p.FSWrite}} {
		if g.globs == nil {
			continue
		}
		var q []string
		for _, s := range g.globs {
			q = append(q, yamlQuote(s))
		}
		fmt.Fprintf(&b, "  %s: [%s]\n", g.name, strings.Join(q, ", "))
	}
	for _, c := range []struct {
		name string
		on   bool
	}{{CapProcessFreeze, p.Freeze}, {CapNetBlockDomain, p.NetBlockDomain}, {CapTempdir, p.Tempdir},
		{CapStore, p.Store}, {CapEvidence, p.Evidence}, {CapShell, p.Shell}, {CapPower, p.Power}} {
		fmt.Fprintf(&b, "  %s: %t\n", c.name, c.on)
	}
	return b.String()
}

// yamlQuote writes s as a double-quoted YAML scalar of printable ASCII.
func yamlQuote(s string) string {
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
