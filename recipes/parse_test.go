package recipes

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// base is a valid recipe on lines 1-4; test cases append fields from line 5 on.
const base = `- kind: k
  name: r
  mechanism: file_access
  regex: .*
`

// netBase is a valid network recipe on lines 1-4.
const netBase = `- kind: k
  name: r
  mechanism: network_peers
  remote_port: 443
`

// execBase is a valid execution recipe on lines 1-4.
const execBase = `- kind: k
  name: r
  mechanism: execution
  base: xmrig
`

func errStrings(errs []error) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = e.Error()
	}
	return out
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		yaml string
		want []string
	}{
		// Unknown fields and structure.
		{"unknown field", base + "  remote_domain: [x.com]\n",
			[]string{"t.yaml:5: recipe r: field remote_domain: unknown field (did you mean remote_domains?)"}},
		{"unknown field no suggestion", base + "  colour: blue\n",
			[]string{"t.yaml:5: recipe r: field colour: unknown field"}},
		{"merge key", base + "  <<: {x: 1}\n",
			[]string{"t.yaml:5: recipe r: field <<: YAML merge keys are not supported"}},
		{"duplicate key", base + "  name: s\n",
			[]string{"t.yaml:5: recipe r: field name: given twice (first at line 2)"}},
		{"unknown nested field", base + "  bases:\n    - base: a\n      regexp: /x\n",
			[]string{"t.yaml:7: recipe r: field bases[0].regexp: unknown field (did you mean regex?) (want dir, base or regex)"}},
		{"recipe not a mapping", "- just a string\n",
			[]string{"t.yaml:1: recipe #0: expected a mapping of fields, got the string \"just a string\""}},
		{"file not a list", "kind: k\nname: r\n",
			[]string{"t.yaml:1: expected a list of recipes (each starting with \"- \"), got a mapping"}},
		{"yaml syntax", "- kind: k\n  name: r\n  x: y: z\n",
			[]string{"t.yaml:3: invalid YAML: mapping values are not allowed in this context"}},
		{"two documents", base + "---\n- kind: x\n",
			[]string{"t.yaml:5: a second YAML document: a recipe file is one list of recipes"}},

		// Required fields and names.
		{"missing name", "- kind: k\n  mechanism: file_access\n  regex: .*\n",
			[]string{"t.yaml:1: recipe #0: field name: missing (every recipe needs a unique name)"}},
		{"missing kind", "- name: r\n  mechanism: file_access\n  regex: .*\n",
			[]string{"t.yaml:1: recipe r: field kind: missing (every recipe needs a kind)"}},
		{"null kind", "- name: r\n  kind:\n  mechanism: file_access\n  regex: .*\n",
			[]string{"t.yaml:2: recipe r: field kind: missing (every recipe needs a kind)"}},
		{"missing mechanism", "- kind: k\n  name: r\n  regex: .*\n",
			[]string{"t.yaml:1: recipe r: field mechanism: missing (want file_access, execution, file_access_and_execution, network_peers or network_flows)"}},
		{"bad name", "- kind: k\n  name: ../etc/passwd\n  mechanism: file_access\n  regex: .*\n",
			[]string{"t.yaml:2: recipe #0: field name: invalid name \"../etc/passwd\" (want 1-128 letters, digits, '_', '-' or '.', starting with a letter or digit)"}},
		{"kind without letters", "- kind: '---'\n  name: r\n  mechanism: file_access\n  regex: .*\n",
			[]string{"t.yaml:1: recipe r: field kind: \"---\" has no letters or digits"}},
		{"duplicate name", base + base,
			[]string{"t.yaml:6: recipe r: field name: duplicate name (first defined at t.yaml:2)"}},

		// Types.
		{"enabled not a bool", base + "  enabled: maybe\n",
			[]string{"t.yaml:5: recipe r: field enabled: expected true or false, got the string \"maybe\""}},
		{"description a list", base + "  description: [a]\n",
			[]string{"t.yaml:5: recipe r: field description: expected a string, got a list"}},
		{"bases a string", "- kind: k\n  name: r\n  mechanism: file_access\n  bases: /etc\n",
			[]string{"t.yaml:4: recipe r: field bases: expected a list of {dir, base, regex}, got the string \"/etc\""}},
		{"times a mapping", base + "  times: {kind: times_per_exe, max: 1}\n",
			[]string{"t.yaml:5: recipe r: field times: expected a list of {kind, max}, got a mapping"}},
		{"custom tag", base + "  description: !secret x\n",
			[]string{"t.yaml:5: recipe r: field description: unsupported YAML tag !secret"}},

		// Enums.
		{"importance", base + "  importance: urgent\n",
			[]string{"t.yaml:5: recipe r: field importance: unknown value \"urgent\" (want low, medium, high or critical)"}},
		{"breed", base + "  breed: files\n",
			[]string{"t.yaml:5: recipe r: field breed: unknown value \"files\" (want file_access, execution, remote_domains, remote_cidrs, remote_ips, local_domains or local_ips)"}},
		{"mechanism", "- kind: k\n  name: r\n  mechanism: baseline\n  regex: .*\n",
			[]string{"t.yaml:3: recipe r: field mechanism: unknown value \"baseline\" (want file_access, execution, file_access_and_execution, network_peers or network_flows)"}},
		{"file_actions_how", base + "  file_actions_how: some\n",
			[]string{"t.yaml:5: recipe r: field file_actions_how: unknown value \"some\" (want any or all)"}},
		{"protocol", netBase + "  protocol: sctp\n",
			[]string{"t.yaml:5: recipe r: field protocol: unknown value \"sctp\" (want tcp, udp or icmp)"}},
		{"remote_domains_type", netBase + "  remote_domains_type: regex\n",
			[]string{"t.yaml:5: recipe r: field remote_domains_type: unknown value \"regex\" (want exact, suffix or prefix)"}},
		{"remote_domains_trie_type alias", netBase + "  remote_domains_trie_type: glob\n",
			[]string{"t.yaml:5: recipe r: field remote_domains_trie_type: unknown value \"glob\" (want exact, suffix or prefix)"}},
		{"both domain type fields", netBase + "  remote_domains_type: exact\n  remote_domains_trie_type: suffix\n",
			[]string{"t.yaml:6: recipe r: field remote_domains_trie_type: remote_domains_type is also set; give one of them"}},
		{"flow_actions_how", netBase + "  flow_actions_how: most\n",
			[]string{"t.yaml:5: recipe r: field flow_actions_how: unknown value \"most\" (want any or all)"}},
		{"mode", base + "  mode: dryrun\n",
			[]string{"t.yaml:5: recipe r: field mode: unknown value \"dryrun\" (want enforce, dry-run or off)"}},
		{"prevent", execBase + "  prevent: stop\n",
			[]string{"t.yaml:5: recipe r: field prevent: unknown value \"stop\" (want kill or deny)"}},
		{"times kind", base + "  times:\n    - kind: times_per_day\n      max: 1\n",
			[]string{"t.yaml:6: recipe r: field times[0].kind: unknown value \"times_per_day\" (want times_per_proc, times_per_exe, times_per_parent_proc, times_per_parent_exe, times_per_cmd, times_per_full_ancestry, times_in_total, times_per_host or times_per_hostname)"}},
		{"unknown file action", base + "  file_actions: [open, peek]\n",
			[]string{"t.yaml:5: recipe r: field file_actions[1]: unknown file action \"peek\" (want one of fasync, flock, fsync, llseek, mmap, open, read, write, rename, truncate, unlink, create, close, link, execve, or a macro: any, open_related, read_related, modify_related, access_related, access_no_mmap_related, tamper_related)"}},
		{"unknown file action in string", base + "  file_actions: open|peek\n",
			[]string{"t.yaml:5: recipe r: field file_actions: unknown file action \"peek\" (want one of fasync, flock, fsync, llseek, mmap, open, read, write, rename, truncate, unlink, create, close, link, execve, or a macro: any, open_related, read_related, modify_related, access_related, access_no_mmap_related, tamper_related)"}},
		{"unknown flow action", netBase + "  flow_actions: [created, closed]\n",
			[]string{"t.yaml:5: recipe r: field flow_actions[1]: unknown flow action \"closed\" (want one of created, ingress, egress, incoming, outgoing, ongoing, started, ended, terminator, terminated)"}},

		// Regexes, CIDRs, ports, domains, paths.
		{"bad regex top level", "- kind: k\n  name: r\n  mechanism: file_access\n  regex: (abc\n",
			[]string{"t.yaml:4: recipe r: field regex: invalid regex: error parsing regexp: missing closing ): `(abc`"}},
		{"bad regex in bases", base + "  bases:\n    - regex: '[z-a]'\n",
			[]string{"t.yaml:6: recipe r: field bases[0].regex: invalid regex: error parsing regexp: invalid character class range: `z-a`"}},
		{"bad regex in arbitrary", base + "  arbitrary:\n    - items:\n        - what: cmd\n          pattern: 'a**'\n",
			[]string{"t.yaml:8: recipe r: field arbitrary[0].items[0].pattern: invalid regex: error parsing regexp: invalid nested repetition operator: `**`"}},
		{"bad cidr", netBase + "  remote_cidrs:\n    - 10.0.0.0/8\n    - 10.0.0.0/33\n",
			[]string{"t.yaml:7: recipe r: field remote_cidrs[1]: invalid CIDR \"10.0.0.0/33\" (want address/bits)"}},
		{"bad cidr address", netBase + "  local_cidrs: 10.0.0.300\n",
			[]string{"t.yaml:5: recipe r: field local_cidrs: invalid CIDR \"10.0.0.300\" (want address/bits or an address)"}},
		{"port out of range", netBase + "  local_port: 70000\n",
			[]string{"t.yaml:5: recipe r: field local_port: port 70000 out of range 0-65535 (0 means any)"}},
		{"negative port", "- kind: k\n  name: r\n  mechanism: network_peers\n  remote_port: -1\n",
			[]string{"t.yaml:4: recipe r: field remote_port: port -1 out of range 0-65535 (0 means any)"}},
		{"port not a number", "- kind: k\n  name: r\n  mechanism: network_peers\n  remote_port: https\n",
			[]string{"t.yaml:4: recipe r: field remote_port: expected an integer, got the string \"https\""}},
		{"bad domain", netBase + "  remote_domains: [evil.com, 'ev il.com']\n",
			[]string{"t.yaml:5: recipe r: field remote_domains[1]: invalid domain \"ev il.com\": character ' ' is not allowed"}},
		{"dotted exact domain", netBase + "  remote_domains: [.evil.com]\n",
			[]string{"t.yaml:5: recipe r: field remote_domains[0]: invalid domain \".evil.com\": starts with a dot (only suffix and prefix matching allow it)"}},
		{"two final dots", netBase + "  remote_domains: [evil.com.., 'www..']\n  remote_domains_type: prefix\n",
			[]string{"t.yaml:5: recipe r: field remote_domains[0]: invalid domain \"evil.com..\": ends with an empty label",
				"t.yaml:5: recipe r: field remote_domains[1]: invalid domain \"www..\": ends with an empty label"}},
		{"dir ending in a space once cleaned", "- kind: k\n  name: r\n  mechanism: file_access\n  dir: / /\n",
			[]string{"t.yaml:4: recipe r: field dir: \"/ /\" ends with white space once cleaned"}},
		{"relative dir", "- kind: k\n  name: r\n  mechanism: file_access\n  dir: etc\n",
			[]string{"t.yaml:4: recipe r: field dir: \"etc\" is not an absolute directory"}},
		{"base with slash", "- kind: k\n  name: r\n  mechanism: file_access\n  bases:\n    - base: /etc/passwd\n",
			[]string{"t.yaml:5: recipe r: field bases[0].base: \"/etc/passwd\" contains '/': base is a file name (put the directory in dir)"}},
		{"empty bases entry", "- kind: k\n  name: r\n  mechanism: file_access\n  bases:\n    - {}\n",
			[]string{"t.yaml:5: recipe r: field bases[0]: empty entry (want dir, base or regex)"}},
		{"no path", "- kind: k\n  name: r\n  mechanism: file_access\n",
			[]string{"t.yaml:1: recipe r: field bases: missing: a file_access recipe needs base, dir, regex or bases (regex: .* matches every path)"}},

		// Cross-field rules.
		{"network field on file recipe", base + "  remote_cidrs: [10.0.0.0/8]\n",
			[]string{"t.yaml:5: recipe r: field remote_cidrs: not valid for mechanism file_access (network fields need network_peers or network_flows)"}},
		{"empty network field on file recipe is fine", base + "  remote_domains: []\n", nil},
		{"file field on network recipe", netBase + "  base: passwd\n",
			[]string{"t.yaml:5: recipe r: field base: not valid for mechanism network_peers (file fields need file_access, execution or file_access_and_execution)"}},
		{"execution without execve", execBase + "  file_actions: open\n",
			[]string{"t.yaml:5: recipe r: field file_actions: an execution recipe matches execve: include execve (or use mechanism file_access)"}},
		{"excl removes everything", base + "  file_actions: open_related\n  file_actions_excl: [open, close]\n",
			[]string{"t.yaml:6: recipe r: field file_actions_excl: excludes every action of file_actions"}},
		{"flow excl removes everything", netBase + "  flow_actions: egress\n  flow_actions_excl: egress\n",
			[]string{"t.yaml:6: recipe r: field flow_actions_excl: excludes every action of flow_actions"}},
		{"prevent on file recipe", base + "  prevent: kill\n",
			[]string{"t.yaml:5: recipe r: field prevent: only execution recipes can prevent (mechanism is file_access)"}},
		{"prevent with regex", "- kind: k\n  name: r\n  mechanism: execution\n  prevent: deny\n  bases:\n    - base: xmrig\n    - regex: miner$\n",
			[]string{"t.yaml:4: recipe r: field prevent: needs an exact match: bases[1] uses a regex (give base, or dir and base)"}},
		{"prevent with dir only", "- kind: k\n  name: r\n  mechanism: execution\n  prevent: kill\n  dir: /tmp\n",
			[]string{"t.yaml:4: recipe r: field prevent: needs an exact match: the top-level base/dir/regex has no base (give base, or dir and base)"}},
		{"prevent with arbitrary", execBase + "  prevent: kill\n  arbitrary:\n    - items: [{what: uid, number: 0}]\n",
			[]string{"t.yaml:5: recipe r: field prevent: arbitrary groups cannot be evaluated before the exec: remove them or drop prevent"}},

		// Arbitrary groups.
		{"group without items", base + "  arbitrary:\n    - how: AND\n      which: pertinent\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items: missing or empty (a group needs at least one item)"}},
		{"group how", base + "  arbitrary:\n    - how: XOR\n      items: [{what: cmd, pattern: x}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].how: unknown value \"XOR\" (want AND or OR)"}},
		{"group which", base + "  arbitrary:\n    - which: maybe\n      items: [{what: cmd, pattern: x}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].which: unknown value \"maybe\" (want pertinent or irrelevant)"}},
		{"unknown what", base + "  arbitrary:\n    - items: [{what: parent_exec, pattern: x}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].what: unknown value \"parent_exec\" (did you mean parent_exe?) (want one of exe, comm, cmd, args, uid, gid, pid, ppid, parent_exe, parent_comm, parent_cmd, parent_args, parent_uid, parent_pid, task_or_parent_exe, task_or_parent_args, ancient_exe, start, parent_start, file, remote_domain, local_ip, remote_ip, local_port, remote_port)"}},
		{"missing what", base + "  arbitrary:\n    - items: [{pattern: x}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].what: missing (want one of exe, comm, cmd, args, uid, gid, pid, ppid, parent_exe, parent_comm, parent_cmd, parent_args, parent_uid, parent_pid, task_or_parent_exe, task_or_parent_args, ancient_exe, start, parent_start, file, remote_domain, local_ip, remote_ip, local_port, remote_port)"}},
		{"item which", base + "  arbitrary:\n    - items: [{what: cmd, which: glob, pattern: x}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].which: unknown value \"glob\" (want pertinent, irrelevant, regex, exact, prefix, suffix or contains)"}},
		{"item which and match", base + "  arbitrary:\n    - items: [{what: cmd, which: exact, match: prefix, pattern: x}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].which: which gives the match mode exact and match is also set; give one of them"}},
		{"two values", base + "  arbitrary:\n    - items: [{what: uid, number: 0, numbers: [1]}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0]: give only one of pattern, number, numbers, time or cidr (got number and numbers)"}},
		{"no value", base + "  arbitrary:\n    - items: [{what: uid}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0]: missing: give one of pattern, number, numbers, time or cidr"}},
		{"number on string what", base + "  arbitrary:\n    - items: [{what: exe, number: 3}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].number: what exe takes a pattern, not number"}},
		{"cidr on exe", base + "  arbitrary:\n    - items: [{what: exe, cidr: 10.0.0.0/8}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].cidr: what exe takes a pattern, not cidr"}},
		{"pattern on ip", netBase + "  arbitrary:\n    - items: [{what: remote_ip, pattern: '10\\.'}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].pattern: what remote_ip takes a cidr, not a pattern"}},
		{"bad item cidr", netBase + "  arbitrary:\n    - items: [{what: remote_ip, cidr: 10/8}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].cidr: invalid CIDR \"10/8\" (want address/bits)"}},
		{"bad time", base + "  arbitrary:\n    - items: [{what: start, time: yesterday}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].time: invalid time \"yesterday\" (want RFC 3339, e.g. 2024-01-01T00:00:00Z)"}},
		{"when on pattern", base + "  arbitrary:\n    - items: [{what: cmd, pattern: x, when: bigger}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].when: only number and time can be compared (pattern is bigger)"}},
		{"when value", base + "  arbitrary:\n    - items: [{what: uid, number: 1, when: larger}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].when: unknown value \"larger\" (want smaller, bigger or equal)"}},
		{"empty pattern", base + "  arbitrary:\n    - items: [{what: cmd, pattern: ''}]\n",
			[]string{"t.yaml:6: recipe r: field arbitrary[0].items[0].pattern: empty pattern"}},

		// Times.
		{"times max zero", base + "  times:\n    - kind: times_per_exe\n      max: 0\n",
			[]string{"t.yaml:7: recipe r: field times[0].max: 0 out of range (want 1 to 2147483647)"}},
		{"times missing max", base + "  times:\n    - kind: times_per_exe\n",
			[]string{"t.yaml:6: recipe r: field times[0].max: missing"}},
		{"times twice", base + "  times:\n    - {kind: times_per_exe, max: 1}\n    - {kind: times_per_exe, max: 2}\n",
			[]string{"t.yaml:7: recipe r: field times[1].kind: times_per_exe given twice (first at line 6)"}},

		// Reactions.
		{"js without process", base + "  reactions:\n    - format: js\n      code: |\n        function handle(data) { KillCurrent(); }\n",
			[]string{"t.yaml:7: recipe r: field reactions[0].code: a js reaction must define function process(data)"}},
		{"js process only called", base + "  reactions:\n    - format: js\n      code: 'data.process.pid; process(data)'\n",
			[]string{"t.yaml:7: recipe r: field reactions[0].code: a js reaction must define function process(data)"}},
		{"unknown format", base + "  reactions:\n    - format: python\n      code: print(1)\n",
			[]string{"t.yaml:6: recipe r: field reactions[0].format: unknown value \"python\" (want js or shell)"}},
		{"missing format", base + "  reactions:\n    - code: echo hi\n",
			[]string{"t.yaml:6: recipe r: field reactions[0].format: missing (want js or shell)"}},
		{"empty code", base + "  reactions:\n    - format: shell\n      code: '  '\n",
			[]string{"t.yaml:7: recipe r: field reactions[0].code: empty"}},
		{"reaction unknown field", base + "  reactions:\n    - format: shell\n      code: echo\n      timeout: 5s\n",
			[]string{"t.yaml:8: recipe r: field reactions[0].timeout: unknown field (want format or code)"}},

		// Several problems in one recipe are all reported, in line order.
		{"several problems", base + "  importance: urgent\n  colour: blue\n",
			[]string{
				"t.yaml:5: recipe r: field importance: unknown value \"urgent\" (want low, medium, high or critical)",
				"t.yaml:6: recipe r: field colour: unknown field",
			}},
		// Messages stay on one line whatever the file holds.
		{"newline in value", base + "  importance: \"ur\\ngent\"\n",
			[]string{`t.yaml:5: recipe r: field importance: unknown value "ur\ngent" (want low, medium, high or critical)`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, errs := Parse("t.yaml", []byte(tc.yaml))
			got := errStrings(errs)
			if len(tc.want) == 0 && len(got) == 0 {
				return
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n got  %q\n want %q", got, tc.want)
			}
			for _, e := range errs {
				if strings.ContainsAny(e.Error(), "\n\r") {
					t.Errorf("error spans lines: %q", e.Error())
				}
				var pe *Error
				if !errors.As(e, &pe) {
					t.Errorf("error %v is not a *recipes.Error", e)
				}
			}
		})
	}
}

