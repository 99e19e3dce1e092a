package policy

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

const testFile = "policies/x.policy.yaml"

func TestParseErrors(t *testing.T) {
	tight := Limits{Timeout: time.Second, MemoryBytes: 32 << 20, HelperCalls: 256,
		Rate: Rate{N: 50, Per: time.Second}, Disarm: Disarm{MaxTargets: 10, Per: time.Minute}}
	const f = testFile
	tests := []struct {
		name string
		in   string
		want string
	}{
		// document level
		{"unparsable", "recipe: x\nmode: [enforce\n", f + ":2: invalid YAML: did not find expected ',' or ']'"},
		{"unclosed flow mapping", "recipe: x\n\nlimits: {timeout: 1s\n", f + ":3: invalid YAML: did not find expected ',' or '}'"},
		{"sequence in mapping", "recipe: x\nmode: off\n- shell\n", f + ":3: invalid YAML: did not find expected key"},
		{"unterminated string", "recipe: x\nmode: \"off\n", f + ":2: invalid YAML: found unexpected end of stream"},
		{"control character", "recipe: x\x01\n", f + ": invalid YAML: control characters are not allowed"},
		{"bad second document", "recipe: x\n---\n[\n", f + ":4: invalid YAML: did not find expected node content"},
		{"undefined alias", "*a\n", f + ": invalid YAML: unknown anchor 'a' referenced"},
		{"escape in key", "recipe: x\n\"a\\e[31m\\nb\": 1\n", f + `:2: a\x1b[31m\nb: unknown field (known: capabilities, limits, mode, recipe)`},
		{"tab indentation", "recipe: x\ncapabilities:\n\tshell: true\n", f + ":3: invalid YAML: found character that cannot start any token"},
		{"empty file", "", f + ": empty file, want a mapping with recipe, mode, limits and capabilities"},
		{"only a comment", "# nothing\n", f + ": empty file, want a mapping with recipe, mode, limits and capabilities"},
		{"not a mapping", "- recipe\n- x\n", f + ":1: not a mapping, want recipe, mode, limits and capabilities"},
		{"scalar document", "x\n", f + ":1: not a mapping, want recipe, mode, limits and capabilities"},
		{"two documents", "recipe: x\n---\nrecipe: x\n", f + ":2: more than one YAML document"},
		{"unknown top-level field", "recipe: x\nversion: 2\n", f + ":2: version: unknown field (known: capabilities, limits, mode, recipe)"},
		{"duplicate top-level key", "recipe: x\nmode: dry-run\nmode: enforce\n", f + ":3: mode: duplicate key (first at line 2)"},
		{"duplicate capability", "recipe: x\ncapabilities:\n  shell: false\n  store: true\n  shell: true\n", f + ":5: capabilities.shell: duplicate key (first at line 3)"},
		{"duplicate nested key", "recipe: x\nlimits:\n  disarm: {max_targets: 1, per: 1m, per: 2m}\n", f + ":3: limits.disarm.per: duplicate key (first at line 3)"},
		{"alias", "recipe: &r x\ncapabilities:\n  shell: *r\n", f + ":3: capabilities.shell: YAML aliases are not allowed in a policy"},
		{"complex key", "recipe: x\n? [a]\n: 1\n", f + ":2: mapping keys must be plain names"},

		// recipe
		{"missing recipe", "mode: enforce\n", f + ":1: recipe: missing (name the recipe this policy applies to)"},
		{"empty recipe", "recipe: \"\"\n", f + ":1: recipe: empty recipe name"},
		{"null recipe", "recipe:\nmode: enforce\n", f + ":1: recipe: empty recipe name"},
		{"blank recipe", "recipe: \"  \"\n", f + ":1: recipe: empty recipe name"},
		{"recipe not a string", "recipe: [x]\n", f + ":1: recipe: want a string"},
		{"recipe is a number", "recipe: 12\n", f + ":1: recipe: want a string"},
		{"recipe differs from file name", "mode: off\nrecipe: y\n", f + `:2: recipe: "y" does not match the file name (want "x")`},

		// mode
		{"bad mode", "recipe: x\nmode: block\n", f + `:2: mode: bad mode "block" (want enforce, dry-run or off)`},
		{"mode case", "recipe: x\nmode: Enforce\n", f + `:2: mode: bad mode "Enforce" (want enforce, dry-run or off)`},
		{"mode bool", "recipe: x\nmode: false\n", f + `:2: mode: bad mode "false" (want enforce, dry-run or off)`},

		// limits
		{"limits not a mapping", "recipe: x\nlimits: [1]\n", f + ":2: limits: want a mapping"},
		{"unknown limit", "recipe: x\nlimits:\n  cpu: 1\n", f + ":3: limits.cpu: unknown limit (known: disarm, helper_calls, memory, rate, timeout)"},
		{"timeout without unit", "recipe: x\nlimits:\n  timeout: 200\n", f + `:3: limits.timeout: bad duration "200" (want a number with a unit: ms, s, m, h)`},
		{"timeout words", "recipe: x\nlimits:\n  timeout: 2 seconds\n", f + `:3: limits.timeout: bad duration "2 seconds" (want a number with a unit: ms, s, m, h)`},
		{"timeout list", "recipe: x\nlimits:\n  timeout: [1s]\n", f + ":3: limits.timeout: want a duration such as 200ms or 1m"},
		{"timeout zero", "recipe: x\nlimits:\n  timeout: 0s\n", f + ":3: limits.timeout: must be positive, got 0s"},
		{"timeout bare zero", "recipe: x\nlimits:\n  timeout: 0\n", f + ":3: limits.timeout: must be positive, got 0"},
		{"timeout negative", "recipe: x\nlimits:\n  timeout: -1s\n", f + ":3: limits.timeout: must be positive, got -1s"},
		{"timeout over ceiling", "recipe: x\nlimits:\n  timeout: 5s\n", f + ":3: limits.timeout: 5s exceeds the daemon's ceiling 1s"},
		{"memory bad unit", "recipe: x\nlimits:\n  memory: 32MB\n", f + `:3: limits.memory: bad size "32MB" (want bytes, or a whole number of KiB, MiB or GiB)`},
		{"memory fraction", "recipe: x\nlimits:\n  memory: 1.5MiB\n", f + `:3: limits.memory: bad size "1.5MiB" (want bytes, or a whole number of KiB, MiB or GiB)`},
		{"memory negative", "recipe: x\nlimits:\n  memory: -1\n", f + `:3: limits.memory: bad size "-1" (want bytes, or a whole number of KiB, MiB or GiB)`},
		{"memory unit only", "recipe: x\nlimits:\n  memory: MiB\n", f + `:3: limits.memory: bad size "MiB" (want bytes, or a whole number of KiB, MiB or GiB)`},
		{"memory overflow", "recipe: x\nlimits:\n  memory: 99999999999999GiB\n", f + `:3: limits.memory: bad size "99999999999999GiB" (want bytes, or a whole number of KiB, MiB or GiB)`},
		{"memory zero", "recipe: x\nlimits:\n  memory: 0KiB\n", f + ":3: limits.memory: must be positive, got 0KiB"},
		{"memory bool", "recipe: x\nlimits:\n  memory: true\n", f + ":3: limits.memory: want a size such as 32MiB"},
		{"memory over ceiling", "recipe: x\nlimits:\n  memory: 64MiB\n", f + ":3: limits.memory: 64MiB exceeds the daemon's ceiling 32MiB"},
		{"memory bytes over ceiling", "recipe: x\nlimits:\n  memory: 33554433\n", f + ":3: limits.memory: 33554433 exceeds the daemon's ceiling 32MiB"},
		{"helper_calls zero", "recipe: x\nlimits:\n  helper_calls: 0\n", f + ":3: limits.helper_calls: must be positive, got 0"},
		{"helper_calls negative", "recipe: x\nlimits:\n  helper_calls: -5\n", f + ":3: limits.helper_calls: must be positive, got -5"},
		{"helper_calls string", "recipe: x\nlimits:\n  helper_calls: many\n", f + ":3: limits.helper_calls: want a whole number"},
		{"helper_calls overflow", "recipe: x\nlimits:\n  helper_calls: 99999999999999999999\n", f + ":3: limits.helper_calls: want a whole number"},
		{"helper_calls float", "recipe: x\nlimits:\n  helper_calls: 1.5\n", f + ":3: limits.helper_calls: want a whole number"},
		{"helper_calls over ceiling", "recipe: x\nlimits:\n  helper_calls: 1000\n", f + ":3: limits.helper_calls: 1000 exceeds the daemon's ceiling 256"},
		{"rate without unit", "recipe: x\nlimits:\n  rate: 50\n", f + `:3: limits.rate: bad rate "50" (want N/s, N/m or N/h with N > 0)`},
		{"rate per day", "recipe: x\nlimits:\n  rate: 50/d\n", f + `:3: limits.rate: bad rate "50/d" (want N/s, N/m or N/h with N > 0)`},
		{"rate zero", "recipe: x\nlimits:\n  rate: 0/s\n", f + `:3: limits.rate: bad rate "0/s" (want N/s, N/m or N/h with N > 0)`},
		{"rate negative", "recipe: x\nlimits:\n  rate: -1/s\n", f + `:3: limits.rate: bad rate "-1/s" (want N/s, N/m or N/h with N > 0)`},
		{"rate spaces", "recipe: x\nlimits:\n  rate: 5 / s\n", f + `:3: limits.rate: bad rate "5 / s" (want N/s, N/m or N/h with N > 0)`},
		{"rate mapping", "recipe: x\nlimits:\n  rate: {n: 5}\n", f + ":3: limits.rate: want a rate such as 50/s, 100/m or 10/h"},
		{"rate over ceiling", "recipe: x\nlimits:\n  rate: 51/s\n", f + ":3: limits.rate: 51/s exceeds the daemon's ceiling 50/s"},
		{"rate per minute over ceiling", "recipe: x\nlimits:\n  rate: 3001/m\n", f + ":3: limits.rate: 3001/m exceeds the daemon's ceiling 50/s"},
		{"disarm scalar", "recipe: x\nlimits:\n  disarm: 10\n", f + ":3: limits.disarm: want a mapping {max_targets: N, per: DURATION}"},
		{"disarm unknown field", "recipe: x\nlimits:\n  disarm: {max_targets: 1, per: 1m, every: 2}\n", f + ":3: limits.disarm.every: unknown field (known: max_targets, per)"},
		{"disarm missing per", "recipe: x\nlimits:\n  disarm: {max_targets: 1}\n", f + ":3: limits.disarm.per: missing"},
		{"disarm missing max_targets", "recipe: x\nlimits:\n  disarm:\n    per: 1m\n", f + ":4: limits.disarm.max_targets: missing"},
		{"disarm zero targets", "recipe: x\nlimits:\n  disarm: {max_targets: 0, per: 1m}\n", f + ":3: limits.disarm.max_targets: must be positive, got 0"},
		{"disarm zero per", "recipe: x\nlimits:\n  disarm: {max_targets: 2, per: 0s}\n", f + ":3: limits.disarm.per: must be positive, got 0s"},
		{"disarm bad per", "recipe: x\nlimits:\n  disarm: {max_targets: 2, per: soon}\n", f + `:3: limits.disarm.per: bad duration "soon" (want a number with a unit: ms, s, m, h)`},
		{"disarm more targets", "recipe: x\nlimits:\n  disarm: {max_targets: 11, per: 1m}\n", f + ":3: limits.disarm: 11 per 1m exceeds the daemon's ceiling 10 per 1m"},
		{"disarm bigger burst same ratio", "recipe: x\nlimits:\n  disarm: {max_targets: 20, per: 2m}\n", f + ":3: limits.disarm: 20 per 2m exceeds the daemon's ceiling 10 per 1m"},
		{"disarm shorter window", "recipe: x\nlimits:\n  disarm: {max_targets: 10, per: 30s}\n", f + ":3: limits.disarm: 10 per 30s exceeds the daemon's ceiling 10 per 1m"},

		// capabilities
		{"capabilities not a mapping", "recipe: x\ncapabilities: [shell]\n", f + ":2: capabilities: want a mapping"},
		{"unknown capability", "recipe: x\ncapabilities:\n  store: true\n  proc.kill: true\n", f + ":4: capabilities.proc.kill: unknown capability (known: evidence, fs.read, fs.write, log, net.block.domain, net.block.ip, power, process.freeze, process.kill, shell, store, tempdir)"},
		{"log false", "recipe: x\ncapabilities:\n  log: false\n", f + ":3: capabilities.log: log is always granted and cannot be turned off (remove the line)"},
		{"log string", "recipe: x\ncapabilities:\n  log: \"true\"\n", f + ":3: capabilities.log: want true or false"},
		{"bool as yes", "recipe: x\ncapabilities:\n  shell: yes\n", f + ":3: capabilities.shell: want true or false"},
		{"bool as number", "recipe: x\ncapabilities:\n  power: 1\n", f + ":3: capabilities.power: want true or false"},
		{"bool null", "recipe: x\ncapabilities:\n  store:\n", f + ":3: capabilities.store: want true or false"},
		{"freeze list", "recipe: x\ncapabilities:\n  process.freeze: [current]\n", f + ":3: capabilities.process.freeze: want true or false"},
		{"domain mapping", "recipe: x\ncapabilities:\n  net.block.domain: {allow: true}\n", f + ":3: capabilities.net.block.domain: want true or false"},
		{"kill string", "recipe: x\ncapabilities:\n  process.kill: current\n", f + ":3: capabilities.process.kill: want true, false or a list of current, parent, ancestry, any"},
		{"kill mapping", "recipe: x\ncapabilities:\n  process.kill: {current: true}\n", f + ":3: capabilities.process.kill: want true, false or a list of current, parent, ancestry, any"},
		{"kill nested list", "recipe: x\ncapabilities:\n  process.kill: [current, [parent]]\n", f + ":3: capabilities.process.kill[1]: want true, false or a list of current, parent, ancestry, any"},
		{"unknown kill scope", "recipe: x\ncapabilities:\n  process.kill:\n    - current\n    - children\n", f + `:5: capabilities.process.kill[1]: unknown kill scope "children" (known: current, parent, ancestry, any)`},
		{"duplicate kill scope", "recipe: x\ncapabilities:\n  process.kill: [parent, parent]\n", f + `:3: capabilities.process.kill[1]: duplicate scope "parent"`},
		{"net ip string", "recipe: x\ncapabilities:\n  net.block.ip: allow\n", f + ":3: capabilities.net.block.ip: want true, false or {allow, max_ttl, never}"},
		{"net ip list", "recipe: x\ncapabilities:\n  net.block.ip: [10.0.0.1]\n", f + ":3: capabilities.net.block.ip: want true, false or {allow, max_ttl, never}"},
		{"net ip missing allow", "recipe: x\ncapabilities:\n  net.block.ip: {max_ttl: 1h}\n", f + ":3: capabilities.net.block.ip.allow: missing (say allow: true or allow: false)"},
		{"net ip allow string", "recipe: x\ncapabilities:\n  net.block.ip: {allow: yes}\n", f + ":3: capabilities.net.block.ip.allow: want true or false"},
		{"net ip unknown field", "recipe: x\ncapabilities:\n  net.block.ip:\n    allow: true\n    ports: [22]\n", f + ":5: capabilities.net.block.ip.ports: unknown field (known: allow, max_ttl, never)"},
		{"net ip bad ttl", "recipe: x\ncapabilities:\n  net.block.ip: {allow: true, max_ttl: 1d}\n", f + `:3: capabilities.net.block.ip.max_ttl: bad duration "1d" (want a number with a unit: ms, s, m, h)`},
		{"net ip zero ttl", "recipe: x\ncapabilities:\n  net.block.ip: {allow: true, max_ttl: 0s}\n", f + ":3: capabilities.net.block.ip.max_ttl: must be positive, got 0s"},
		{"never not a list", "recipe: x\ncapabilities:\n  net.block.ip: {allow: true, never: 10.0.0.0/8}\n", f + ":3: capabilities.net.block.ip.never: want a list of CIDRs"},
		{"never bad prefix length", "recipe: x\ncapabilities:\n  net.block.ip:\n    allow: true\n    never:\n      - 10.0.0.0/8\n      - 10.0.0.0/33\n", f + `:7: capabilities.net.block.ip.never[1]: bad CIDR "10.0.0.0/33"`},
		{"never garbage", "recipe: x\ncapabilities:\n  net.block.ip: {allow: true, never: [intranet]}\n", f + `:3: capabilities.net.block.ip.never[0]: bad CIDR "intranet"`},
		{"never zone", "recipe: x\ncapabilities:\n  net.block.ip: {allow: true, never: [\"fe80::1%eth0\"]}\n", f + `:3: capabilities.net.block.ip.never[0]: bad CIDR "fe80::1%eth0"`},
		{"never number", "recipe: x\ncapabilities:\n  net.block.ip: {allow: true, never: [10]}\n", f + ":3: capabilities.net.block.ip.never[0]: want a CIDR such as 10.0.0.0/8"},
		{"fs.read true", "recipe: x\ncapabilities:\n  fs.read: true\n", f + `:3: capabilities.fs.read: want a list of absolute globs, e.g. ["/proc/**"] (true is ambiguous: write ["/**"] to grant everything)`},
		{"fs.read string", "recipe: x\ncapabilities:\n  fs.read: /etc/passwd\n", f + `:3: capabilities.fs.read: want a list of absolute globs, e.g. ["/proc/**"]`},
		{"fs.read number item", "recipe: x\ncapabilities:\n  fs.read: [1]\n", f + `:3: capabilities.fs.read[0]: want a list of absolute globs, e.g. ["/proc/**"]`},
		{"relative glob", "recipe: x\ncapabilities:\n  fs.read: [\"/proc/**\", \"etc/passwd\"]\n", f + `:3: capabilities.fs.read[1]: glob "etc/passwd": not absolute`},
		{"star-relative glob", "recipe: x\ncapabilities:\n  fs.read: [\"**/passwd\"]\n", f + `:3: capabilities.fs.read[0]: glob "**/passwd": not absolute`},
		{"NUL in glob", "recipe: x\ncapabilities:\n  fs.read: [\"/a\\0b\"]\n", f + `:3: capabilities.fs.read[0]: glob "/a\x00b": contains a NUL byte`},
		{"empty glob", "recipe: x\ncapabilities:\n  fs.write: [\"\"]\n", f + `:3: capabilities.fs.write[0]: glob "": empty glob`},
		{"dotdot glob", "recipe: x\ncapabilities:\n  fs.read: [\"/var/log/../../etc/shadow\"]\n", f + `:3: capabilities.fs.read[0]: glob "/var/log/../../etc/shadow": contains ".."`},
		{"trailing dotdot glob", "recipe: x\ncapabilities:\n  fs.write: [\"/tmp/..\"]\n", f + `:3: capabilities.fs.write[0]: glob "/tmp/..": contains ".."`},
		{"dot glob", "recipe: x\ncapabilities:\n  fs.read: [\"/etc/./passwd\"]\n", f + `:3: capabilities.fs.read[0]: glob "/etc/./passwd": not a clean path (no ".", "//" or trailing "/")`},
		{"double slash glob", "recipe: x\ncapabilities:\n  fs.read: [\"/etc//passwd\"]\n", f + `:3: capabilities.fs.read[0]: glob "/etc//passwd": not a clean path (no ".", "//" or trailing "/")`},
		{"trailing slash glob", "recipe: x\ncapabilities:\n  fs.read: [\"/etc/\"]\n", f + `:3: capabilities.fs.read[0]: glob "/etc/": not a clean path (no ".", "//" or trailing "/")`},
		{"partial double star", "recipe: x\ncapabilities:\n  fs.read: [\"/var/**.log\"]\n", f + `:3: capabilities.fs.read[0]: glob "/var/**.log": "**" must be a whole path segment`},
		{"write under proc", "recipe: x\ncapabilities:\n  fs.write: [\"/tmp/**\", \"/proc/sys/**\"]\n", f + `:3: capabilities.fs.write[1]: glob "/proc/sys/**": /proc is never writable`},
		{"write under dev", "recipe: x\ncapabilities:\n  fs.write: [\"/dev\"]\n", f + `:3: capabilities.fs.write[0]: glob "/dev": /dev is never writable`},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if seen[tt.name] {
				t.Fatalf("duplicate test name")
			}
			seen[tt.name] = true
			pol, err := Parse(testFile, []byte(tt.in), tight)
			if err == nil {
				t.Fatalf("Parse accepted invalid policy: %+v", pol)
			}
			if pol != nil {
				t.Errorf("Parse returned a policy with its error")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error\n got: %s\nwant: %s", got, tt.want)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error spans lines: %q", err.Error())
			}
			var pe *Error
			if !errors.As(err, &pe) || pe.File != testFile {
				t.Errorf("error is not a *Error for %s: %#v", testFile, err)
			}
		})
	}
}

