// Package sandbox runs reaction code: JavaScript inside QuickJS compiled to WebAssembly, one
// isolated instance per reaction (a pool of them under load), reaching the system only through
// helper functions that check the recipe's capability policy.
package sandbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	qjs "github.com/jibril-rt/jibril/quickjs-wasm"
)

// Status is how an invocation ended.
type Status string

// Statuses of an invocation.
const (
	StatusOK      Status = "ok"
	StatusError   Status = "error"
	StatusTimeout Status = "timeout"
	StatusOOM     Status = "oom"
	StatusTrap    Status = "trap"
)

// Limits bound one invocation.
type Limits struct {
	Timeout     time.Duration // per process(data) call
	Memory      uint64        // wasm memory cap in bytes
	HelperCalls int           // helper calls per invocation
}

// DefaultLimits are used where a policy says nothing.
func DefaultLimits() Limits {
	return Limits{Timeout: 200 * time.Millisecond, Memory: 32 << 20, HelperCalls: 256}
}

// Reaction is one JS reaction of a recipe.
type Reaction struct {
	Recipe string // recipe name: the data-store namespace and the global `name`
	Kind   string // recipe kind: the global `kind`
	Index  int    // position in the recipe's reactions
	File   string // shown in stack traces
	Source string
}

// HostConfig configures a Host.
type HostConfig struct {
	CacheDir string // wazero compilation cache ("" = memory only)
	Logger   *slog.Logger
}

// Host owns the wasm engine shared by every program.
type Host struct {
	eng *qjs.Engine
	log *slog.Logger
}

// NewHost starts the engine.
func NewHost(ctx context.Context, cfg HostConfig) (*Host, error) {
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("create wasm cache dir: %w", err)
		}
	}
	eng, err := qjs.NewEngine(ctx, qjs.EngineConfig{CacheDir: cfg.CacheDir})
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Host{eng: eng, log: log}, nil
}

// Close stops the engine and every instance.
func (h *Host) Close(ctx context.Context) error { return h.eng.Close(ctx) }

// CacheDir is where the daemon keeps wazero's compiled code under a state directory.
func CacheDir(stateDir string) string { return filepath.Join(stateDir, "cache", "wazero") }

// CompileError is a reaction that cannot run at all: a syntax error, or no process function.
type CompileError struct {
	File string
	Err  error
}

func (e *CompileError) Error() string { return e.File + ": " + e.Err.Error() }
func (e *CompileError) Unwrap() error { return e.Err }

// Program is a compiled reaction with its pool of instances.
type Program struct {
	host   *Host
	r      Reaction
	lim    Limits
	snap   *qjs.Snapshot
	runner qjs.Value
	idle   chan *qjs.Instance
	slots  chan struct{}
}

// instState is the per-instance state host functions reach through Instance.User.
type instState struct {
	call   *invocation
	shapes map[string]int // event shapes this instance's runner knows, by number
}

// maxShapes bounds the shapes an instance remembers (events of one kind have a handful); past
// it numbering starts over, and the runner's table entries are overwritten in place.
const maxShapes = 64

// Compile builds the reaction's template instance (engine, helpers, locked-down realm, the
// reaction compiled) and snapshots it; every pooled instance starts from that image.
// maxInstances bounds the pool (0 = 4).
func (h *Host) Compile(ctx context.Context, r Reaction, lim Limits, maxInstances int) (*Program, error) {
	if lim.Timeout <= 0 || lim.Memory == 0 || lim.HelperCalls <= 0 {
		d := DefaultLimits()
		if lim.Timeout <= 0 {
			lim.Timeout = d.Timeout
		}
		if lim.Memory == 0 {
			lim.Memory = d.Memory
		}
		if lim.HelperCalls <= 0 {
			lim.HelperCalls = d.HelperCalls
		}
	}
	min, err := h.eng.MinMemory()
	if err != nil {
		return nil, err
	}
	if lim.Memory < min {
		return nil, fmt.Errorf("memory limit %d bytes is below the engine's minimum of %d", lim.Memory, min)
	}
	if maxInstances <= 0 {
		maxInstances = 4
	}
	if strings.ContainsRune(r.Source, 0) {
		return nil, &CompileError{File: r.File, Err: errors.New("reaction source contains a NUL byte")}
	}
	in, err := h.eng.NewInstance(ctx, qjs.Options{MaxMemory: lim.Memory, StackLimit: 1 << 20})
	if err != nil {
		return nil, err
	}
	defer in.Close()
	st := &instState{shapes: map[string]int{}}
	in.User = st
	in.SetClock(func() time.Time { return st.now() })
	in.SetDeadline(time.Now().Add(5 * time.Second)) // set-up is ours, but bound it anyway
	njp, err := installPrelude(in, r)
	if err != nil {
		return nil, err
	}
	defer in.Free(njp)
	fac, err := in.Eval(factory(r.Source), r.File)
	if err != nil {
		return nil, &CompileError{File: r.File, Err: err}
	}
	maker, err := in.Eval(runnerMaker, "<jibril>")
	if err != nil {
		return nil, fmt.Errorf("compile runner: %w", err)
	}
	sec, err := in.NewFunction("section", 1, section)
	if err != nil {
		return nil, err
	}
	run, err := in.Call(maker, fac, sec, njp)
	in.Free(sec)
	if err != nil {
		return nil, fmt.Errorf("make runner: %w", err)
	}
	in.SetDeadline(time.Time{})
	snap, err := in.Snapshot()
	if err != nil {
		return nil, err
	}
	p := &Program{host: h, r: r, lim: lim, snap: snap, runner: run,
		idle: make(chan *qjs.Instance, maxInstances), slots: make(chan struct{}, maxInstances)}
	if err := p.probe(ctx); err != nil {
		return nil, &CompileError{File: r.File, Err: err}
	}
	return p, nil
}

