package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/evidence"
	"github.com/jibril-rt/jibril/sandbox/fsguard"
	"github.com/jibril-rt/jibril/sandbox/liveworld"
	"github.com/jibril-rt/jibril/sandbox/proc"
	"github.com/jibril-rt/jibril/store"
)

type execFlags struct {
	code, recipe, name, event, policyFile, defaultPolicy string
	reaction                                             int
	live                                                 bool
	timeout                                              time.Duration
}

func newSandboxCmd(g *globals) *cobra.Command {
	sb := &cobra.Command{Use: "sandbox", Short: "Run reactions in the sandbox by hand"}
	f := &execFlags{}
	exec := &cobra.Command{
		Use:   "exec (--recipe FILE [--name NAME] [--reaction N] | --code FILE.js) --event FILE|-",
		Short: "Run one reaction once against one event and print its transcript (dry-run unless --live)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runExec(cmd.Context(), g, f, cmd.InOrStdin(), cmd.OutOrStdout())
		},
	}
	fl := exec.Flags()
	fl.StringVar(&f.code, "code", "", "JavaScript file with a process(data) function")
	fl.StringVar(&f.recipe, "recipe", "", "recipe file (YAML)")
	fl.StringVar(&f.name, "name", "", "recipe name in the file (default: the only recipe with a reaction)")
	fl.IntVar(&f.reaction, "reaction", 0, "index of the reaction in the recipe")
	fl.StringVar(&f.event, "event", "", "event JSON file, or - for standard input")
	fl.StringVar(&f.policyFile, "policy", "", "capability policy file (default: <name>.policy.yaml next to the recipe)")
	fl.StringVar(&f.defaultPolicy, "default-policy", "strict", "policy when the recipe has no file: strict|jibril")
	fl.BoolVar(&f.live, "live", false, "perform real effects (kill, block, write files) instead of recording them")
	fl.DurationVar(&f.timeout, "timeout", 0, "per-invocation time limit (default: the policy's, 200ms)")
	sb.AddCommand(exec)
	return sb
}

// loaded is the reaction to run and its policy.
type loaded struct {
	r   sandbox.Reaction
	pol *policy.Policy
}

func loadReaction(f *execFlags) (*loaded, error) {
	switch {
	case f.code != "" && f.recipe != "":
		return nil, badInput("give --code or --recipe, not both")
	case f.code == "" && f.recipe == "":
		return nil, badInput("give --code FILE.js or --recipe FILE")
	}
	if f.defaultPolicy != "strict" && f.defaultPolicy != "jibril" {
		return nil, badInput("--default-policy: %q is not strict or jibril", f.defaultPolicy)
	}
	var out loaded
	if f.code != "" {
		src, err := os.ReadFile(f.code)
		if err != nil {
			return nil, badInput("%s: %v", f.code, unwrapPath(err))
		}
		name := f.name
		if name == "" {
			name = "sandbox"
		}
		out.r = sandbox.Reaction{Recipe: name, Kind: name, File: f.code, Source: string(src)}
	} else {
		r, err := pickRecipe(f)
		if err != nil {
			return nil, err
		}
		out.r = r
	}
	polPath := f.policyFile
	if polPath == "" && f.recipe != "" {
		cand := filepath.Join(filepath.Dir(f.recipe), out.r.Recipe+policy.FileSuffix)
		if _, err := os.Stat(cand); err == nil {
			polPath = cand
		}
	}
	var err error
	if polPath != "" {
		out.pol, err = policy.Load(polPath, policy.DefaultLimits())
		if err != nil {
			return nil, badInput("%v", err)
		}
	} else if out.pol, err = policy.Default(f.defaultPolicy, out.r.Recipe); err != nil {
		return nil, badInput("%v", err)
	}
	return &out, nil
}