func TestParseFull(t *testing.T) {
	const in = `# the SPEC example
recipe: crypto_miner_execution
mode: dry-run
limits:
  timeout: 150ms
  memory: 16MiB
  helper_calls: 100
  rate: 600/m
  disarm: {max_targets: 5, per: 2m}
capabilities:
  process.kill: [current, parent, ancestry]
  process.freeze: false
  net.block.ip: {allow: true, max_ttl: 24h, never: [10.0.0.0/8, 192.168.0.0/16, 172.16.0.1, "::ffff:100.64.0.0/106"]}
  net.block.domain: true
  fs.read: ["/proc/**", "/etc/passwd"]
  fs.write: []
  tempdir: true
  store: true
  evidence: true
  shell: false
  power: false
  log: true
`
	file := filepath.Join("recipes", "crypto_miner_execution"+FileSuffix)
	p, err := Parse(file, []byte(in), DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	want := &Policy{
		Recipe:  "crypto_miner_execution",
		Mode:    ModeDryRun,
		ModeSet: true,
		Source:  file,
		Limits: Limits{
			Timeout:     150 * time.Millisecond,
			MemoryBytes: 16 << 20,
			HelperCalls: 100,
			Rate:        Rate{N: 600, Per: time.Minute},
			Disarm:      Disarm{MaxTargets: 5, Per: 2 * time.Minute},
		},
		Kill: KillScope{Current: true, Parent: true, Ancestry: true},
		NetBlockIP: NetIP{Allow: true, MaxTTL: 24 * time.Hour, Never: []netip.Prefix{
			netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("192.168.0.0/16"),
			netip.MustParsePrefix("172.16.0.1/32"),
			netip.MustParsePrefix("100.64.0.0/10"),
		}},
		NetBlockDomain: true,
		FSRead:         []string{"/proc/**", "/etc/passwd"},
		Tempdir:        true,
		Store:          true,
		Evidence:       true,
	}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("policy\n got: %+v\nwant: %+v", p, want)
	}
	wantCaps := []string{"evidence", "fs.read", "log", "net.block.domain", "net.block.ip", "process.kill", "store", "tempdir"}
	if got := p.Capabilities(); !reflect.DeepEqual(got, wantCaps) {
		t.Errorf("Capabilities() = %v, want %v", got, wantCaps)
	}
	for path, want := range map[string]bool{
		"/proc/1/status": true, "/proc": true, "/etc/passwd": true,
		"/etc/shadow": false, "/etc/passwd/x": false, "/proc/../etc/shadow": false,
	} {
		if got := p.CanRead(path); got != want {
			t.Errorf("CanRead(%q) = %v, want %v", path, got, want)
		}
	}
	if p.CanWrite("/tmp/x") {
		t.Error("CanWrite with fs.write: [] must be false")
	}
	for cidr, want := range map[string]bool{
		"198.18.0.1/32":       true,
		"10.1.2.3/32":         false,
		"::ffff:10.1.2.3/128": false, // mapped form of a never address
		"172.16.0.0/12":       false, // covers a never host
		"192.0.0.0/2":         false, // wider than a never network
		"100.100.0.1/32":      false, // inside the never network given in mapped form
		"2001:db8::/32":       true,
	} {
		if got := p.NetBlockIP.CanBlock(netip.MustParsePrefix(cidr)); got != want {
			t.Errorf("CanBlock(%s) = %v, want %v", cidr, got, want)
		}
	}
	for ttl, want := range map[time.Duration]bool{0: false, time.Hour: true, 24 * time.Hour: true, 25 * time.Hour: false, -time.Second: false} {
		if got := p.NetBlockIP.TTLAllowed(ttl); got != want {
			t.Errorf("TTLAllowed(%v) = %v, want %v", ttl, got, want)
		}
	}
}