// probe runs the reaction's top level once in a throwaway instance to make sure it defines
// process(data); helpers are unavailable there, so nothing can happen.
func (p *Program) probe(ctx context.Context) error {
	in, err := p.host.eng.FromSnapshot(ctx, p.snap)
	if err != nil {
		return err
	}
	defer in.Close()
	st := &instState{shapes: map[string]int{}}
	in.User = st
	in.SetClock(func() time.Time { return st.now() })
	in.SetDeadline(time.Now().Add(p.lim.Timeout))
	r, err := in.Call(p.runner)
	if err != nil {
		return err
	}
	defer in.Free(r)
	ok, err := in.Number(r)
	if err != nil {
		return err
	}
	if ok != 1 {
		return errors.New("the reaction defines no process(data) function")
	}
	return nil
}

func (st *instState) now() time.Time {
	if st.call != nil {
		return st.call.env.clock().Now()
	}
	return time.Unix(0, 0).UTC()
}

// Limits reports the limits the program runs with.
func (p *Program) Limits() Limits { return p.lim }

// SnapshotBytes is the size of the template image each instance starts from.
func (p *Program) SnapshotBytes() int { return p.snap.Bytes() }

// acquire takes an idle instance or makes one from the snapshot, waiting for a free slot.
func (p *Program) acquire(ctx context.Context) (*qjs.Instance, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for a reaction instance: %w", ctx.Err())
	}
	select {
	case in := <-p.idle:
		return in, nil
	default:
	}
	in, err := p.newInstance(ctx)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return in, nil
}

func (p *Program) newInstance(ctx context.Context) (*qjs.Instance, error) {
	in, err := p.host.eng.FromSnapshot(ctx, p.snap)
	if err != nil {
		return nil, err
	}
	st := &instState{shapes: map[string]int{}}
	in.User = st
	in.SetClock(func() time.Time { return st.now() })
	return in, nil
}

// NewInstanceForBench exposes cold start to the benchmark: a fresh instance ready to run.
func (p *Program) NewInstanceForBench(ctx context.Context) (func(), error) {
	in, err := p.newInstance(ctx)
	if err != nil {
		return nil, err
	}
	return in.Close, nil
}

// release returns a healthy instance to the pool; one that trapped, timed out, ran out of memory
// or grew well past its image is discarded (wasm memory never shrinks).
func (p *Program) release(in *qjs.Instance, recycle bool) {
	defer func() { <-p.slots }()
	if recycle || in.Broken() != nil || in.MemoryBytes() > uint64(p.lim.Memory)/2+16<<20 {
		in.Close()
		return
	}
	select {
	case p.idle <- in:
	default:
		in.Close()
	}
}

// Close frees the pooled instances and the image they start from (instances still running
// keep their own mapping of it).
func (p *Program) Close() {
	p.snap.Close()
	for {
		select {
		case in := <-p.idle:
			in.Close()
		default:
			return
		}
	}
}

// Run invokes the reaction once on an event (its JSON) with an environment.
func (p *Program) Run(ctx context.Context, env *Env, uuid string, event []byte) *Transcript {
	return p.RunTargets(ctx, env, uuid, event, nil)
}