func pickRecipe(f *execFlags) (sandbox.Reaction, error) {
	data, err := os.ReadFile(f.recipe)
	if err != nil {
		return sandbox.Reaction{}, badInput("%s: %v", f.recipe, unwrapPath(err))
	}
	rs, errs := recipes.Parse(f.recipe, data)
	var chosen *recipes.Recipe
	for _, r := range rs {
		if f.name != "" && r.Name == f.name || f.name == "" && len(r.Reactions) > 0 && chosen == nil {
			chosen = r
		}
	}
	if chosen == nil {
		if len(errs) > 0 {
			return sandbox.Reaction{}, badInput("%v", errs[0])
		}
		if f.name != "" {
			return sandbox.Reaction{}, badInput("%s: no recipe named %q", f.recipe, f.name)
		}
		return sandbox.Reaction{}, badInput("%s: no recipe with a reaction", f.recipe)
	}
	if f.reaction < 0 || f.reaction >= len(chosen.Reactions) {
		return sandbox.Reaction{}, badInput("%s: recipe %s has %d reaction(s), --reaction %d is out of range", f.recipe, chosen.Name, len(chosen.Reactions), f.reaction)
	}
	rx := chosen.Reactions[f.reaction]
	if string(rx.Format) != "js" {
		return sandbox.Reaction{}, badInput("%s:%d: recipe %s reaction %d is %s; sandbox exec runs js reactions", f.recipe, rx.Line, chosen.Name, f.reaction, rx.Format)
	}
	return sandbox.Reaction{Recipe: chosen.Name, Kind: chosen.Kind, Index: f.reaction,
		File: fmt.Sprintf("%s:%s#%d", f.recipe, chosen.Name, f.reaction), Source: rx.Code}, nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// readEvent reads the event and checks it is one JSON object.
func readEvent(path string, stdin io.Reader) ([]byte, string, error) {
	if path == "" {
		return nil, "", badInput("--event FILE|- is required")
	}
	var data []byte
	var err error
	name := path
	if path == "-" {
		name = "standard input"
		data, err = io.ReadAll(io.LimitReader(stdin, 16<<20))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, "", badInput("%s: %v", name, unwrapPath(err))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, "", badInput("%s: invalid event JSON: %v", name, err)
	}
	if obj == nil {
		return nil, "", badInput("%s: the event must be a JSON object", name)
	}
	uuid := ""
	if raw, ok := obj["uuid"]; ok {
		_ = json.Unmarshal(raw, &uuid)
	}
	if uuid == "" {
		var b [16]byte
		_, _ = rand.Read(b[:])
		uuid = hex.EncodeToString(b[:])
	}
	compact, err := json.Marshal(obj)
	if err != nil {
		return nil, "", badInput("%s: %v", name, err)
	}
	return compact, uuid, nil
}

func runExec(ctx context.Context, g *globals, f *execFlags, stdin io.Reader, stdout io.Writer) error {
	log, err := g.logger()
	if err != nil {
		return err
	}
	l, err := loadReaction(f)
	if err != nil {
		return err
	}
	ev, uuid, err := readEvent(f.event, stdin)
	if err != nil {
		return err
	}
	lim := sandbox.Limits{Timeout: l.pol.Limits.Timeout, Memory: l.pol.Limits.MemoryBytes, HelperCalls: l.pol.Limits.HelperCalls}
	if f.timeout < 0 {
		return badInput("--timeout: %s is negative", f.timeout)
	}
	if f.timeout > 0 {
		lim.Timeout = f.timeout
	}
	work := filepath.Join(g.stateDir, "sandbox")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return badInput("--state-dir %s: %v", g.stateDir, unwrapPath(err))
	}
	host, err := sandbox.NewHost(ctx, sandbox.HostConfig{CacheDir: sandbox.CacheDir(g.stateDir), Logger: log})
	if err != nil {
		return err
	}
	defer host.Close(ctx)
	prog, err := host.Compile(ctx, l.r, lim, 1)
	if err != nil {
		var ce *sandbox.CompileError
		if errors.As(err, &ce) {
			return badInput("%v", err)
		}
		return err
	}
	defer prog.Close()
	env, cleanup, err := execEnv(ctx, g, f, l.pol, work)
	if err != nil {
		return err
	}
	defer cleanup()
	env.Log = log
	tr := prog.Run(ctx, env, uuid, ev)
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(tr); err != nil {
		return err
	}
	if tr.Status != sandbox.StatusOK {
		return &exitError{code: 1}
	}
	return nil
}

// execEnv builds the world: in dry-run, effects are recorded and files live in a private scratch
// directory, with a store of its own; with --live, helpers act on this machine (within the safety
// floor) through the same live world the daemon uses, on the live database.
func execEnv(ctx context.Context, g *globals, f *execFlags, pol *policy.Policy, work string) (*sandbox.Env, func(), error) {
	dbPath := filepath.Join(work, "store.db")
	if f.live {
		dbPath = liveworld.DBPath(g.stateDir)
	}
	st, err := store.Open(ctx, dbPath)
	if err != nil {
		return nil, nil, badInput("--state-dir %s: %v", g.stateDir, err)
	}
	closers := []func(){func() { st.Close() }}
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	env := &sandbox.Env{Policy: pol, Audit: st, Clock: sandbox.SystemClock{},
		Breaker: policy.NewBreaker(pol.Limits.Disarm, nil)}
	if !f.live {
		scratch, err := os.MkdirTemp(work, "scratch-")
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		closers = append(closers, func() { os.RemoveAll(scratch) })
		fs, err := fsguard.New(scratch)
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		closers = append(closers, func() { fs.Close() })
		rec := &sandbox.Recorder{Floor: proc.NewLive(proc.Floor{})}
		env.Mode = policy.ModeDryRun
		env.World = sandbox.World{Proc: rec, Net: rec, Power: rec, Files: sandbox.GuardedFiles{FS: fs}, Store: st,
			Evidence: &evidence.Collector{Dir: filepath.Join(scratch, "evidence")}, TempRoot: "/tmp/jibril"}
		return env, cleanup, nil
	}
	// No DNS sensor runs here: let BlockDomain resolve the domain itself.
	live, err := liveworld.Open(ctx, liveworld.Config{StateDir: g.stateDir, Store: st, NetNSFd: -1, ResolveDomains: true})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	closers = append(closers, func() { live.Close() })
	env.Mode = policy.ModeEnforce
	env.World = live.World
	return env, cleanup, nil
}
