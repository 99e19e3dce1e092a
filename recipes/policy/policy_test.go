package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDefaults(t *testing.T) {
	// capability -> granted by strict, granted by jibril
	want := map[string][2]bool{
		"log":              {true, true},
		"store":            {true, true},
		"tempdir":          {true, true},
		"process.kill":     {false, true},
		"process.freeze":   {false, true},
		"net.block.ip":     {false, true},
		"net.block.domain": {false, true},
		"fs.read":          {false, true},
		"fs.write":         {false, true},
		"evidence":         {false, true},
		"shell":            {false, true},
		"power":            {false, false},
	}
	if len(want) != len(KnownCapabilities()) {
		t.Fatalf("table covers %d capabilities, KnownCapabilities has %d", len(want), len(KnownCapabilities()))
	}
	for i, kind := range []string{"strict", "jibril"} {
		p, err := Default(kind, "crypto_miner_execution")
		if err != nil {
			t.Fatal(err)
		}
		if p.Recipe != "crypto_miner_execution" || p.Mode != ModeEnforce || p.Source != "default:"+kind || p.Limits != DefaultLimits() {
			t.Errorf("%s: header = %+v", kind, p)
		}
		var granted []string
		for _, c := range KnownCapabilities() {
			if got := p.Granted(c); got != want[c][i] {
				t.Errorf("%s: Granted(%q) = %v, want %v", kind, c, got, want[c][i])
			}
			if want[c][i] {
				granted = append(granted, c)
			}
		}
		if got := p.Capabilities(); !reflect.DeepEqual(got, granted) {
			t.Errorf("%s: Capabilities() = %v, want %v", kind, got, granted)
		}
		for _, c := range []string{"", "proc.kill", "Log", "process.kill.any", "fs"} {
			if p.Granted(c) {
				t.Errorf("%s: unknown capability %q granted", kind, c)
			}
		}
	}

	j, _ := Default("jibril", "r")
	if j.Kill != (KillScope{Current: true, Parent: true, Ancestry: true, Any: true}) {
		t.Errorf("jibril kill = %+v", j.Kill)
	}
	if j.NetBlockIP.MaxTTL != 0 || len(j.NetBlockIP.Never) != 0 || !j.NetBlockIP.TTLAllowed(0) {
		t.Errorf("jibril net.block.ip = %+v", j.NetBlockIP)
	}
	if !j.CanRead("/etc/shadow") || !j.CanWrite("/var/tmp/x") || j.CanRead("relative") {
		t.Error("jibril fs globs do not cover absolute paths only")
	}
	s, _ := Default("strict", "r")
	if s.CanRead("/etc/passwd") || s.CanWrite("/tmp/x") {
		t.Error("strict grants file access")
	}

	if _, err := Default("permissive", "r"); err == nil || err.Error() != `default policy "permissive": unknown kind (known: jibril, strict)` {
		t.Errorf("unknown kind error = %v", err)
	}
	if _, err := Default("strict", ""); err == nil {
		t.Error("empty recipe accepted")
	}

	var nilPolicy *Policy
	if nilPolicy.Granted("log") || nilPolicy.CanRead("/") {
		t.Error("nil policy grants something")
	}
}

func TestLimitsWithin(t *testing.T) {
	d := DefaultLimits()
	if got := d.Within(Limits{}); got != d {
		t.Errorf("zero ceiling changed limits: %+v", got)
	}
	tight := Limits{Timeout: time.Millisecond, MemoryBytes: 1 << 20, HelperCalls: 1, Rate: Rate{1, time.Hour}, Disarm: Disarm{1, time.Hour}}
	if got := d.Within(tight); got != tight {
		t.Errorf("Within(tight) = %+v, want %+v", got, tight)
	}
	// Unlimited rate and off breaker are the widest values.
	if got := (Limits{}).Within(d); got != d {
		t.Errorf("zero limits within defaults = %+v, want %+v", got, d)
	}
}

