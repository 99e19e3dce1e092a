package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox/fsguard"
	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/sandbox/proc"
	"github.com/jibril-rt/jibril/store"
)

// fuzzRecipe names the fuzzed reaction: its data-store namespace and temp directory.
const fuzzRecipe = "fuzz_recipe"

// FuzzHelperABI calls one helper with up to three fuzzed values of any JS kind (string,
// number, object, array, undefined, null, boolean, bigint, symbol, function, values whose
// coercion throws or re-enters a helper, strings past the argument limit, raw UTF-16 units
// with NULs and lone surrogates, deep nesting), as the reaction's own code would.
//
// The reaction is compiled once: process(data) evaluates data.src, a call built here with
// every fuzzed string written as a JSON literal. It runs under the permissive jibril default
// policy in dry-run: a Recorder for processes, network and evidence, files beneath a scratch
// fsguard root, a real SQLite store.
//
// Properties: no panic; the status is ok, error, timeout, oom or trap, and an error names
// itself; a helper that returns returns the type the API promises, and Errno a string; every
// argument the host receives is at most maxArgBytes, at most three of them, and what reaches
// the world is well formed (absolute clean NUL-free paths, normalised domains, valid unmapped
// blockable prefixes, positive pids, no power action; NULs only where data is expected: store
// keys and values, file contents, log and alert text); log lines stay within their bound;
// the program's pool still serves a normal invocation afterwards.
func FuzzHelperABI(f *testing.F) {
	f.Add(uint8(0), uint32(1), "hello", "", "")
	ctx := context.Background()
	h, err := NewHost(ctx, HostConfig{CacheDir: filepath.Join(f.TempDir(), "cache")})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close(ctx) })
	st, err := store.Open(ctx, filepath.Join(f.TempDir(), "state.db"))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	prog, err := h.Compile(ctx, Reaction{Recipe: fuzzRecipe, Kind: "fuzz", File: "fuzz.js",
		Source: `function process(d) { (0, eval)(d.src) }`}, Limits{}, 2)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(prog.Close)
	pol, err := policy.Default("jibril", fuzzRecipe)
	if err != nil {
		f.Fatal(err)
	}
	hs := helpers()
	floor := proc.NewLive(proc.Floor{})

	f.Fuzz(func(t *testing.T, idx uint8, shape uint32, a1, a2, a3 string) {
		hp := hs[int(idx)%len(hs)]
		src := fuzzCall(hp, shape, []string{a1, a2, a3})
		env := fuzzEnv(t, st, pol, floor)
		tr := prog.Run(ctx, env, "fuzz-uuid", fuzzEvent(t, src))
		switch tr.Status {
		case StatusOK:
		case StatusError, StatusTimeout, StatusOOM, StatusTrap:
			if tr.Error == nil || tr.Error.Name == "" {
				t.Fatalf("status %s without a named error: %+v", tr.Status, tr.Error)
			}
			if tr.Error.Name == "FuzzRetType" {
				t.Fatalf("%s returned the wrong type: %s\n%s", hp.name, tr.Error.Message, src)
			}
		default:
			t.Fatalf("unknown status %q", tr.Status)
		}
		for _, c := range tr.Calls {
			checkArgs(t, c.Helper, c.Args)
		}
		for _, l := range tr.Logs {
			if len(l.Msg) > 64<<10 {
				t.Fatalf("log line of %d bytes", len(l.Msg))
			}
		}
		for _, a := range tr.Alerts {
			if len(a.Msg) > maxArgBytes {
				t.Fatalf("alert of %d bytes", len(a.Msg))
			}
		}

		after := prog.Run(ctx, fuzzEnv(t, st, pol, floor), "fuzz-after", fuzzEvent(t, `Info("alive")`))
		if after.Status != StatusOK || len(after.Logs) != 1 || after.Logs[0].Msg != "alive" {
			t.Fatalf("pool broken after a %s run: %s %+v %+v\n%s", tr.Status, after.Status, after.Error, after.Logs, src)
		}
	})
}

