// Package engine is jibril's real-time core: it matches each enriched event against the loaded
// recipes, hands every detection to the printers, then runs the recipe's reactions (JS in the
// sandbox, shell with its limits) on a bounded pool of workers so that a slow reaction never
// stalls the sensors.
package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/engine/enrich"
	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/shell"
	"github.com/jibril-rt/jibril/store"
)

// Printer receives each detection as one JSON object. It must not block (engine/printer.Set
// queues and counts its drops).
type Printer interface{ Print(ev []byte) }

// Observer is told what happens, for metrics. Every method must be cheap and non-blocking.
type Observer interface {
	Detection(recipe string)
	ObserveReaction(recipe, status string, took time.Duration)
	Denied(capability string)
	Disarmed(recipe string)
	InstanceRecycled(recipe string)
}

// Config wires an engine to its world.
type Config struct {
	Host    *sandbox.Host // compiles JS reactions (nil: recipes with JS reactions are rejected)
	Printer Printer
	// Live is what enforce-mode reactions act on; DryRun what dry-run ones act on (a recorder
	// for processes, network and power, real reads and the real data store).
	Live, DryRun sandbox.World
	Audit        sandbox.Auditor
	Observer     Observer
	Log          *slog.Logger
	AllowPower   bool
	ShellTempDir string // parent of the private directory of each shell reaction

	// EnforceScope, when set, limits enforcement to events whose process or one of its
	// ancestors runs one of these executables (absolute paths); reactions to every other event
	// run in dry-run. It rolls enforcement out to one workload at a time (a CI job, a service)
	// and keeps test daemons from acting on anything but the processes their test started.
	EnforceScope []string

	Workers   int // reaction workers (default 2×CPUs)
	Queue     int // detections waiting for a worker (default 1024); past it they are dropped and counted
	Instances int // wasm instances per reaction (default 4)
	Clock     sandbox.Clock
}

// Stats are the engine's counters.
type Stats struct {
	Events        uint64 // events handed to Handle
	Detections    uint64
	Reactions     uint64            // reaction invocations finished
	QueueDropped  uint64            // detections whose reactions were not run: their queue was full
	DroppedBy     map[string]uint64 // QueueDropped per importance (critical, high, medium, low)
	RateLimited   uint64            // detections whose reactions were skipped by the policy's rate
	AlertsEmitted uint64
}

// Engine matches events and runs reactions. Handle may be called from many goroutines.
type Engine struct {
	cfg   Config
	host  *sandbox.Host
	log   *slog.Logger
	set   atomic.Pointer[Set]
	cache programCache
	jobs  [numLevels]chan job // one queue per importance: a flood of low detections never delays a critical one
	wake  chan struct{}
	wg    sync.WaitGroup
	stop  context.CancelFunc
	ctx   context.Context

	events, detections, reactions, limited, alerts atomic.Uint64
	dropped                                        [numLevels]atomic.Uint64
	closing                                        atomic.Bool
	loadMu                                         sync.Mutex
}

type job struct {
	set     *Set
	l       *Loaded
	mode    policy.Mode // the recipe's mode, or dry-run for an event outside EnforceScope
	ev      *event.Event
	payload []byte
	targets *sandbox.Targets
	pins    *pins
}

// pins owns the pidfds taken for one event's targets; the last holder closes them.
type pins struct {
	t    *sandbox.Targets
	refs atomic.Int32
}

// pin takes pidfds of the event's process and parent now, when the event is fresh: a kill
// that comes later, however much later, reaches these processes or nothing. The pidfds go into
// a copy of t, which jobs already queued with t may be reading.
func pin(shared *sandbox.Targets) *pins {
	c := *shared
	t := &c
	open := func(pid int) *os.File {
		if pid <= 0 {
			return nil
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			return nil // gone already, or no pidfd: the kill re-opens by pid and checks
		}
		return os.NewFile(uintptr(fd), "pidfd")
	}
	t.PIDPin, t.PPIDPin = open(t.PID), open(t.PPID)
	p := &pins{t: t}
	p.refs.Store(1) // Handle's own reference, dropped once every job is queued
	return p
}