func TestParseMinimal(t *testing.T) {
	for _, in := range []string{
		"recipe: x\n",
		"recipe: x\nlimits:\ncapabilities:\n",
		"recipe: x\nlimits: {}\ncapabilities: {}\n",
		"recipe: x\ncapabilities: {log: true, process.kill: false, fs.read: false, fs.write: [], net.block.ip: {allow: false, max_ttl: 1h}}\n",
	} {
		p, err := Parse(testFile, []byte(in), DefaultLimits())
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		want := &Policy{Recipe: "x", Mode: ModeEnforce, Source: testFile, Limits: DefaultLimits()}
		if in == "recipe: x\ncapabilities: {log: true, process.kill: false, fs.read: false, fs.write: [], net.block.ip: {allow: false, max_ttl: 1h}}\n" {
			want.NetBlockIP.MaxTTL = time.Hour
		}
		if !reflect.DeepEqual(p, want) {
			t.Errorf("%q:\n got: %+v\nwant: %+v", in, p, want)
		}
		// An absent capability is not granted, not even what the strict default grants.
		if got := p.Capabilities(); !reflect.DeepEqual(got, []string{"log"}) {
			t.Errorf("%q: Capabilities() = %v, want [log]", in, got)
		}
	}
}

func TestParseValidForms(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		check func(t *testing.T, p *Policy)
	}{
		{"kill true", "process.kill: true", func(t *testing.T, p *Policy) {
			if p.Kill != (KillScope{Current: true, Parent: true, Ancestry: true}) {
				t.Errorf("Kill = %+v", p.Kill)
			}
		}},
		{"kill any implies all", "process.kill: [any]", func(t *testing.T, p *Policy) {
			if p.Kill != (KillScope{Current: true, Parent: true, Ancestry: true, Any: true}) {
				t.Errorf("Kill = %+v", p.Kill)
			}
		}},
		{"kill current only", "process.kill: [current]", func(t *testing.T, p *Policy) {
			if p.Kill != (KillScope{Current: true}) || !p.Granted("process.kill") {
				t.Errorf("Kill = %+v", p.Kill)
			}
		}},
		{"kill empty list", "process.kill: []", func(t *testing.T, p *Policy) {
			if p.Kill != (KillScope{}) || p.Granted("process.kill") {
				t.Errorf("Kill = %+v", p.Kill)
			}
		}},
		{"net ip true", "net.block.ip: true", func(t *testing.T, p *Policy) {
			if !reflect.DeepEqual(p.NetBlockIP, NetIP{Allow: true}) || !p.NetBlockIP.TTLAllowed(0) {
				t.Errorf("NetBlockIP = %+v", p.NetBlockIP)
			}
		}},
		{"net ip false", "net.block.ip: false", func(t *testing.T, p *Policy) {
			if p.Granted("net.block.ip") || p.NetBlockIP.CanBlock(netip.MustParsePrefix("198.18.0.1/32")) {
				t.Errorf("NetBlockIP = %+v", p.NetBlockIP)
			}
		}},
		{"never host bits masked", "net.block.ip: {allow: true, never: [10.1.2.3/8]}", func(t *testing.T, p *Policy) {
			if !reflect.DeepEqual(p.NetBlockIP.Never, []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}) {
				t.Errorf("Never = %v", p.NetBlockIP.Never)
			}
		}},
		{"power and shell", "power: true\n  shell: true", func(t *testing.T, p *Policy) {
			if !p.Power || !p.Shell {
				t.Errorf("policy = %+v", p)
			}
		}},
		{"fs.write everything", `fs.write: ["/**"]`, func(t *testing.T, p *Policy) {
			if !p.CanWrite("/var/tmp/x") || !p.CanWrite("/") {
				t.Errorf("CanWrite denied under /**")
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(testFile, []byte("recipe: x\ncapabilities:\n  "+tt.in+"\n"), DefaultLimits())
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, p)
		})
	}
}

