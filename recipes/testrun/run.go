package testrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox"
)

// Options control a run.
type Options struct {
	Out           io.Writer      // the go test -v like report
	Verbose       bool           // report every case, not only failures, skips and notes
	Run           *regexp.Regexp // only cases whose ID (recipe/case) matches
	TranscriptDir string         // when set, one JSON transcript per case is written here
	Update        bool           // (re)write the golden files of golden cases
	CacheDir      string         // wazero compilation cache ("" = memory only)
}

// Summary counts the outcomes of a run.
type Summary struct {
	Passed, Failed, Skipped int
}

// Line is the closing line of a run: "N passed, M failed" (", K not testable" when any).
func (s Summary) Line() string {
	l := fmt.Sprintf("%d passed, %d failed", s.Passed, s.Failed)
	if s.Skipped > 0 {
		l += fmt.Sprintf(", %d not testable", s.Skipped)
	}
	return l
}

// Record is what a case did: the sandbox transcript (duration zeroed) and the test world
// after the run. It is the transcript file and the golden file of a case.
type Record struct {
	Test string `json:"test"`
	*sandbox.Transcript
	World WorldRecord `json:"world"`
}

// WorldRecord is the state of the test world after a case.
type WorldRecord struct {
	Effects []string            `json:"effects"`
	Store   map[string]string   `json:"store"`
	Lists   map[string][]string `json:"lists"`
	Written map[string]string   `json:"written"`
	Notes   []string            `json:"notes"`
}

// Encode renders a record as stable, indented JSON (struct fields in declaration order,
// map keys sorted).
func (r *Record) Encode() ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// ID names a case as the report and --run see it: recipe/case, spaces as underscores.
func ID(recipe, name string) string {
	return recipe + "/" + strings.ReplaceAll(name, " ", "_")
}

// Run runs every selected case of the suites and reports on o.Out. The error is for
// problems of the run itself (the engine, a transcript or golden file that cannot be
// written), not for failing cases.
func Run(ctx context.Context, suites []*Suite, o Options) (Summary, error) {
	out := o.Out
	if out == nil {
		out = io.Discard
	}
	var sum Summary
	r := &runner{o: o, out: out, progs: map[progKey]*sandbox.Program{}, slugs: map[string]bool{}}
	defer r.close(ctx)
	if o.TranscriptDir != "" {
		if err := os.MkdirAll(o.TranscriptDir, 0o755); err != nil {
			return sum, fmt.Errorf("create transcript directory: %w", err)
		}
	}
	for _, s := range suites {
		for _, c := range s.Cases {
			id := ID(s.Recipe.Name, c.Name)
			if o.Run != nil && !o.Run.MatchString(id) {
				continue
			}
			res, err := r.runCase(ctx, s, c)
			if err != nil {
				return sum, fmt.Errorf("%s: %w", id, err)
			}
			r.report(id, res)
			switch {
			case res.skip != "":
				sum.Skipped++
			case len(res.failures) > 0:
				sum.Failed++
			default:
				sum.Passed++
			}
		}
	}
	fmt.Fprintln(out, sum.Line())
	return sum, nil
}

type progKey struct {
	s   *Suite
	idx int
}

type runner struct {
	o     Options
	out   io.Writer
	host  *sandbox.Host
	progs map[progKey]*sandbox.Program
	slugs map[string]bool // transcript file names used
}

func (r *runner) close(ctx context.Context) {
	for _, p := range r.progs {
		p.Close()
	}
	if r.host != nil {
		r.host.Close(ctx)
	}
}

// caseResult is one case's outcome.
type caseResult struct {
	rec      *Record
	failures []string
	notes    []string
	skip     string
	took     time.Duration
}

