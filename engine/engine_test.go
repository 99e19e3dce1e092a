package engine

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/store"
)

// capture is a printer that keeps what it is given.
type capture struct {
	mu  sync.Mutex
	evs []map[string]any
}

func (c *capture) Print(b []byte) {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(err)
	}
	c.mu.Lock()
	c.evs = append(c.evs, m)
	c.mu.Unlock()
}

func (c *capture) names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.evs {
		md := e["metadata"].(map[string]any)
		n := md["name"].(string)
		if note, _ := e["note"].(string); strings.HasPrefix(note, "alert:") {
			n += "+" + note
		}
		out = append(out, n)
	}
	return out
}

type rig struct {
	e     *Engine
	out   *capture
	rec   *sandbox.Recorder
	st    *store.Store
	dir   string
	srcs  []Source
	opt   LoadOptions
	shell string
}

func newRig(t *testing.T, files map[string]string, cfg func(*Config)) *rig {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	host, err := sandbox.NewHost(ctx, sandbox.HostConfig{CacheDir: filepath.Join(os.TempDir(), "jibril-test-wazero-cache")})
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "j.db"))
	if err != nil {
		t.Fatal(err)
	}
	rec := &sandbox.Recorder{}
	w := sandbox.World{Proc: rec, Net: rec, Power: rec, Store: st}
	r := &rig{out: &capture{}, rec: rec, st: st, dir: dir, srcs: []Source{DirSource(dir)}, shell: t.TempDir()}
	c := Config{Host: host, Printer: r.out, Live: w, DryRun: w, Audit: st, Workers: 2, ShellTempDir: r.shell}
	if cfg != nil {
		cfg(&c)
	}
	r.e = New(c)
	r.opt = LoadOptions{DefaultPolicy: "strict"}
	set := r.e.Load(ctx, r.srcs, r.opt)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.e.Close(cctx)
		_ = host.Close(cctx)
		_ = st.Close()
	})
	if len(set.Errors) > 0 && files["expect-errors"] == "" {
		t.Fatalf("load errors:\n%s", errorLines(set.Errors))
	}
	return r
}