func TestBrokenRecipeDoesNotStopOthers(t *testing.T) {
	y := `- kind: good_one
  name: good_one
  mechanism: execution
  base: xmrig
- kind: bad_one
  name: bad_one
  mechanism: execution
  base: nc
  importance: urgent
- kind: good_two
  name: good_two
  mechanism: network_peers
  remote_domains: [pool.supportxmr.com]
`
	rs, errs := Parse("two.yaml", []byte(y))
	if got := errStrings(errs); !reflect.DeepEqual(got, []string{
		`two.yaml:9: recipe bad_one: field importance: unknown value "urgent" (want low, medium, high or critical)`}) {
		t.Fatalf("errors = %q", got)
	}
	if len(rs) != 2 || rs[0].Name != "good_one" || rs[1].Name != "good_two" {
		t.Fatalf("loaded %d recipes: %+v", len(rs), rs)
	}
	if rs[0].Line != 1 || rs[1].Line != 10 || rs[1].Index != 2 || rs[1].File != "two.yaml" {
		t.Errorf("positions: %s #%d, %s #%d", rs[0].Where(), rs[0].Index, rs[1].Where(), rs[1].Index)
	}
}

func TestParseJibrilRecipes(t *testing.T) {
	// Shapes taken from Jibril's public recipes: string action lists, empty times and
	// arbitrary, item polarities, multi-line documentation, version as a number.
	y := `#
# Jibril style recipes.
#
- kind: reading_of_ssh_keys
  name: reading_of_ssh_keys
  enabled: false
  version: 1.0
  description: Reading of SSH keys detected
  documentation: |
    https://garnet.gitbook.io/jibril/detections/file-access/reading_of_ssh_keys
  breed: file_access
  mechanism: file_access
  tactic: credential_access
  technique: unsecured_credentials
  importance: medium
  times:
    - kind: times_per_exe
      max: 2
    - kind: times_per_full_ancestry
      max: 4
  file_actions:
    - read
  file_actions_how: any
  arbitrary:
    - how: AND
      which: pertinent
      items:
        - what: cmd
          pattern: "(containerd|sshd|ssh|runc)"
          which: irrelevant
  bases:
    - regex: "(authorized_keys|id_rsa)$"
- kind: binary_self_deletion
  name: binary_self_deletion
  version: 1.0
  breed: file_access
  mechanism: file_access
  subtechnique: none
  importance: critical
  times:
  arbitrary: []
  file_actions: open|mmap|unlink|execve
  file_actions_how: all
  bases:
    - regex: .*
  reactions:
    # yaml-embedded-languages: javascript
    - format: js
      code: |
        function process(data) {
          Info("File actions: " + data.file.actions);
        }
    - format: shell
      code: |
        echo "$REACTION_DATA" | head -c 100
- kind: reactions_block_domain
  name: reactions_block_domain_block
  enabled: true
  breed: remote_domains
  mechanism: network_peers
  importance: high
  times:
  remote_domains:
    - Example.COM.
  remote_domains_type: exact
  flow_actions:
    - egress
    - ingress
  flow_actions_how: any
  arbitrary:
- kind: CryptoMinerExecution
  name: crypto_miner_execution
  breed: file_access
  mechanism: execution
  importance: critical
  arbitrary:
    - how: OR
      which: irrelevant
      items:
        - what: args
          which: pertinent
          pattern: (--donate-level|stratum)
  file_actions: execve
  bases:
    - regex: .*
- kind: serpro_blocklist
  name: serpro_blocklist
  breed: remote_cidrs
  mechanism: network_peers
  remote_domains_trie_type: suffix
  remote_domains: [.evil.com, bad.org]
  remote_cidrs:
    - 1.15.173.165/32
    - 10.1.2.3/8
    - 2001:db8::1
  protocol: TCP
  remote_port: 443
  flow_actions: created|ongoing
  flow_actions_excl: ingress
  mode: dry-run
`
	rs, errs := Parse("jibril.yaml", []byte(y))
	if len(errs) > 0 {
		t.Fatalf("errors: %q", errStrings(errs))
	}
	if len(rs) != 5 {
		t.Fatalf("got %d recipes", len(rs))
	}
	ssh, del, dom, miner, serpro := rs[0], rs[1], rs[2], rs[3], rs[4]

	if ssh.Enabled || ssh.Version != "1.0" || ssh.Importance != ImportanceMedium ||
		ssh.Documentation != "https://garnet.gitbook.io/jibril/detections/file-access/reading_of_ssh_keys" {
		t.Errorf("ssh metadata: %+v", ssh)
	}
	if !reflect.DeepEqual(ssh.FileActions, []FileAction{ActRead}) || ssh.FileActionsHow != HowAny {
		t.Errorf("ssh actions: %v %v", ssh.FileActions, ssh.FileActionsHow)
	}
	if !reflect.DeepEqual(ssh.Times, []Times{{TimesPerExe, 2, 17}, {TimesPerFullAncestry, 4, 19}}) {
		t.Errorf("ssh times: %+v", ssh.Times)
	}
	wantGroup := Group{How: GroupAND, Which: Pertinent, Line: 25, Items: []Item{{What: "cmd", Which: Irrelevant,
		Match: MatchRegex, Value: ValuePattern, Pattern: "(containerd|sshd|ssh|runc)", When: WhenEqual, Line: 28}}}
	if !reflect.DeepEqual(ssh.Arbitrary, []Group{wantGroup}) {
		t.Errorf("ssh arbitrary:\n got  %+v\n want %+v", ssh.Arbitrary, []Group{wantGroup})
	}
	if !reflect.DeepEqual(ssh.Paths, []PathMatch{{Regex: "(authorized_keys|id_rsa)$", Line: 32}}) {
		t.Errorf("ssh paths: %+v", ssh.Paths)
	}

	if !del.Enabled || del.Subtechnique != "none" || del.Times != nil || del.Arbitrary != nil {
		t.Errorf("deletion defaults: %+v", del)
	}
	if !reflect.DeepEqual(del.FileActions, []FileAction{ActMmap, ActOpen, ActUnlink, ActExecve}) || del.FileActionsHow != HowAll {
		t.Errorf("deletion actions: %v %v", del.FileActions, del.FileActionsHow)
	}
	if len(del.Reactions) != 2 || del.Reactions[0].Format != FormatJS || del.Reactions[1].Format != FormatShell ||
		del.Reactions[0].Line != 48 || !strings.HasPrefix(del.Reactions[0].Code, "function process(data) {\n") {
		t.Errorf("deletion reactions: %+v", del.Reactions)
	}

	if !reflect.DeepEqual(dom.RemoteDomains, []string{"example.com"}) || dom.RemoteDomainsType != DomainExact ||
		!reflect.DeepEqual(dom.FlowActions, []FlowAction{FlowIngress, FlowEgress}) {
		t.Errorf("domain recipe: %+v", dom)
	}

	if miner.Kind != "crypto_miner_execution" || !reflect.DeepEqual(miner.FileActions, []FileAction{ActExecve}) {
		t.Errorf("miner: kind %q actions %v", miner.Kind, miner.FileActions)
	}
	if g := miner.Arbitrary[0]; g.How != GroupOR || g.Which != Irrelevant || g.Items[0].Which != Pertinent {
		t.Errorf("miner group: %+v", g)
	}

	wantNets := []netip.Prefix{netip.MustParsePrefix("1.15.173.165/32"), netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("2001:db8::1/128")}
	if !reflect.DeepEqual(serpro.RemoteCIDRs, wantNets) {
		t.Errorf("serpro cidrs: %v", serpro.RemoteCIDRs)
	}
	if serpro.RemoteDomainsType != DomainSuffix || !reflect.DeepEqual(serpro.RemoteDomains, []string{".evil.com", "bad.org"}) {
		t.Errorf("serpro domains: %v %v", serpro.RemoteDomainsType, serpro.RemoteDomains)
	}
	if serpro.Protocol != ProtoTCP || serpro.RemotePort != 443 || serpro.Mode != ModeDryRun {
		t.Errorf("serpro network: %+v", serpro)
	}
	if !reflect.DeepEqual(serpro.FlowActions, []FlowAction{FlowCreated, FlowOngoing}) ||
		!reflect.DeepEqual(serpro.FlowActionsExcl, []FlowAction{FlowIngress}) {
		t.Errorf("serpro flows: %v excl %v", serpro.FlowActions, serpro.FlowActionsExcl)
	}
}