func (p *pins) release() {
	if p == nil || p.refs.Add(-1) != 0 {
		return
	}
	for _, f := range []*os.File{p.t.PIDPin, p.t.PPIDPin} {
		if f != nil {
			_ = f.Close()
		}
	}
}

// New starts the reaction workers. Load or Swap a Set before events arrive.
func New(cfg Config) *Engine {
	if cfg.Workers <= 0 {
		cfg.Workers = 2 * runtime.NumCPU()
	}
	if cfg.Queue <= 0 {
		cfg.Queue = 1024
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = sandbox.SystemClock{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{cfg: cfg, host: cfg.Host, log: cfg.Log, ctx: ctx, stop: cancel,
		cache: programCache{progs: map[string]*sandbox.Program{}}, wake: make(chan struct{}, cfg.Workers)}
	for i := range e.jobs {
		e.jobs[i] = make(chan job, cfg.Queue)
	}
	e.set.Store(&Set{})
	for i := 0; i < cfg.Workers; i++ {
		e.wg.Add(1)
		go e.worker()
	}
	return e
}

// Load builds a new generation of recipes from the sources and swaps it in; events keep
// flowing to the old one until the swap, and its running reactions finish undisturbed. It
// returns the load errors (rejected recipes); the others are live.
func (e *Engine) Load(ctx context.Context, srcs []Source, opt LoadOptions) *Set {
	e.loadMu.Lock()
	defer e.loadMu.Unlock()
	set := e.build(ctx, srcs, opt)
	old := e.set.Swap(set)
	e.retire(old, set)
	return set
}

// Current is the live generation.
func (e *Engine) Current() *Set { return e.set.Load() }

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	st := Stats{Events: e.events.Load(), Detections: e.detections.Load(), Reactions: e.reactions.Load(),
		RateLimited: e.limited.Load(), AlertsEmitted: e.alerts.Load(), DroppedBy: map[string]uint64{}}
	for i := range e.dropped {
		n := e.dropped[i].Load()
		st.QueueDropped += n
		st.DroppedBy[levelName(i)] = n
	}
	return st
}

// Close stops accepting work, lets queued reactions finish (bounded by ctx) and frees every
// compiled reaction.
func (e *Engine) Close(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		e.closing.Store(true)
		for i := 0; i < e.cfg.Workers; i++ {
			select {
			case e.wake <- struct{}{}:
			default:
			}
		}
		e.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		e.stop() // running reactions see their context end
		<-done
		err = fmt.Errorf("engine close: %w", ctx.Err())
	}
	e.stop()
	e.cache.mu.Lock()
	for k, p := range e.cache.progs {
		p.Close()
		delete(e.cache.progs, k)
	}
	e.cache.mu.Unlock()
	return err
}

// Handle evaluates one event against every recipe, now. Detections are printed at once and
// their reactions queued; Handle never waits for a reaction. It must not be called after Close.
func (e *Engine) Handle(ev *event.Event) int {
	e.events.Add(1)
	set := e.set.Load()
	n := 0
	var targets *sandbox.Targets
	var inScope bool
	var pinned *pins
	defer func() { pinned.release() }()
	for _, l := range set.Recipes {
		if !l.Recipe.Enabled {
			continue
		}
		if l.prefilter != nil && !l.prefilter.Pass(ev) {
			continue
		}
		if !l.matcher.Match(ev) || !l.times.Allow(ev) {
			continue
		}
		n++
		det := detection(ev, l.Recipe)
		payload, err := det.JSON()
		if err != nil {
			e.log.Error("encode detection", "recipe", l.Recipe.Name, "err", err)
			continue
		}
		e.detections.Add(1)
		if o := e.cfg.Observer; o != nil {
			o.Detection(l.Recipe.Name)
		}
		if e.cfg.Printer != nil {
			e.cfg.Printer.Print(payload)
		}
		if l.Mode == policy.ModeOff || len(l.Recipe.Reactions) == 0 {
			continue
		}
		if targets == nil {
			targets, inScope = TargetsOf(ev), e.inScope(ev)
		}
		lvl := level(l.Recipe.Importance)
		mode := l.Mode
		if mode == policy.ModeEnforce && !inScope {
			mode = policy.ModeDryRun
		}
		// Only what may act on processes holds pidfds: a dry-run reaction only records.
		jt, jp := targets, (*pins)(nil)
		if mode == policy.ModeEnforce {
			if pinned == nil {
				pinned = pin(targets)
			}
			jt, jp = pinned.t, pinned
			jp.refs.Add(1)
		}
		set.inflight.Add(1)
		select {
		case e.jobs[lvl] <- job{set: set, l: l, mode: mode, ev: det, payload: payload, targets: jt, pins: jp}:
			select {
			case e.wake <- struct{}{}:
			default:
			}
		default:
			jp.release()
			set.inflight.Done()
			e.dropped[lvl].Add(1)
			e.log.Warn("reaction queue full: reactions dropped", "recipe", l.Recipe.Name, "importance", levelName(lvl), "uuid", det.UUID)
		}
	}
	return n
}