// RunTargets is Run for a caller that already knows the event's targets (the daemon, which
// holds the event as a structure): the helpers then never decode the JSON again.
func (p *Program) RunTargets(ctx context.Context, env *Env, uuid string, event []byte, targets *Targets) *Transcript {
	t := &Transcript{Recipe: p.r.Recipe, Reaction: p.r.Index, Format: "js", Mode: string(env.mode()),
		Calls: []Call{}, Logs: []Log{}}
	start := time.Now()
	defer func() { t.DurationUS = time.Since(start).Microseconds() }()
	in, err := p.acquire(ctx)
	if err != nil {
		t.Status, t.Error = StatusError, &ErrorInfo{Name: "InternalError", Message: err.Error()}
		return t
	}
	inv := newInvocation(ctx, env, p, t, uuid, event)
	inv.ev = targets
	st := in.User.(*instState)
	st.call = inv
	recycle := p.invoke(in, inv, uuid, event)
	st.call = nil
	p.release(in, recycle)
	return t
}

// invoke runs the runner and fills the transcript's status; it reports whether the instance
// must be recycled.
func (p *Program) invoke(in *qjs.Instance, inv *invocation, uuid string, event []byte) bool {
	t := inv.t
	if bytes.IndexByte(event, 0) >= 0 {
		t.Status, t.Error = StatusError, &ErrorInfo{Name: "TypeError", Message: "event contains a NUL byte"}
		return false
	}
	in.SetDeadline(time.Now().Add(p.lim.Timeout))
	defer in.SetDeadline(time.Time{})
	// The engine's own events are valid JSON by construction (inv.ev set); others are checked
	// here, and anything the lazy form cannot carry is handed over whole.
	lazy := false
	if inv.ev != nil || json.Valid(event) {
		inv.secs, lazy = splitSections(event)
	}
	st := in.User.(*instState)
	u, err := in.NewString(uuid)
	if err == nil {
		// Arguments left out are undefined (owned by nobody: never freed).
		id, text, ev := in.Undefined(), in.Undefined(), in.Undefined()
		if lazy {
			n, known := st.shapes[inv.secs.shape]
			if !known {
				if len(st.shapes) >= maxShapes {
					clear(st.shapes)
				}
				n = len(st.shapes)
				st.shapes[inv.secs.shape] = n
				text, err = in.NewString(inv.secs.shape)
			}
			if err == nil {
				id, err = in.NewNumber(float64(n))
			}
		} else {
			whole := string(event)
			if len(event) == 0 {
				whole = " " // whole and empty: JSON.parse reports it
			}
			ev, err = in.NewString(whole)
		}
		if err == nil {
			var r qjs.Value
			r, err = in.Call(p.runner, u, id, text, ev)
			in.Free(r)
		}
		for _, v := range []qjs.Value{id, text, ev} {
			if v != in.Undefined() {
				in.Free(v)
			}
		}
		in.Free(u)
	}
	switch {
	case err == nil:
		t.Status = StatusOK
		return false
	case in.Broken() != nil:
		t.Status, t.Error = StatusTrap, &ErrorInfo{Name: "Trap", Message: in.Broken().Error()}
	case in.OOM() || errors.Is(err, qjs.ErrOutOfMemory):
		t.Status, t.Error = StatusOOM, &ErrorInfo{Name: "OutOfMemory", Message: fmt.Sprintf("memory limit of %d bytes reached", p.lim.Memory)}
	case inv.overBudget:
		t.Status, t.Error = StatusError, &ErrorInfo{Name: "LimitError", Message: fmt.Sprintf("helper-call budget of %d exceeded", p.lim.HelperCalls)}
	case in.TimedOut():
		t.Status, t.Error = StatusTimeout, &ErrorInfo{Name: "TimeoutError", Message: fmt.Sprintf("reaction ran longer than %s", p.lim.Timeout)}
	default:
		var je *qjs.JSError
		if errors.As(err, &je) {
			t.Status, t.Error = StatusError, &ErrorInfo{Name: je.Name, Message: je.Message, Stack: je.Stack}
			return false
		}
		t.Status, t.Error = StatusError, &ErrorInfo{Name: "InternalError", Message: err.Error()}
	}
	return true
}

// section is the host side of the lazy event: the JSON text of the current event's i-th
// top-level member.
func section(in *qjs.Instance, args []qjs.Value) qjs.Value {
	st, _ := in.User.(*instState)
	if st == nil || st.call == nil || len(args) != 1 {
		return 0
	}
	f, err := in.Number(args[0])
	inv := st.call
	if err != nil || f < 0 || int(f) >= len(inv.secs.spans) || float64(int(f)) != f {
		return 0
	}
	sp := inv.secs.spans[int(f)]
	v, err := in.NewString(string(inv.event[sp[0]:sp[1]]))
	if err != nil {
		return 0
	}
	return v
}

// newRand is the live random source: seeded from the OS per invocation.
func newRand() *rand.Rand { return rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64())) }
