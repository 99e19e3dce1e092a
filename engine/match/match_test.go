package match

import (
	"strings"
	"testing"

	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/recipes"
)

// compileYAML parses one recipe (fields indented by two spaces, after "- ") and compiles it.
func compileYAML(t *testing.T, fields string) *Matcher {
	t.Helper()
	y := "- kind: test\n  name: test\n" + fields
	rs, errs := recipes.Parse("test.yaml", []byte(y))
	if len(errs) > 0 || len(rs) != 1 {
		t.Fatalf("parse %q: %v", y, errs)
	}
	m, err := Compile(rs[0])
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return m
}

type mutation func(e *event.Event)

func fileAt(path string, actions ...string) mutation {
	return func(e *event.Event) {
		e.File.SetPath(path)
		e.File.SetActions(actions...)
	}
}

func exeAt(path string) mutation {
	return func(e *event.Event) { e.Process.Exe = path }
}

type matchCase struct {
	name   string
	recipe string
	kind   string
	mut    mutation
	want   bool
}

func runMatchCases(t *testing.T, cases []matchCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := compileYAML(t, tc.recipe)
			e := event.Sample(tc.kind)
			if tc.mut != nil {
				tc.mut(e)
			}
			if got := m.Match(e); got != tc.want {
				t.Errorf("Match = %v, want %v", got, tc.want)
			}
			// The prefilter never rejects what the matcher accepts.
			if m.Match(e) && !m.Prefilter().Pass(e) {
				t.Errorf("prefilter %+v rejects a matching event", m.Prefilter())
			}
		})
	}
}

func TestFileMatching(t *testing.T) {
	const fa = "  mechanism: file_access\n"
	runMatchCases(t, []matchCase{
		{"base exact", fa + "  base: shadow\n", event.TypeFileAccess, nil, true},
		{"base differs", fa + "  base: passwd\n", event.TypeFileAccess, nil, false},
		{"base is not a substring match", fa + "  base: shadow\n", event.TypeFileAccess, fileAt("/etc/shadow-", "read"), false},
		{"dir and base is the full path", fa + "  dir: /etc\n  base: shadow\n", event.TypeFileAccess, nil, true},
		{"dir and base not below", fa + "  dir: /etc\n  base: shadow\n", event.TypeFileAccess, fileAt("/etc/old/shadow", "read"), false},
		{"dir alone matches below", fa + "  dir: /root/.ssh\n", event.TypeFileAccess, fileAt("/root/.ssh/keys/id_rsa", "read"), true},
		{"dir alone matches itself", fa + "  dir: /root/.ssh\n", event.TypeFileAccess, fileAt("/root/.ssh", "open"), true},
		{"dir on path boundary", fa + "  dir: /root/.ssh\n", event.TypeFileAccess, fileAt("/root/.sshd/x", "read"), false},
		{"dir root", fa + "  dir: /\n", event.TypeFileAccess, nil, true},
		{"dir with trailing slash", fa + "  dir: /etc/\n", event.TypeFileAccess, nil, true},
		{"regex unanchored", fa + "  regex: sha.ow\n", event.TypeFileAccess, nil, true},
		{"regex anchored miss", fa + "  regex: ^shadow$\n", event.TypeFileAccess, nil, false},
		{"regex and dir both hold", fa + "  dir: /etc\n  regex: 'shadow$'\n", event.TypeFileAccess, nil, true},
		{"regex holds dir does not", fa + "  dir: /var\n  regex: 'shadow$'\n", event.TypeFileAccess, nil, false},
		{"bases any entry", fa + "  bases:\n    - base: passwd\n    - dir: /etc\n      base: shadow\n", event.TypeFileAccess, nil, true},
		{"bases no entry", fa + "  bases:\n    - base: passwd\n    - dir: /etc\n      base: group\n", event.TypeFileAccess, nil, false},
		{"path spelled with dots", fa + "  dir: /etc\n  base: shadow\n", event.TypeFileAccess, fileAt("/tmp/../etc//./shadow", "read"), true},
		{"path from dir and basename", fa + "  dir: /etc\n  base: shadow\n", event.TypeFileAccess,
			func(e *event.Event) { e.File.File = "" }, true},
		{"no path", fa + "  regex: .*\n", event.TypeFileAccess,
			func(e *event.Event) { e.File.File, e.File.Dir, e.File.Basename = "", "", "" }, false},
		{"no file section", fa + "  regex: .*\n", event.TypeFileAccess, func(e *event.Event) { e.File = nil }, false},

		// Actions.
		{"any of actions", fa + "  base: shadow\n  file_actions: [write, read]\n", event.TypeFileAccess, nil, true},
		{"none of actions", fa + "  base: shadow\n  file_actions: modify_related\n", event.TypeFileAccess, nil, false},
		{"all actions present", fa + "  base: shadow\n  file_actions: open|read\n  file_actions_how: all\n", event.TypeFileAccess, nil, true},
		{"all actions missing one", fa + "  base: shadow\n  file_actions: open|read|write\n  file_actions_how: all\n", event.TypeFileAccess, nil, false},
		{"macro open_related", fa + "  base: shadow\n  file_actions: open_related\n  file_actions_how: all\n", event.TypeFileAccess, nil, true},
		{"excluded action present", fa + "  base: shadow\n  file_actions: read_related\n  file_actions_excl: close\n", event.TypeFileAccess, nil, false},
		{"excluded action absent", fa + "  base: shadow\n  file_actions: read_related\n  file_actions_excl: mmap\n", event.TypeFileAccess, nil, true},
		{"action only in booleans", fa + "  base: shadow\n  file_actions: write\n", event.TypeFileAccess,
			func(e *event.Event) { e.File.Write = true }, true},
		{"action only in list", fa + "  base: shadow\n  file_actions: write\n", event.TypeFileAccess,
			func(e *event.Event) { e.File.Actions = append(e.File.Actions, "write") }, true},
		{"self deletion all", fa + "  regex: .*\n  file_actions: open|mmap|unlink|execve\n  file_actions_how: all\n", event.TypeFileAccess,
			fileAt("/tmp/x", "open", "mmap", "unlink", "execve"), true},

		// Event types.
		{"file recipe ignores executions", fa + "  regex: .*\n", event.TypeExecution, nil, false},
		{"file recipe ignores network", fa + "  regex: .*\n", event.TypeNetworkPeer, nil, false},
		{"unknown event type", fa + "  regex: .*\n", event.TypeFileAccess, func(e *event.Event) { e.EventType = "other" }, false},
		{"both mechanisms see files", "  mechanism: file_access_and_execution\n  base: shadow\n", event.TypeFileAccess, nil, true},
	})
}