func TestRateAndDisarmString(t *testing.T) {
	for r, want := range map[Rate]string{
		{50, time.Second}: "50/s", {3, time.Minute}: "3/m", {7, time.Hour}: "7/h",
		{5, 90 * time.Second}: "5 per 1m30s", {}: "unlimited",
	} {
		if got := r.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", r, got, want)
		}
	}
	for d, want := range map[Disarm]string{{10, time.Minute}: "10 per 1m", {2, 2 * time.Hour}: "2 per 2h", {}: "off"} {
		if got := d.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[uint64]string{32 << 20: "32MiB", 1 << 30: "1GiB", 1536: "1536", 3 << 10: "3KiB", 7: "7"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestMatchGlob(t *testing.T) {
	tests := []struct {
		glob, path string
		want       bool
	}{
		// literals
		{"/", "/", true},
		{"/", "/etc", false},
		{"/etc/passwd", "/etc/passwd", true},
		{"/etc/passwd", "/etc/passwd.bak", false},
		{"/etc/passwd", "/etc", false},
		{"/a[1]", "/a[1]", true},
		{"/a[1]", "/a1", false},
		{`/a\*`, `/a\x`, true}, // no escapes: backslash is literal, * still a wildcard
		// ** at the end
		{"/**", "/", true},
		{"/**", "/etc", true},
		{"/**", "/a/b/c/d", true},
		{"/proc/**", "/proc", true},
		{"/proc/**", "/proc/1", true},
		{"/proc/**", "/proc/1/task/2/status", true},
		{"/proc/**", "/procfs", false},
		{"/proc/**", "/", false},
		{"/proc/**", "/sys/proc", false},
		// ** at the start
		{"/**/passwd", "/passwd", true},
		{"/**/passwd", "/etc/passwd", true},
		{"/**/passwd", "/a/b/c/passwd", true},
		{"/**/passwd", "/etc/passwd.bak", false},
		{"/**/passwd", "/etc/passwd/x", false},
		// ** in the middle
		{"/home/**/.ssh/*", "/home/.ssh/id", true},
		{"/home/**/.ssh/*", "/home/u/.ssh/id_rsa", true},
		{"/home/**/.ssh/*", "/home/u/x/y/.ssh/k", true},
		{"/home/**/.ssh/*", "/home/u/.ssh", false},
		{"/home/**/.ssh/*", "/home/u/.ssh/a/b", false},
		{"/a/**/b/**/c", "/a/b/c", true},
		{"/a/**/b/**/c", "/a/x/b/y/z/c", true},
		{"/a/**/b/**/c", "/a/b/b/c", true},
		{"/a/**/b/**/c", "/a/c/b", false},
		{"/a/**/**/b", "/a/b", true},
		{"/a/**/**/b", "/a/x/y/b", true},
		// * and ? never cross a slash
		{"/tmp/*", "/tmp/a", true},
		{"/tmp/*", "/tmp/a/b", false},
		{"/tmp/*", "/tmp", false},
		{"/*", "/", false},
		{"/*", "/x", true},
		{"/tmp/*.log", "/tmp/a.log", true},
		{"/tmp/*.log", "/tmp/.log", true},
		{"/tmp/*.log", "/tmp/a/b.log", false},
		{"/tmp/*.log", "/tmp/a.log.gz", false},
		{"/t*p/x", "/tmp/x", true},
		{"/t*/x", "/tmp/y/x", false},
		{"/etc/pass?d", "/etc/passwd", true},
		{"/etc/pass?d", "/etc/passd", false},
		{"/etc/pass?d", "/etc/pass/d", false},
		{"/a/?", "/a/é", true}, // one character, two bytes
		{"/a/?", "/a/ab", false},
		{"/a/??", "/a/é", false},
		{"/a*b*c", "/abc", true},
		{"/a*b*c", "/aXbYcZc", true},
		{"/a*b*c", "/aXbYcZ", false},
		{"/*é*", "/xéy", true},
		// unclean or relative paths never match
		{"/**", "", false},
		{"/**", "etc/passwd", false},
		{"/**", "/etc/../etc/passwd", false},
		{"/etc/**", "/etc/../root/x", false},
		{"/**", "/etc//passwd", false},
		{"/**", "/etc/", false},
		{"/**", "/./etc", false},
		// invalid globs never match
		{"", "/", false},
		{"etc/*", "/etc/x", false},
		{"**", "/etc", false},
		{"/a/../b", "/b", false},
		{"/a/**b", "/a/xb", false},
		{"/a/", "/a", false},
	}
	for _, tt := range tests {
		if got := MatchGlob(tt.glob, tt.path); got != tt.want {
			t.Errorf("MatchGlob(%q, %q) = %v, want %v", tt.glob, tt.path, got, tt.want)
		}
	}
}

func TestMatchGlobHostile(t *testing.T) {
	// Exponential backtracking would make these take years; the matcher is
	// polynomial, so they return (false) at once.
	deep := "/" + strings.Repeat("a/", 200) + "b"
	if MatchGlob("/"+strings.Repeat("**/", 50)+"c", deep) {
		t.Error("many ** matched a path without c")
	}
	if MatchGlob("/"+strings.Repeat("*a", 50)+"b", "/"+strings.Repeat("a", 5000)) {
		t.Error("many * matched a segment without b")
	}
}