// detection is the event as a recipe reports it: the same facts, the recipe's metadata and a
// uuid of its own.
func detection(ev *event.Event, r *recipes.Recipe) *event.Event { return enrich.WithRecipe(ev, r) }

// TargetsOf takes what the helpers act on from the engine's own copy of the event.
func TargetsOf(ev *event.Event) *sandbox.Targets {
	t := &sandbox.Targets{PID: int(ev.Process.PID), PPID: int(ev.Process.PPID)}
	for _, a := range ev.Background.Ancestry {
		t.Ancestry = append(t.Ancestry, int(a.PID))
	}
	if ev.Flow != nil {
		if a := ev.Flow.Remote.Address; a != "" {
			t.RemoteAddrs = append(t.RemoteAddrs, a)
		}
		if n := ev.Flow.Remote.Name; n != "" {
			t.RemoteNames = append(t.RemoteNames, n)
		}
		t.RemoteNames = append(t.RemoteNames, ev.Flow.Remote.Names...)
	}
	for _, pr := range ev.Background.Flows.Protocols {
		for _, pair := range pr.Pairs {
			if a := pair.Nodes.Remote.Address; a != "" {
				t.RemoteAddrs = append(t.RemoteAddrs, a)
			}
		}
	}
	return t
}

// Importance levels, most important first.
const (
	levelCritical = iota
	levelHigh
	levelMedium
	levelLow
	numLevels
)

func levelName(i int) string {
	return [numLevels]string{"critical", "high", "medium", "low"}[i]
}

func level(imp recipes.Importance) int {
	switch imp {
	case recipes.ImportanceCritical:
		return levelCritical
	case recipes.ImportanceHigh:
		return levelHigh
	case recipes.ImportanceLow:
		return levelLow
	default:
		return levelMedium
	}
}

// next takes the most important queued job, or reports false when there is none.
func (e *Engine) next() (job, bool) {
	for i := range e.jobs {
		select {
		case j := <-e.jobs[i]:
			return j, true
		default:
		}
	}
	return job{}, false
}

func (e *Engine) worker() {
	defer e.wg.Done()
	for {
		if j, ok := e.next(); ok {
			e.run(j)
			j.pins.release()
			j.set.inflight.Done()
			continue
		}
		if e.closing.Load() {
			return
		}
		<-e.wake
	}
}

// run executes every reaction of one detection, in parallel, with the recipe's mode and limits.
func (e *Engine) run(j job) {
	l := j.l
	if !l.rate.Allow() {
		e.limited.Add(1)
		e.log.Warn("reaction rate exceeded: reactions skipped", "recipe", l.Recipe.Name, "rate", l.Policy.Limits.Rate, "uuid", j.ev.UUID)
		return
	}
	n := len(l.Recipe.Reactions)
	if n == 1 {
		e.react(j, 0)
		return
	}
	var wg sync.WaitGroup
	for i := 1; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			e.react(j, i)
		}(i)
	}
	e.react(j, 0)
	wg.Wait()
}

