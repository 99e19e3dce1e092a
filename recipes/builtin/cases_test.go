package builtin

import (
	"bytes"
	"context"
	"testing"

	"github.com/jibril-rt/jibril/recipes/testrun"
)

// TestReactionCases runs every case of every <recipe>.test.yaml with the real runner behind
// `jibril test` (recipes/testrun): each reaction in the wasm sandbox, under its own policy, in
// the hermetic test world, compared with the case's exact calls, logs, store and files.
func TestReactionCases(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every reaction in the wasm sandbox")
	}
	suites := loadSuites(t)
	total := 0
	for _, s := range suites {
		total += len(s.Cases)
	}
	var out bytes.Buffer
	sum, err := testrun.Run(context.Background(), suites, testrun.Options{Out: &out, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if sum.Failed > 0 || sum.Skipped > 0 || sum.Passed != total {
		t.Errorf("%s of %d cases\n%s", sum.Line(), total, out.String())
	}
	t.Log(sum.Line())
}
