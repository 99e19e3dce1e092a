package attack

import (
	"encoding/json"
	"fmt"
	"github.com/jibril-rt/jibril/tests/testkit"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestSetuidShell: `chmod u+s` (and `chmod 4755`) on a copy of /bin/sh, run from a shell in
// namespace A. setuid_bit_set (enforce) records the target in its data store and collects
// evidence on the shell that ran chmod (chmod itself has exited by then).
func TestSetuidShell(t *testing.T) {
	need(t, "sh", "chmod", "sleep")
	const recipe = "setuid_bit_set"
	p := newNetpair(t, testkit.Token(t))
	d := startDaemon(t, p, daemonOpts{modes: map[string]string{recipe: "enforce"}})
	dir := t.TempDir() // 0700: the setuid copies are reachable by root only
	cases := []struct {
		name string
		mode string
		key  string
	}{
		{"symbolic u+s", "u+s", "attack_setuid_contain_ms"},
		{"numeric 4755", "4755", "attack_setuid_numeric_contain_ms"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			target := filepath.Join(dir, "sh"+strconv.Itoa(i))
			copyFile(t, "/bin/sh", target, 0o755)
			// The intruder's shell stays a while after chmod, as a session would.
			a := startIn(t, p.a, "sh", "-c", "chmod "+c.mode+" "+target+" && sleep 30 && true")
			e := d.waitEvent(t, recipe, func(e map[string]any) bool { return testkit.Num(e, "process", "ppid") == a.pid() })
			if argv := fmt.Sprint(testkit.Field(e, "process", "argv")); !strings.Contains(argv, c.mode) || !strings.Contains(argv, target) {
				t.Fatalf("detected chmod argv = %s", argv)
			}
			uuid := testkit.Str(e, "uuid")
			d.waitLog(t, recipe, uuid, "setuid/setgid mode "+c.mode+" set on "+target+" by uid 0")
			ev := d.waitAudit(t, recipe, uuid, "CollectEvidence")
			if want := `["` + strconv.Itoa(a.pid()) + `"]`; compact(t, ev.Args) != want {
				t.Fatalf("CollectEvidence args %s, want the parent shell %s", ev.Args, want)
			}
			if _, m := d.evidence(t, ev); int(m["pid"].(float64)) != a.pid() {
				t.Fatalf("evidence manifest pid %v, want %d", m["pid"], a.pid())
			}
			st, err := os.Stat(target)
			if err != nil || st.Mode()&os.ModeSetuid == 0 {
				t.Fatalf("the attack did not happen: %s mode %v (%v)", target, st.Mode(), err)
			}
			recordTime(t, c.key, ev.at(t).Sub(a.t0))
		})
	}
}