// execLink makes the executed path (file.file) a link other than the loaded image.
func execLink(p string) mutation {
	return func(e *event.Event) { e.File.SetPath(p) }
}

func TestExecMatching(t *testing.T) {
	const ex = "  mechanism: execution\n"
	runMatchCases(t, []matchCase{
		{"base", ex + "  base: xmrig\n", event.TypeExecution, nil, true},
		{"base differs", ex + "  base: xmr\n", event.TypeExecution, nil, false},
		{"full path", ex + "  dir: /tmp/.cache\n  base: xmrig\n", event.TypeExecution, nil, true},
		{"full path other dir", ex + "  dir: /tmp\n  base: xmrig\n", event.TypeExecution, nil, false},
		{"dir prefix", ex + "  dir: /tmp\n", event.TypeExecution, nil, true},
		{"regex on full path", ex + "  regex: ^/tmp/.*$\n", event.TypeExecution, nil, true},
		{"jibril encoder regex", ex + "  regex: ^.*/base(16|32|64)$\n", event.TypeExecution, exeAt("/usr/bin/base64"), true},
		{"jibril encoder regex miss", ex + "  regex: ^.*/base(16|32|64)$\n", event.TypeExecution, exeAt("/usr/bin/basename"), false},
		{"exe falls back to file", ex + "  base: xmrig\n", event.TypeExecution, exeAt(""), true},
		{"no exe at all", ex + "  base: xmrig\n", event.TypeExecution, func(e *event.Event) { e.Process.Exe, e.File = "", nil }, false},
		{"execution recipe ignores file access", ex + "  base: shadow\n", event.TypeFileAccess, nil, false},
		{"both mechanisms see executions", "  mechanism: file_access_and_execution\n  base: xmrig\n", event.TypeExecution, nil, true},
		{"prevent recipe matches", ex + "  base: xmrig\n  prevent: kill\n", event.TypeExecution, nil, true},
		// A link executed as /tmp/kworker that loaded /tmp/.cache/xmrig: both names match.
		{"loaded image behind a link", ex + "  base: xmrig\n", event.TypeExecution, execLink("/tmp/kworker"), true},
		{"the link itself", ex + "  base: kworker\n", event.TypeExecution, execLink("/tmp/kworker"), true},
		{"neither", ex + "  base: sshd\n", event.TypeExecution, execLink("/tmp/kworker"), false},
	})
}

