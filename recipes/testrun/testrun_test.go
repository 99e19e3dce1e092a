package testrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/proc"
)

// testCache is the wazero compilation cache shared by the tests of this package, so that
// each run does not compile the engine again.
var testCache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "testrun-cache-")
	if err != nil {
		panic(err)
	}
	testCache = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// tree copies the recipes, policy and fixtures of testdata/pass into a temporary directory
// and adds files (name -> content); it returns the directory.
func tree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"recipes.yaml", "crypto_miner_execution.policy.yaml", "fixtures/xmrig_exec.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", "pass", f))
		if err != nil {
			t.Fatal(err)
		}
		files[f] = string(data)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runDir loads and runs every test under dir and returns the report.
func runDir(t *testing.T, dir string, o Options) (Summary, string) {
	t.Helper()
	src, err := DirSource(dir)
	if err != nil {
		t.Fatal(err)
	}
	suites, errs := Load([]Source{src}, "strict")
	if len(errs) > 0 {
		t.Fatalf("load %s: %v", dir, errors.Join(errs...))
	}
	var out bytes.Buffer
	o.Out = &out
	if o.CacheDir == "" {
		o.CacheDir = testCache
	}
	sum, err := Run(context.Background(), suites, o)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	return sum, out.String()
}

func TestPassingSuite(t *testing.T) {
	sum, out := runDir(t, filepath.Join("testdata", "pass"), Options{Verbose: true})
	if sum != (Summary{Passed: 5, Skipped: 1}) {
		t.Fatalf("summary %+v, want 5 passed 1 skipped; output:\n%s", sum, out)
	}
	for _, want := range []string{
		"=== RUN   crypto_miner_execution/xmrig_is_killed_and_its_pool_blocked\n--- PASS: crypto_miner_execution/xmrig_is_killed_and_its_pool_blocked (",
		"--- PASS: shell_from_web_server/the_parent_kill_is_denied_under_the_strict_default (",
		"--- SKIP: shell_from_web_server/the_shell_reaction (",
		"    not testable: reaction 1 is a shell reaction",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.HasSuffix(out, "\n5 passed, 0 failed, 1 not testable\n") {
		t.Errorf("closing line wrong:\n%s", out)
	}
	// Without -v, passing cases are silent.
	_, quiet := runDir(t, filepath.Join("testdata", "pass"), Options{})
	if strings.Contains(quiet, "PASS") || strings.Contains(quiet, "=== RUN") {
		t.Errorf("quiet run reports passing cases:\n%s", quiet)
	}
}

const caseHead = `recipe: crypto_miner_execution
cases:
  - name: c
    event: fixtures/xmrig_exec.json
    store: {miners_terminated: "2"}
    files: {"/proc/4242/status": "Name: xmrig\n"}
`

func TestFailuresShowADiff(t *testing.T) {
	cases := []struct {
		name   string
		expect string   // appended to caseHead (indented under the case)
		want   []string // substrings of the report
	}{
		{"other calls", "    expect: {calls: [DataGet, ReadFile, KillParent, DataSet, NetBlockIp, CreateTempDir, WriteFile]}",
			[]string{"calls differ (- want, + got):\n",
				"        ReadFile(\"/proc/4242/status\") = \"Name: xmrig\\n\"\n      - KillParent\n      + KillCurrent() = 0\n        DataSet(\"miners_terminated\", \"3\") = 0\n"}},
		{"fewer calls", "    expect: {calls: [DataGet]}",
			[]string{"calls differ (- want, + got):\n        DataGet(\"miners_terminated\") = \"2\"\n      + ReadFile(", "      + WriteFile("}},
		{"no calls expected", "    expect: {calls: []}",
			[]string{"      (want no calls)\n      + DataGet("}},
		{"call result", "    expect: {calls: [DataGet, ReadFile, {helper: KillCurrent, result: 1}, DataSet, NetBlockIp, CreateTempDir, WriteFile]}",
			[]string{"      - KillCurrent = 1\n      + KillCurrent() = 0\n"}},
		{"store", "    expect: {store: {miners_terminated: \"9\", other: x}}",
			[]string{"store differs (- want, + got):\n      - miners_terminated: \"9\"\n      + miners_terminated: \"3\"\n      - other: \"x\"\n"}},
		{"logs", "    expect: {logs: [{level: info, match: \"Crypto miner\"}]}",
			[]string{"logs #0 {level info, match \"Crypto miner\"} not found; got:\n      error: Crypto miner killed: /tmp/xmrig (Name: xmrig)\n"}},
		{"no logs expected", "    expect: {logs: []}",
			[]string{"logs: want none, got:\n      error: Crypto miner killed"}},
		{"written json", "    expect: {written: {\"*/evidence.json\": {json: {command_line: \"/tmp/other\"}}}}",
			[]string{`written /tmp/jibril/crypto_miner_execution/miner-1/evidence.json (matching "*/evidence.json"): JSON $.command_line: want "/tmp/other", got "/tmp/xmrig -o pool"`}},
		{"written glob", "    expect: {written: {\"/var/**/evidence.json\": {json: {}}}}",
			[]string{`written "/var/**/evidence.json": no file written matches (written: /tmp/jibril/crypto_miner_execution/miner-1/evidence.json)`}},
		{"written exact", "    expect: {written: {\"**/evidence.json\": \"nope\"}}",
			[]string{"content differs (- want, + got):\n      - nope\n      + {\"command_line\""}},
		{"denied", "    expect: {denied: [KillCurrent]}",
			[]string{"denied differs (- want, + got):\n      - KillCurrent (expected a denial, none happened)"}},
		{"status", "    expect: {status: error}",
			[]string{"status: want error, got ok"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tree(t, map[string]string{"crypto_miner_execution.test.yaml": caseHead + tc.expect + "\n"})
			sum, out := runDir(t, dir, Options{})
			if sum.Failed != 1 || sum.Passed != 0 {
				t.Fatalf("summary %+v, want 1 failure; output:\n%s", sum, out)
			}
			if !strings.HasPrefix(out, "--- FAIL: crypto_miner_execution/c (") {
				t.Errorf("report does not start with the FAIL line:\n%s", out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("report lacks\n%s\n--- report:\n%s", w, out)
				}
			}
			if !strings.HasSuffix(out, "0 passed, 1 failed\n") {
				t.Errorf("closing line wrong:\n%s", out)
			}
		})
	}
}

func TestThrowingReactionReportsItsError(t *testing.T) {
	dir := tree(t, map[string]string{
		"more.yaml": "- kind: k\n  name: thrower\n  breed: execution\n  mechanism: execution\n  base: x\n  reactions:\n    - format: js\n      code: |\n        function process(d) { Info(\"before\"); throw new TypeError(\"bad input \" + d.process.pid) }\n",
		"thrower.test.yaml": "recipe: thrower\ncases:\n  - name: throws\n    event: {process: {pid: 9000}}\n    expect: {logs: [{match: before}]}\n" +
			"  - name: expected to throw\n    event: {process: {pid: 9000}}\n    expect: {status: error, logs: [{level: info, match: ^before$}]}\n",
	})
	sum, out := runDir(t, dir, Options{})
	if sum != (Summary{Passed: 1, Failed: 1}) {
		t.Fatalf("summary %+v:\n%s", sum, out)
	}
	if !strings.Contains(out, "status: want ok, got error (TypeError: bad input 9000)") {
		t.Errorf("report lacks the error:\n%s", out)
	}
}

func TestReturnsChangeWhatTheReactionSees(t *testing.T) {
	for _, tc := range []struct {
		returns string
		log     string
		store   string
		kill    any
	}{
		{"", "error: Crypto miner killed", "3", 0},
		{"    returns: {KillCurrent: 1}\n", "warn: Crypto miner already gone: ", "2", 1},
		{"    returns: {KillCurrent: {result: -1, errno: \"no such process\"}}\n", "warn: Crypto miner already gone: no such process", "2", -1},
		{"    returns: {DataGet: \"41\"}\n", "error: Crypto miner killed", "42", 0},
	} {
		t.Run(tc.returns, func(t *testing.T) {
			body := caseHead + tc.returns + "    expect: {store: {miners_terminated: \"" + tc.store + "\"}}\n"
			dir := tree(t, map[string]string{"crypto_miner_execution.test.yaml": body})
			tdir := t.TempDir()
			sum, out := runDir(t, dir, Options{TranscriptDir: tdir})
			if sum.Passed != 1 {
				t.Fatalf("summary %+v:\n%s", sum, out)
			}
			rec := readRecord(t, filepath.Join(tdir, "crypto_miner_execution.c.json"))
			if len(rec.Logs) != 1 || !strings.HasPrefix(rec.Logs[0].Level+": "+rec.Logs[0].Msg, tc.log) {
				t.Errorf("logs %+v, want %q", rec.Logs, tc.log)
			}
			if k := findCall(rec.Calls, "KillCurrent"); k == nil || !sameJSON(k.Result, tc.kill) {
				t.Errorf("KillCurrent call %+v, want result %v", k, tc.kill)
			}
			// An answered kill never reaches the world.
			if killed := slices.Contains(rec.World.Effects, "Kill 4242"); killed != (tc.returns == "" || strings.Contains(tc.returns, "DataGet")) {
				t.Errorf("effects %v", rec.World.Effects)
			}
		})
	}
}

func TestReturnsDoNotBypassDenial(t *testing.T) {
	dir := tree(t, map[string]string{"shell_from_web_server.test.yaml": `recipe: shell_from_web_server
cases:
  - name: answered but denied
    event: {process: {pid: 5001, ppid: 5000}}
    returns: {KillParent: 0}
    expect:
      calls: [DataPush, {helper: KillParent, result: -1, denied: true}]
      denied: [process.kill]
`})
	sum, out := runDir(t, dir, Options{})
	if sum.Passed != 1 {
		t.Fatalf("summary %+v:\n%s", sum, out)
	}
}

func readRecord(t *testing.T, p string) *Record {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	rec := &Record{}
	if err := json.Unmarshal(data, rec); err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return rec
}

func findCall(calls []sandbox.Call, h string) *sandbox.Call {
	for i := range calls {
		if calls[i].Helper == h {
			return &calls[i]
		}
	}
	return nil
}

func TestUnlistedFileReadsEmptyWithANote(t *testing.T) {
	body := `recipe: crypto_miner_execution
cases:
  - name: no status file
    event: fixtures/xmrig_exec.json
    expect:
      logs: [{level: error, match: "^Crypto miner killed: /tmp/xmrig \\(\\)$"}]
      calls: [DataGet, {helper: ReadFile, result: "", errno: "not in the test's files"}, KillCurrent, DataSet, NetBlockIp, CreateTempDir, WriteFile]
`
	dir := tree(t, map[string]string{"crypto_miner_execution.test.yaml": body})
	sum, out := runDir(t, dir, Options{})
	if sum.Passed != 1 {
		t.Fatalf("summary %+v:\n%s", sum, out)
	}
	if !strings.Contains(out, "--- PASS: crypto_miner_execution/no_status_file (") ||
		!strings.Contains(out, "    note: read of /proc/4242/status not in fixture files\n") {
		t.Errorf("the note is not reported:\n%s", out)
	}
}

func TestStoreAndListsBeforeAfter(t *testing.T) {
	dir := tree(t, map[string]string{
		"more.yaml": "- kind: k\n  name: counter\n  breed: execution\n  mechanism: execution\n  base: x\n  reactions:\n    - format: js\n      code: |\n" +
			"        function process(d) {\n          Info(DataKeys());\n          DataDelete(\"gone\");\n          DataSet(\"a\", \"A2\");\n          DataSet(\"z\", \"Z\");\n          Info(DataPop(\"q\") + \",\" + DataPop());\n          DataPush(\"q\", \"new\");\n        }\n",
		"counter.test.yaml": `recipe: counter
cases:
  - name: order and lists
    event: {process: {pid: 600}}
    store: {b: B, gone: G, a: A}
    lists: {q: [q1, q2], "": [d1]}
    expect:
      logs: [{match: '^\["b","gone","a"\]$'}, {match: '^q2,d1$'}]
      store: {a: A2, b: B, z: Z}
      lists: {q: [q1, new]}
`,
	})
	sum, out := runDir(t, dir, Options{})
	if sum.Passed != 1 {
		t.Fatalf("summary %+v:\n%s", sum, out)
	}
}

func TestDeniedUnderStrictDefault(t *testing.T) {
	body := `recipe: shell_from_web_server
cases:
  - name: strict
    event: {process: {pid: 5001, ppid: 5000}}
    expect: {denied: ["process.kill"]}
`
	dir := tree(t, map[string]string{"shell_from_web_server.test.yaml": body})
	if sum, out := runDir(t, dir, Options{}); sum.Passed != 1 {
		t.Fatalf("strict: %+v\n%s", sum, out)
	}
	// Under --default-policy jibril the same case fails: the parent kill is allowed.
	src, _ := DirSource(dir)
	suites, errs := Load([]Source{src}, "jibril")
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	var out bytes.Buffer
	sum, err := Run(context.Background(), suites, Options{Out: &out, CacheDir: testCache})
	if err != nil || sum.Failed != 1 || !strings.Contains(out.String(), "- process.kill (expected a denial, none happened)") {
		t.Fatalf("jibril: %+v %v\n%s", sum, err, out.String())
	}
}

func TestRunFilter(t *testing.T) {
	for _, tc := range []struct {
		re   string
		want Summary
		ids  []string
	}{
		{"pool_blocked$", Summary{Passed: 1}, []string{"crypto_miner_execution/xmrig_is_killed_and_its_pool_blocked"}},
		{"^shell_from_web_server/", Summary{Passed: 1, Skipped: 1}, []string{"shell_from_web_server/the_parent_kill_is_denied_under_the_strict_default", "shell_from_web_server/the_shell_reaction"}},
		{"nothing matches this", Summary{}, nil},
	} {
		sum, out := runDir(t, filepath.Join("testdata", "pass"), Options{Verbose: true, Run: regexp.MustCompile(tc.re)})
		if sum != tc.want {
			t.Errorf("--run %s: %+v, want %+v\n%s", tc.re, sum, tc.want, out)
		}
		var ids []string
		for _, l := range strings.Split(out, "\n") {
			if id, ok := strings.CutPrefix(l, "=== RUN   "); ok {
				ids = append(ids, id)
			}
		}
		if !slices.Equal(ids, tc.ids) {
			t.Errorf("--run %s ran %v, want %v", tc.re, ids, tc.ids)
		}
	}
}

func TestTranscriptsAreByteIdentical(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	runDir(t, filepath.Join("testdata", "pass"), Options{TranscriptDir: a})
	runDir(t, filepath.Join("testdata", "pass"), Options{TranscriptDir: b})
	ea, _ := os.ReadDir(a)
	eb, _ := os.ReadDir(b)
	if len(ea) != 5 || len(ea) != len(eb) {
		t.Fatalf("transcripts: %d and %d files, want 5 (one per JS case)", len(ea), len(eb))
	}
	for i := range ea {
		if ea[i].Name() != eb[i].Name() {
			t.Fatalf("names differ: %s %s", ea[i].Name(), eb[i].Name())
		}
		da, _ := os.ReadFile(filepath.Join(a, ea[i].Name()))
		db, _ := os.ReadFile(filepath.Join(b, eb[i].Name()))
		if !bytes.Equal(da, db) {
			t.Errorf("%s differs between runs", ea[i].Name())
		}
		if !bytes.Contains(da, []byte(`"duration_us": 0,`)) || bytes.Contains(da, []byte(os.TempDir()+"/jibril")) && !bytes.Contains(da, []byte("/tmp/jibril/")) {
			t.Errorf("%s: duration not zeroed or a random path:\n%s", ea[i].Name(), da)
		}
	}
	rec := readRecord(t, filepath.Join(a, "crypto_miner_execution.xmrig_is_killed_and_its_pool_blocked.json"))
	if rec.Test != "crypto_miner_execution/xmrig_is_killed_and_its_pool_blocked" || rec.Status != sandbox.StatusOK ||
		!slices.Equal(rec.World.Effects, []string{"Kill 4242", "BlockPrefix 198.18.0.9/32 ttl=0s",
			"CreateTempDir /tmp/jibril/crypto_miner_execution/miner-1", "WriteFile /tmp/jibril/crypto_miner_execution/miner-1/evidence.json (79 bytes)"}) {
		t.Errorf("record: %+v", rec)
	}
}

func TestGoldenUpdate(t *testing.T) {
	body := caseHead + "    golden: true\n    seed: 5\n"
	dir := tree(t, map[string]string{"crypto_miner_execution.test.yaml": body})
	golden := filepath.Join(dir, "crypto_miner_execution.golden", "c.json")

	sum, out := runDir(t, dir, Options{})
	if sum.Failed != 1 || !strings.Contains(out, "golden file "+golden+" is missing (run jibril test --update to write it)") {
		t.Fatalf("without a golden file: %+v\n%s", sum, out)
	}
	sum, out = runDir(t, dir, Options{Update: true})
	if sum.Passed != 1 || !strings.Contains(out, "note: updated golden file") {
		t.Fatalf("--update: %+v\n%s", sum, out)
	}
	first, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if sum, out = runDir(t, dir, Options{}); sum.Passed != 1 {
		t.Fatalf("against the golden file: %+v\n%s", sum, out)
	}
	// Another seed rolls another number: the golden comparison fails with a line diff.
	if err := os.WriteFile(filepath.Join(dir, "crypto_miner_execution.test.yaml"), []byte(strings.Replace(body, "seed: 5", "seed: 6", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	sum, out = runDir(t, dir, Options{})
	if sum.Failed != 1 || !strings.Contains(out, "transcript differs from golden file "+golden+" (- want, + got):") ||
		!regexp.MustCompile(`(?m)^      - .*roll\\":\d+}"`).MatchString(out) || !regexp.MustCompile(`(?m)^      \+ .*roll\\":\d+}"`).MatchString(out) {
		t.Fatalf("changed seed: %+v\n%s", sum, out)
	}
	second, _ := os.ReadFile(golden)
	if !bytes.Equal(first, second) {
		t.Error("a run without --update rewrote the golden file")
	}
}

func TestBadTestFiles(t *testing.T) {
	const ev = "    event: {process: {pid: 600}}\n"
	cases := []struct {
		name, body, want string
	}{
		{"unknown case field", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    evnt: x\n    expect: {status: ok}\n",
			"t.test.yaml:5: cases[0].evnt: unknown field (known: name, reaction, event,"},
		{"unknown top field", "recipe: crypto_miner_execution\ncase: []\n", "t.test.yaml:2: case: unknown field (known: recipe, cases)"},
		{"expects nothing", "recipe: crypto_miner_execution\ncases:\n  - name: lazy\n" + ev + "    expect: {}\n",
			`t.test.yaml:5: cases[0].expect: case "lazy" expects nothing`},
		{"no expect at all", "recipe: crypto_miner_execution\ncases:\n  - name: lazy\n" + ev,
			`t.test.yaml:3: cases[0].expect: case "lazy" expects nothing`},
		{"unknown expect field", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    expect: {calls: [], logz: []}\n",
			"t.test.yaml:5: cases[0].expect.logz: unknown field"},
		{"unknown helper", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    expect:\n      calls: [KilCurrent]\n",
			`t.test.yaml:6: cases[0].expect.calls[0]: unknown helper "KilCurrent"`},
		{"bad regexp", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    expect:\n      logs: [{match: \"(\"}]\n",
			"t.test.yaml:6: cases[0].expect.logs[0].match: bad regexp"},
		{"bad clock", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    clock: yesterday\n    expect: {calls: []}\n",
			"t.test.yaml:5: cases[0].clock: expected an RFC 3339 time"},
		{"returns type", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    returns: {KillCurrent: yes}\n    expect: {calls: []}\n",
			"t.test.yaml:5: cases[0].returns.KillCurrent: expected an integer"},
		{"returns of a log helper", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    returns: {Info: 0}\n    expect: {calls: []}\n",
			"t.test.yaml:5: cases[0].returns.Info: Info cannot be answered"},
		{"missing event file", "recipe: crypto_miner_execution\ncases:\n  - name: a\n    event: fixtures/nope.json\n    expect: {calls: []}\n",
			"t.test.yaml:4: cases[0].event: read event file: fixtures/nope.json: no such file or directory"},
		{"escaping event file", "recipe: crypto_miner_execution\ncases:\n  - name: a\n    event: ../../etc/passwd\n    expect: {calls: []}\n",
			"t.test.yaml:4: cases[0].event: event file \"../../etc/passwd\" must be a relative path inside the tested tree"},
		{"event not an object", "recipe: crypto_miner_execution\ncases:\n  - name: a\n    event: recipes.yaml\n    expect: {calls: []}\n",
			"t.test.yaml:4: cases[0].event: invalid event JSON"},
		{"unknown recipe", "recipe: no_such_recipe\ncases:\n  - name: a\n" + ev + "    expect: {calls: []}\n",
			`t.test.yaml:1: recipe: no recipe named "no_such_recipe"`},
		{"reaction out of range", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    reaction: 3\n    expect: {calls: []}\n",
			`t.test.yaml:5: reaction: case "a": recipe crypto_miner_execution has 1 reaction(s), no reaction 3`},
		{"duplicate case", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    expect: {calls: []}\n  - name: a\n" + ev + "    expect: {calls: []}\n",
			`t.test.yaml:6: cases[1].name: case "a" already defined at line 3`},
		{"relative fixture path", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    files: {proc/1/status: x}\n    expect: {calls: []}\n",
			"t.test.yaml:5: cases[0].files.proc/1/status: expected an absolute, clean path"},
		{"bad yaml", "recipe: [\n", "t.test.yaml:1: invalid YAML"},
		{"unknown denied", "recipe: crypto_miner_execution\ncases:\n  - name: a\n" + ev + "    expect: {denied: [proc.kill]}\n",
			`t.test.yaml:5: cases[0].expect.denied[0]: "proc.kill" is neither a helper nor a capability`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := tree(t, map[string]string{"t.test.yaml": tc.body})
			src, err := DirSource(dir)
			if err != nil {
				t.Fatal(err)
			}
			suites, errs := Load([]Source{src}, "strict")
			if len(errs) == 0 {
				t.Fatalf("no error; %d suites", len(suites))
			}
			got := errors.Join(errs...).Error()
			if !strings.Contains(got, dir+"/"+tc.want) {
				t.Errorf("errors:\n%s\nwant one containing\n%s", got, dir+"/"+tc.want)
			}
		})
	}
}

func TestWorldIsHermetic(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	w := NewWorld(clock, map[string]string{"/etc/app/conf": "x=1\n"}, []KV{{"k", "v"}}, nil)
	for _, tc := range []struct {
		pid     int
		refused bool
	}{{-1, true}, {0, true}, {1, true}, {499, true}, {500, false}, {4194304, false}} {
		err := w.Check(proc.Target{PID: tc.pid})
		if (err != nil) != tc.refused {
			t.Errorf("Check(%d) = %v, want refused=%v", tc.pid, err, tc.refused)
		}
	}
	// The real machine is invisible: /etc/hostname exists here but not in the world.
	if _, err := w.ReadFile("/etc/hostname", 1<<20); err == nil {
		t.Error("a file outside the fixture is readable")
	}
	if b, err := w.ReadFile("/etc/app/conf", 1<<20); err != nil || string(b) != "x=1\n" {
		t.Errorf("fixture read: %q %v", b, err)
	}
	if fi, err := w.Stat("/etc/app"); err != nil || !fi.IsDir || !fi.ModTime.Equal(clock) {
		t.Errorf("Stat of a fixture directory: %+v %v", fi, err)
	}
	if h, _ := w.HashFile("/etc/app/conf"); h != "98752ee28d5484bdc2814fb70adb6a0b2fb31f6a9b8ee7ae81fd2fc9cf300b3b" {
		t.Errorf("hash %q", h)
	}
	if r, _ := w.Kill(ctx, proc.Target{PID: 4242}); r != 0 {
		t.Errorf("first kill = %d", r)
	}
	if r, _ := w.Kill(ctx, proc.Target{PID: 4242}); r != 1 {
		t.Errorf("second kill = %d, want 1 (already dead)", r)
	}
	d1, _ := w.MkdirTemp("/tmp/jibril/r", "ev-*")
	d2, _ := w.MkdirTemp("/tmp/jibril/r", "ev-*")
	if d1 != "/tmp/jibril/r/ev-1" || d2 != "/tmp/jibril/r/ev-2" {
		t.Errorf("temp dirs %s %s", d1, d2)
	}
	if _, err := os.Stat(d1); err == nil {
		t.Errorf("%s exists on the real file system", d1)
	}
	if err := w.WriteFile(d1+"/out", []byte("o")); err != nil {
		t.Fatal(err)
	}
	if err := w.RemoveAll(d1); err != nil {
		t.Fatal(err)
	}
	if _, err := w.ReadFile(d1+"/out", 10); err == nil {
		t.Error("a removed file is still readable")
	}
	if p, _ := w.Collect(ctx, 4242); p != EvidenceRoot+"/4242-1767225600000000000" {
		t.Errorf("evidence path %s", p)
	}
	if err := w.PowerOff(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"Kill 4242", "Kill 4242", "CreateTempDir /tmp/jibril/r/ev-1", "CreateTempDir /tmp/jibril/r/ev-2",
		"WriteFile /tmp/jibril/r/ev-1/out (1 bytes)", "RemoveDir /tmp/jibril/r/ev-1",
		"CollectEvidence 4242 -> /var/lib/jibril/evidence/4242-1767225600000000000", "PowerOff"}
	if !slices.Equal(w.Effects(), want) {
		t.Errorf("effects\n%q\nwant\n%q", w.Effects(), want)
	}
	if !slices.Equal(w.Notes(), []string{"read of /etc/hostname not in fixture files", "read of /tmp/jibril/r/ev-1/out not in fixture files"}) {
		t.Errorf("notes %q", w.Notes())
	}
}

func TestEveryHelperIsClassified(t *testing.T) {
	kinds := helperKinds()
	for _, h := range sandbox.HelperNames() {
		if _, ok := kinds[h]; !ok {
			t.Errorf("helper %s has no kind in helperKinds: returns and calls cannot name it", h)
		}
	}
	if len(kinds) != len(sandbox.HelperNames()) {
		t.Errorf("helperKinds has %d entries, the sandbox %d helpers", len(kinds), len(sandbox.HelperNames()))
	}
}

func TestGlobs(t *testing.T) {
	for _, tc := range []struct {
		glob, path string
		ok         bool
	}{
		{"*/evidence.json", "/tmp/jibril/r/miner-1/evidence.json", true},
		{"evidence.json", "/tmp/x/evidence.json", true},
		{"evidence.json", "/tmp/x/not-evidence.json", false},
		{"/tmp/*/evidence.json", "/tmp/a/b/evidence.json", false},
		{"/tmp/**/evidence.json", "/tmp/a/b/evidence.json", true},
		{"/tmp/?/e", "/tmp/a/e", true},
	} {
		if got := globRegexp(tc.glob).MatchString(tc.path); got != tc.ok {
			t.Errorf("%s ~ %s = %v, want %v", tc.glob, tc.path, got, tc.ok)
		}
	}
}
