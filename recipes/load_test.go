package recipes

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	recipe := func(name string) string {
		return "- kind: k\n  name: " + name + "\n  mechanism: execution\n  base: " + name + "\n"
	}
	writeFile(t, filepath.Join(dir, "a.yaml"), recipe("alpha")+recipe("beta"))
	writeFile(t, filepath.Join(dir, "b.yml"), "# comment\n"+recipe("gamma"))
	// A duplicate across files: the later file loses.
	writeFile(t, filepath.Join(dir, "c.yaml"), recipe("alpha")+recipe("delta"))
	// Not recipe files: policies, tests, hidden files, other extensions, sub-directories.
	writeFile(t, filepath.Join(dir, "alpha.policy.yaml"), "recipe: alpha\nmode: enforce\n")
	writeFile(t, filepath.Join(dir, "alpha.test.yaml"), "recipe: alpha\ncases: []\n")
	writeFile(t, filepath.Join(dir, ".swap.yaml"), "not: [valid")
	writeFile(t, filepath.Join(dir, "notes.txt"), "hello")
	writeFile(t, filepath.Join(dir, "sub", "nested.yaml"), recipe("nested"))
	// A broken file reports its errors and does not stop the others.
	writeFile(t, filepath.Join(dir, "d.yaml"), "- kind: k\n  name: epsilon\n  mechanism: exec\n  base: x\n")
	// A symlink to a recipe file elsewhere is followed (Kubernetes ConfigMap layout).
	outside := filepath.Join(t.TempDir(), "real.yaml")
	writeFile(t, outside, recipe("zeta"))
	if err := os.Symlink(outside, filepath.Join(dir, "e.yaml")); err != nil {
		t.Fatal(err)
	}

	rs, errs := LoadDir(dir)
	var names []string
	for _, r := range rs {
		names = append(names, r.Name)
	}
	if want := []string{"alpha", "beta", "gamma", "delta", "zeta"}; !reflect.DeepEqual(names, want) {
		t.Errorf("loaded %v, want %v", names, want)
	}
	wantErrs := []string{
		filepath.Join(dir, "c.yaml") + ":2: recipe alpha: field name: duplicate name (first defined at " + filepath.Join(dir, "a.yaml") + ":1)",
		filepath.Join(dir, "d.yaml") + `:3: recipe epsilon: field mechanism: unknown value "exec" (want file_access, execution, file_access_and_execution, network_peers or network_flows)`,
	}
	if got := errStrings(errs); !reflect.DeepEqual(got, wantErrs) {
		t.Errorf("errors:\n got  %q\n want %q", got, wantErrs)
	}
	byName := map[string]*Recipe{}
	for _, r := range rs {
		byName[r.Name] = r
	}
	if r := byName["beta"]; r.File != filepath.Join(dir, "a.yaml") || r.Line != 5 {
		t.Errorf("beta at %s", r.Where())
	}
	if r := byName["gamma"]; r.File != filepath.Join(dir, "b.yml") || r.Line != 2 {
		t.Errorf("gamma at %s", r.Where())
	}
	if r := byName["zeta"]; r.File != filepath.Join(dir, "e.yaml") {
		t.Errorf("zeta at %s", r.Where())
	}
}

func TestLoadDirHostileEntries(t *testing.T) {
	dir := t.TempDir()
	// A FIFO must not hang the loader.
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.yaml"), 0o644); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	// A directory named like a recipe file is skipped.
	if err := os.Mkdir(filepath.Join(dir, "dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A dangling symlink is reported.
	if err := os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "dangling.yaml")); err != nil {
		t.Fatal(err)
	}
	rs, errs := LoadDir(dir)
	got := errStrings(errs)
	sort.Strings(got)
	if len(rs) != 0 || len(got) != 2 ||
		!strings.HasPrefix(got[0], filepath.Join(dir, "dangling.yaml")+":1: open recipe file:") ||
		got[1] != filepath.Join(dir, "fifo.yaml")+":1: not a regular file (p---------)" {
		t.Errorf("recipes %d, errors %q", len(rs), got)
	}

	if _, errs := LoadDir(filepath.Join(dir, "nope")); len(errs) != 1 ||
		!strings.HasPrefix(errs[0].Error(), "read recipe directory "+filepath.Join(dir, "nope")) {
		t.Errorf("missing directory: %v", errs)
	}
}

func TestIsRecipeFile(t *testing.T) {
	cases := map[string]bool{
		"a.yaml": true, "a.yml": true, "a.policy.yaml": false, "a.test.yaml": false,
		"a.policy.yml": false, "a.test.yml": false, ".a.yaml": false, "a.json": false,
		"policy.yaml": true, "a.yaml~": false,
	}
	for name, want := range cases {
		if got := IsRecipeFile(name); got != want {
			t.Errorf("IsRecipeFile(%q) = %v", name, got)
		}
	}
}
