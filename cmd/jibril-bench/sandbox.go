package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dop251/goja"

	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox"
)

// referenceReaction is a 40-line miner response: the kind of reaction the figures are about.
const referenceReaction = `
// Respond to a crypto miner: count, log, kill, block the pool, escalate.
var KNOWN = ["xmrig", "minerd", "cpuminer", "t-rex", "nbminer"];

function isMiner(p) {
  var exe = (p.exe || "").toLowerCase();
  for (var i = 0; i < KNOWN.length; i++) {
    if (exe.indexOf(KNOWN[i]) >= 0) return true;
  }
  return /stratum\+tcp|--donate-level/.test(p.cmd || "");
}

function lineage(anc) {
  var names = [];
  for (var i = 0; i < anc.length; i++) names.push(anc[i].comm);
  return names.join(" > ");
}

function process(data) {
  var p = data.process;
  if (!isMiner(p)) {
    Info("not a miner: " + p.exe);
    return;
  }
  var count = parseInt(DataGet("miners_terminated") || "0", 10) + 1;
  DataSet("miners_terminated", String(count));
  Error("Crypto miner " + p.exe + " (pid " + p.pid + ") from " + lineage(data.background.ancestry));
  if (KillCurrent() !== 0) {
    Warn("kill failed: " + Errno());
  }
  var remote = data.flow && data.flow.remote;
  if (remote && remote.address) {
    if (NetBlockIp(remote.address) < 0) Warn("block failed: " + Errno());
  }
  if (count >= 3) {
    Warn("repeated miners on this host: " + count);
  }
}
`

// referenceEvent is a ~1 KB execution event.
const referenceEvent = `{"uuid":"5f0c9a4e-8d7b-4c1a-9f3e-2b6d7e8f9a0b","timestamp":"2026-11-26T04:52:10.123456789Z","event_type":"execution","note":"","metadata":{"kind":"crypto_miner","name":"crypto_miner_execution","format":"jibril","version":"1.0","description":"Known crypto miner executed","importance":"critical","tactic":"impact","technique":"resource_hijacking"},"process":{"start":"2026-11-26T04:52:10.120000000Z","uid":1000,"gid":1000,"pid":4242,"ppid":4100,"comm":"xmrig","cmd":"/tmp/.x/xmrig -o stratum+tcp://pool.example:3333 -u 4Awallet --donate-level 1","exe":"/tmp/.x/xmrig","args":"-o stratum+tcp://pool.example:3333 -u 4Awallet --donate-level 1","argv":["/tmp/.x/xmrig","-o","stratum+tcp://pool.example:3333","-u","4Awallet","--donate-level","1"],"cgroup":"/user.slice/user-1000.slice/session-3.scope"},"flow":{"ip_version":4,"proto":"tcp","local":{"address":"198.18.0.2","port":51234},"remote":{"address":"198.18.0.9","name":"pool.example","names":["pool.example"],"port":3333}},"background":{"ancestry":[{"pid":1,"ppid":0,"comm":"systemd","exe":"/usr/lib/systemd/systemd"},{"pid":812,"ppid":1,"comm":"sshd","exe":"/usr/sbin/sshd"},{"pid":4100,"ppid":812,"comm":"bash","exe":"/usr/bin/bash"},{"pid":4242,"ppid":4100,"comm":"xmrig","exe":"/tmp/.x/xmrig"}]}}`

// memStore is a map-backed store so that the engine, not SQLite, is measured.
type memStore struct {
	mu sync.Mutex
	kv map[string]string
}

func (m *memStore) Get(_ context.Context, ns, k string) (string, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.kv[ns+"\x00"+k]
	return v, ok, nil
}
func (m *memStore) Set(_ context.Context, ns, k, v string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.kv[ns+"\x00"+k] = v
	return nil
}
func (m *memStore) Delete(context.Context, string, string) (bool, error) { return false, nil }
func (m *memStore) Keys(context.Context, string) ([]string, error)       { return nil, nil }
func (m *memStore) Values(context.Context, string) ([]string, error)     { return nil, nil }
func (m *memStore) Clear(context.Context, string) (int, error)           { return 0, nil }
func (m *memStore) Size(context.Context, string) (int, error)            { return 0, nil }
func (m *memStore) HasValue(context.Context, string, string) (bool, error) {
	return false, nil
}
func (m *memStore) Push(context.Context, string, string, string) error { return nil }
func (m *memStore) Pop(context.Context, string, string) (string, bool, error) {
	return "", false, nil
}