func TestDefaults(t *testing.T) {
	rs, errs := Parse("d.yaml", []byte(execBase))
	if len(errs) > 0 {
		t.Fatal(errStrings(errs))
	}
	r := rs[0]
	if !r.Enabled || r.Importance != ImportanceMedium || r.FileActionsHow != HowAny ||
		r.FlowActionsHow != HowAny || r.RemoteDomainsType != DomainExact || r.Mode != ModeUnset || r.Prevent != PreventNone {
		t.Errorf("defaults: %+v", r)
	}
	if !reflect.DeepEqual(r.FileActions, []FileAction{ActExecve}) {
		t.Errorf("execution default actions: %v", r.FileActions)
	}

	rs, errs = Parse("d.yaml", []byte(base))
	if len(errs) > 0 {
		t.Fatal(errStrings(errs))
	}
	if !reflect.DeepEqual(rs[0].FileActions, FileActions()) {
		t.Errorf("file_access default actions: %v", rs[0].FileActions)
	}
}

func TestMacroExpansion(t *testing.T) {
	cases := []struct {
		actions, excl string
		want          []FileAction
	}{
		{"any", "", FileActions()},
		{"open_related", "", []FileAction{ActOpen, ActClose}},
		{"read_related", "", []FileAction{ActLlseek, ActMmap, ActRead}},
		{"modify_related", "", []FileAction{ActFsync, ActWrite, ActRename, ActTruncate, ActUnlink, ActCreate, ActLink}},
		{"access_related", "", []FileAction{ActFsync, ActLlseek, ActMmap, ActOpen, ActRead, ActWrite, ActRename,
			ActTruncate, ActUnlink, ActCreate, ActClose, ActLink}},
		{"access_no_mmap_related", "", []FileAction{ActFsync, ActLlseek, ActOpen, ActRead, ActWrite, ActRename,
			ActTruncate, ActUnlink, ActCreate, ActClose, ActLink}},
		{"tamper_related", "", []FileAction{ActRename, ActTruncate, ActUnlink, ActLink}},
		// Lists mixing names and macros, duplicates, string forms and case.
		{"[read, read_related, open]", "", []FileAction{ActLlseek, ActMmap, ActOpen, ActRead}},
		{"'open|mmap|unlink|execve'", "", []FileAction{ActMmap, ActOpen, ActUnlink, ActExecve}},
		{"'Open, Close'", "", []FileAction{ActOpen, ActClose}},
		// Exclusions accept macros too and are removed from the wanted set.
		{"any", "[execve, read_related]", []FileAction{ActFasync, ActFlock, ActFsync, ActOpen, ActWrite,
			ActRename, ActTruncate, ActUnlink, ActCreate, ActClose, ActLink}},
		{"access_related", "mmap", []FileAction{ActFsync, ActLlseek, ActOpen, ActRead, ActWrite, ActRename,
			ActTruncate, ActUnlink, ActCreate, ActClose, ActLink}},
	}
	for _, tc := range cases {
		y := base + "  file_actions: " + tc.actions + "\n"
		if tc.excl != "" {
			y += "  file_actions_excl: " + tc.excl + "\n"
		}
		rs, errs := Parse("m.yaml", []byte(y))
		if len(errs) > 0 {
			t.Errorf("%s: %q", tc.actions, errStrings(errs))
			continue
		}
		if !reflect.DeepEqual(rs[0].FileActions, tc.want) {
			t.Errorf("%s excl %s:\n got  %v\n want %v", tc.actions, tc.excl, rs[0].FileActions, tc.want)
		}
	}
	// The macro table agrees with SPEC: access_related is open+read+modify related.
	union := map[FileAction]bool{}
	for _, m := range []string{"open_related", "read_related", "modify_related"} {
		acts, _ := ExpandFileAction(m)
		for _, a := range acts {
			union[a] = true
		}
	}
	acc, _ := ExpandFileAction("access_related")
	if len(acc) != len(union) {
		t.Errorf("access_related %v is not the union %v", acc, union)
	}
	for _, a := range acc {
		if !union[a] {
			t.Errorf("access_related has %s beyond the union", a)
		}
	}
}

