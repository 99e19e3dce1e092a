package builtin

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/recipes/testrun"
)

// library is every embedded recipe and policy, loaded with the real loaders, and the test
// files as recipes/testrun pairs them.
type library struct {
	recipes  []*recipes.Recipe
	policies map[string]*policy.Policy
	suites   map[string]*testrun.Suite
}

func loadSuites(t *testing.T) []*testrun.Suite {
	t.Helper()
	suites, errs := testrun.Load([]testrun.Source{{FS: FS(), Name: "builtin"}}, "strict")
	for _, e := range errs {
		t.Errorf("test files: %v", e)
	}
	return suites
}

func loadLibrary(t *testing.T) *library {
	t.Helper()
	lib := &library{policies: map[string]*policy.Policy{}, suites: map[string]*testrun.Suite{}}
	names, err := fs.Glob(FS(), "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		data, err := fs.ReadFile(FS(), n)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasSuffix(n, policy.FileSuffix):
			pol, err := policy.Parse(n, data, policy.DefaultLimits())
			if err != nil {
				t.Errorf("policy %s: %v", n, err)
				continue
			}
			lib.policies[pol.Recipe] = pol
		case strings.HasSuffix(n, testrun.Suffix):
		case recipes.IsRecipeFile(n):
			rs, errs := recipes.Parse(n, data)
			for _, e := range errs {
				t.Errorf("recipe file: %v", e)
			}
			lib.recipes = append(lib.recipes, rs...)
		default:
			t.Errorf("unexpected file %s in the library", n)
		}
	}
	for _, s := range loadSuites(t) {
		if prev, dup := lib.suites[s.Recipe.Name]; dup {
			t.Errorf("%s and %s both test %s", prev.File, s.File, s.Recipe.Name)
		}
		lib.suites[s.Recipe.Name] = s
	}
	return lib
}

// TestLibraryLoads parses every embedded file with the real loaders (and once more through
// recipes.LoadDir and policy.Load on a copy on disk, the way the daemon reads a directory) and
// checks that every recipe has its own policy file and a test file with cases, and every
// policy and test file a recipe.
func TestLibraryLoads(t *testing.T) {
	lib := loadLibrary(t)
	if len(lib.recipes) < 15 {
		t.Fatalf("only %d recipes loaded", len(lib.recipes))
	}
	seen := map[string]bool{}
	for _, r := range lib.recipes {
		seen[r.Name] = true
		if len(r.Reactions) == 0 {
			t.Errorf("%s: recipe %s has no reaction", r.Where(), r.Name)
		}
		if _, ok := lib.policies[r.Name]; !ok {
			t.Errorf("%s: recipe %s has no %s%s", r.Where(), r.Name, r.Name, policy.FileSuffix)
		}
		s, ok := lib.suites[r.Name]
		if !ok {
			t.Errorf("%s: recipe %s has no %s%s", r.Where(), r.Name, r.Name, testrun.Suffix)
			continue
		}
		if len(s.Cases) == 0 {
			t.Errorf("%s has no case", s.File)
		}
		if want := r.Name + policy.FileSuffix; s.Policy == nil || path.Base(s.Policy.Source) != want {
			t.Errorf("%s runs under policy %v, want %s", s.File, s.Policy, want)
		}
	}
	for n := range lib.policies {
		if !seen[n] {
			t.Errorf("%s%s: no such recipe", n, policy.FileSuffix)
		}
	}
	for n, s := range lib.suites {
		if !seen[n] {
			t.Errorf("%s: no such recipe in the library", s.File)
		}
	}

	dir := t.TempDir()
	if err := os.CopyFS(dir, FS()); err != nil {
		t.Fatal(err)
	}
	rs, errs := recipes.LoadDir(dir)
	for _, e := range errs {
		t.Errorf("LoadDir: %v", e)
	}
	if len(rs) != len(lib.recipes) {
		t.Errorf("LoadDir found %d recipes, Parse %d", len(rs), len(lib.recipes))
	}
	for _, r := range rs {
		if _, err := policy.Load(filepath.Join(dir, r.Name+policy.FileSuffix), policy.DefaultLimits()); err != nil {
			t.Errorf("policy.Load: %v", err)
		}
	}
}

// TestDefaultModes: only high-confidence recipes enforce out of the box; the rest are dry-run.
func TestDefaultModes(t *testing.T) {
	enforce := map[string]bool{"crypto_miner_binary": true}
	lib := loadLibrary(t)
	for _, r := range lib.recipes {
		pol := lib.policies[r.Name]
		if pol == nil {
			continue
		}
		if !pol.ModeSet {
			t.Errorf("%s%s: no mode (every built-in policy says its mode)", r.Name, policy.FileSuffix)
		}
		want := policy.ModeDryRun
		if enforce[r.Name] {
			want = policy.ModeEnforce
		}
		if pol.Mode != want {
			t.Errorf("%s: mode %s, want %s", r.Name, pol.Mode, want)
		}
		if r.Mode != recipes.ModeUnset && string(r.Mode) != string(pol.Mode) {
			t.Errorf("%s: recipe says mode %s, policy %s", r.Where(), r.Mode, pol.Mode)
		}
		if r.Prevent != recipes.PreventNone && pol.Mode != policy.ModeEnforce {
			t.Errorf("%s: prevent %s on a recipe that is not enforced", r.Where(), r.Prevent)
		}
	}
}

// TestCasesAreWellFormed checks what can be checked without running the reactions: every
// case's event decodes as a SPEC §3 event of a type the recipe's mechanism receives, every
// fixture is used, and the library holds enough cases.
func TestCasesAreWellFormed(t *testing.T) {
	lib := loadLibrary(t)
	total := 0
	for _, s := range lib.suites {
		for _, c := range s.Cases {
			total++
			where := fmt.Sprintf("%s:%d: case %q", s.File, c.Line, c.Name)
			ev, err := event.Decode(c.Event)
			if err != nil {
				t.Errorf("%s: %v", where, err)
				continue
			}
			m := s.Recipe.Mechanism
			ok := (ev.EventType == event.TypeExecution && m.MatchesExecutions()) ||
				(ev.EventType == event.TypeFileAccess && m.MatchesFiles()) ||
				(ev.EventType == event.TypeNetworkPeer && m.MatchesNetwork())
			if !ok {
				t.Errorf("%s: a %q event cannot reach a %s recipe", where, ev.EventType, m)
			}
		}
	}
	if total < 45 {
		t.Errorf("%d test cases in the library, want at least 45", total)
	}

	// Fixture use, from the raw test files (the runner hands events over already read).
	used := map[string]bool{}
	tests, _ := fs.Glob(FS(), "*"+testrun.Suffix)
	for _, n := range tests {
		data, err := fs.ReadFile(FS(), n)
		if err != nil {
			t.Fatal(err)
		}
		var tf struct {
			Cases []struct {
				Event any `yaml:"event"`
			} `yaml:"cases"`
		}
		if err := yaml.Unmarshal(data, &tf); err != nil {
			t.Fatalf("%s: %v", n, err)
		}
		for _, c := range tf.Cases {
			if p, ok := c.Event.(string); ok {
				used[path.Clean(p)] = true
			}
		}
	}
	fixtures, _ := fs.Glob(FS(), "fixtures/*.json")
	for _, f := range fixtures {
		if !used[f] {
			t.Errorf("%s is used by no test case", f)
		}
	}
	t.Logf("%d recipes, %d test cases, %d fixtures", len(lib.recipes), total, len(fixtures))
}