// TestSudoersAndAuthorizedKeys: writes to a sudoers drop-in and to authorized_keys files, each
// in a test directory. The built-in recipes watch the real /etc/sudoers.d and ~/.ssh, which a
// test must not touch: the test loads copies of them (--recipes) whose paths point at its
// directories, with the built-in reaction code and policy unchanged.
func TestSudoersAndAuthorizedKeys(t *testing.T) {
	need(t, "sh", "sleep", "setpriv")
	tok := testkit.Token(t)
	p := newNetpair(t, tok)
	root, err := os.MkdirTemp("", "jibril-attack-files-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	// Traversable by www-data (uid 33), whose own ~/.ssh is the web shell's target.
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	sudoersD := filepath.Join(root, "etc", "sudoers.d")
	wwwSSH := filepath.Join(root, "var", "www", ".ssh")
	rootSSH := filepath.Join(root, "root", ".ssh")
	recipesDir := filepath.Join(root, "recipes")
	for _, d := range []string{sudoersD, wwwSSH, rootSSH, recipesDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(wwwSSH, 33, 33); err != nil {
		t.Fatal(err)
	}
	suffix := "_attack_" + tok
	sudoers := repointed(t, recipesDir, "sudoers_modification", suffix, []map[string]string{
		{"dir": filepath.Join(root, "etc"), "base": "sudoers"}, {"dir": sudoersD}})
	keys := repointed(t, recipesDir, "ssh_authorized_keys_tampering", suffix, []map[string]string{
		{"dir": wwwSSH, "base": "authorized_keys"}, {"dir": rootSSH, "base": "authorized_keys"}})
	d := startDaemon(t, p, daemonOpts{recipes: recipesDir, files: true,
		modes: map[string]string{sudoers: "enforce", keys: "enforce"}})
	if strings.Contains(d.log(), "recipe rejected") {
		t.Fatalf("a recipe was rejected:\n%s", d.log())
	}
	const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJibrilAttackTestKeyNotARealKey0000000000 intruder"

	t.Run("sudoers drop-in written by a shell", func(t *testing.T) {
		target := filepath.Join(sudoersD, "90-intruder")
		a := startIn(t, p.a, "sh", "-c", "echo 'intruder ALL=(ALL) NOPASSWD: ALL' > "+target+"; sleep 30")
		e := d.waitEvent(t, sudoers, func(e map[string]any) bool {
			return testkit.Num(e, "process", "pid") == a.pid() && testkit.Str(e, "file", "file") == target
		})
		uuid := testkit.Str(e, "uuid")
		fr := d.waitAudit(t, sudoers, uuid, "Freeze")
		if string(fr.Result) != "0" {
			t.Fatalf("Freeze returned %s, want 0", fr.Result)
		}
		if s := procState(a.pid()); s != "T" {
			t.Fatalf("the writer is in state %q, want T (stopped for forensics)", s)
		}
		recordTime(t, "attack_sudoers_contain_ms", fr.at(t).Sub(a.t0))
		d.waitLog(t, sudoers, uuid, "Froze pid "+strconv.Itoa(a.pid()))
		ev := d.waitAudit(t, sudoers, uuid, "CollectEvidence")
		bundle, m := d.evidence(t, ev)
		if int(m["pid"].(float64)) != a.pid() {
			t.Fatalf("evidence manifest pid %v, want %d", m["pid"], a.pid())
		}
		d.waitAudit(t, sudoers, uuid, "CreateTempDir")
		w := d.waitAudit(t, sudoers, uuid, "WriteFile")
		var args []string
		if err := json.Unmarshal(w.Args, &args); err != nil || len(args) == 0 {
			t.Fatalf("WriteFile args %s", w.Args)
		}
		if !strings.HasPrefix(args[0], filepath.Join(d.state, "tmp", sudoers)+"/sudoers-") {
			t.Fatalf("summary written to %s, want the recipe's temp directory under %s", args[0], d.state)
		}
		b, err := os.ReadFile(args[0])
		if err != nil {
			t.Fatal(err)
		}
		var sum struct {
			Recipe   string
			File     string
			Pid      int
			Frozen   bool
			Evidence string
		}
		if err := json.Unmarshal(b, &sum); err != nil {
			t.Fatalf("summary %s: %v", b, err)
		}
		if sum.Recipe != sudoers || sum.File != target || sum.Pid != a.pid() || !sum.Frozen || sum.Evidence != bundle {
			t.Fatalf("summary = %s", b)
		}
	})

	t.Run("key planted by a service account", func(t *testing.T) {
		target := filepath.Join(wwwSSH, "authorized_keys")
		a := startIn(t, p.a, "setpriv", "--reuid=33", "--regid=33", "--clear-groups",
			"sh", "-c", "echo '"+key+"' >> "+target+"; sleep 30")
		contain := a.killed(t)
		e := d.waitEvent(t, keys, func(e map[string]any) bool {
			return testkit.Num(e, "process", "pid") == a.pid() && testkit.Str(e, "file", "file") == target
		})
		if testkit.Num(e, "process", "uid") != 33 {
			t.Fatalf("writer uid %d, want 33", testkit.Num(e, "process", "uid"))
		}
		uuid := testkit.Str(e, "uuid")
		d.waitLog(t, keys, uuid, "key planted by a service")
		if row := d.waitAudit(t, keys, uuid, "KillCurrent"); string(row.Result) != "0" {
			t.Fatalf("KillCurrent returned %s, want 0", row.Result)
		}
		recordTime(t, "attack_authorized_keys_contain_ms", contain)
	})

	t.Run("key added by root is only warned about", func(t *testing.T) {
		target := filepath.Join(rootSSH, "authorized_keys")
		a := startIn(t, p.a, "sh", "-c", "echo '"+key+"' >> "+target+"; sleep 30")
		e := d.waitEvent(t, keys, func(e map[string]any) bool {
			return testkit.Num(e, "process", "pid") == a.pid() && testkit.Str(e, "file", "file") == target
		})
		uuid := testkit.Str(e, "uuid")
		d.waitLog(t, keys, uuid, "check the new key")
		d.waitLog(t, keys, uuid, "reaction done")
		out, err := d.cli(t, "audit", "list", "--json", "--recipe", keys)
		if err != nil {
			t.Fatal(err)
		}
		var rows []auditRow
		if err := json.Unmarshal(out, &rows); err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			if r.EventUUID == uuid {
				t.Fatalf("a person's key edit was acted on: %+v", r)
			}
		}
		if !a.running() {
			t.Fatalf("the writer ended: %v", a.err)
		}
	})
}