// settle waits until the engine has finished n reactions.
func (r *rig) settle(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for r.e.Stats().Reactions < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d reactions finished", r.e.Stats().Reactions, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) audit(t *testing.T) []store.AuditEntry {
	t.Helper()
	rows, err := r.st.ListAudit(context.Background(), store.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return rows
}

const minerRecipe = `- kind: crypto_miner
  name: miner_exec
  mechanism: execution
  importance: critical
  base: xmrig
  reactions:
    - format: js
      code: |
        function process(data) {
          Error("miner " + data.process.exe);
          if (KillCurrent() !== 0) Warn(Errno());
          Alert("alert: killed " + data.process.pid, "high");
        }
`

const minerPolicy = `recipe: miner_exec
mode: enforce
capabilities:
  process.kill: [current]
`

func TestDetectionPrintedAndReactionRun(t *testing.T) {
	r := newRig(t, map[string]string{"miner.yaml": minerRecipe, "miner_exec.policy.yaml": minerPolicy}, nil)
	if n := r.e.Handle(event.Sample(event.TypeExecution)); n != 1 {
		t.Fatalf("detections = %d, want 1", n)
	}
	r.settle(t, 1)
	if got := r.rec.Effects; len(got) != 1 || got[0] != "Kill 4242" {
		t.Fatalf("effects = %q, want [Kill 4242]", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(r.out.names()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	names := r.out.names()
	if len(names) != 2 || names[0] != "miner_exec" || names[1] != "miner_exec+alert: killed 4242" {
		t.Fatalf("printed = %q", names)
	}
	rows := r.audit(t)
	if len(rows) != 1 || rows[0].Helper != "KillCurrent" || rows[0].Outcome != "done" || rows[0].Recipe != "miner_exec" {
		t.Fatalf("audit = %+v", rows)
	}
}

func TestNoMatchNoDetection(t *testing.T) {
	r := newRig(t, map[string]string{"miner.yaml": minerRecipe}, nil)
	ev := event.Sample(event.TypeExecution)
	ev.File.SetPath("/usr/bin/true")
	ev.Process.Exe = "/usr/bin/true"
	if n := r.e.Handle(ev); n != 0 {
		t.Fatalf("detections = %d, want 0", n)
	}
	if s := r.e.Stats(); s.Detections != 0 || s.Events != 1 {
		t.Fatalf("stats = %+v", s)
	}
}

func TestStrictDefaultDeniesAndAudits(t *testing.T) {
	r := newRig(t, map[string]string{"miner.yaml": minerRecipe}, nil) // no policy file: strict
	r.e.Handle(event.Sample(event.TypeExecution))
	r.settle(t, 1)
	if len(r.rec.Effects) != 0 {
		t.Fatalf("effects under strict default: %q", r.rec.Effects)
	}
	rows := r.audit(t)
	if len(rows) != 1 || rows[0].Outcome != "denied" || !strings.Contains(rows[0].Errno, "capability denied: process.kill") {
		t.Fatalf("audit = %+v", rows)
	}
}

func TestModes(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		dryRun     bool
		effects    int
		outcome    string
		reactions  uint64
	}{
		{"enforce", "enforce", false, 1, "done", 1},
		{"dry-run policy", "dry-run", false, 1, "would", 1},
		{"daemon --dry-run", "enforce", true, 1, "would", 1},
		{"off", "off", false, 0, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := &sandbox.Recorder{}
			r := newRig(t, map[string]string{"miner.yaml": minerRecipe,
				"miner_exec.policy.yaml": strings.Replace(minerPolicy, "mode: enforce", "mode: "+tc.mode, 1)},
				func(c *Config) { c.Live.Proc = live })
			r.opt.DryRun = tc.dryRun
			r.e.Load(context.Background(), r.srcs, r.opt)
			r.e.Handle(event.Sample(event.TypeExecution))
			if tc.reactions > 0 {
				r.settle(t, tc.reactions)
			}
			var got int
			if tc.outcome == "done" {
				got = len(live.Effects)
				if len(r.rec.Effects) != 0 {
					t.Fatalf("enforce acted on the dry-run world: %q", r.rec.Effects)
				}
			} else {
				got = len(r.rec.Effects)
				if len(live.Effects) != 0 {
					t.Fatalf("%s acted on the live world: %q", tc.name, live.Effects)
				}
			}
			if got != tc.effects {
				t.Fatalf("effects = %d, want %d", got, tc.effects)
			}
			rows := r.audit(t)
			if tc.outcome == "" {
				if len(rows) != 0 || r.e.Stats().Detections != 1 {
					t.Fatalf("mode off: audit %+v, stats %+v", rows, r.e.Stats())
				}
				return
			}
			if len(rows) != 1 || rows[0].Outcome != tc.outcome {
				t.Fatalf("audit = %+v, want outcome %s", rows, tc.outcome)
			}
		})
	}
}

func TestBrokenRecipeDoesNotStopOthers(t *testing.T) {
	broken := "- kind: x\n  name: broken\n  mechanism: execution\n  base: a\n  colour: red\n"
	r := newRig(t, map[string]string{"miner.yaml": minerRecipe, "a_broken.yaml": broken, "expect-errors": "x"}, nil)
	set := r.e.Current()
	if got := set.Names(); len(got) != 1 || got[0] != "miner_exec" {
		t.Fatalf("loaded = %q", got)
	}
	if len(set.Errors) != 1 || !strings.Contains(set.Errors[0].Error(), "a_broken.yaml:5") || !strings.Contains(set.Errors[0].Error(), "colour") {
		t.Fatalf("errors = %v", set.Errors)
	}
}

func TestBadPolicyRejectsItsRecipe(t *testing.T) {
	r := newRig(t, map[string]string{"miner.yaml": minerRecipe, "expect-errors": "x",
		"miner_exec.policy.yaml": "recipe: miner_exec\ncapabilities:\n  process.explode: true\n"}, nil)
	set := r.e.Current()
	if len(set.Recipes) != 0 || len(set.Errors) != 1 || !strings.Contains(set.Errors[0].Error(), "process.explode") {
		t.Fatalf("recipes %q errors %v", set.Names(), set.Errors)
	}
}

func TestHotReload(t *testing.T) {
	r := newRig(t, map[string]string{"miner.yaml": minerRecipe}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	loaded := make(chan *Set, 4)
	go r.e.Watch(ctx, r.srcs, r.opt, 20*time.Millisecond, nil, func(s *Set) { loaded <- s })
	second := strings.NewReplacer("miner_exec", "second", "xmrig", "minerd").Replace(minerRecipe)
	writeAtomic(t, filepath.Join(r.dir, "second.yaml"), second)
	for done := false; !done; {
		select {
		case s := <-loaded:
			done = len(s.Names()) == 2
		case <-time.After(10 * time.Second):
			t.Fatalf("no reload with the added recipe file: %q %v", r.e.Current().Names(), r.e.Current().Errors)
		}
	}
	if n := r.e.Handle(minerd()); n != 1 || r.out.names()[0] != "second" {
		t.Fatalf("the reloaded recipe did not match: %d %q", n, r.out.names())
	}
	// A broken edit is reported and the rest keeps working. Editors replace files by renaming;
	// a reload that catches a half-written file is followed by another on the next change.
	writeAtomic(t, filepath.Join(r.dir, "second.yaml"), "- kind: [\n")
	deadline := time.After(10 * time.Second)
	for {
		select {
		case s := <-loaded:
			if got := s.Names(); len(got) == 1 && got[0] == "miner_exec" && len(s.Errors) > 0 {
				return
			}
		case <-deadline:
			t.Fatalf("no reload reporting the broken file: %q %v", r.e.Current().Names(), r.e.Current().Errors)
		}
	}
}

// writeAtomic replaces a file the way editors do: a hidden temporary file renamed over it.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

const shellRecipe = `- kind: k
  name: shelly
  mechanism: execution
  base: xmrig
  reactions:
    - format: shell
      code: |
        printf '%s' "$REACTION_DATA" > "$OUT"
`

func TestShellReaction(t *testing.T) {
	t.Run("denied without the shell capability", func(t *testing.T) {
		r := newRig(t, map[string]string{"s.yaml": shellRecipe}, nil)
		r.e.Handle(event.Sample(event.TypeExecution))
		r.settle(t, 1)
		rows := r.audit(t)
		if len(rows) != 1 || rows[0].Helper != "shell" || rows[0].Outcome != "denied" {
			t.Fatalf("audit = %+v", rows)
		}
	})
	t.Run("granted: REACTION_DATA reaches the script", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "data.json")
		code := strings.Replace(shellRecipe, `"$OUT"`, out, 1)
		r := newRig(t, map[string]string{"s.yaml": code,
			"shelly.policy.yaml": "recipe: shelly\nmode: enforce\ncapabilities:\n  shell: true\n"}, nil)
		r.e.Handle(event.Sample(event.TypeExecution))
		r.settle(t, 1)
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var got event.Event
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("REACTION_DATA is not the event: %v: %s", err, b)
		}
		if got.Metadata.Name != "shelly" || got.Process.PID != 4242 {
			t.Fatalf("REACTION_DATA = %+v", got)
		}
		rows := r.audit(t)
		if len(rows) != 1 || rows[0].Outcome != "done" {
			t.Fatalf("audit = %+v", rows)
		}
	})
}

