package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox/evidence"
	"github.com/jibril-rt/jibril/sandbox/fsguard"
	"github.com/jibril-rt/jibril/store"
)

// capCase is one helper that needs a capability: a call that exercises it, and the capability
// named when it is denied.
type capCase struct {
	helper string
	cap    string
	call   string // JS expression; its value is logged
}

// capCases lists every helper guarded by a capability. TestCapCasesCoverEveryHelper keeps it in
// step with helpers().
func capCases() []capCase {
	return []capCase{
		{"KillCurrent", policy.CapProcessKill, `KillCurrent()`},
		{"KillParent", policy.CapProcessKill, `KillParent()`},
		{"KillProcess", policy.CapProcessKill, `KillProcess(4100)`},
		{"KillTree", policy.CapProcessKill, `KillTree()`},
		{"Freeze", policy.CapProcessFreeze, `Freeze()`},
		{"Thaw", policy.CapProcessFreeze, `Thaw()`},
		{"NetBlockIp", policy.CapNetBlockIP, `NetBlockIp("198.18.0.9")`},
		{"NetBlockIpTimer", policy.CapNetBlockIP, `NetBlockIpTimer("198.18.0.9", 60)`},
		{"NetBlockCidr", policy.CapNetBlockIP, `NetBlockCidr("198.18.0.0/24", 60)`},
		{"NetUnblockIp", policy.CapNetBlockIP, `NetUnblockIp("198.18.0.9")`},
		{"NetBlockDomain", policy.CapNetBlockDomain, `NetBlockDomain("pool.example")`},
		{"NetUnblockDomain", policy.CapNetBlockDomain, `NetUnblockDomain("pool.example")`},
		{"ReadFile", policy.CapFSRead, `ReadFile("/data/in.txt")`},
		{"Stat", policy.CapFSRead, `Stat("/data/in.txt")`},
		{"HashFile", policy.CapFSRead, `HashFile("/data/in.txt")`},
		{"WriteFile", policy.CapFSWrite, `WriteFile("/data/out.txt", "x")`},
		{"CreateTempDir", policy.CapTempdir, `CreateTempDir("caps-*")`},
		{"RemoveDir", policy.CapTempdir, `RemoveDir(CreateTempDir("caps-*") || "/tmp/jibril/test_recipe/caps-x")`},
		{"CollectEvidence", policy.CapEvidence, `CollectEvidence()`},
		{"DataSet", policy.CapStore, `DataSet("k", "v")`},
		{"DataGet", policy.CapStore, `(DataSet("k", "v"), DataGet("k"))`},
		{"DataDelete", policy.CapStore, `(DataSet("k", "v"), DataDelete("k"))`},
		{"DataKeys", policy.CapStore, `DataKeys()`},
		{"DataValues", policy.CapStore, `DataValues()`},
		{"DataClear", policy.CapStore, `DataClear()`},
		{"DataSize", policy.CapStore, `DataSize()`},
		{"DataIsEmpty", policy.CapStore, `DataIsEmpty()`},
		{"DataHasKey", policy.CapStore, `(DataSet("k", "v"), DataHasKey("k"))`},
		{"DataHasValue", policy.CapStore, `(DataSet("k", "v"), DataHasValue("v"))`},
		{"DataPush", policy.CapStore, `DataPush("v")`},
		{"DataPop", policy.CapStore, `(DataPush("v"), DataPop())`},
		{"PowerOff", policy.CapPower, `PowerOff()`},
		{"Panic", policy.CapPower, `Panic()`},
	}
}

func TestCapCasesCoverEveryHelper(t *testing.T) {
	var cased []string
	for _, c := range capCases() {
		cased = append(cased, c.helper)
	}
	for _, h := range helpers() {
		if h.cap == "" {
			continue
		}
		i := slices.Index(cased, h.name)
		if i < 0 {
			t.Errorf("helper %s needs %s but has no capability case", h.name, h.cap)
			continue
		}
		if c := capCases()[i]; c.cap != h.cap {
			t.Errorf("case %s names capability %s, the helper needs %s", h.name, c.cap, h.cap)
		}
	}
	for _, name := range cased {
		if !slices.Contains(HelperNames(), name) {
			t.Errorf("capability case for unknown helper %s", name)
		}
	}
}