// fuzzCall builds the call and the checks of its result, in a function (the global object is
// sealed, so the evaluated code cannot declare globals). shape's bits pick the number of
// arguments (0-2, mod 5: 3 and 4, the wrapper passes at most three), each argument's kind
// (bits 4-7, 8-11, 12-15) and whether the helper is called with new (bit 31).
func fuzzCall(hp helper, shape uint32, raw []string) string {
	n := int(shape&7) % 5
	args := make([]string, n)
	for i := range args {
		args[i] = jsValue(int(shape>>(4+4*i))&0xf, raw[i%len(raw)])
	}
	call := hp.name + "(" + strings.Join(args, ", ") + ")"
	const fail = `function (m) { var e = new Error(m); Object.defineProperty(e, "name", {value: "FuzzRetType"}); throw e; }`
	errno := "if (typeof Errno() !== \"string\") (" + fail + ")(\"Errno\");\n"
	if shape>>31 == 1 {
		return "(function () {\nnew " + call + ";\n" + errno + "})()"
	}
	want := map[ret]string{retNone: "undefined", retInt: "number", retString: "string", retBool: "boolean", retJSON: "object"}[hp.ret]
	return "(function () {\nvar r = " + call + ";\n" +
		"if (typeof r !== \"" + want + "\") (" + fail + ")(typeof r);\n" + errno + "})()"
}

// jsValue writes s as a JS expression of the given kind.
func jsValue(kind int, s string) string {
	lit := jsonString(s)
	switch kind {
	case 0:
		return lit
	case 1:
		return "(+" + lit + ")"
	case 2:
		if json.Valid([]byte(s)) {
			return "(" + s + ")"
		}
		return `{"v": ` + lit + `, "n": 1}`
	case 3:
		return "[" + lit + ", 1, null]"
	case 4:
		return "undefined"
	case 5:
		return "null"
	case 6:
		return "(" + lit + ".length % 2 === 0)"
	case 7:
		return "BigInt(" + lit + ".length)"
	case 8:
		return "Symbol(" + lit + ")"
	case 9:
		return "(function () { return " + lit + " })"
	case 10:
		return "{toJSON: function () { throw new Error(" + lit + ") }}"
	case 11:
		return "{toJSON: function () { Info(" + lit + "); return " + lit + " }}"
	case 12:
		return "(" + lit + ` + "x").padEnd(` + fmt.Sprint(maxArgBytes+1) + `, "x")`
	case 13:
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i+1 < len(s); i += 2 {
			fmt.Fprintf(&b, `\u%02x%02x`, s[i], s[i+1])
		}
		b.WriteByte('"')
		return b.String()
	case 14:
		return "new Proxy({}, {ownKeys: function () { return [" + lit + "] }, " +
			"getOwnPropertyDescriptor: function () { return {value: " + lit + ", enumerable: true, configurable: true} }, " +
			"get: function (o, k) { return typeof k === \"string\" ? " + lit + " : undefined }})"
	default:
		// A deep structure for the coercion, but not deeper: JSON.stringify's cycle check is
		// quadratic in the depth and never polls the interrupt handler, so 10^5 levels hold an
		// instance for minutes past its timeout (a known gap in the time limit, reported).
		return "(function () { var a = " + lit + "; for (var i = 0; i < 2000; i++) a = [a]; return a })()"
	}
}

func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // a Go string always encodes
	}
	return string(b)
}

