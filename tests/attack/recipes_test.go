package attack

import (
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"

	"github.com/jibril-rt/jibril/recipes/builtin"
)

// builtinRecipes returns the recipes of the built-in library as YAML mappings.
func builtinRecipes(t *testing.T) []map[string]any {
	t.Helper()
	lib := builtin.FS()
	files, err := fs.Glob(lib, "*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var all []map[string]any
	for _, f := range files {
		if strings.HasSuffix(f, ".policy.yaml") || strings.HasSuffix(f, ".test.yaml") {
			continue
		}
		b, err := fs.ReadFile(lib, f)
		if err != nil {
			t.Fatal(err)
		}
		var list []map[string]any
		if err := yaml.Unmarshal(b, &list); err != nil {
			t.Fatalf("built-in %s: %v", f, err)
		}
		all = append(all, list...)
	}
	return all
}

// builtinRecipe returns a recipe of the built-in library as a YAML mapping, and the text of
// its policy file.
func builtinRecipe(t *testing.T, name string) (map[string]any, string) {
	t.Helper()
	for _, r := range builtinRecipes(t) {
		if r["name"] == name {
			pol, err := fs.ReadFile(builtin.FS(), name+".policy.yaml")
			if err != nil {
				t.Fatalf("policy of %s: %v", name, err)
			}
			return r, string(pol)
		}
	}
	t.Fatalf("no built-in recipe %s", name)
	return nil, ""
}

// copyBuiltin writes into dir a copy of a built-in recipe and of its policy, renamed
// name+suffix and changed by edit: the reaction code and the capabilities stay the library's.
// It returns the new name.
func copyBuiltin(t *testing.T, dir, name, suffix string, edit func(map[string]any)) string {
	t.Helper()
	r, pol := builtinRecipe(t, name)
	out := maps.Clone(r)
	renamed := name + suffix
	out["name"] = renamed
	edit(out)
	b, err := yaml.Marshal([]map[string]any{out})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, renamed+".yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The policy names the recipe, and globs under the recipe's own temp directory.
	pol = strings.ReplaceAll(pol, name, renamed)
	if err := os.WriteFile(filepath.Join(dir, renamed+".policy.yaml"), []byte(pol), 0o600); err != nil {
		t.Fatal(err)
	}
	return renamed
}

// repointed copies a built-in recipe to watch the given paths instead of its own.
func repointed(t *testing.T, dir, name, suffix string, bases []map[string]string) string {
	t.Helper()
	return copyBuiltin(t, dir, name, suffix, func(r map[string]any) {
		for _, k := range []string{"dir", "base", "regex", "bases"} {
			delete(r, k)
		}
		r["bases"] = bases
	})
}

// scoped copies a built-in recipe to match only the processes this test binary started (an
// ancestor's exe is the test binary), on top of its own filters. For the recipes whose match
// is broad enough to hit other work on a shared host: what the copy enforces stays this test's.
func scoped(t *testing.T, dir, name, suffix string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return copyBuiltin(t, dir, name, suffix, func(r map[string]any) {
		groups, _ := r["arbitrary"].([]any)
		r["arbitrary"] = append(append([]any(nil), groups...), map[string]any{
			"how": "OR", "which": "pertinent",
			"items": []any{map[string]any{"what": "ancient_exe", "pattern": "^" + regexp.QuoteMeta(self) + "$"}},
		})
	})
}