func percentile(d []time.Duration, p float64) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(p * float64(len(s)-1))
	return float64(s[i].Nanoseconds()) / 1000
}

func benchSandbox(ctx context.Context) (map[string]float64, error) {
	dir, err := os.MkdirTemp("", "jibril-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	host, err := sandbox.NewHost(ctx, sandbox.HostConfig{CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		return nil, err
	}
	defer host.Close(ctx)
	r := sandbox.Reaction{Recipe: "crypto_miner_execution", Kind: "crypto_miner", File: "reference.js", Source: referenceReaction}
	prog, err := host.Compile(ctx, r, sandbox.DefaultLimits(), 1)
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	pol, err := policy.Default("jibril", r.Recipe)
	if err != nil {
		return nil, err
	}
	rec := &sandbox.Recorder{}
	env := &sandbox.Env{Policy: pol, Mode: policy.ModeDryRun, World: sandbox.World{Proc: rec, Net: rec, Store: &memStore{kv: map[string]string{}}}}
	ev := []byte(referenceEvent)
	// The daemon hands its reactions the targets it took from its own event structure (see
	// engine.TargetsOf); decoding them is not part of a call.
	targets, err := sandbox.TargetsFromJSON(ev)
	if err != nil {
		return nil, err
	}
	res := map[string]float64{}
	const warm, n = 200, 5000
	calls, err := timeRuns(ctx, prog, env, ev, targets, warm, n, func(tr *sandbox.Transcript) error {
		if tr.Status != sandbox.StatusOK || len(tr.Calls) != 4 {
			return fmt.Errorf("reference reaction: %s %+v calls %d", tr.Status, tr.Error, len(tr.Calls))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	res["sandbox_call_us_p50"] = percentile(calls, 0.5)
	res["sandbox_call_us_p99"] = percentile(calls, 0.99)

	// Where the time of a call goes: the fixed cost of an invocation (an empty process on
	// the same event), and the reference reaction's own JS with the event already in hand
	// (run reps times inside one call, so that hand-over and invocation are paid once).
	empty, err := floorCalls(ctx, host, env, ev, targets, "function process(data) {}", warm, n)
	if err != nil {
		return nil, err
	}
	res["sandbox_empty_call_us_p50"] = percentile(empty, 0.5)
	const reps = 20
	once, err := floorCalls(ctx, host, env, ev, targets, repeatedReaction(0), warm, n/5)
	if err != nil {
		return nil, err
	}
	many, err := floorCalls(ctx, host, env, ev, targets, repeatedReaction(reps), warm, n/5)
	if err != nil {
		return nil, err
	}
	res["sandbox_reaction_js_us_p50"] = (percentile(many, 0.5) - percentile(once, 0.5)) / reps
	res["sandbox_handover_us_p50"] = percentile(once, 0.5) - percentile(empty, 0.5)

	g, err := benchGoja(referenceEvent, n, warm)
	if err != nil {
		return nil, err
	}
	res["goja_call_us_p50"] = g

	// The same reaction on a full daemon event (event.Sample: ~4 KB with base, scenario and
	// the file tree), where the lazy hand-over parses only the members the reaction reads.
	full, err := event.Sample(event.TypeExecution).JSON()
	if err != nil {
		return nil, err
	}
	ftg, err := sandbox.TargetsFromJSON(full)
	if err != nil {
		return nil, err
	}
	fcalls, err := timeRuns(ctx, prog, env, full, ftg, warm, n/2, statusOK("reference reaction on the daemon event"))
	if err != nil {
		return nil, err
	}
	res["sandbox_call_daemon_event_us_p50"] = percentile(fcalls, 0.5)
	gf, err := benchGoja(string(full), n/2, warm)
	if err != nil {
		return nil, err
	}
	res["goja_call_daemon_event_us_p50"] = gf

	var cold []time.Duration
	for i := 0; i < 300; i++ {
		start := time.Now()
		closeFn, err := prog.NewInstanceForBench(ctx)
		cold = append(cold, time.Since(start))
		if err != nil {
			return nil, err
		}
		closeFn()
	}
	res["sandbox_cold_us_p50"] = percentile(cold, 0.5)

	var tmpl []time.Duration
	for i := 0; i < 30; i++ {
		start := time.Now()
		p, err := host.Compile(ctx, r, sandbox.DefaultLimits(), 1)
		if err != nil {
			return nil, err
		}
		tmpl = append(tmpl, time.Since(start))
		p.Close()
	}
	res["sandbox_template_us_p50"] = percentile(tmpl, 0.5)

	const idle = 200
	before := rssKiB()
	var closers []func()
	for i := 0; i < idle; i++ {
		c, err := prog.NewInstanceForBench(ctx)
		if err != nil {
			return nil, err
		}
		closers = append(closers, c)
	}
	res["instance_rss_kib"] = float64(rssKiB()-before) / idle
	for _, c := range closers {
		c()
	}
	return res, nil
}

// repeatedReaction is the reference reaction whose process reads the three members the
// reference reads (handing them over) and then runs the reference's body reps times.
func repeatedReaction(reps int) string {
	body := strings.Replace(referenceReaction, "function process(data) {", "function reference(data) {", 1)
	return body + fmt.Sprintf("\nfunction process(data) { data.process; data.background; data.flow; for (var i = 0; i < %d; i++) reference(data); }\n", reps)
}

// floorCalls times n calls (after warm) of a variant of the reference reaction.
func floorCalls(ctx context.Context, host *sandbox.Host, env *sandbox.Env, ev []byte, tg *sandbox.Targets, src string, warm, n int) ([]time.Duration, error) {
	r := sandbox.Reaction{Recipe: "crypto_miner_execution", Kind: "crypto_miner", File: "variant.js", Source: src}
	prog, err := host.Compile(ctx, r, sandbox.Limits{HelperCalls: 1000}, 1)
	if err != nil {
		return nil, err
	}
	defer prog.Close()
	return timeRuns(ctx, prog, env, ev, tg, warm, n, statusOK("variant reaction"))
}

// timeRuns times n runs of prog on ev after warm untimed ones; check judges each run. The
// dry-run recorder's effects are cleared before each, so that they do not pile up.
func timeRuns(ctx context.Context, prog *sandbox.Program, env *sandbox.Env, ev []byte, tg *sandbox.Targets, warm, n int, check func(*sandbox.Transcript) error) ([]time.Duration, error) {
	rec, _ := env.World.Proc.(*sandbox.Recorder)
	d := make([]time.Duration, 0, n)
	for i := 0; i < warm+n; i++ {
		if rec != nil {
			rec.Effects = rec.Effects[:0]
		}
		start := time.Now()
		tr := prog.RunTargets(ctx, env, "u", ev, tg)
		took := time.Since(start)
		if err := check(tr); err != nil {
			return nil, err
		}
		if i >= warm {
			d = append(d, took)
		}
	}
	return d, nil
}

// statusOK is a timeRuns check that a run ended well.
func statusOK(what string) func(*sandbox.Transcript) error {
	return func(tr *sandbox.Transcript) error {
		if tr.Status != sandbox.StatusOK {
			return fmt.Errorf("%s: %s %+v", what, tr.Status, tr.Error)
		}
		return nil
	}
}

func rssKiB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

// benchGoja runs the same script on the same event in goja, helpers as no-op Go functions.
func benchGoja(eventJSON string, n, warm int) (float64, error) {
	vm := goja.New()
	kv := map[string]string{}
	set := func(name string, f any) { _ = vm.Set(name, f) }
	set("Info", func(string) {})
	set("Warn", func(string) {})
	set("Error", func(string) {})
	set("Errno", func() string { return "" })
	set("KillCurrent", func() int { return 0 })
	set("NetBlockIp", func(string) int { return 0 })
	set("DataGet", func(k string) string { return kv[k] })
	set("DataSet", func(k, v string) int { kv[k] = v; return 0 })
	if _, err := vm.RunString(referenceReaction); err != nil {
		return 0, err
	}
	process, ok := goja.AssertFunction(vm.Get("process"))
	if !ok {
		return 0, fmt.Errorf("goja: no process function")
	}
	parse, ok := goja.AssertFunction(vm.Get("JSON").ToObject(vm).Get("parse"))
	if !ok {
		return 0, fmt.Errorf("goja: no JSON.parse")
	}
	ev := vm.ToValue(eventJSON)
	var d []time.Duration
	for i := 0; i < warm+n; i++ {
		start := time.Now()
		data, err := parse(goja.Undefined(), ev)
		if err == nil {
			_, err = process(goja.Undefined(), data)
		}
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		if i >= warm {
			d = append(d, took)
		}
	}
	return percentile(d, 0.5), nil
}