func TestNetworkMatching(t *testing.T) {
	const np = "  mechanism: network_peers\n"
	setRemote := func(addr string, names ...string) mutation {
		return func(e *event.Event) {
			e.Flow.Remote.Address = addr
			e.Flow.Remote.Name = ""
			e.Flow.Remote.Names = names
		}
	}
	runMatchCases(t, []matchCase{
		{"exact domain", np + "  remote_domains: [pool.supportxmr.com]\n", event.TypeNetworkPeer, nil, true},
		{"exact domain case and dot", np + "  remote_domains: [Pool.SupportXMR.com.]\n", event.TypeNetworkPeer, nil, true},
		{"exact domain is not suffix", np + "  remote_domains: [supportxmr.com]\n", event.TypeNetworkPeer, nil, false},
		{"suffix domain", np + "  remote_domains: [supportxmr.com]\n  remote_domains_type: suffix\n", event.TypeNetworkPeer, nil, true},
		{"suffix matches itself", np + "  remote_domains: [supportxmr.com]\n  remote_domains_type: suffix\n", event.TypeNetworkPeer,
			setRemote("198.18.7.7", "supportxmr.com"), true},
		{"suffix on label boundary", np + "  remote_domains: [xmr.com]\n  remote_domains_type: suffix\n", event.TypeNetworkPeer, nil, false},
		{"dotted suffix excludes itself", np + "  remote_domains: [.supportxmr.com]\n  remote_domains_trie_type: suffix\n", event.TypeNetworkPeer,
			setRemote("198.18.7.7", "supportxmr.com"), false},
		{"dotted suffix subdomain", np + "  remote_domains: [.supportxmr.com]\n  remote_domains_trie_type: suffix\n", event.TypeNetworkPeer, nil, true},
		{"prefix domain", np + "  remote_domains: [pool.]\n  remote_domains_type: prefix\n", event.TypeNetworkPeer, nil, true},
		{"prefix miss", np + "  remote_domains: [api.]\n  remote_domains_type: prefix\n", event.TypeNetworkPeer, nil, false},
		{"domain in names only", np + "  remote_domains: [b.example]\n", event.TypeNetworkPeer,
			setRemote("198.18.7.7", "a.example", "b.example"), true},
		{"no names", np + "  remote_domains: [pool.supportxmr.com]\n", event.TypeNetworkPeer, setRemote("198.18.7.7"), false},

		{"remote cidr", np + "  remote_cidrs: [198.18.0.0/15]\n", event.TypeNetworkPeer, nil, true},
		{"remote host", np + "  remote_cidrs: [10.0.0.1/32, 198.18.7.7/32]\n", event.TypeNetworkPeer, nil, true},
		{"remote cidr miss", np + "  remote_cidrs: [10.0.0.0/8]\n", event.TypeNetworkPeer, nil, false},
		{"mapped v4 address", np + "  remote_cidrs: [198.18.7.7]\n", event.TypeNetworkPeer, setRemote("::ffff:198.18.7.7"), true},
		{"v6 cidr", np + "  remote_cidrs: ['2001:db8::/32']\n", event.TypeNetworkPeer, setRemote("2001:db8::5"), true},
		{"bad address", np + "  remote_cidrs: [0.0.0.0/0]\n", event.TypeNetworkPeer, setRemote("not-an-ip"), false},
		{"local cidr", np + "  local_cidrs: [198.18.0.0/24]\n", event.TypeNetworkPeer, nil, true},
		{"local cidr miss", np + "  local_cidrs: [192.168.0.0/16]\n", event.TypeNetworkPeer, nil, false},

		{"remote port", np + "  remote_port: 443\n", event.TypeNetworkPeer, nil, true},
		{"remote port miss", np + "  remote_port: 3333\n", event.TypeNetworkPeer, nil, false},
		{"local port", np + "  local_port: 51234\n", event.TypeNetworkPeer, nil, true},
		{"local port miss", np + "  local_port: 22\n", event.TypeNetworkPeer, nil, false},
		{"port zero is any", np + "  remote_port: 0\n  remote_cidrs: [198.18.0.0/15]\n", event.TypeNetworkPeer, nil, true},
		{"protocol tcp", np + "  protocol: tcp\n  remote_port: 443\n", event.TypeNetworkPeer, nil, true},
		{"protocol udp miss", np + "  protocol: udp\n  remote_port: 443\n", event.TypeNetworkPeer, nil, false},
		{"protocol icmp covers icmpv6", np + "  protocol: icmp\n", event.TypeNetworkPeer,
			func(e *event.Event) { e.Flow.Proto = "ICMPv6" }, true},
		{"domain and cidr both required", np + "  remote_domains: [pool.supportxmr.com]\n  remote_cidrs: [10.0.0.0/8]\n", event.TypeNetworkPeer, nil, false},

		// Flow actions; the sample is egress, outgoing, started, ongoing.
		{"flow any", np + "  flow_actions: [ingress, egress]\n", event.TypeNetworkPeer, nil, true},
		{"flow any miss", np + "  flow_actions: [ingress, ended]\n", event.TypeNetworkPeer, nil, false},
		{"flow all", np + "  flow_actions: egress|outgoing|ongoing\n  flow_actions_how: all\n", event.TypeNetworkPeer, nil, true},
		{"flow all missing one", np + "  flow_actions: egress|ended\n  flow_actions_how: all\n", event.TypeNetworkPeer, nil, false},
		{"created reads started", np + "  flow_actions: created\n", event.TypeNetworkPeer, nil, true},
		{"flow excl present", np + "  flow_actions: [egress, ingress]\n  flow_actions_excl: outgoing\n", event.TypeNetworkPeer, nil, false},
		{"flow excl absent", np + "  flow_actions: [egress]\n  flow_actions_excl: incoming\n", event.TypeNetworkPeer, nil, true},
		{"flow excl alone", np + "  flow_actions_excl: terminated\n", event.TypeNetworkPeer, nil, true},

		{"no constraint matches every flow", np, event.TypeNetworkPeer, nil, true},
		{"no flow section", np, event.TypeNetworkPeer, func(e *event.Event) { e.Flow = nil }, false},
		{"network recipe ignores executions", np, event.TypeExecution, nil, false},
		{"network_flows mechanism", "  mechanism: network_flows\n  remote_port: 443\n", event.TypeNetworkPeer, nil, true},
	})
}

