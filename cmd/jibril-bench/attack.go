package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// attackDir is the attack suite: end-to-end attacks against a running daemon that, when
// JIBRIL_ATTACK_TIMES names a file, write their detect-to-contain times there as {key: ms}.
const attackDir = "tests/attack"

// benchAttack runs the attack suite and returns the times it wrote. It needs root, the tools
// the suite uses and the suite itself; a run that fails still contributes the times it wrote,
// with the failure in the notes.
func benchAttack(ctx context.Context) (map[string]float64, []string, error) {
	if err := needKernel(); err != nil {
		return nil, nil, err
	}
	for _, tool := range []string{"go", "ip", "nsenter", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, nil, fmt.Errorf("needs %s", tool)
		}
	}
	tests, _ := filepath.Glob(filepath.Join(attackDir, "*_test.go"))
	if len(tests) == 0 {
		return nil, nil, fmt.Errorf("no attack suite: %s has no tests yet", attackDir)
	}
	timeout := 5 * time.Minute
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl) - 20*time.Second
		if left < 30*time.Second {
			return nil, nil, fmt.Errorf("only %s left of the bench's time budget", time.Until(dl).Round(time.Second))
		}
		timeout = min(timeout, left)
	}
	f, err := os.CreateTemp("", "jibril-attack-times-*.json")
	if err != nil {
		return nil, nil, err
	}
	times := f.Name()
	f.Close()
	_ = os.Remove(times) // the suite creates it: an empty file would read as "ran, wrote nothing"
	defer os.Remove(times)

	cctx, cancel := context.WithTimeout(ctx, timeout+10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, "go", "test", "./"+attackDir+"/", "-run", ".", "-count=1", "-timeout", timeout.Round(time.Second).String())
	cmd.Env = append(os.Environ(), "JIBRIL_ATTACK_TIMES="+times)
	out, runErr := cmd.CombinedOutput()

	var notes []string
	if runErr != nil {
		notes = append(notes, fmt.Sprintf("attack suite: go test failed (%v): %s", runErr, failures(string(out))))
	}
	b, err := os.ReadFile(times)
	if err != nil {
		if runErr != nil {
			return nil, notes, fmt.Errorf("go test %s: %v (no times written): %s", attackDir, runErr, failures(string(out)))
		}
		return nil, notes, fmt.Errorf("the attack suite passed but wrote no times to JIBRIL_ATTACK_TIMES (%v)", err)
	}
	var raw map[string]float64
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, notes, fmt.Errorf("attack times %s: not a JSON object of numbers: %w", times, err)
	}
	res := map[string]float64{}
	var keys []string
	for k, v := range raw {
		if !validKey(k) || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			notes = append(notes, fmt.Sprintf("attack suite: ignored key %q = %v (keys are [a-z0-9_], values finite ms >= 0)", k, v))
			continue
		}
		res[k] = v
		keys = append(keys, k)
	}
	if len(res) == 0 {
		return nil, notes, errors.New("the attack suite wrote no usable times")
	}
	sort.Strings(keys)
	notes = append(notes, fmt.Sprintf("attack suite: %d times from `go test ./%s/` (%s)", len(res), attackDir, strings.Join(keys, ", ")))
	return res, notes, nil
}

func validKey(k string) bool {
	if k == "" || len(k) > 64 {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// failures names the failed tests of a go test output (with their first message line), or
// gives its last lines when it names none.
func failures(out string) string {
	var f []string
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if t := strings.TrimSpace(l); strings.HasPrefix(t, "--- FAIL:") {
			msg := ""
			if i+1 < len(lines) {
				if m := strings.TrimSpace(lines[i+1]); !strings.HasPrefix(m, "--- ") && !strings.HasPrefix(m, "=== ") {
					msg = m
				}
			}
			if len(msg) > 200 {
				msg = msg[:200] + "..."
			}
			f = append(f, strings.TrimSpace(t+" "+msg))
		}
	}
	if len(f) == 0 {
		return lastLines(out, 4)
	}
	return strings.Join(f, "; ")
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}
