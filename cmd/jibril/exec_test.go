package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run executes the CLI in-process and returns stdout, the error line and the exit code.
func run(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&bytes.Buffer{})
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return out.String(), "", 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return out.String(), ee.msg, ee.code
	}
	return out.String(), err.Error(), 2
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestSandboxExec(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	good := write(t, dir, "good.js", `function process(d) { Info("pid " + d.process.pid); KillCurrent() }`)
	throws := write(t, dir, "throws.js", `function process(d) { throw new TypeError("nope") }`)
	loops := write(t, dir, "loops.js", `function process(d) { for (;;) {} }`)
	syntax := write(t, dir, "syntax.js", `function process(d) { if ( }`)
	noproc := write(t, dir, "noproc.js", `function handle(d) {}`)
	event := write(t, dir, "event.json", `{"uuid":"e-1","process":{"pid":4242,"ppid":4100}}`)
	badJSON := write(t, dir, "bad.json", `{"process":`)
	array := write(t, dir, "array.json", `[1,2]`)
	recipe := write(t, dir, "r.yaml", "- kind: crypto_miner\n  name: miner_exec\n  breed: execution\n  mechanism: execution\n  base: xmrig\n  reactions:\n    - format: js\n      code: |\n        function process(d) { Info(name + \" \" + kind); KillCurrent() }\n")
	badPolicy := write(t, dir, "p.policy.yaml", "recipe: miner_exec\ncapabilities:\n  proc.kill: [current]\n")
	write(t, dir, "miner_exec.policy.yaml", "recipe: miner_exec\nmode: enforce\ncapabilities:\n  process.kill: [current]\n")

	cases := []struct {
		name   string
		stdin  string
		args   []string
		code   int
		status string // transcript status when code is 0 or 1
		errHas string // the one-line error when code is 2
	}{
		{"ok dry-run", "", []string{"--code", good, "--event", event}, 0, "ok", ""},
		{"event from stdin", `{"process":{"pid":7000}}`, []string{"--code", good, "--event", "-"}, 0, "ok", ""},
		{"throws", "", []string{"--code", throws, "--event", event}, 1, "error", ""},
		{"timeout", "", []string{"--code", loops, "--event", event, "--timeout", "50ms"}, 1, "timeout", ""},
		{"recipe with policy file", "", []string{"--recipe", recipe, "--event", event}, 0, "ok", ""},
		{"missing code file", "", []string{"--code", filepath.Join(dir, "nope.js"), "--event", event}, 2, "", "nope.js: no such file or directory"},
		{"missing event file", "", []string{"--code", good, "--event", filepath.Join(dir, "nope.json")}, 2, "", "nope.json: no such file or directory"},
		{"no event flag", "", []string{"--code", good}, 2, "", "--event FILE|- is required"},
		{"invalid event JSON", "", []string{"--code", good, "--event", badJSON}, 2, "", "bad.json: invalid event JSON"},
		{"event not an object", "", []string{"--code", good, "--event", array}, 2, "", "array.json: invalid event JSON"},
		{"syntax error", "", []string{"--code", syntax, "--event", event}, 2, "", "syntax.js: SyntaxError"},
		{"no process function", "", []string{"--code", noproc, "--event", event}, 2, "", "noproc.js: the reaction defines no process(data) function"},
		{"both code and recipe", "", []string{"--code", good, "--recipe", recipe, "--event", event}, 2, "", "not both"},
		{"neither", "", []string{"--event", event}, 2, "", "give --code FILE.js or --recipe FILE"},
		{"bad default policy", "", []string{"--code", good, "--event", event, "--default-policy", "open"}, 2, "", `--default-policy: "open" is not strict or jibril`},
		{"bad policy file", "", []string{"--code", good, "--event", event, "--policy", badPolicy}, 2, "", "p.policy.yaml:3: capabilities.proc.kill: unknown capability"},
		{"unknown recipe name", "", []string{"--recipe", recipe, "--name", "other", "--event", event}, 2, "", `no recipe named "other"`},
		{"reaction out of range", "", []string{"--recipe", recipe, "--reaction", "3", "--event", event}, 2, "", "--reaction 3 is out of range"},
		{"negative timeout", "", []string{"--code", good, "--event", event, "--timeout", "-1s"}, 2, "", "is negative"},
		{"unknown flag", "", []string{"--code", good, "--event", event, "--bogus"}, 2, "", "unknown flag: --bogus"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			args := append([]string{"sandbox", "exec", "--state-dir", state}, c.args...)
			out, msg, code := run(t, c.stdin, args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d (stderr %q, stdout %q)", code, c.code, msg, out)
			}
			if c.code == 2 {
				if out != "" {
					t.Fatalf("bad input printed on stdout: %q", out)
				}
				if !strings.Contains(msg, c.errHas) || strings.Contains(msg, "\n") {
					t.Fatalf("error %q, want one line containing %q", msg, c.errHas)
				}
				return
			}
			var tr struct {
				Status string `json:"status"`
				Mode   string `json:"mode"`
				Calls  []struct {
					Helper string `json:"helper"`
					Result any    `json:"result"`
				} `json:"calls"`
			}
			if err := json.Unmarshal([]byte(out), &tr); err != nil {
				t.Fatalf("transcript is not JSON: %v\n%s", err, out)
			}
			if tr.Status != c.status || tr.Mode != "dry-run" {
				t.Fatalf("status %s mode %s, want %s dry-run", tr.Status, tr.Mode, c.status)
			}
		})
	}
	// The recipe's own policy grants kill: the dry-run records a successful KillCurrent, while the
	// strict default for --code denies it.
	out, _, _ := run(t, "", "sandbox", "exec", "--state-dir", state, "--recipe", recipe, "--event", event)
	if !strings.Contains(out, `"helper": "KillCurrent"`) || !strings.Contains(out, `"result": 0`) || !strings.Contains(out, `"msg": "miner_exec crypto_miner"`) {
		t.Fatalf("recipe run transcript: %s", out)
	}
	out, _, _ = run(t, "", "sandbox", "exec", "--state-dir", state, "--code", good, "--event", event)
	if !strings.Contains(out, `"errno": "capability denied: process.kill (default:strict)"`) {
		t.Fatalf("strict default transcript: %s", out)
	}
}
