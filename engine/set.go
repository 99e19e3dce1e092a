package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/match"
	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox"
)

// Source is a place recipes come from: a directory on disk (watched and reloaded) or an
// embedded file system (the built-in library).
type Source struct {
	Name string // shown in messages: the directory, or "builtin"
	FS   fs.FS  // nil: Dir is read from disk
	Dir  string // directory inside FS ("." for its root), or the directory on disk
	Only string // one file name in Dir ("" = every recipe file)
}

// DirSource is a recipe directory on disk.
func DirSource(dir string) Source { return Source{Name: dir, Dir: dir} }

// FileSource is one recipe file on disk (its policy is still looked up next to it).
func FileSource(file string) Source {
	return Source{Name: filepath.Dir(file), Dir: filepath.Dir(file), Only: filepath.Base(file)}
}

// Loaded is one validated recipe ready to run: matcher, policy, compiled reactions and the
// state that outlives a single event (noise limiter, rate limiter, circuit breaker).
type Loaded struct {
	Recipe *recipes.Recipe
	Policy *policy.Policy
	Mode   policy.Mode // effective: the daemon's --dry-run, else the policy's when set, else the recipe's

	matcher   *match.Matcher
	prefilter *match.Prefilter
	times     *match.Limiter
	rate      *policy.Limiter
	breaker   *policy.Breaker
	programs  []*sandbox.Program // per reaction; nil for shell reactions
	keys      []string           // program cache keys
}

// Set is an immutable generation of loaded recipes; a reload builds a new one and swaps it in.
type Set struct {
	Recipes []*Loaded
	Errors  []error // recipes and policies that were rejected (the others still load)

	files fileIndex // the file recipes, for WantsFile

	inflight sync.WaitGroup // jobs still running on this generation
	fp       [32]byte       // fingerprint of the directory sources it was read from
}

// Names lists the loaded recipe names in order.
func (s *Set) Names() []string {
	out := make([]string, 0, len(s.Recipes))
	for _, l := range s.Recipes {
		out = append(out, l.Recipe.Name)
	}
	return out
}

// LoadOptions says how recipes become a Set.
type LoadOptions struct {
	DefaultPolicy string        // strict (default) or jibril
	PolicyDir     string        // extra place to look for <name>.policy.yaml ("" = next to the recipe only)
	Ceiling       policy.Limits // the daemon's own limits: policies may not exceed them
	DryRun        bool          // force dry-run for every recipe
	// Modes overrides the mode of named recipes (the operator's word beats the recipe's and
	// its policy's): how a built-in recipe shipped in dry-run is switched to enforce.
	Modes map[string]policy.Mode
	Clock policy.Clock
}

// parsed is one recipe with where to find its policy.
type parsed struct {
	r      *recipes.Recipe
	src    Source
	policy []byte // policy file content, nil when none
	polAt  string
}

// readSources parses every recipe file of the sources. Names must be unique across sources: a
// later duplicate is rejected with both places named.
func readSources(srcs []Source, policyDir string) ([]parsed, []error) {
	var out []parsed
	var errs []error
	seen := map[string]*recipes.Recipe{}
	for _, src := range srcs {
		fsys := src.FS
		dir := src.Dir
		if fsys == nil {
			fsys = os.DirFS(src.Dir)
			dir = "."
		}
		entries, err := fs.ReadDir(fsys, dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("read recipe directory %s: %w", src.Name, err))
			continue
		}
		var names []string
		for _, e := range entries {
			if src.Only != "" && e.Name() != src.Only {
				continue
			}
			if !e.IsDir() && (recipes.IsRecipeFile(e.Name()) || e.Name() == src.Only) {
				names = append(names, e.Name())
			}
		}
		sort.Strings(names)
		for _, n := range names {
			display := filepath.Join(src.Name, n)
			data, err := readBounded(fsys, path.Join(dir, n))
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", display, err))
				continue
			}
			rs, ferrs := recipes.Parse(display, data)
			errs = append(errs, ferrs...)
			for _, r := range rs {
				if first, dup := seen[r.Name]; dup {
					errs = append(errs, fmt.Errorf("%s: recipe %s: name: duplicate of the recipe at %s", r.Where(), r.Name, first.Where()))
					continue
				}
				seen[r.Name] = r
				p := parsed{r: r, src: src}
				p.policy, p.polAt, err = findPolicy(fsys, dir, src.Name, policyDir, r.Name)
				if err != nil {
					errs = append(errs, err)
					delete(seen, r.Name)
					continue
				}
				out = append(out, p)
			}
		}
	}
	return out, errs
}

const maxRecipeFile = 4 << 20

func readBounded(fsys fs.FS, name string) ([]byte, error) {
	return recipes.ReadFile(fsys, name, maxRecipeFile)
}

