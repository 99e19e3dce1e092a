package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox/fsguard"
	"github.com/jibril-rt/jibril/sandbox/proc"
	"github.com/jibril-rt/jibril/store"
)

const testEvent = `{"uuid":"u-1","process":{"pid":4242,"ppid":4100,"exe":"/tmp/xmrig","cmd":"/tmp/xmrig -o pool:3333"},"background":{"ancestry":[{"pid":4100},{"pid":4242}]},"flow":{"remote":{"address":"198.18.0.9","names":["pool.example"]}}}`

func newHost(t *testing.T) *Host {
	t.Helper()
	h, err := NewHost(context.Background(), HostConfig{CacheDir: filepath.Join(t.TempDir(), "cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(context.Background()) })
	return h
}

func newEnv(t *testing.T, kind string) (*Env, *Recorder) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := os.MkdirAll(filepath.Join(dir, "scratch"), 0o700); err != nil {
		t.Fatal(err)
	}
	scratch, err := fsguard.New(filepath.Join(dir, "scratch"))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Default(kind, "test_recipe")
	if err != nil {
		t.Fatal(err)
	}
	rec := &Recorder{Floor: proc.NewLive(proc.Floor{})}
	seed := uint64(7)
	return &Env{
		Policy: pol, Mode: policy.ModeDryRun, Clock: FixedClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		Seed: &seed, Audit: st,
		World: World{Proc: rec, Net: rec, Power: rec, Files: GuardedFiles{FS: scratch}, Store: st, TempRoot: "/tmp/jibril"},
	}, rec
}

func compile(t *testing.T, h *Host, src string, lim Limits) *Program {
	t.Helper()
	p, err := h.Compile(context.Background(), Reaction{Recipe: "test_recipe", Kind: "test_kind", File: "test.js", Source: src}, lim, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

func TestStatusesAndLimits(t *testing.T) {
	h := newHost(t)
	lim := Limits{Timeout: 100 * time.Millisecond, Memory: 32 << 20, HelperCalls: 50}
	cases := []struct {
		name, src string
		status    Status
		errName   string
		errMsg    string
	}{
		{"ok", `function process(d) { Info("pid " + d.process.pid) }`, StatusOK, "", ""},
		{"throw", `function process(d) { throw new RangeError("bad " + d.process.pid) }`, StatusError, "RangeError", "bad 4242"},
		{"throw string", `function process(d) { throw "plain" }`, StatusError, "Error", "uncaught plain"},
		{"type error", `function process(d) { d.nope.x }`, StatusError, "TypeError", "cannot read property 'x' of undefined"},
		{"infinite loop", `function process(d) { while (true) {} }`, StatusTimeout, "TimeoutError", ""},
		{"catch cannot swallow timeout", `function process(d) { for (;;) { try { while (true) {} } catch (e) {} } }`, StatusTimeout, "TimeoutError", ""},
		{"regex bomb", `function process(d) { /(a+)+$/.test("a".repeat(40) + "b") }`, StatusTimeout, "TimeoutError", ""},
		{"error is still a constructor", `function process(d) { var e = new Error("x"); Error("logged"); if (!(e instanceof Error) || !(new TypeError("t") instanceof Error)) throw new Error("bad instanceof") }`, StatusOK, "", ""},
		// QuickJS's JSON.stringify never polls the interrupt and is quadratic in the depth.
		{"deep stringify is refused", `function process(d) { var a = "x"; for (var i = 0; i < 2e4; i++) a = [a]; JSON.stringify(a) }`, StatusError, "RangeError", "nesting deeper than 512"},
		{"deep helper argument is refused", `function process(d) { var a = "x"; for (var i = 0; i < 2e4; i++) a = [a]; Info(a) }`, StatusError, "RangeError", "nesting deeper than 512"},
		{"huge parse is refused", `function process(d) { JSON.parse("[" + "1,".repeat(6e5) + "1]") }`, StatusError, "RangeError", "longer than 1 MiB"},
		{"memory bomb", `function process(d) { var a = []; for (;;) a.push("x".repeat(1 << 16) + a.length) }`, StatusOOM, "OutOfMemory", ""},
		{"huge stringify", `function process(d) { var a = []; for (var i = 0; i < 3e5; i++) a.push({k: i, v: "abcdefgh"}); for (;;) JSON.stringify(a).repeat(100) }`, StatusOOM, "OutOfMemory", ""},
		{"deep recursion", `function f(n) { return f(n + 1) + 1 } function process(d) { f(0) }`, StatusError, "RangeError", "Maximum call stack size exceeded"},
		{"helper budget", `function process(d) { for (;;) { try { Info("x") } catch (e) {} } }`, StatusError, "LimitError", "helper-call budget of 50 exceeded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env, _ := newEnv(t, "strict")
			lim := lim
			if c.status != StatusTimeout {
				lim.Timeout = 5 * time.Second // let the cap or the error, not the clock, stop it
			}
			p := compile(t, h, c.src, lim)
			start := time.Now()
			tr := p.Run(context.Background(), env, "u-1", []byte(testEvent))
			took := time.Since(start)
			if tr.Status != c.status {
				t.Fatalf("status %s, want %s (error %+v)", tr.Status, c.status, tr.Error)
			}
			// The deadline is enforced: a loaded machine delays the stop, it never prevents it.
			if c.status == StatusTimeout && took > lim.Timeout+2*time.Second {
				t.Errorf("timeout took %s for a %s deadline", took, lim.Timeout)
			}
			if c.errName != "" && (tr.Error == nil || tr.Error.Name != c.errName || !strings.Contains(tr.Error.Message, c.errMsg)) {
				t.Fatalf("error %+v, want %s: %s", tr.Error, c.errName, c.errMsg)
			}
			// The program must still serve events after any failure (instance recycled).
			ok := compile(t, h, `function process(d) { Info("alive") }`, lim)
			if tr := ok.Run(context.Background(), env, "u-2", []byte(testEvent)); tr.Status != StatusOK {
				t.Fatalf("fresh program after failure: %s %+v", tr.Status, tr.Error)
			}
			if tr := p.Run(context.Background(), env, "u-3", []byte(testEvent)); tr.Status != c.status {
				t.Fatalf("second run status %s, want %s", tr.Status, c.status)
			}
		})
	}
}

func TestStackTraceNamesFileAndLine(t *testing.T) {
	h := newHost(t)
	env, _ := newEnv(t, "strict")
	p := compile(t, h, "function process(d) {\n  var x = 1;\n  throw new Error('line three');\n}", Limits{})
	tr := p.Run(context.Background(), env, "u", []byte(testEvent))
	if tr.Error == nil || !strings.Contains(tr.Error.Stack, "test.js:3") {
		t.Fatalf("stack %+v does not name test.js:3", tr.Error)
	}
}

func TestNoStateLeaks(t *testing.T) {
	h := newHost(t)
	env, _ := newEnv(t, "strict")
	src := `
var counter = (typeof counter === "number") ? counter + 1 : 0;
function process(d) {
  Info("counter=" + counter);
  Info("sloppy=" + (typeof sloppyGlobal));
  Info("proto=" + (typeof Object.prototype.leak));
  Info("json=" + (JSON.parse === JSON.parse && typeof JSON.evil));
  try { sloppyGlobal = 1 } catch (e) { Info("assign: " + e.name) }
  try { globalThis.viaGlobal = 1 } catch (e) { Info("global: " + e.name) }
  try { Object.prototype.leak = 1 } catch (e) { Info("proto: " + e.name) }
  try { JSON.evil = 1 } catch (e) { Info("json: " + e.name) }
  try { Info = function () {} } catch (e) { Info("helper: " + e.name) }
  d.process.pid = 1;
}`
	p := compile(t, h, src, Limits{})
	for i := 0; i < 3; i++ {
		tr := p.Run(context.Background(), env, "u", []byte(testEvent))
		if tr.Status != StatusOK {
			t.Fatalf("run %d: %s %+v", i, tr.Status, tr.Error)
		}
		want := []string{"counter=0", "sloppy=undefined", "proto=undefined", "json=undefined"}
		for k, w := range want {
			if tr.Logs[k].Msg != w {
				t.Fatalf("run %d: log %d = %q, want %q (all: %+v)", i, k, tr.Logs[k].Msg, w, tr.Logs)
			}
		}
	}
}

func TestNoAmbientAuthority(t *testing.T) {
	h := newHost(t)
	env, _ := newEnv(t, "strict")
	src := `function process(d) {
  Info([typeof require, typeof std, typeof os, typeof fetch, typeof XMLHttpRequest, typeof setTimeout].join(","));
  var r = "none"; try { import("os").then(function () { r = "loaded" }, function () { r = "rejected" }) } catch (e) { r = "threw" }
  try { new Function("return 1")(); Info("function ctor ok") } catch (e) { Info("function ctor " + e.name) }
}`
	p := compile(t, h, src, Limits{})
	tr := p.Run(context.Background(), env, "u", []byte(testEvent))
	if tr.Status != StatusOK {
		t.Fatalf("%s %+v", tr.Status, tr.Error)
	}
	if got := tr.Logs[0].Msg; got != "undefined,undefined,undefined,undefined,undefined,undefined" {
		t.Fatalf("ambient globals: %s", got)
	}
}

func TestDeterministicClockAndRandom(t *testing.T) {
	h := newHost(t)
	src := `function process(d) { Info(Date.now() + " " + new Date().toISOString() + " " + Math.random() + " " + Math.random()) }`
	p := compile(t, h, src, Limits{})
	var first string
	for i := 0; i < 2; i++ {
		env, _ := newEnv(t, "strict")
		tr := p.Run(context.Background(), env, "u", []byte(testEvent))
		if tr.Status != StatusOK {
			t.Fatalf("%s %+v", tr.Status, tr.Error)
		}
		msg := tr.Logs[0].Msg
		if !strings.HasPrefix(msg, "1767225600000 2026-01-01T00:00:00.000Z 0.") {
			t.Fatalf("clock not injected: %s", msg)
		}
		if i == 0 {
			first = msg
		} else if msg != first {
			t.Fatalf("same seed, different output: %q vs %q", first, msg)
		}
	}
	env, _ := newEnv(t, "strict")
	other := uint64(8)
	env.Seed = &other
	if tr := p.Run(context.Background(), env, "u", []byte(testEvent)); tr.Logs[0].Msg == first {
		t.Fatalf("a different seed gave the same randoms")
	}
}

func TestConcurrentInvocations(t *testing.T) {
	h := newHost(t)
	env, _ := newEnv(t, "jibril")
	p := compile(t, h, `function process(d) { var n = 0; for (var i = 0; i < 1000; i++) n += i; Info(uuid + ":" + n + ":" + d.process.pid) }`, Limits{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 10; i++ {
				u := fmt.Sprintf("g%d-%d", g, i)
				tr := p.Run(context.Background(), env, u, []byte(testEvent))
				if tr.Status != StatusOK || len(tr.Logs) != 1 || tr.Logs[0].Msg != u+":499500:4242" {
					errs <- fmt.Errorf("%s: %s %+v %+v", u, tr.Status, tr.Error, tr.Logs)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestDryRunHelpersAndDenials(t *testing.T) {
	h := newHost(t)
	src := `function process(d) {
  Info("kill=" + KillCurrent());
  Info("block=" + NetBlockIp());
  Info("domain=" + NetBlockDomain());
  Info("write=" + WriteFile("/etc/jibril-test/out.txt", "hello"));
  Info("read=" + ReadFile("/etc/jibril-test/out.txt"));
  Info("set=" + DataSet("n", 3) + " get=" + DataGet("n"));
  DataPush("a"); DataPush("b"); Info("pop=" + DataPop() + DataPop());
  Info("pid1=" + KillProcess(1) + " " + Errno());
  Info("power=" + PowerOff() + " " + Errno());
}`
	p := compile(t, h, src, Limits{})
	env, rec := newEnv(t, "jibril")
	tr := p.Run(context.Background(), env, "u", []byte(testEvent))
	if tr.Status != StatusOK {
		t.Fatalf("%s %+v", tr.Status, tr.Error)
	}
	want := []string{"kill=0", "block=0", "domain=0", "write=0", "read=hello", "set=0 get=3", "pop=ba",
		"pid1=-1 refused by safety floor: pid 1", "power=-1 capability denied: power (default:jibril)"}
	for k, w := range want {
		if k >= len(tr.Logs) || !strings.HasPrefix(tr.Logs[k].Msg, w) {
			t.Fatalf("log %d: got %+v, want prefix %q", k, tr.Logs, w)
		}
	}
	effects := strings.Join(rec.Effects, ";")
	if effects != "Kill 4242;BlockPrefix 198.18.0.9/32 ttl=0s;BlockDomain pool.example" {
		t.Fatalf("recorded effects: %s", effects)
	}
	b, _ := json.Marshal(tr.Calls)
	for _, s := range []string{`"helper":"KillCurrent","args":[],"result":0`, `"helper":"KillProcess","args":["1"],"result":-1`, `"denied":true`} {
		if !strings.Contains(string(b), s) {
			t.Fatalf("calls %s lack %s", b, s)
		}
	}
	// Under the strict default every effect helper is denied with the policy named.
	strictEnv, rec2 := newEnv(t, "strict")
	tr = p.Run(context.Background(), strictEnv, "u", []byte(testEvent))
	if tr.Logs[0].Msg != "kill=-1" || len(rec2.Effects) != 0 {
		t.Fatalf("strict: %+v effects %v", tr.Logs, rec2.Effects)
	}
	if tr.Calls[0].Errno != "capability denied: process.kill (default:strict)" || !tr.Calls[0].Denied {
		t.Fatalf("strict denial: %+v", tr.Calls[0])
	}
}

func TestCompileErrors(t *testing.T) {
	h := newHost(t)
	cases := map[string]string{
		"syntax":     "function process(d) { if ( }",
		"no process": "function handle(d) {}",
		"not a fn":   "var process = 3;",
	}
	for name, src := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := h.Compile(context.Background(), Reaction{Recipe: "r", File: "bad.js", Source: src}, Limits{}, 1)
			var ce *CompileError
			if err == nil || !strings.HasPrefix(err.Error(), "bad.js: ") || !errorsAs(err, &ce) {
				t.Fatalf("want CompileError naming bad.js, got %v", err)
			}
		})
	}
}

// A world built without a seam answers the helpers that act through it with an error, as a
// refusal would: the reaction goes on, and nothing fails inside the host call.
func TestHelpersOfAMissingSeamFail(t *testing.T) {
	h := newHost(t)
	src := `function process(d) {
  Info("stat=" + Stat("/etc/hostname") + " " + Errno());
  Info("hash=" + HashFile("/etc/hostname") + " " + Errno());
  Info("read=" + ReadFile("/etc/hostname") + " " + Errno());
  Info("set=" + DataSet("k", "v") + " " + Errno());
  Info("kill=" + KillCurrent() + " " + Errno());
  Info("block=" + NetBlockDomain() + " " + Errno());
}`
	p := compile(t, h, src, Limits{})
	env, _ := newEnv(t, "jibril")
	env.World = World{TempRoot: env.World.TempRoot}
	tr := p.Run(context.Background(), env, "u", []byte(testEvent))
	if tr.Status != StatusOK {
		t.Fatalf("%s %+v", tr.Status, tr.Error)
	}
	for i, want := range []string{"stat=null Stat: this world has nothing to act through for fs.read",
		"hash= HashFile: this world has nothing to act through for fs.read",
		"read= ReadFile: this world has nothing to act through for fs.read",
		"set=-1 DataSet: this world has nothing to act through for store",
		"kill=-1 KillCurrent: this world has nothing to act through for process.kill",
		"block=-1 NetBlockDomain: this world has nothing to act through for net.block.domain"} {
		if i >= len(tr.Logs) || tr.Logs[i].Msg != want {
			t.Errorf("log %d: got %+v, want %q", i, tr.Logs, want)
			break
		}
	}
}

// Targets the safety floor refuses are not acted on, and must not disarm the recipe: a
// stream of them would otherwise switch its real kills off for the window.
func TestRefusedKillsDoNotDisarm(t *testing.T) {
	h := newHost(t)
	src := `function process(d) {
  for (var pid = 1; pid <= 5; pid++) Info("pid" + pid + "=" + KillProcess(pid) + " " + Errno());
  Info("current=" + KillCurrent() + " " + Errno());
}`
	p := compile(t, h, src, Limits{})
	env, rec := newEnv(t, "jibril")
	env.Breaker = policy.NewBreaker(policy.Disarm{MaxTargets: 2, Per: time.Minute}, nil)
	tr := p.Run(context.Background(), env, "u", []byte(testEvent))
	if tr.Status != StatusOK {
		t.Fatalf("%s %+v", tr.Status, tr.Error)
	}
	for i := 0; i < 5; i++ {
		if i >= len(tr.Logs) || !strings.Contains(tr.Logs[i].Msg, "refused by safety floor") {
			t.Fatalf("log %d: %+v, want a refusal", i, tr.Logs)
		}
	}
	if len(tr.Logs) < 6 || !strings.HasPrefix(tr.Logs[5].Msg, "current=0 ") { // Errno keeps the last error
		t.Fatalf("the kill of the event's process after five refusals: %+v", tr.Logs)
	}
	if got := strings.Join(rec.Recorded(), ";"); got != "Kill 4242" {
		t.Fatalf("recorded effects %q, want the one kill", got)
	}
}

// outcomeProc answers every kill with one outcome.
type outcomeProc struct {
	n   int
	err error
}

func (o outcomeProc) Check(proc.Target) error                            { return nil }
func (o outcomeProc) Kill(context.Context, proc.Target) (int, error)     { return o.n, o.err }
func (o outcomeProc) KillTree(context.Context, proc.Target) (int, error) { return o.n, o.err }
func (o outcomeProc) Freeze(context.Context, proc.Target) (int, error)   { return 0, nil }
func (o outcomeProc) Thaw(context.Context, proc.Target) (int, error)     { return 0, nil }

// Only kills that acted count towards disarming: gone and refused targets do not, a tree
// kill that skipped a refused member does.
func TestKillOutcomesAndTheBreaker(t *testing.T) {
	h := newHost(t)
	refused := fmt.Errorf("kill: %w: pid 3", proc.ErrRefused)
	for _, tc := range []struct {
		name   string
		helper string
		n      int
		err    error
		counts bool
	}{
		{"killed", "KillProcess", 0, nil, true},
		{"already gone", "KillProcess", 1, nil, false},
		{"refused by the floor", "KillProcess", -1, refused, false},
		{"tree killed", "KillTree", 0, nil, true},
		{"tree root refused", "KillTree", -1, refused, false},
		{"tree with a refused member", "KillTree", 0, &proc.TreeError{Root: 4242, Killed: 1, Issues: []error{refused}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The first kill's outcome comes from the world; the second, of another pid,
			// is allowed only if the first did not count (max_targets 1).
			src := fmt.Sprintf(`function process(d) { %s(4242); Info("second=" + KillProcess(4243) + " " + Errno()); }`, tc.helper)
			p := compile(t, h, src, Limits{})
			env, _ := newEnv(t, "jibril")
			env.World.Proc = outcomeProc{tc.n, tc.err}
			env.Breaker = policy.NewBreaker(policy.Disarm{MaxTargets: 1, Per: time.Minute}, nil)
			tr := p.Run(context.Background(), env, "u", []byte(testEvent))
			if tr.Status != StatusOK || len(tr.Logs) != 1 {
				t.Fatalf("%s %+v %+v", tr.Status, tr.Error, tr.Logs)
			}
			disarmed := strings.Contains(tr.Logs[0].Msg, "disarmed")
			if disarmed != tc.counts {
				t.Errorf("second kill: %q; the first (%d, %v) counted: %v, want %v", tr.Logs[0].Msg, tc.n, tc.err, disarmed, tc.counts)
			}
		})
	}
}
