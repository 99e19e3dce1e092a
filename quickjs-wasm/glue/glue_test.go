package glue

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const dist = "../node_modules/@jitl/quickjs-ng-wasmfile-release-sync/dist"

func realGlue(t *testing.T) (string, []byte) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(dist, "emscripten-module.mjs"))
	if err != nil {
		t.Skipf("the npm package is not fetched (run make wasm): %v", err)
	}
	wasm, err := os.ReadFile(filepath.Join(dist, "emscripten-module.wasm"))
	if err != nil {
		t.Skipf("the npm package is not fetched (run make wasm): %v", err)
	}
	return string(src), wasm
}

func TestRealGlueParsesAndChecks(t *testing.T) {
	src, wasm := realGlue(t)
	tab, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	if len(tab.Imports) != 20 || tab.MemoryImport == "" {
		t.Fatalf("imports %d (want 20), memory %q", len(tab.Imports), tab.MemoryImport)
	}
	for _, name := range []string{"QTS_Eval", "QTS_Call", "QTS_NewFunction", "malloc", "free", "ctors"} {
		if tab.Exports[name] == "" {
			t.Errorf("export %s missing from the table", name)
		}
	}
	if err := Check(context.Background(), tab, wasm); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(GoSource(tab, "x", "test")), "ExportEval ") {
		t.Fatal("generated Go lacks ExportEval")
	}
}

// A glue that differs from what we know must fail the build with a clear message.
func TestModifiedGlueIsRejected(t *testing.T) {
	src, wasm := realGlue(t)
	tab, err := Parse(src)
	if err != nil {
		t.Fatal(err)
	}
	evalName := tab.Exports["QTS_Eval"]
	callName := tab.Exports["QTS_Call"]
	cases := []struct {
		name, from, to, want string
		check                bool // the edit parses; Check against the wasm must catch it
	}{
		{"unknown export", "d._QTS_Eval=", "d._QTS_EvalAsync=", "unknown export QTS_EvalAsync", false},
		{"unknown import body", "()=>Date.now()", "()=>Date.now()+1", "unknown body", false},
		{"callback renamed", "callbacks.shouldInterrupt(", "callbacks.mayInterrupt(", "unknown body", false},
		{"import module renamed", "{a:ya}", "{env:ya}", "unknown module \"a\"", true},
		{"export moved to another function", "d._QTS_Eval=b." + evalName + ";", "d._QTS_Eval=b." + callName + ";", "signature", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(src, c.from) {
				t.Fatalf("test fixture: %q not in the glue", c.from)
			}
			mod := strings.Replace(src, c.from, c.to, 1)
			tab, err := Parse(mod)
			if c.check {
				if err != nil {
					t.Fatalf("parse: %v", err)
				}
				err = Check(context.Background(), tab, wasm)
			}
			if err == nil {
				t.Fatal("modified glue accepted")
			}
			if !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q, want one line containing %q", err, c.want)
			}
		})
	}
}