func TestQueueFullDropsAreCounted(t *testing.T) {
	slow := strings.Replace(minerRecipe, `Error("miner " + data.process.exe);`, `var t = Date.now(); while (true) {}`, 1)
	r := newRig(t, map[string]string{"miner.yaml": slow}, func(c *Config) { c.Workers = 1; c.Queue = 1 })
	for i := 0; i < 20; i++ {
		r.e.Handle(event.Sample(event.TypeExecution))
	}
	s := r.e.Stats()
	if s.Detections != 20 || s.QueueDropped == 0 || s.QueueDropped > 19 {
		t.Fatalf("stats = %+v", s)
	}
	if got := len(r.out.names()); got > 20 {
		t.Fatalf("printed %d", got)
	}
}

func TestTargetsComeFromTheEngine(t *testing.T) {
	ev := event.Sample(event.TypeNetworkPeer)
	tg := TargetsOf(ev)
	if tg.PID != int(ev.Process.PID) || len(tg.Ancestry) != len(ev.Background.Ancestry) ||
		len(tg.RemoteAddrs) == 0 || tg.RemoteAddrs[0] != ev.Flow.Remote.Address {
		t.Fatalf("targets = %+v", tg)
	}
}

// minerd is an execution of /tmp/minerd (the sample is /tmp/.cache/xmrig).
func minerd() *event.Event {
	ev := event.Sample(event.TypeExecution)
	ev.File.SetPath("/tmp/minerd")
	ev.Process.Exe = "/tmp/minerd"
	ev.Process.Comm = "minerd"
	ev.Process.SetArgv([]string{"/tmp/minerd"})
	ev.Background.Ancestry[len(ev.Background.Ancestry)-1].Exe = "/tmp/minerd"
	return ev
}