func (e *Engine) env(l *Loaded, mode policy.Mode) *sandbox.Env {
	w := e.cfg.Live
	if mode == policy.ModeDryRun {
		w = e.cfg.DryRun
	}
	return &sandbox.Env{Policy: l.Policy, Mode: mode, World: w, Clock: e.cfg.Clock, Audit: e.cfg.Audit,
		Breaker: l.breaker, AllowPower: e.cfg.AllowPower, Log: e.log}
}

// inScope reports whether enforcement applies to the event (see Config.EnforceScope).
func (e *Engine) inScope(ev *event.Event) bool {
	if len(e.cfg.EnforceScope) == 0 {
		return true
	}
	for _, x := range e.cfg.EnforceScope {
		if ev.Process.Exe == x {
			return true
		}
		for _, a := range ev.Background.Ancestry {
			if a.Exe == x {
				return true
			}
		}
	}
	return false
}

func (e *Engine) react(j job, i int) {
	l := j.l
	start := time.Now()
	var tr *sandbox.Transcript
	if p := l.programs[i]; p != nil {
		tr = p.RunTargets(e.ctx, e.env(l, j.mode), j.ev.UUID, j.payload, j.targets)
	} else {
		tr = e.shell(j, i)
	}
	took := time.Since(start)
	e.reactions.Add(1)
	if o := e.cfg.Observer; o != nil {
		o.ObserveReaction(l.Recipe.Name, string(tr.Status), took)
		if tr.Format == "js" && (tr.Status == sandbox.StatusTimeout || tr.Status == sandbox.StatusOOM || tr.Status == sandbox.StatusTrap) {
			o.InstanceRecycled(l.Recipe.Name) // the sandbox discards the instance on these
		}
		for _, c := range tr.Calls {
			if c.Denied {
				if capability, ok := deniedCapability(c.Errno); ok {
					o.Denied(capability)
				} else if len(c.Errno) >= 8 && c.Errno[:8] == "disarmed" {
					o.Disarmed(l.Recipe.Name)
				}
			}
		}
	}
	lvl := slog.LevelInfo
	if tr.Status != sandbox.StatusOK {
		lvl = slog.LevelWarn
	}
	e.log.Log(e.ctx, lvl, "reaction done", "recipe", l.Recipe.Name, "reaction", i, "format", tr.Format,
		"mode", tr.Mode, "status", tr.Status, "uuid", j.ev.UUID, "calls", len(tr.Calls), "took_us", took.Microseconds(),
		"error", errorText(tr.Error))
	for _, a := range tr.Alerts {
		e.alert(j, a)
	}
}

func errorText(ei *sandbox.ErrorInfo) string {
	if ei == nil {
		return ""
	}
	return ei.Name + ": " + ei.Message
}

// deniedCapability reads "capability denied: <cap> (<file>)".
func deniedCapability(errno string) (string, bool) {
	const p = "capability denied: "
	if len(errno) <= len(p) || errno[:len(p)] != p {
		return "", false
	}
	rest := errno[len(p):]
	for k := 0; k < len(rest); k++ {
		if rest[k] == ' ' || rest[k] == ':' {
			return rest[:k], true
		}
	}
	return rest, true
}

// alert emits a follow-up event: the detection's facts, the reaction's message as the note.
func (e *Engine) alert(j job, a sandbox.Alert) {
	d := *j.ev
	d.UUID = enrich.NewUUID()
	d.Timestamp = event.Stamp(e.cfg.Clock.Now())
	d.Note = a.Msg
	if a.Importance != "" {
		d.Metadata.Importance = a.Importance
	}
	b, err := d.JSON()
	if err != nil {
		return
	}
	e.alerts.Add(1)
	if e.cfg.Printer != nil {
		e.cfg.Printer.Print(b)
	}
}