func (r *runner) report(id string, res *caseResult) {
	verdict := "PASS"
	switch {
	case res.skip != "":
		verdict = "SKIP"
	case len(res.failures) > 0:
		verdict = "FAIL"
	}
	if !r.o.Verbose && verdict == "PASS" && len(res.notes) == 0 {
		return
	}
	var b strings.Builder
	if r.o.Verbose {
		fmt.Fprintf(&b, "=== RUN   %s\n", id)
	}
	fmt.Fprintf(&b, "--- %s: %s (%.2fs)\n", verdict, id, res.took.Seconds())
	if res.skip != "" {
		b.WriteString(indent("not testable: "+res.skip, "    "))
	}
	for _, f := range res.failures {
		b.WriteString(indent(f, "    "))
	}
	for _, n := range res.notes {
		b.WriteString(indent("note: "+n, "    "))
	}
	io.WriteString(r.out, b.String())
}

func indent(s, prefix string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString(prefix + l + "\n")
	}
	return b.String()
}

// effectiveMode is the mode the recipe's reactions run in: the policy file's when it says
// one, else the recipe's, else enforce.
func effectiveMode(rc *recipes.Recipe, pol *policy.Policy) policy.Mode {
	if pol.ModeSet {
		return pol.Mode
	}
	if rc.Mode != recipes.ModeUnset {
		return policy.Mode(rc.Mode)
	}
	if pol.Mode != "" {
		return pol.Mode
	}
	return policy.ModeEnforce
}

func (r *runner) program(ctx context.Context, s *Suite, idx int) (*sandbox.Program, error) {
	k := progKey{s, idx}
	if p := r.progs[k]; p != nil {
		return p, nil
	}
	if r.host == nil {
		h, err := sandbox.NewHost(ctx, sandbox.HostConfig{CacheDir: r.o.CacheDir})
		if err != nil {
			return nil, fmt.Errorf("start the sandbox: %w", err)
		}
		r.host = h
	}
	rx := s.Recipe.Reactions[idx]
	lim := sandbox.Limits{Timeout: s.Policy.Limits.Timeout, Memory: s.Policy.Limits.MemoryBytes, HelperCalls: s.Policy.Limits.HelperCalls}
	p, err := r.host.Compile(ctx, sandbox.Reaction{Recipe: s.Recipe.Name, Kind: s.Recipe.Kind, Index: idx,
		File: fmt.Sprintf("%s#%d", s.Recipe.Name, idx), Source: rx.Code}, lim, 1)
	if err != nil {
		return nil, err
	}
	r.progs[k] = p
	return p, nil
}

func (r *runner) runCase(ctx context.Context, s *Suite, c *Case) (*caseResult, error) {
	start := time.Now()
	res := &caseResult{}
	defer func() { res.took = time.Since(start) }()
	id := ID(s.Recipe.Name, c.Name)
	rx := s.Recipe.Reactions[c.Reaction]
	if rx.Format != recipes.FormatJS {
		res.skip = fmt.Sprintf("reaction %d is a %s reaction: /bin/sh reaches the real system through absolute paths, builtins (kill) and redirections, so it cannot run hermetically; test its effects with the end-to-end tests", c.Reaction, rx.Format)
		return res, nil
	}
	w := NewWorld(c.Clock, c.Files, c.Store, c.Lists)
	mode := effectiveMode(s.Recipe, s.Policy)
	var tr *sandbox.Transcript
	if mode == policy.ModeOff {
		tr = &sandbox.Transcript{Recipe: s.Recipe.Name, Reaction: c.Reaction, Format: "js", Mode: string(mode),
			Status: StatusOff, Calls: []sandbox.Call{}, Logs: []sandbox.Log{}}
	} else {
		prog, err := r.program(ctx, s, c.Reaction)
		if err != nil {
			var ce *sandbox.CompileError
			if errors.As(err, &ce) {
				res.failures = append(res.failures, fmt.Sprintf("%s: reaction %d does not compile: %v", s.Recipe.Where(), c.Reaction, ce.Err))
				return res, nil
			}
			return nil, err
		}
		seed := c.Seed
		clock := sandbox.FixedClock(c.Clock)
		env := &sandbox.Env{Policy: s.Policy, Mode: mode, World: w.Sandbox(), Clock: clock, Seed: &seed,
			Breaker: policy.NewBreaker(s.Policy.Limits.Disarm, clock), AllowPower: true, Answer: answerer(c.Returns)}
		tr = prog.Run(ctx, env, c.UUID, c.Event)
		tr.DurationUS = 0
	}
	rec := &Record{Test: id, Transcript: tr, World: WorldRecord{Effects: nonNil(w.Effects()), Store: w.Store(),
		Lists: w.Lists(), Written: w.Written(), Notes: nonNil(w.Notes())}}
	res.rec = rec
	res.notes = rec.World.Notes
	res.failures = check(&c.Expect, rec)
	if c.Golden {
		msg, note, err := r.golden(s, c, rec)
		if err != nil {
			return nil, err
		}
		if msg != "" {
			res.failures = append(res.failures, msg)
		}
		if note != "" {
			res.notes = append(res.notes, note)
		}
	}
	if r.o.TranscriptDir != "" {
		if err := r.writeTranscript(s, c, rec); err != nil {
			return nil, err
		}
	}
	return res, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// answerer turns a case's returns into the sandbox's Answer hook.
func answerer(rs map[string]Answer) func(string, []string) (any, bool, error) {
	if len(rs) == 0 {
		return nil
	}
	return func(helper string, _ []string) (any, bool, error) {
		a, ok := rs[helper]
		if !ok {
			return nil, false, nil
		}
		if a.Errno != "" {
			return nil, true, errors.New(a.Errno)
		}
		return a.Result, true, nil
	}
}

// slug makes a file name out of a case name.
func slug(s string) string {
	var b strings.Builder
	under := false
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
			under = false
		} else if !under {
			b.WriteByte('_')
			under = true
		}
	}
	out := strings.Trim(b.String(), "_")
	if out == "" {
		out = "case"
	}
	if len(out) > 100 {
		out = out[:100]
	}
	return out
}