func TestLowImportanceFloodNeverDropsCritical(t *testing.T) {
	low := strings.NewReplacer("miner_exec", "noisy", "importance: critical", "importance: low",
		`Error("miner " + data.process.exe);`, `var t0 = Date.now(); while (true) {}`).Replace(minerRecipe)
	crit := strings.NewReplacer("base: xmrig", "base: minerd").Replace(minerRecipe)
	r := newRig(t, map[string]string{"low.yaml": low, "crit.yaml": crit, "miner_exec.policy.yaml": minerPolicy},
		func(c *Config) { c.Workers = 1; c.Queue = 2 })
	for i := 0; i < 20; i++ {
		r.e.Handle(event.Sample(event.TypeExecution)) // xmrig: the noisy, slow, low recipe
	}
	if n := r.e.Handle(minerd()); n != 1 {
		t.Fatalf("critical detections = %d", n)
	}
	s := r.e.Stats()
	if s.DroppedBy["low"] == 0 || s.DroppedBy["critical"] != 0 {
		t.Fatalf("dropped = %v", s.DroppedBy)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if len(r.rec.Recorded()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the critical reaction did not run behind the low flood: %+v %v", r.e.Stats(), r.e.Current().Errors)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// actionMask is the WantsFile mask of action names.
func actionMask(names ...string) uint32 {
	var m uint32
	for _, n := range names {
		m |= 1 << recipes.FileAction(n).Index()
	}
	return m
}

func TestWantsFileSkipsWhatNoRecipeCanMatch(t *testing.T) {
	files := `- kind: k
  name: watched
  mechanism: file_access
  file_actions: [write, unlink]
  dir: /srv/watched
`
	r := newRig(t, map[string]string{"f.yaml": files}, nil)
	for _, tc := range []struct {
		path    string
		actions []string
		want    bool
	}{
		{"/srv/watched/a", []string{"open", "write"}, true},
		{"/srv/watched/a", []string{"open", "read"}, false},
		{"/srv/other/a", []string{"write"}, false},
		{"/srv/other/../watched/./a", []string{"write"}, true},
	} {
		if got := r.e.WantsFile(tc.path, actionMask(tc.actions...)); got != tc.want {
			t.Errorf("WantsFile(%s, %v) = %v, want %v", tc.path, tc.actions, got, tc.want)
		}
	}
	// A recipe with no cheap filter (a bare regex): its regex decides, before enrichment.
	writeAtomic(t, filepath.Join(r.dir, "g.yaml"), "- kind: k\n  name: keys\n  mechanism: file_access\n  regex: '.*\\.key$'\n")
	if set := r.e.Load(context.Background(), r.srcs, r.opt); len(set.Errors) > 0 {
		t.Fatal(set.Errors)
	}
	if !r.e.WantsFile("/srv/other/server.key", actionMask("open", "read")) {
		t.Fatal("the regex recipe must see the events its regex matches")
	}
	if r.e.WantsFile("/srv/other/a", actionMask("open", "read")) {
		t.Fatal("no recipe can match /srv/other/a")
	}
}

// The index must answer as asking every recipe's matcher would, for every kind of path entry.
func TestWantsFileIndexAgreesWithEveryMatcher(t *testing.T) {
	files := `- kind: k
  name: base
  mechanism: file_access
  file_actions: [unlink]
  base: passwd
- kind: k
  name: full
  mechanism: file_access
  file_actions: [write]
  dir: /etc
  base: shadow
- kind: k
  name: dir
  mechanism: file_access
  file_actions: [open]
  dir: /var/lib/app
- kind: k
  name: root
  mechanism: file_access
  file_actions: [rename]
  dir: /
- kind: k
  name: dirregex
  mechanism: file_access
  file_actions: [create]
  dir: /home
  regex: '.*/\.ssh/authorized_keys$'
- kind: k
  name: bare
  mechanism: file_access
  file_actions: [truncate]
  regex: '^/tmp/.*\.log$'
- kind: k
  name: all
  mechanism: file_access
  file_actions: [open, write]
  file_actions_how: all
  dir: /opt
- kind: k
  name: excl
  mechanism: file_access
  file_actions_excl: [read]
  dir: /data
- kind: k
  name: off
  enabled: false
  mechanism: file_access
  dir: /off
- kind: k
  name: exec
  mechanism: execution
  base: passwd
`
	r := newRig(t, map[string]string{"f.yaml": files}, nil)
	set := r.e.Current()
	if len(set.Errors) > 0 {
		t.Fatal(set.Errors)
	}
	paths := []string{"/etc/passwd", "/srv/passwd", "passwd", "/etc/shadow", "/etc//shadow", "/etc/shadow/x",
		"/var/lib/app", "/var/lib/app/db", "/var/lib/application", "/var/lib", "/x", "/",
		"/home/u/.ssh/authorized_keys", "/home/u/.ssh/known_hosts", "/tmp/a.log", "/tmp/a.txt",
		"/opt/x", "/data/y", "/off/z", "/tmp/../etc/shadow", "rel/path", "passwd/", "dir/passwd/", "passwd//",
		"/etc/passwd/", "/var/lib/app/", ""}
	actions := [][]string{{"open"}, {"open", "read"}, {"open", "write"}, {"unlink"}, {"rename"},
		{"open", "create", "write"}, {"truncate"}, {"read"}, {"write"}}
	wanted := 0
	for _, p := range paths {
		for _, as := range actions {
			want := false
			for _, l := range set.Recipes {
				probe := &event.Event{EventType: event.TypeFileAccess, File: &event.File{}}
				probe.File.SetPath(p)
				probe.File.SetActions(as...)
				want = want || (l.Recipe.Enabled && l.matcher.MatchFile(probe))
			}
			if got := r.e.WantsFile(p, actionMask(as...)); got != want {
				t.Errorf("WantsFile(%q, %v) = %v; the recipes' matchers say %v", p, as, got, want)
			}
			if want {
				wanted++
			}
		}
	}
	if wanted < 15 {
		t.Errorf("only %d of the cases are wanted: the table no longer exercises the recipes", wanted)
	}
}

func TestEnforceScope(t *testing.T) {
	for _, tc := range []struct {
		name    string
		scope   []string
		outcome string
	}{
		{"no scope: enforce", nil, "done"},
		{"an ancestor in scope: enforce", []string{"/usr/bin/bash"}, "done"},
		{"outside the scope: dry-run", []string{"/opt/ci/runner"}, "would"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			live := &sandbox.Recorder{}
			r := newRig(t, map[string]string{"miner.yaml": minerRecipe, "miner_exec.policy.yaml": minerPolicy},
				func(c *Config) { c.Live.Proc = live; c.EnforceScope = tc.scope })
			r.e.Handle(event.Sample(event.TypeExecution))
			r.settle(t, 1)
			rows := r.audit(t)
			if len(rows) != 1 || rows[0].Outcome != tc.outcome {
				t.Fatalf("audit = %+v, want outcome %s", rows, tc.outcome)
			}
			if acted := len(live.Recorded()) > 0; acted != (tc.outcome == "done") {
				t.Fatalf("live world effects %q with outcome %s", live.Recorded(), tc.outcome)
			}
		})
	}
}