func TestItemWhichAndMatch(t *testing.T) {
	y := base + `  arbitrary:
    - how: or
      which: IRRELEVANT
      items:
        - {what: exe, which: prefix, pattern: /tmp/}
        - {what: comm, match: exact, which: pertinent, pattern: xmrig}
        - {what: uid, numbers: [0, 1000]}
        - {what: pid, number: 500, when: smaller}
        - {what: start, time: "2026-01-01T00:00:00Z", when: bigger}
        - {what: uid, pattern: "^10"}
`
	rs, errs := Parse("w.yaml", []byte(y))
	if len(errs) > 0 {
		t.Fatal(errStrings(errs))
	}
	g := rs[0].Arbitrary[0]
	if g.How != GroupOR || g.Which != Irrelevant {
		t.Errorf("group: %+v", g)
	}
	it := g.Items
	if it[0].Which != "" || it[0].Match != MatchPrefix {
		t.Errorf("item 0: %+v", it[0])
	}
	if it[1].Which != Pertinent || it[1].Match != MatchExact {
		t.Errorf("item 1: %+v", it[1])
	}
	if it[2].Value != ValueNumbers || !reflect.DeepEqual(it[2].Numbers, []int64{0, 1000}) {
		t.Errorf("item 2: %+v", it[2])
	}
	if it[3].Value != ValueNumber || it[3].Number != 500 || it[3].When != WhenSmaller {
		t.Errorf("item 3: %+v", it[3])
	}
	if it[4].Value != ValueTime || it[4].Time.Year() != 2026 || it[4].When != WhenBigger {
		t.Errorf("item 4: %+v", it[4])
	}
	if it[5].Value != ValuePattern || it[5].What != "uid" {
		t.Errorf("item 5: %+v", it[5])
	}
}