// shell runs a shell reaction when the policy grants it; a refusal is audited like any denial.
func (e *Engine) shell(j job, i int) *sandbox.Transcript {
	l := j.l
	tr := &sandbox.Transcript{Recipe: l.Recipe.Name, Reaction: i, Format: "shell", Mode: string(j.mode),
		Calls: []sandbox.Call{}, Logs: []sandbox.Log{}}
	audit := func(result any, errno, outcome string) {
		if e.cfg.Audit == nil {
			return
		}
		r, _ := json.Marshal(result)
		if _, err := e.cfg.Audit.AppendAudit(e.ctx, store.AuditEntry{Time: time.Now().UTC(), Recipe: l.Recipe.Name,
			Reaction: i, EventUUID: j.ev.UUID, Helper: "shell", Args: "[]", Result: string(r), Errno: errno,
			Outcome: outcome, Mode: string(j.mode)}); err != nil {
			e.log.Error("audit write failed", "recipe", l.Recipe.Name, "err", err)
		}
	}
	if !l.Policy.Granted(policy.CapShell) {
		msg := fmt.Sprintf("capability denied: %s (%s)", policy.CapShell, l.Policy.Source)
		tr.Status, tr.Error = sandbox.StatusError, &sandbox.ErrorInfo{Name: "CapabilityError", Message: msg}
		tr.Calls = append(tr.Calls, sandbox.Call{Helper: "shell", Args: []string{}, Result: -1, Errno: msg, Denied: true})
		audit(-1, msg, "denied")
		return tr
	}
	if j.mode == policy.ModeDryRun {
		tr.Status = sandbox.StatusOK
		tr.Calls = append(tr.Calls, sandbox.Call{Helper: "shell", Args: []string{}, Result: 0})
		audit(0, "", "would")
		return tr
	}
	res := shell.Run(e.ctx, shell.Spec{Code: l.Recipe.Reactions[i].Code, Event: j.payload, TempRoot: e.cfg.ShellTempDir,
		Timeout: shellTimeout(l.Policy), Recipe: l.Recipe.Name, Index: i, UUID: j.ev.UUID, Logger: e.log})
	tr.DurationUS = res.Duration.Microseconds()
	switch res.Status {
	case shell.StatusOK:
		tr.Status = sandbox.StatusOK
	case shell.StatusTimeout:
		tr.Status = sandbox.StatusTimeout
	default:
		tr.Status = sandbox.StatusError
	}
	if res.Err != nil {
		tr.Error = &sandbox.ErrorInfo{Name: "ShellError", Message: res.Err.Error()}
	}
	tr.Calls = append(tr.Calls, sandbox.Call{Helper: "shell", Args: []string{}, Result: res.ExitCode})
	errno := ""
	if res.Err != nil {
		errno = res.Err.Error()
	}
	audit(res.ExitCode, errno, "done")
	return tr
}

// shellTimeout is the policy's timeout when it set a longer one than the JS default, else 5 s.
func shellTimeout(p *policy.Policy) time.Duration {
	if p.Limits.Timeout > time.Second {
		return p.Limits.Timeout
	}
	return shell.DefaultTimeout
}

// Notice prints an event about jibril itself (event loss, degraded features) to the printers,
// so that whoever reads detections also learns what jibril could not see or do.
func (e *Engine) Notice(name, note, importance string) {
	ev := &event.Event{UUID: enrich.NewUUID(), Timestamp: event.Stamp(e.cfg.Clock.Now()), EventType: "jibril",
		Note: note, Metadata: event.Metadata{Kind: "jibril_health", Name: name, Format: "jibril", Importance: importance}}
	b, err := ev.JSON()
	if err != nil || e.cfg.Printer == nil {
		return
	}
	e.cfg.Printer.Print(b)
}

// WantsFile reports whether any loaded recipe could match a file event on path with the
// actions of mask (bit i for recipes.FileActions()[i]; enrich.ActionMask). The feed asks before
// enriching a file event (ancestry, process details, the JSON tree), which costs far more than
// this check: in a file storm most events concern no recipe.
func (e *Engine) WantsFile(path string, mask uint32) bool {
	return e.set.Load().files.wants(path, mask)
}