func TestArbitraryMatching(t *testing.T) {
	const ex = "  mechanism: execution\n  regex: .*\n"
	group := func(how, which, items string) string {
		return ex + "  arbitrary:\n    - how: " + how + "\n      which: " + which + "\n      items:\n" + items
	}
	runMatchCases(t, []matchCase{
		// Jibril's "keep only the miners": an irrelevant OR group with a pertinent item.
		{"conti style keeps matching args", group("OR", "irrelevant",
			"        - {what: args, which: pertinent, pattern: '(--donate-level|stratum)'}\n"), event.TypeExecution, nil, true},
		{"conti style drops other args", group("OR", "irrelevant",
			"        - {what: args, which: pertinent, pattern: '(--donate-level|stratum)'}\n"), event.TypeExecution,
			func(e *event.Event) { e.Process.Args = "-la" }, false},
		// Jibril's "drop the known tools": a pertinent AND group with irrelevant items.
		{"ssh style drops a listed cmd", group("AND", "pertinent",
			"        - {what: cmd, which: irrelevant, pattern: '(sshd|containerd)'}\n        - {what: args, which: irrelevant, pattern: '/python/'}\n"),
			event.TypeExecution, func(e *event.Event) { e.Process.Cmd = "/usr/sbin/sshd -D" }, false},
		{"ssh style drops the second item too", group("AND", "pertinent",
			"        - {what: cmd, which: irrelevant, pattern: '(sshd|containerd)'}\n        - {what: args, which: irrelevant, pattern: '/python/'}\n"),
			event.TypeExecution, func(e *event.Event) { e.Process.Args = "/usr/lib/python/x.py" }, false},
		{"ssh style keeps the rest", group("AND", "pertinent",
			"        - {what: cmd, which: irrelevant, pattern: '(sshd|containerd)'}\n        - {what: args, which: irrelevant, pattern: '/python/'}\n"),
			event.TypeExecution, nil, true},

		// SPEC wording: pertinent keeps when the group matches, irrelevant drops it.
		{"pertinent group matches", group("AND", "pertinent", "        - {what: comm, pattern: ^xmrig$}\n"), event.TypeExecution, nil, true},
		{"pertinent group misses", group("AND", "pertinent", "        - {what: comm, pattern: ^curl$}\n"), event.TypeExecution, nil, false},
		{"irrelevant group matches", group("AND", "irrelevant", "        - {what: comm, pattern: ^xmrig$}\n"), event.TypeExecution, nil, false},
		{"irrelevant group misses", group("AND", "irrelevant", "        - {what: comm, pattern: ^curl$}\n"), event.TypeExecution, nil, true},
		{"AND needs all", group("AND", "pertinent", "        - {what: comm, pattern: xmrig}\n        - {what: uid, number: 0}\n"), event.TypeExecution, nil, false},
		{"OR needs one", group("OR", "pertinent", "        - {what: comm, pattern: xmrig}\n        - {what: uid, number: 0}\n"), event.TypeExecution, nil, true},
		{"every group must keep", ex + "  arbitrary:\n    - items: [{what: comm, pattern: xmrig}]\n    - which: irrelevant\n      items: [{what: uid, number: 1000}]\n",
			event.TypeExecution, nil, false},

		// Attributes.
		{"exe", group("AND", "pertinent", "        - {what: exe, pattern: ^/tmp/}\n"), event.TypeExecution, nil, true},
		{"parent_exe", group("AND", "pertinent", "        - {what: parent_exe, pattern: dash$}\n"), event.TypeExecution, nil, true},
		{"parent_comm", group("AND", "pertinent", "        - {what: parent_comm, match: exact, pattern: sh}\n"), event.TypeExecution, nil, true},
		{"parent_cmd", group("AND", "pertinent", "        - {what: parent_cmd, which: contains, pattern: '-c /tmp'}\n"), event.TypeExecution, nil, true},
		{"parent_args", group("AND", "pertinent", "        - {what: parent_args, which: prefix, pattern: '-c'}\n"), event.TypeExecution, nil, true},
		{"parent missing", group("AND", "pertinent", "        - {what: parent_exe, pattern: .*}\n"), event.TypeExecution,
			func(e *event.Event) { e.Background.Ancestry = nil }, false},
		{"irrelevant parent missing", group("AND", "irrelevant", "        - {what: parent_exe, pattern: .*}\n"), event.TypeExecution,
			func(e *event.Event) { e.Background.Ancestry = nil }, true},
		{"task_or_parent_exe via parent", group("AND", "pertinent", "        - {what: task_or_parent_exe, which: suffix, pattern: /dash}\n"), event.TypeExecution, nil, true},
		{"task_or_parent_exe via task", group("AND", "pertinent", "        - {what: task_or_parent_exe, which: suffix, pattern: /xmrig}\n"), event.TypeExecution, nil, true},
		{"task_or_parent_args", group("AND", "pertinent", "        - {what: task_or_parent_args, pattern: '^-c /tmp'}\n"), event.TypeExecution, nil, true},
		{"ancient_exe", group("AND", "pertinent", "        - {what: ancient_exe, match: exact, pattern: /usr/sbin/sshd}\n"), event.TypeExecution, nil, true},
		{"ancient_exe excludes self", group("AND", "pertinent", "        - {what: ancient_exe, match: exact, pattern: /tmp/.cache/xmrig}\n"), event.TypeExecution, nil, false},
		{"uid equal", group("AND", "pertinent", "        - {what: uid, number: 1000}\n"), event.TypeExecution, nil, true},
		{"uid smaller", group("AND", "pertinent", "        - {what: uid, number: 1000, when: smaller}\n"), event.TypeExecution, nil, false},
		{"pid bigger", group("AND", "pertinent", "        - {what: pid, number: 500, when: bigger}\n"), event.TypeExecution, nil, true},
		{"uid numbers", group("AND", "pertinent", "        - {what: uid, numbers: [0, 1000]}\n"), event.TypeExecution, nil, true},
		{"uid numbers miss", group("AND", "pertinent", "        - {what: uid, numbers: [0, 33]}\n"), event.TypeExecution, nil, false},
		{"uid pattern", group("AND", "pertinent", "        - {what: uid, pattern: ^10}\n"), event.TypeExecution, nil, true},
		{"parent_uid", group("AND", "pertinent", "        - {what: parent_uid, number: 1000}\n"), event.TypeExecution, nil, true},
		{"parent_pid", group("AND", "pertinent", "        - {what: parent_pid, number: 4241}\n"), event.TypeExecution, nil, true},
		{"ppid", group("AND", "pertinent", "        - {what: ppid, number: 4241}\n"), event.TypeExecution, nil, true},
		{"start bigger", group("AND", "pertinent", "        - {what: start, time: '2026-01-01T00:00:00Z', when: bigger}\n"), event.TypeExecution, nil, true},
		{"start smaller", group("AND", "pertinent", "        - {what: start, time: '2026-01-01T00:00:00Z', when: smaller}\n"), event.TypeExecution, nil, false},
		{"parent_start", group("AND", "pertinent", "        - {what: parent_start, time: '2026-01-01T11:59:58.123456789Z'}\n"), event.TypeExecution, nil, true},
		{"bad start", group("AND", "pertinent", "        - {what: start, time: '2026-01-01T00:00:00Z', when: bigger}\n"), event.TypeExecution,
			func(e *event.Event) { e.Process.Start = "garbage" }, false},
		{"file", "  mechanism: file_access\n  regex: .*\n  arbitrary:\n    - items: [{what: file, which: prefix, pattern: /etc/}]\n", event.TypeFileAccess, nil, true},
		{"remote_ip", "  mechanism: network_peers\n  arbitrary:\n    - items: [{what: remote_ip, cidr: 198.18.0.0/15}]\n", event.TypeNetworkPeer, nil, true},
		{"local_ip miss", "  mechanism: network_peers\n  arbitrary:\n    - items: [{what: local_ip, cidr: 10.0.0.0/8}]\n", event.TypeNetworkPeer, nil, false},
		{"remote_port", "  mechanism: network_peers\n  arbitrary:\n    - items: [{what: remote_port, numbers: [443, 8443]}]\n", event.TypeNetworkPeer, nil, true},
		{"remote_domain", "  mechanism: network_peers\n  arbitrary:\n    - which: irrelevant\n      items: [{what: remote_domain, which: suffix, pattern: .supportxmr.com}]\n", event.TypeNetworkPeer, nil, false},
		{"network attribute on exec event", group("AND", "pertinent", "        - {what: remote_port, number: 443}\n"), event.TypeExecution, nil, false},
	})
}