func (r *runner) writeTranscript(s *Suite, c *Case, rec *Record) error {
	base := slug(s.Recipe.Name) + "." + slug(c.Name)
	name := base
	for i := 2; r.slugs[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	r.slugs[name] = true
	data, err := rec.Encode()
	if err != nil {
		return err
	}
	p := filepath.Join(r.o.TranscriptDir, name+".json")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return fmt.Errorf("write transcript: %w", err)
	}
	return nil
}

// goldenPath is where a golden case's record lives: <test file stem>.golden/<case>.json next
// to the test file.
func goldenPath(s *Suite, c *Case) string {
	stem := strings.TrimSuffix(path.Base(s.path), Suffix)
	return path.Join(path.Dir(s.path), stem+".golden", slug(c.Name)+".json")
}

// golden compares the record with the case's golden file, or rewrites it with --update.
// It returns a failure message, a note, or an error of the run.
func (r *runner) golden(s *Suite, c *Case, rec *Record) (string, string, error) {
	gp := goldenPath(s, c)
	got, err := rec.Encode()
	if err != nil {
		return "", "", err
	}
	if r.o.Update {
		if s.src.Dir == "" {
			return "", "", fmt.Errorf("--update: %s is not on disk; run jibril test --update on a directory", s.File)
		}
		disk := filepath.Join(s.src.Dir, filepath.FromSlash(gp))
		if err := os.MkdirAll(filepath.Dir(disk), 0o755); err != nil {
			return "", "", fmt.Errorf("create golden directory: %w", err)
		}
		if err := os.WriteFile(disk, got, 0o644); err != nil {
			return "", "", fmt.Errorf("write golden file: %w", err)
		}
		return "", "updated golden file " + s.src.shown(gp), nil
	}
	want, err := fs.ReadFile(s.src.FS, gp)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("golden file %s is missing (run jibril test --update to write it)", s.src.shown(gp)), "", nil
	}
	if err != nil {
		return "", "", fmt.Errorf("read golden file %s: %w", s.src.shown(gp), err)
	}
	if bytes.Equal(want, got) {
		return "", "", nil
	}
	return "transcript differs from golden file " + s.src.shown(gp) + " (- want, + got):\n" +
		lineDiff(strings.Split(strings.TrimRight(string(want), "\n"), "\n"), strings.Split(strings.TrimRight(string(got), "\n"), "\n")), "", nil
}