func TestParseLimits(t *testing.T) {
	tests := []struct {
		name    string
		limits  string
		ceiling Limits
		want    Limits
	}{
		{"defaults", "{}", DefaultLimits(), DefaultLimits()},
		{"equal to ceiling", "{timeout: 200ms, memory: 32MiB, helper_calls: 256, rate: 50/s, disarm: {max_targets: 10, per: 1m}}", DefaultLimits(), DefaultLimits()},
		{"plain bytes and KiB", "{memory: 1048576}", DefaultLimits(), func() Limits { l := DefaultLimits(); l.MemoryBytes = 1 << 20; return l }()},
		{"KiB", "{memory: 640KiB}", DefaultLimits(), func() Limits { l := DefaultLimits(); l.MemoryBytes = 640 << 10; return l }()},
		{"same average rate per minute", "{rate: 3000/m}", DefaultLimits(), func() Limits { l := DefaultLimits(); l.Rate = Rate{3000, time.Minute}; return l }()},
		{"slower rate per hour", "{rate: 7/h}", DefaultLimits(), func() Limits { l := DefaultLimits(); l.Rate = Rate{7, time.Hour}; return l }()},
		{"narrower disarm", "{disarm: {max_targets: 3, per: 5m}}", DefaultLimits(), func() Limits { l := DefaultLimits(); l.Disarm = Disarm{3, 5 * time.Minute}; return l }()},
		{"unset fields narrowed to a tighter ceiling", "{helper_calls: 10}",
			Limits{Timeout: 50 * time.Millisecond, MemoryBytes: 8 << 20, HelperCalls: 20, Rate: Rate{1, time.Second}, Disarm: Disarm{2, time.Hour}},
			Limits{Timeout: 50 * time.Millisecond, MemoryBytes: 8 << 20, HelperCalls: 10, Rate: Rate{1, time.Second}, Disarm: Disarm{2, time.Hour}}},
		{"zero ceiling imposes nothing", "{timeout: 10s, memory: 1GiB, helper_calls: 100000, rate: 100000/s, disarm: {max_targets: 1000, per: 1s}}", Limits{},
			Limits{Timeout: 10 * time.Second, MemoryBytes: 1 << 30, HelperCalls: 100000, Rate: Rate{100000, time.Second}, Disarm: Disarm{1000, time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse(testFile, []byte("recipe: x\nlimits: "+tt.limits+"\n"), tt.ceiling)
			if err != nil {
				t.Fatal(err)
			}
			if p.Limits != tt.want {
				t.Errorf("Limits = %+v, want %+v", p.Limits, tt.want)
			}
		})
	}
}

func TestParseFileNameCheck(t *testing.T) {
	// Only files named like policy files must agree with their recipe; an
	// ad-hoc file (sandbox --policy) may have any name.
	for _, file := range []string{"x.policy.yaml", "/etc/jibril/x.policy.yaml", "scratch.yaml", "-"} {
		if _, err := Parse(file, []byte("recipe: x\n"), DefaultLimits()); err != nil {
			t.Errorf("%s: %v", file, err)
		}
	}
	if _, err := Parse("", []byte("mode: off\n"), DefaultLimits()); err == nil || err.Error() != "<policy>:1: recipe: missing (name the recipe this policy applies to)" {
		t.Errorf("unnamed file error = %v", err)
	}
	if _, err := Parse("dir/y.policy.yaml", []byte("recipe: x\n"), DefaultLimits()); err == nil {
		t.Error("policy for recipe x in y.policy.yaml accepted")
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "x.policy.yaml")
	if err := os.WriteFile(good, []byte("recipe: x\ncapabilities: {store: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Load(good, DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != good || !p.Granted("store") || p.Granted("tempdir") {
		t.Errorf("Load = %+v", p)
	}

	bad := filepath.Join(dir, "bad.policy.yaml")
	if err := os.WriteFile(bad, []byte("recipe: bad\ncapabilities:\n  shel: true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(bad, DefaultLimits()); err == nil || !strings.HasPrefix(err.Error(), bad+":3: capabilities.shel: unknown capability") {
		t.Errorf("Load(bad) error = %v", err)
	}

	if _, err := Load(filepath.Join(dir, "missing.policy.yaml"), DefaultLimits()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) error = %v, want not exist", err)
	}

	sub := filepath.Join(dir, "d.policy.yaml")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(sub, DefaultLimits()); err == nil || err.Error() != sub+": not a regular file" {
		t.Errorf("Load(dir) error = %v", err)
	}

	big := filepath.Join(dir, "big.policy.yaml")
	data := []byte("recipe: big\n# " + strings.Repeat("x", maxFileSize) + "\n")
	if err := os.WriteFile(big, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(big, DefaultLimits()); err == nil || err.Error() != big+": file larger than 1MiB" {
		t.Errorf("Load(big) error = %v", err)
	}
}