// capWorld is a dry-run world: nothing real happens, files live in a scratch root.
func capWorld(t *testing.T, pol *policy.Policy, allowPower bool) (*Env, *Recorder, *store.Store) {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(context.Background(), filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	scratch := filepath.Join(dir, "scratch")
	for _, d := range []string{"data", "tmp/jibril/test_recipe"} {
		if err := os.MkdirAll(filepath.Join(scratch, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(scratch, "data/in.txt"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs, err := fsguard.New(scratch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fs.Close() })
	rec := &Recorder{} // no floor: this test is about capabilities, whatever runs on the machine
	return &Env{
		Policy: pol, Mode: policy.ModeDryRun, Audit: st, AllowPower: allowPower,
		World: World{Proc: rec, Net: rec, Power: rec, Files: GuardedFiles{FS: fs}, Store: st,
			Evidence: &evidence.Collector{Dir: filepath.Join(dir, "evidence")}, TempRoot: "/tmp/jibril"},
	}, rec, st
}

// grantAll is a policy file granting every capability.
const grantAll = `recipe: test_recipe
capabilities:
  process.kill: [any]
  process.freeze: true
  net.block.ip: true
  net.block.domain: true
  fs.read: ["/data/**"]
  fs.write: ["/data/**"]
  tempdir: true
  store: true
  evidence: true
  power: true
`

// grantNone is a policy file granting nothing: store and tempdir, granted by the strict default,
// are denied here.
const grantNone = `recipe: test_recipe
capabilities:
  tempdir: false
  store: false
`

func loadPolicy(t *testing.T, text string) *policy.Policy {
	t.Helper()
	path := filepath.Join(t.TempDir(), "test_recipe.policy.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(path, policy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	return pol
}

// lastCall returns the helper's last call in the transcript.
func lastCall(tr *Transcript, helper string) (Call, bool) {
	for i := len(tr.Calls) - 1; i >= 0; i-- {
		if tr.Calls[i].Helper == helper {
			return tr.Calls[i], true
		}
	}
	return Call{}, false
}

func TestCapabilityTable(t *testing.T) {
	h := newHost(t)
	strict, err := policy.Default("strict", "test_recipe")
	if err != nil {
		t.Fatal(err)
	}
	all := loadPolicy(t, grantAll)
	none := loadPolicy(t, grantNone)
	event := `{"uuid":"u-caps","process":{"pid":4242,"ppid":4100},"background":{"ancestry":[{"pid":4100},{"pid":4242}]},` +
		`"flow":{"remote":{"address":"198.18.0.9","names":["pool.example"]}}}`
	// CollectEvidence reads /proc of the event's process: make it this test process (reading
	// only). The process helpers still target 4242 and 4100 of the same event through a recorder.
	evEvidence := strings.Replace(event, `"pid":4242,`, `"pid":`+strconv.Itoa(os.Getpid())+`,`, 1)
	evEvidence = strings.Replace(evEvidence, `{"pid":4242}`, `{"pid":`+strconv.Itoa(os.Getpid())+`}`, 1)

	for _, c := range capCases() {
		t.Run(c.helper, func(t *testing.T) {
			p := compile(t, h, `function process(d) { var r = `+c.call+`; Info(typeof r + ":" + r) }`, Limits{})
			ev := event
			if c.helper == "CollectEvidence" {
				ev = evEvidence
			}
			// Denied: by the strict default, or (store, tempdir: granted by strict) by a file.
			denyPol, src := strict, "default:strict"
			if strict.Granted(c.cap) {
				denyPol, src = none, none.Source
			}
			env, rec, st := capWorld(t, denyPol, true)
			tr := p.Run(context.Background(), env, "u-caps", []byte(ev))
			if tr.Status != StatusOK {
				t.Fatalf("denied run: %s %+v", tr.Status, tr.Error)
			}
			call, ok := lastCall(tr, c.helper)
			if !ok {
				t.Fatalf("no %s call in %+v", c.helper, tr.Calls)
			}
			wantErr := "capability denied: " + c.cap + " (" + src + ")"
			if !call.Denied || call.Errno != wantErr || call.Result != failure(retOf(c.helper)) {
				t.Fatalf("denied call %+v, want Denied, errno %q, result %v", call, wantErr, failure(retOf(c.helper)))
			}
			if len(rec.Effects) != 0 {
				t.Fatalf("a denied helper acted: %v", rec.Effects)
			}
			rows, err := st.ListAudit(context.Background(), store.AuditFilter{})
			if err != nil {
				t.Fatal(err)
			}
			found := false
			for _, r := range rows {
				found = found || r.Helper == c.helper && r.Outcome == "denied" && r.Errno == wantErr && r.Recipe == "test_recipe"
			}
			if !found {
				t.Fatalf("denial of %s not audited: %+v", c.helper, rows)
			}

			// Granted by a policy file: runs (in the dry-run world) and is not denied.
			env, _, st = capWorld(t, all, true)
			tr = p.Run(context.Background(), env, "u-caps", []byte(ev))
			if tr.Status != StatusOK {
				t.Fatalf("granted run: %s %+v", tr.Status, tr.Error)
			}
			call, _ = lastCall(tr, c.helper)
			if call.Denied || call.Errno != "" || call.Result == failure(retOf(c.helper)) {
				t.Fatalf("granted call %+v: want success", call)
			}
			rows, err = st.ListAudit(context.Background(), store.AuditFilter{})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rows {
				if r.Outcome == "denied" || r.Outcome == "refused" {
					t.Fatalf("granted run audited a refusal: %+v", r)
				}
				if r.Helper == c.helper && r.Outcome != "would" {
					t.Fatalf("dry-run effect audited as %q, want would", r.Outcome)
				}
			}
		})
	}
}

// TestCapabilityScopes checks the refinements inside a granted capability: kill scopes,
// never-lists, max_ttl, globs and allow_power, each named in the denial.
func TestCapabilityScopes(t *testing.T) {
	h := newHost(t)
	pol := loadPolicy(t, `recipe: test_recipe
capabilities:
  process.kill: [current]
  net.block.ip: {allow: true, max_ttl: 1h, never: [198.18.5.0/24]}
  fs.read: ["/data/in.txt"]
  fs.write: ["/data/out/*"]
  power: true
`)
	cases := []struct {
		call, helper, errno string
	}{
		{`KillParent()`, "KillParent", "capability denied: process.kill: parent"},
		{`KillProcess(4100)`, "KillProcess", "capability denied: process.kill: ancestry"},
		{`NetBlockIp("198.18.5.7")`, "NetBlockIp", "capability denied: net.block.ip: 198.18.5.7/32"},
		{`NetBlockIp("198.18.6.7")`, "NetBlockIp", "capability denied: net.block.ip: ttl 0s beyond max_ttl 1h0m0s"},
		{`NetBlockIpTimer("198.18.6.7", 7200)`, "NetBlockIpTimer", "capability denied: net.block.ip: ttl 2h0m0s beyond max_ttl 1h0m0s"},
		{`ReadFile("/data/other.txt")`, "ReadFile", "capability denied: fs.read: /data/other.txt"},
		{`WriteFile("/data/x.txt", "x")`, "WriteFile", "capability denied: fs.write: /data/x.txt"},
		{`PowerOff()`, "PowerOff", "capability denied: power: allow_power is off in the daemon config"},
	}
	for _, c := range cases {
		t.Run(c.call, func(t *testing.T) {
			p := compile(t, h, `function process(d) { `+c.call+` }`, Limits{})
			env, rec, _ := capWorld(t, pol, false)
			tr := p.Run(context.Background(), env, "u", []byte(testEvent))
			call, ok := lastCall(tr, c.helper)
			want := c.errno + " (" + pol.Source + ")"
			if !ok || !call.Denied || call.Errno != want || len(rec.Effects) != 0 {
				t.Fatalf("call %+v effects %v, want denied with %q", call, rec.Effects, want)
			}
		})
	}
}

func retOf(name string) ret {
	for _, h := range helpers() {
		if h.name == name {
			return h.ret
		}
	}
	return retNone
}