// fuzzEvent is an event with targets for the helpers that take them from the event, and the
// code to evaluate.
func fuzzEvent(t *testing.T, src string) []byte {
	ev := map[string]any{
		"uuid":       "fuzz",
		"process":    map[string]any{"pid": 4242, "ppid": 4100, "exe": "/tmp/xmrig"},
		"background": map[string]any{"ancestry": []any{map[string]any{"pid": 4100}, map[string]any{"pid": 4242}}},
		"flow":       map[string]any{"remote": map[string]any{"address": "198.18.0.9", "names": []string{"pool.example"}}},
		"src":        src,
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fuzzEnv is a dry-run world whose every seam checks what the host hands it.
func fuzzEnv(t *testing.T, st *store.Store, pol *policy.Policy, floor *proc.Live) *Env {
	dir := t.TempDir()
	scratch, err := fsguard.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { scratch.Close() })
	rec := &Recorder{Floor: floor}
	seed := uint64(7)
	spy := &worldSpy{t: t}
	return &Env{
		Policy: pol, Mode: policy.ModeDryRun, Clock: FixedClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		Seed: &seed, Audit: st,
		World: World{Proc: spyProc{spy, rec}, Net: spyNet{spy, rec}, Evidence: spyEvidence{spy, rec},
			Power: spyPower{spy}, Files: spyFiles{spy, GuardedFiles{FS: scratch}}, Store: spyStore{spy, st},
			TempRoot: "/tmp/jibril"},
		Answer: func(helper string, args []string) (any, bool, error) {
			checkArgs(t, helper, args)
			return nil, false, nil
		},
	}
}

func checkArgs(t *testing.T, helper string, args []string) {
	t.Helper()
	if len(args) > 3 {
		t.Errorf("%s got %d arguments", helper, len(args))
	}
	for i, a := range args {
		if len(a) > maxArgBytes {
			t.Errorf("%s argument %d is %d bytes", helper, i, len(a))
		}
	}
}

// worldSpy reports what should never reach the world.
type worldSpy struct{ t *testing.T }

func (s *worldSpy) path(op, p string) {
	if p == "" || p[0] != '/' || strings.IndexByte(p, 0) >= 0 || filepath.Clean(p) != p || len(p) > maxArgBytes {
		s.t.Errorf("%s got path %q", op, p)
	}
}

// pid checks a target: positive, and never this process once the floor has been applied
// (Check, Kill and KillTree apply it themselves: see floored).
func (s *worldSpy) pid(op string, pid int) {
	selfOK := op == "Check" || op == "Kill" || op == "KillTree"
	if pid <= 0 || !selfOK && pid == os.Getpid() {
		s.t.Errorf("%s got pid %d", op, pid)
	}
}

// floored checks that a kill of this process was refused by the floor.
func (s *worldSpy) floored(op string, pid int, err error) {
	if pid == os.Getpid() && !errors.Is(err, proc.ErrRefused) {
		s.t.Errorf("%s of this process (pid %d) was not refused: %v", op, pid, err)
	}
}

func (s *worldSpy) prefix(op string, p netip.Prefix) {
	if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().IsLoopback() || p.Bits() == 0 {
		s.t.Errorf("%s got prefix %v", op, p)
	}
}

func (s *worldSpy) domain(op, d string) {
	if n, err := netblock.NormalizeDomain(d); err != nil || n != d {
		s.t.Errorf("%s got domain %q", op, d)
	}
}

type spyProc struct {
	s *worldSpy
	p Processes
}

func (w spyProc) Check(t proc.Target) error {
	w.s.pid("Check", t.PID)
	return w.p.Check(t)
}
func (w spyProc) Kill(ctx context.Context, t proc.Target) (int, error) {
	w.s.pid("Kill", t.PID)
	n, err := w.p.Kill(ctx, t)
	w.s.floored("Kill", t.PID, err)
	return n, err
}
func (w spyProc) KillTree(ctx context.Context, t proc.Target) (int, error) {
	w.s.pid("KillTree", t.PID)
	n, err := w.p.KillTree(ctx, t)
	w.s.floored("KillTree", t.PID, err)
	return n, err
}
func (w spyProc) Freeze(ctx context.Context, t proc.Target) (int, error) {
	w.s.pid("Freeze", t.PID)
	return w.p.Freeze(ctx, t)
}
func (w spyProc) Thaw(ctx context.Context, t proc.Target) (int, error) {
	w.s.pid("Thaw", t.PID)
	return w.p.Thaw(ctx, t)
}

type spyNet struct {
	s *worldSpy
	n Network
}

func (w spyNet) BlockPrefix(ctx context.Context, p netip.Prefix, ttl time.Duration, recipe string) (int, error) {
	w.s.prefix("BlockPrefix", p)
	if ttl < 0 || recipe != fuzzRecipe {
		w.s.t.Errorf("BlockPrefix ttl %s recipe %q", ttl, recipe)
	}
	return w.n.BlockPrefix(ctx, p, ttl, recipe)
}
func (w spyNet) UnblockPrefix(ctx context.Context, p netip.Prefix) (int, error) {
	if !p.IsValid() || p != p.Masked() {
		w.s.t.Errorf("UnblockPrefix got %v", p)
	}
	return w.n.UnblockPrefix(ctx, p)
}
func (w spyNet) BlockDomain(ctx context.Context, d, recipe string) (int, error) {
	w.s.domain("BlockDomain", d)
	return w.n.BlockDomain(ctx, d, recipe)
}
func (w spyNet) UnblockDomain(ctx context.Context, d string) (int, error) {
	w.s.domain("UnblockDomain", d)
	return w.n.UnblockDomain(ctx, d)
}

type spyFiles struct {
	s *worldSpy
	f Files
}

func (w spyFiles) ReadFile(p string, max int64) ([]byte, error) {
	w.s.path("ReadFile", p)
	return w.f.ReadFile(p, max)
}
func (w spyFiles) WriteFile(p string, data []byte) error {
	w.s.path("WriteFile", p)
	for _, root := range []string{"/proc", "/sys", "/dev"} {
		if p == root || strings.HasPrefix(p, root+"/") {
			w.s.t.Errorf("WriteFile under %s: %q", root, p)
		}
	}
	if len(data) > maxArgBytes {
		w.s.t.Errorf("WriteFile of %d bytes", len(data))
	}
	return w.f.WriteFile(p, data)
}
func (w spyFiles) Stat(p string) (FileInfo, error) {
	w.s.path("Stat", p)
	return w.f.Stat(p)
}
func (w spyFiles) HashFile(p string) (string, error) {
	w.s.path("HashFile", p)
	return w.f.HashFile(p)
}
func (w spyFiles) MkdirTemp(dir, pattern string) (string, error) {
	w.s.path("MkdirTemp", dir)
	if pattern == "" || strings.ContainsAny(pattern, "/\x00") || !strings.HasSuffix(pattern, "*") {
		w.s.t.Errorf("MkdirTemp got pattern %q", pattern)
	}
	return w.f.MkdirTemp(dir, pattern)
}
func (w spyFiles) RemoveAll(p string) error {
	w.s.path("RemoveAll", p)
	if filepath.Dir(p) != filepath.Join("/tmp/jibril", fuzzRecipe) {
		w.s.t.Errorf("RemoveAll outside the recipe's temp root: %q", p)
	}
	return w.f.RemoveAll(p)
}

type spyEvidence struct {
	s *worldSpy
	e Evidence
}

func (w spyEvidence) Collect(ctx context.Context, pid int) (string, error) {
	w.s.pid("Collect", pid)
	return w.e.Collect(ctx, pid)
}

type spyPower struct{ s *worldSpy }

func (w spyPower) PowerOff(context.Context) error {
	w.s.t.Errorf("PowerOff reached the world")
	return nil
}
func (w spyPower) Panic(context.Context) error {
	w.s.t.Errorf("Panic reached the world")
	return nil
}

type spyStore struct {
	s  *worldSpy
	st Store
}

func (w spyStore) ns(op, ns string, vals ...string) {
	if ns != fuzzRecipe {
		w.s.t.Errorf("%s in namespace %q", op, ns)
	}
	if slices.ContainsFunc(vals, func(v string) bool { return len(v) > maxArgBytes }) {
		w.s.t.Errorf("%s with a value over %d bytes", op, maxArgBytes)
	}
}

func (w spyStore) Get(ctx context.Context, ns, key string) (string, bool, error) {
	w.ns("Get", ns, key)
	return w.st.Get(ctx, ns, key)
}
func (w spyStore) Set(ctx context.Context, ns, key, value string) error {
	w.ns("Set", ns, key, value)
	return w.st.Set(ctx, ns, key, value)
}
func (w spyStore) Delete(ctx context.Context, ns, key string) (bool, error) {
	w.ns("Delete", ns, key)
	return w.st.Delete(ctx, ns, key)
}
func (w spyStore) Keys(ctx context.Context, ns string) ([]string, error) {
	w.ns("Keys", ns)
	return w.st.Keys(ctx, ns)
}
func (w spyStore) Values(ctx context.Context, ns string) ([]string, error) {
	w.ns("Values", ns)
	return w.st.Values(ctx, ns)
}
func (w spyStore) Clear(ctx context.Context, ns string) (int, error) {
	w.ns("Clear", ns)
	return w.st.Clear(ctx, ns)
}
func (w spyStore) Size(ctx context.Context, ns string) (int, error) {
	w.ns("Size", ns)
	return w.st.Size(ctx, ns)
}
func (w spyStore) HasValue(ctx context.Context, ns, value string) (bool, error) {
	w.ns("HasValue", ns, value)
	return w.st.HasValue(ctx, ns, value)
}
func (w spyStore) Push(ctx context.Context, ns, list, value string) error {
	w.ns("Push", ns, list, value)
	return w.st.Push(ctx, ns, list, value)
}
func (w spyStore) Pop(ctx context.Context, ns, list string) (string, bool, error) {
	w.ns("Pop", ns, list)
	return w.st.Pop(ctx, ns, list)
}