func TestPreventAccepted(t *testing.T) {
	y := `- kind: miner_kill
  name: miner_kill
  mechanism: execution
  prevent: kill
  bases:
    - base: xmrig
    - dir: /opt/bad/
      base: miner
`
	rs, errs := Parse("p.yaml", []byte(y))
	if len(errs) > 0 {
		t.Fatal(errStrings(errs))
	}
	want := []PathMatch{{Base: "xmrig", Line: 6}, {Dir: "/opt/bad", Base: "miner", Line: 7}}
	if rs[0].Prevent != PreventKill || !reflect.DeepEqual(rs[0].Paths, want) {
		t.Errorf("prevent recipe: %v %+v", rs[0].Prevent, rs[0].Paths)
	}
}

func TestJSHeuristic(t *testing.T) {
	cases := []struct {
		code string
		ok   bool
	}{
		{"function process(data) {}", true},
		{"async function process (data) {}", true},
		{"function* process(d) {}", true},
		{"const process = (data) => {}", true},
		{"let process=function(d){}", true},
		{"var process = handler", true},
		{"process = function(d) {}", true},
		{"globalThis.process = function(d) {}", true},
		{"function processData(data) {}", false},
		{"function handle(data) { data.process = 1 }", false},
		{"if (process == null) {}", false},
		{"process => 1", false},
		{"Info('no function here')", false},
	}
	ctx := newParseContext()
	for _, tc := range cases {
		if got := ctx.jsProcess.MatchString(tc.code); got != tc.ok {
			t.Errorf("%q: defines process = %v, want %v", tc.code, got, tc.ok)
		}
	}
}