// findPolicy looks for <name>.policy.yaml next to the recipe, then in the policy directory.
func findPolicy(fsys fs.FS, dir, display, policyDir, name string) ([]byte, string, error) {
	file := name + ".policy.yaml"
	if data, err := readBounded(fsys, path.Join(dir, file)); err == nil {
		return data, filepath.Join(display, file), nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, "", fmt.Errorf("%s: %w", filepath.Join(display, file), err)
	}
	if policyDir != "" {
		p := filepath.Join(policyDir, file)
		if data, err := readBounded(os.DirFS(policyDir), file); err == nil {
			return data, p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, "", fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil, "", nil
}

// Validate parses and checks recipes and their policies without compiling reactions into
// instances: what `jibril recipes validate` reports. It returns the recipes that would load.
func Validate(srcs []Source, opt LoadOptions) ([]*recipes.Recipe, []error) {
	ps, errs := readSources(srcs, opt.PolicyDir)
	var ok []*recipes.Recipe
	for _, p := range ps {
		if _, err := policyOf(p, opt); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := match.Compile(p.r); err != nil {
			errs = append(errs, err)
			continue
		}
		ok = append(ok, p.r)
	}
	return ok, errs
}

func policyOf(p parsed, opt LoadOptions) (*policy.Policy, error) {
	if p.policy == nil {
		kind := opt.DefaultPolicy
		if kind == "" {
			kind = "strict"
		}
		return policy.Default(kind, p.r.Name)
	}
	pol, err := policy.Parse(p.polAt, p.policy, opt.Ceiling)
	if err != nil {
		return nil, err
	}
	if pol.Recipe != p.r.Name {
		return nil, fmt.Errorf("%s: recipe: names %q, but the file belongs to recipe %q", p.polAt, pol.Recipe, p.r.Name)
	}
	return pol, nil
}

// effectiveMode: --dry-run wins, then a policy that says mode, then the recipe's mode, then
// the policy's default.
func effectiveMode(r *recipes.Recipe, pol *policy.Policy, dryRun bool) policy.Mode {
	switch {
	case dryRun && pol.Mode != policy.ModeOff:
		return policy.ModeDryRun
	case pol.ModeSet:
		return pol.Mode
	case r.Mode != "":
		return policy.Mode(r.Mode)
	default:
		return pol.Mode
	}
}

// programCache keeps compiled reactions across reloads: a recipe whose reaction and limits did
// not change keeps its instances.
type programCache struct {
	mu    sync.Mutex
	progs map[string]*sandbox.Program
}

func programKey(r *recipes.Recipe, i int, lim sandbox.Limits) string {
	h := sha256.New()
	for _, s := range []string{r.Name, r.Kind, strconv.Itoa(i), r.File, r.Reactions[i].Code,
		lim.Timeout.String(), strconv.FormatUint(lim.Memory, 10), strconv.Itoa(lim.HelperCalls)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Build loads every recipe of the sources into a new Set. A recipe whose policy or reaction
// fails is left out and reported; the others load (fail closed per recipe, not per daemon).
func (e *Engine) build(ctx context.Context, srcs []Source, opt LoadOptions) *Set {
	fp := fingerprint(srcs)
	ps, errs := readSources(srcs, opt.PolicyDir)
	set := &Set{fp: fp}
	clock := opt.Clock
	if clock == nil {
		clock = policy.SystemClock{}
	}
	for _, p := range ps {
		l, err := e.load(ctx, p, opt, clock)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		set.Recipes = append(set.Recipes, l)
	}
	set.Errors = errs
	set.files = newFileIndex(set.Recipes)
	return set
}

func (e *Engine) load(ctx context.Context, p parsed, opt LoadOptions, clock policy.Clock) (*Loaded, error) {
	r := p.r
	pol, err := policyOf(p, opt)
	if err != nil {
		return nil, err
	}
	m, err := match.Compile(r)
	if err != nil {
		return nil, err
	}
	mode := effectiveMode(r, pol, opt.DryRun)
	if om, ok := opt.Modes[r.Name]; ok && !(opt.DryRun && om == policy.ModeEnforce) {
		mode = om
	}
	l := &Loaded{Recipe: r, Policy: pol, Mode: mode, matcher: m,
		prefilter: m.Prefilter(), times: match.NewLimiter(r.Times),
		rate: policy.NewLimiter(pol.Limits.Rate, clock), breaker: policy.NewBreaker(pol.Limits.Disarm, clock)}
	if !r.Enabled {
		return l, nil
	}
	lim := sandbox.Limits{Timeout: pol.Limits.Timeout, Memory: pol.Limits.MemoryBytes, HelperCalls: pol.Limits.HelperCalls}
	for i, re := range r.Reactions {
		if re.Format != recipes.FormatJS {
			l.programs = append(l.programs, nil)
			l.keys = append(l.keys, "")
			continue
		}
		key := programKey(r, i, lim)
		prog, err := e.program(ctx, key, sandbox.Reaction{Recipe: r.Name, Kind: r.Kind, Index: i,
			File: fmt.Sprintf("%s#reactions[%d]", r.File, i), Source: re.Code}, lim)
		if err != nil {
			return nil, fmt.Errorf("%s: recipe %s: reactions[%d]: %w", r.Where(), r.Name, i, errors.Unwrap(err))
		}
		l.programs = append(l.programs, prog)
		l.keys = append(l.keys, key)
	}
	return l, nil
}

func (e *Engine) program(ctx context.Context, key string, re sandbox.Reaction, lim sandbox.Limits) (*sandbox.Program, error) {
	e.cache.mu.Lock()
	defer e.cache.mu.Unlock()
	if p, ok := e.cache.progs[key]; ok {
		return p, nil
	}
	if e.host == nil {
		return nil, &sandbox.CompileError{File: re.File, Err: errors.New("no sandbox host")}
	}
	p, err := e.host.Compile(ctx, re, lim, e.cfg.Instances)
	if err != nil {
		var ce *sandbox.CompileError
		if errors.As(err, &ce) {
			return nil, err
		}
		return nil, &sandbox.CompileError{File: re.File, Err: err}
	}
	e.cache.progs[key] = p
	return p, nil
}

// retire closes the programs of an old generation that the new one does not use, once the
// old generation's jobs are done.
func (e *Engine) retire(old, cur *Set) {
	if old == nil {
		return
	}
	keep := map[string]bool{}
	for _, l := range cur.Recipes {
		for _, k := range l.keys {
			keep[k] = true
		}
	}
	var drop []string
	for _, l := range old.Recipes {
		for _, k := range l.keys {
			if k != "" && !keep[k] {
				drop = append(drop, k)
			}
		}
	}
	if len(drop) == 0 {
		return
	}
	go func() {
		old.inflight.Wait()
		e.cache.mu.Lock()
		defer e.cache.mu.Unlock()
		for _, k := range drop {
			if p, ok := e.cache.progs[k]; ok {
				p.Close()
				delete(e.cache.progs, k)
			}
		}
	}()
}

// errorLines renders load errors one per line.
func errorLines(errs []error) string {
	var b strings.Builder
	for _, err := range errs {
		b.WriteString(err.Error())
		b.WriteByte('\n')
	}
	return b.String()
}

// FilePrefixes are the path prefixes that cover every file event a file recipe can match, each
// with the operations the recipe wants (FileOpMask of its actions), for the in-kernel filter.
// A recipe no prefix covers (a bare regex, a base name anywhere) gets "/": every absolute path,
// still only its operations.
func FilePrefixes(l *Loaded) []bpf.FilePrefix {
	pf := l.prefilter
	if pf == nil || len(pf.Bases) > 0 {
		var acts []string
		if pf != nil {
			acts = pf.Actions
		} else {
			for _, a := range l.Recipe.FileActions { // exclusions ignored: a superset
				acts = append(acts, string(a))
			}
		}
		return []bpf.FilePrefix{{Prefix: "/", Ops: FileOpMask(acts)}}
	}
	ops := FileOpMask(pf.Actions)
	var prefixes []bpf.FilePrefix
	for _, p := range pf.Paths {
		prefixes = append(prefixes, bpf.FilePrefix{Prefix: p, Ops: ops})
	}
	for _, d := range pf.DirPrefixes {
		if !strings.HasSuffix(d, "/") {
			d += "/"
		}
		prefixes = append(prefixes, bpf.FilePrefix{Prefix: d, Ops: ops})
	}
	return prefixes
}

// FileOpMask returns the kernel file operations whose events can carry one of the actions (the
// inverse of enrich.ActionNames); no action means any. The actions the file sensor never
// reports on their own happen on an opened file: read, mmap, close, ... keep every open, fsync
// (a modification) the opens for writing. execve comes from the exec sensor, which this filter
// does not cover. An unknown name keeps everything (fail closed).
func FileOpMask(actions []string) bpf.OpMask {
	if len(actions) == 0 {
		return bpf.AllOps
	}
	var m bpf.OpMask
	for _, a := range actions {
		switch recipes.FileAction(a) {
		case recipes.ActOpen, recipes.ActRead, recipes.ActMmap, recipes.ActLlseek, recipes.ActClose,
			recipes.ActFasync, recipes.ActFlock:
			m |= bpf.MaskOf(bpf.OpOpen)
		case recipes.ActWrite, recipes.ActFsync:
			m |= bpf.MaskOf(bpf.OpWrite)
		case recipes.ActCreate:
			m |= bpf.MaskOf(bpf.OpCreate, bpf.OpSymlink, bpf.OpMkdir)
		case recipes.ActTruncate:
			m |= bpf.MaskOf(bpf.OpTruncate)
		case recipes.ActUnlink:
			m |= bpf.MaskOf(bpf.OpUnlink, bpf.OpRmdir)
		case recipes.ActRename:
			m |= bpf.MaskOf(bpf.OpRename)
		case recipes.ActLink:
			m |= bpf.MaskOf(bpf.OpLink)
		case recipes.ActExecve:
		default:
			return bpf.AllOps
		}
	}
	return m
}