func TestCompileErrors(t *testing.T) {
	good := func() *recipes.Recipe {
		return &recipes.Recipe{Name: "x", File: "x.yaml", Line: 1, Mechanism: recipes.MechFileAccess,
			Paths: []recipes.PathMatch{{Regex: ".*"}}}
	}
	cases := []struct {
		name string
		mod  func(r *recipes.Recipe)
		want string
	}{
		{"nil", nil, "compile recipe: nil recipe"},
		{"mechanism", func(r *recipes.Recipe) { r.Mechanism = "baseline" }, `compile recipe x (x.yaml:1): unknown mechanism "baseline"`},
		{"regex", func(r *recipes.Recipe) { r.Paths[0].Regex = "(" }, "compile recipe x (x.yaml:1): path entry 0: invalid regex: error parsing regexp: missing closing ): `(`"},
		{"relative dir", func(r *recipes.Recipe) { r.Paths[0] = recipes.PathMatch{Dir: "etc"} }, `compile recipe x (x.yaml:1): path entry 0: dir "etc" is not absolute`},
		{"empty entry", func(r *recipes.Recipe) { r.Paths[0] = recipes.PathMatch{} }, "compile recipe x (x.yaml:1): path entry 0 is empty"},
		{"action", func(r *recipes.Recipe) { r.FileActions = []recipes.FileAction{"peek"} }, `compile recipe x (x.yaml:1): unknown file action "peek"`},
		{"protocol", func(r *recipes.Recipe) { r.Mechanism = recipes.MechNetworkPeers; r.Protocol = "sctp" }, `compile recipe x (x.yaml:1): unknown protocol "sctp"`},
		{"domain type", func(r *recipes.Recipe) {
			r.Mechanism = recipes.MechNetworkPeers
			r.RemoteDomains = []string{"a.com"}
			r.RemoteDomainsType = "glob"
		}, `compile recipe x (x.yaml:1): unknown remote_domains_type "glob"`},
		{"group item", func(r *recipes.Recipe) {
			r.Arbitrary = []recipes.Group{{Items: []recipes.Item{{What: "colour", Value: recipes.ValuePattern, Pattern: "x"}}}}
		}, `compile recipe x (x.yaml:1): arbitrary[0]: items[0]: unknown what "colour"`},
		{"empty group", func(r *recipes.Recipe) { r.Arbitrary = []recipes.Group{{How: recipes.GroupOR}} },
			"compile recipe x (x.yaml:1): arbitrary[0]: no items"},
	}
	for _, tc := range cases {
		var r *recipes.Recipe
		if tc.mod != nil {
			r = good()
			tc.mod(r)
		}
		_, err := Compile(r)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s: err = %v, want %s", tc.name, err, tc.want)
		}
	}
	if _, err := Compile(good()); err != nil {
		t.Errorf("good recipe: %v", err)
	}
}