func TestSnakeCase(t *testing.T) {
	cases := map[string]string{
		"crypto_miner_execution":      "crypto_miner_execution",
		"CryptoMinerExecution":        "crypto_miner_execution",
		"crypto-miner execution":      "crypto_miner_execution",
		"  Crypto  Miner__Execution ": "crypto_miner_execution",
		"HTTPServerAccess":            "http_server_access",
		"SSHKeys2Read":                "ssh_keys2_read",
		"net.suspicious/tool":         "net_suspicious_tool",
		"é":                           "",
	}
	for in, want := range cases {
		if got := SnakeCase(in); got != want {
			t.Errorf("SnakeCase(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEmptyFiles(t *testing.T) {
	for _, y := range []string{"", "# only a comment\n", "~\n", "[]\n"} {
		rs, errs := Parse("e.yaml", []byte(y))
		if len(rs) != 0 || len(errs) != 0 {
			t.Errorf("%q: %d recipes, errors %q", y, len(rs), errStrings(errs))
		}
	}
}

func TestAliasesAreFollowed(t *testing.T) {
	y := `- kind: a
  name: a
  mechanism: file_access
  bases: &paths
    - dir: /etc
      base: shadow
- kind: b
  name: b
  mechanism: file_access
  bases: *paths
`
	rs, errs := Parse("a.yaml", []byte(y))
	if len(errs) > 0 {
		t.Fatal(errStrings(errs))
	}
	if len(rs) != 2 || !reflect.DeepEqual(rs[0].Paths, rs[1].Paths) {
		t.Errorf("aliased paths differ: %+v", rs)
	}
}

func TestTooLarge(t *testing.T) {
	_, errs := Parse("big.yaml", make([]byte, MaxFileSize+1))
	if got := errStrings(errs); len(got) != 1 || !strings.HasPrefix(got[0], "big.yaml:1: file is 16777217 bytes, over the") {
		t.Errorf("errors: %q", got)
	}
}

func TestHostileYAML(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"deep nesting", strings.Repeat("[", 20000) + strings.Repeat("]", 20000),
			"h.yaml:1: invalid YAML: exceeded max depth of 10000"},
		{"unknown anchor", "- kind: k\n  name: r\n  mechanism: file_access\n  base: *nope\n",
			"h.yaml:1: invalid YAML: unknown anchor 'nope' referenced"},
		{"recipe aliased into its own list", "- &r\n  kind: k\n  name: r\n  mechanism: network_peers\n  remote_cidrs: [*r]\n",
			"h.yaml:1: recipe r: field remote_cidrs[0]: expected a string, got a mapping"},
		{"NUL byte", "- kind: k\n  name: r\n  mechanism: file_access\n  base: \"a\\0b\"\n",
			"h.yaml:4: recipe r: field base: contains a NUL byte"},
	}
	for _, tc := range cases {
		_, errs := Parse("h.yaml", []byte(tc.yaml))
		if got := errStrings(errs); len(got) != 1 || got[0] != tc.want {
			t.Errorf("%s: errors %q, want %q", tc.name, got, tc.want)
		}
	}
}
