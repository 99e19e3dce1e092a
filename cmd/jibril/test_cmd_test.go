package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testTree copies recipes/testrun/testdata/pass into a temporary directory, adds files, and
// returns the directory.
func testTree(t *testing.T, extra map[string]string) string {
	t.Helper()
	src := filepath.Join("..", "..", "recipes", "testrun", "testdata", "pass")
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, content := range extra {
		write(t, dst, name, content)
	}
	return dst
}

func TestJibrilTest(t *testing.T) {
	pass := testTree(t, nil)
	failing := testTree(t, map[string]string{"crypto_miner_execution.test.yaml": `recipe: crypto_miner_execution
cases:
  - name: expects a parent kill
    event: fixtures/xmrig_exec.json
    expect: {calls: [DataGet, ReadFile, KillParent]}
`})
	bad := testTree(t, map[string]string{"crypto_miner_execution.test.yaml": "recipe: crypto_miner_execution\ncases:\n  - name: a\n    event: fixtures/xmrig_exec.json\n    expext: {calls: []}\n"})
	single := filepath.Join(pass, "shell_from_web_server.test.yaml")

	cases := []struct {
		name     string
		args     []string
		code     int
		out      []string // substrings of stdout
		errLine  string   // substring of the error line
		lastLine string
	}{
		{"passing suite", []string{"test", pass}, 0, nil, "", "5 passed, 0 failed, 1 not testable"},
		{"verbose", []string{"test", "-v", pass}, 0,
			[]string{"=== RUN   crypto_miner_execution/golden_transcript\n--- PASS: crypto_miner_execution/golden_transcript ("}, "", "5 passed, 0 failed, 1 not testable"},
		{"one file", []string{"test", "-v", single}, 0,
			[]string{"--- PASS: shell_from_web_server/the_parent_kill_is_denied_under_the_strict_default ("}, "", "1 passed, 0 failed, 1 not testable"},
		{"--run", []string{"test", "-v", "--run", "already_dead", pass}, 0,
			[]string{"=== RUN   crypto_miner_execution/an_already_dead_miner_is_not_counted\n"}, "", "1 passed, 0 failed"},
		{"failure", []string{"test", failing}, 1,
			[]string{"--- FAIL: crypto_miner_execution/expects_a_parent_kill (", "    calls differ (- want, + got):\n",
				"      - KillParent\n      + KillCurrent() = 0\n      + DataSet(\"miners_terminated\", \"1\") = 0\n"}, "", "1 passed, 1 failed, 1 not testable"},
		{"jibril default policy", []string{"test", "--default-policy", "jibril", "--run", "strict", pass}, 1,
			[]string{"--- FAIL: shell_from_web_server/the_parent_kill_is_denied_under_the_strict_default"}, "", "0 passed, 1 failed"},
		{"bad test file", []string{"test", bad}, 2, nil,
			filepath.Join(bad, "crypto_miner_execution.test.yaml") + ":5: cases[0].expext: unknown field", ""},
		{"bad --run", []string{"test", "--run", "(", pass}, 2, nil, "--run: error parsing regexp", ""},
		{"bad --default-policy", []string{"test", "--default-policy", "lax", pass}, 2, nil, `--default-policy: "lax" is not strict or jibril`, ""},
		{"missing path", []string{"test", filepath.Join(pass, "nope")}, 2, nil, "nope: no such file or directory", ""},
		{"not a test file", []string{"test", filepath.Join(pass, "recipes.yaml")}, 2, nil, "not a directory or a .test.yaml file", ""},
		{"no path: the built-in recipes", []string{"test", "-v", "--run", "^crypto_miner_binary/"}, 0,
			[]string{"--- PASS: crypto_miner_binary/xmrig_is_killed_and_counted ("}, "", "4 passed, 0 failed"},
		{"--update needs a path", []string{"test", "--update"}, 2, nil, "--update rewrites golden files on disk: give the PATH of the recipes", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, errLine, code := run(t, "", tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; error %q; stdout:\n%s", code, tc.code, errLine, out)
			}
			for _, w := range tc.out {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			if tc.errLine != "" && !strings.Contains(errLine, tc.errLine) {
				t.Errorf("error %q, want it to contain %q", errLine, tc.errLine)
			}
			if tc.lastLine != "" {
				lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
				if lines[len(lines)-1] != tc.lastLine {
					t.Errorf("closing line %q, want %q", lines[len(lines)-1], tc.lastLine)
				}
			}
			if tc.code == 2 && out != "" {
				t.Errorf("bad input printed on stdout:\n%s", out)
			}
		})
	}
}

func TestJibrilTestTranscriptsAndUpdate(t *testing.T) {
	dir := testTree(t, map[string]string{"crypto_miner_execution.test.yaml": `recipe: crypto_miner_execution
cases:
  - name: snapshot
    event: fixtures/xmrig_exec.json
    files: {"/proc/4242/status": "Name: xmrig\n"}
    golden: true
`})
	golden := filepath.Join(dir, "crypto_miner_execution.golden", "snapshot.json")
	if _, errLine, code := run(t, "", "test", dir); code != 1 {
		t.Fatalf("without a golden file: exit %d %s", code, errLine)
	}
	out, errLine, code := run(t, "", "test", "--update", dir)
	if code != 0 || !strings.Contains(out, "note: updated golden file "+golden) {
		t.Fatalf("--update: exit %d %s\n%s", code, errLine, out)
	}
	t1, t2 := t.TempDir(), t.TempDir()
	for _, td := range []string{t1, t2} {
		if out, errLine, code := run(t, "", "test", "--transcripts", td, dir); code != 0 {
			t.Fatalf("against the golden file: exit %d %s\n%s", code, errLine, out)
		}
	}
	name := "crypto_miner_execution.snapshot.json"
	a, err := os.ReadFile(filepath.Join(t1, name))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(t2, name))
	g, _ := os.ReadFile(golden)
	if !bytes.Equal(a, b) || !bytes.Equal(a, g) {
		t.Errorf("transcripts differ between runs or from the golden file:\n%s\n---\n%s\n---\n%s", a, b, g)
	}
	if !bytes.Contains(a, []byte(`"helper": "KillCurrent"`)) {
		t.Errorf("transcript lacks the kill:\n%s", a)
	}
}