func TestMatchNilEvent(t *testing.T) {
	m := compileYAML(t, "  mechanism: file_access\n  regex: .*\n")
	if m.Match(nil) {
		t.Error("nil event matched")
	}
	if m.Recipe().Name != "test" {
		t.Error("Recipe()")
	}
}

func TestPrefilter(t *testing.T) {
	cases := []struct {
		name   string
		recipe string
		check  func(t *testing.T, pf *Prefilter)
	}{
		{"bare regex cannot be prefiltered", "  mechanism: file_access\n  bases:\n    - base: shadow\n    - regex: id_rsa$\n",
			func(t *testing.T, pf *Prefilter) {
				if pf != nil {
					t.Errorf("got %+v", pf)
				}
			}},
		{"exact names", "  mechanism: file_access\n  file_actions: modify_related\n  bases:\n    - base: shadow\n    - dir: /etc\n      base: sudoers\n    - dir: /etc/sudoers.d\n    - dir: /root\n      regex: key$\n",
			func(t *testing.T, pf *Prefilter) {
				if pf == nil {
					t.Fatal("nil")
				}
				if strings.Join(pf.Bases, ",") != "shadow" || strings.Join(pf.Paths, ",") != "/etc/sudoers" ||
					strings.Join(pf.DirPrefixes, ",") != "/etc/sudoers.d,/root" {
					t.Errorf("paths: %+v", pf)
				}
				if strings.Join(pf.Actions, ",") != "fsync,write,rename,truncate,unlink,create,link" {
					t.Errorf("actions: %v", pf.Actions)
				}
				if strings.Join(pf.EventTypes, ",") != event.TypeFileAccess {
					t.Errorf("types: %v", pf.EventTypes)
				}
			}},
		{"any action gives no action filter", "  mechanism: file_access\n  base: shadow\n",
			func(t *testing.T, pf *Prefilter) {
				if pf == nil || pf.Actions != nil {
					t.Errorf("got %+v", pf)
				}
			}},
		{"execution", "  mechanism: execution\n  prevent: kill\n  bases:\n    - base: xmrig\n    - dir: /opt\n      base: miner\n",
			func(t *testing.T, pf *Prefilter) {
				if pf == nil || strings.Join(pf.Bases, ",") != "xmrig" || strings.Join(pf.Paths, ",") != "/opt/miner" ||
					strings.Join(pf.EventTypes, ",") != event.TypeExecution || pf.Actions != nil {
					t.Errorf("got %+v", pf)
				}
			}},
		{"network cidrs", "  mechanism: network_peers\n  protocol: tcp\n  remote_cidrs: [198.18.0.0/15]\n  remote_port: 443\n",
			func(t *testing.T, pf *Prefilter) {
				if pf == nil || len(pf.RemoteCIDRs) != 1 || pf.RemotePort != 443 || pf.Protocol != "tcp" ||
					strings.Join(pf.EventTypes, ",") != event.TypeNetworkPeer {
					t.Errorf("got %+v", pf)
				}
			}},
		{"network domains", "  mechanism: network_peers\n  remote_domains: [supportxmr.com]\n  remote_domains_type: suffix\n",
			func(t *testing.T, pf *Prefilter) {
				if pf == nil || strings.Join(pf.RemoteDomains, ",") != "supportxmr.com" || pf.DomainMatch != "suffix" {
					t.Errorf("got %+v", pf)
				}
			}},
		{"network flow actions only", "  mechanism: network_peers\n  flow_actions: egress\n",
			func(t *testing.T, pf *Prefilter) {
				if pf != nil {
					t.Errorf("got %+v", pf)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.check(t, compileYAML(t, tc.recipe).Prefilter())
		})
	}
}

func TestPrefilterPass(t *testing.T) {
	m := compileYAML(t, "  mechanism: file_access\n  file_actions: write\n  dir: /etc\n  base: shadow\n")
	pf := m.Prefilter()
	e := event.Sample(event.TypeFileAccess)
	if pf.Pass(e) {
		t.Error("read event passed a write prefilter")
	}
	e.File.SetActions("write")
	if !pf.Pass(e) || !m.Match(e) {
		t.Error("write event rejected")
	}
	e.File.SetPath("/etc/passwd")
	if pf.Pass(e) {
		t.Error("other path passed")
	}
	if pf.Pass(event.Sample(event.TypeExecution)) || pf.Pass(nil) {
		t.Error("other event types passed")
	}
	var none *Prefilter
	if !none.Pass(e) {
		t.Error("nil prefilter must pass everything")
	}

	n := compileYAML(t, "  mechanism: network_peers\n  remote_domains: [pool.supportxmr.com]\n  remote_cidrs: [198.18.0.0/15]\n").Prefilter()
	ne := event.Sample(event.TypeNetworkPeer)
	if !n.Pass(ne) {
		t.Error("network event rejected")
	}
	ne.Flow.Remote.Address = "10.0.0.1"
	if n.Pass(ne) {
		t.Error("address outside the CIDRs passed")
	}
}

func BenchmarkMatchExecution(b *testing.B) {
	y := `- kind: crypto_miner
  name: crypto_miner
  mechanism: execution
  bases:
    - regex: .*
  arbitrary:
    - how: OR
      which: irrelevant
      items:
        - what: task_or_parent_args
          which: pertinent
          pattern: (--cpu-priority|--donate-level|stratum|coin=|wallet=|--algo|kawpow|nicehash|monero)
`
	rs, errs := recipes.Parse("b.yaml", []byte(y))
	if len(errs) > 0 {
		b.Fatal(errs)
	}
	m, err := Compile(rs[0])
	if err != nil {
		b.Fatal(err)
	}
	e := event.Sample(event.TypeExecution)
	b.ReportAllocs()
	for b.Loop() {
		if !m.Match(e) {
			b.Fatal("no match")
		}
	}
}

// FuzzCompileMatch checks that every recipe Parse accepts compiles, and that matching and
// limiting never panic.
func FuzzCompileMatch(f *testing.F) {
	f.Add("  mechanism: file_access\n  bases:\n    - dir: /etc\n      base: shadow\n  file_actions: read_related\n")
	f.Add("  mechanism: execution\n  regex: .*\n  arbitrary:\n    - how: OR\n      which: irrelevant\n      items: [{what: args, which: pertinent, pattern: x}]\n")
	f.Add("  mechanism: network_peers\n  remote_domains: [.a.com]\n  remote_domains_type: suffix\n  remote_cidrs: [10.0.0.0/8]\n")
	f.Add("  mechanism: network_flows\n  flow_actions: created|ended\n  flow_actions_how: all\n  times: [{kind: times_per_cmd, max: 1}]\n")
	samples := []*event.Event{event.Sample(event.TypeExecution), event.Sample(event.TypeFileAccess),
		event.Sample(event.TypeNetworkPeer), {}}
	f.Fuzz(func(t *testing.T, fields string) {
		rs, _ := recipes.Parse("f.yaml", []byte("- kind: f\n  name: f\n"+fields))
		for _, r := range rs {
			m, err := Compile(r)
			if err != nil {
				t.Fatalf("parsed recipe does not compile: %v", err)
			}
			l := NewLimiter(r.Times)
			pf := m.Prefilter()
			for _, e := range samples {
				if m.Match(e) && !pf.Pass(e) {
					t.Fatalf("prefilter %+v rejects a match", pf)
				}
				l.Allow(e)
			}
		}
	})
}
