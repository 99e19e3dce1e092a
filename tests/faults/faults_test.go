package faults

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/jibril-rt/jibril/tests/testkit"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// createRecipe is a file recipe that fires on file creation in dir, with an optional JS
// reaction.
func createRecipe(name, dir, importance, js string) string {
	r := fmt.Sprintf(`
- kind: faults
  name: %s
  mechanism: file_access
  file_actions: [create]
  importance: %s
  dir: %s
`, name, importance, dir)
	if js != "" {
		r += "  reactions:\n    - format: js\n      code: |\n"
		for _, l := range strings.Split(strings.TrimSpace(js), "\n") {
			r += "        " + l + "\n"
		}
	}
	return r
}

func uuidsOf(evs []map[string]any, recipe string) map[string]bool {
	out := map[string]bool{}
	for _, e := range evs {
		if testkit.Str(e, "metadata", "name") == recipe {
			out[testkit.Str(e, "uuid")] = true
		}
	}
	return out
}

// TestGracefulShutdownFlushesPrinters stops the daemon with SIGTERM in the middle of a burst
// of detections: it exits 0, and every detection it printed on stdout is also in the file
// printer's file (the printers are flushed, not abandoned).
func TestGracefulShutdownFlushesPrinters(t *testing.T) {
	need(t)
	root := t.TempDir()
	watched, recipesDir, state := filepath.Join(root, "watched"), filepath.Join(root, "recipes"), filepath.Join(root, "state")
	mkdirs(t, watched, recipesDir)
	events := filepath.Join(root, "events.jsonl")
	testkit.Write(t, filepath.Join(recipesDir, "r.yaml"), createRecipe("faults_flush", watched, "medium", ""))
	cfg := filepath.Join(root, "config.yaml")
	testkit.Write(t, cfg, fmt.Sprintf("metrics: {address: %q}\nprinters: {file: {path: %q}}\n", metricsAddr, events))
	ns := newNetns(t)
	d := startDaemon(t, daemonOpts{ns: ns, config: cfg, recipes: recipesDir, stateDir: state})

	// A burst, with SIGTERM sent while files are still being created and detections printed.
	stop := make(chan struct{})
	burst := make(chan struct{})
	go func() {
		defer close(burst)
		for i := 0; i < 20000; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if f, err := os.Create(filepath.Join(watched, fmt.Sprintf("f%05d", i))); err == nil {
				f.Close()
			}
		}
	}()
	defer func() { close(stop); <-burst }()
	d.waitPrinted(t, "faults_flush", 500, 20*time.Second)
	// What the engine had handed to the printers when SIGTERM left, and how much of it the test
	// had read from stdout by then: the rest was still queued.
	detected := int(d.scrape(t)[`jibril_detections_total{recipe="faults_flush"}`])
	seen := countNamed(d.printed(), "faults_flush")
	if code := d.stop(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d, want 0", code)
	}
	onStdout := uuidsOf(d.printed(), "faults_flush")
	// The printer rotates by size: what it wrote is in the file and in its rotations.
	rotated, _ := filepath.Glob(events + ".*")
	var inFile []map[string]any
	for _, p := range append([]string{events}, rotated...) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatalf("file printer wrote a line to %s that is not JSON (torn write?): %q: %v", p, l, err)
			}
			inFile = append(inFile, m)
		}
	}
	fileSet := uuidsOf(inFile, "faults_flush")
	missing := 0
	for u := range onStdout {
		if !fileSet[u] {
			missing++
		}
	}
	t.Logf("at SIGTERM: %d detections made, %d read from stdout; at exit: %d on stdout, %d in the file and %d rotations",
		detected, seen, len(onStdout), len(fileSet), len(rotated))
	if missing > 0 {
		t.Fatalf("%d of the %d detections printed on stdout are not in the file printer's file", missing, len(onStdout))
	}
	if len(onStdout) < detected || len(fileSet) < detected {
		t.Fatalf("%d detections made before SIGTERM, but %d reached stdout and %d the file", detected, len(onStdout), len(fileSet))
	}
	if d.countLog("stopping") == 0 {
		t.Fatalf("no stopping line in the log")
	}
}

// TestKill9RestoresState kills the daemon with SIGKILL while reactions write to the store, then
// simulates a reboot (the nftables table is gone) and restarts it: the block comes back with
// at most its remaining time, the audit chain verifies, and every store write a reaction saw
// acknowledged is there.
func TestKill9RestoresState(t *testing.T) {
	need(t, "nft")
	root := t.TempDir()
	blockDir, storeDir, recipesDir, state := filepath.Join(root, "block"), filepath.Join(root, "store"), filepath.Join(root, "recipes"), filepath.Join(root, "state")
	mkdirs(t, blockDir, storeDir, recipesDir)
	const ip, ttl = "198.18.77.7", 600
	testkit.Write(t, filepath.Join(recipesDir, "r.yaml"),
		createRecipe("faults_block", blockDir, "high", fmt.Sprintf(`
function process(data) {
  var r = NetBlockIpTimer("%s", %d);
  Info("blocked " + r + " " + Errno());
}`, ip, ttl))+
			createRecipe("faults_store", storeDir, "medium", `
function process(data) {
  var k = data.file.basename;
  var dir = CreateTempDir("k-*");
  if (dir === "" || RemoveDir(dir) !== 0) { Error("tempdir " + k + " failed: " + Errno()); return; }
  var r = DataSet(k, data.uuid);
  if (r === 0) { Info("acked " + k + " " + data.uuid); } else { Error("DataSet " + k + " failed: " + Errno()); }
}`))
	testkit.Write(t, filepath.Join(recipesDir, "faults_block.policy.yaml"),
		"recipe: faults_block\nmode: enforce\ncapabilities:\n  net.block.ip: {allow: true, max_ttl: 1h}\n")
	testkit.Write(t, filepath.Join(recipesDir, "faults_store.policy.yaml"), "recipe: faults_store\nmode: enforce\ncapabilities:\n  store: true\n  tempdir: true\n")
	cfg := filepath.Join(root, "config.yaml")
	testkit.Write(t, cfg, fmt.Sprintf("metrics: {address: %q}\n", metricsAddr))
	ns := newNetns(t)

	d1 := startDaemon(t, daemonOpts{ns: ns, config: cfg, recipes: recipesDir, stateDir: state, exitOK: true})
	touch(t, filepath.Join(blockDir, "trigger"))
	d1.waitLog(t, 20*time.Second, func(l string) bool { return strings.Contains(l, `"msg":"blocked 0 "`) })
	blockedAt := time.Now() // after the block: the real remaining time is at most what we compute

	// Store writes at ~40/s (under the default policy rate of 50/s), killed mid-stream.
	stop := make(chan struct{})
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			if f, err := os.Create(filepath.Join(storeDir, fmt.Sprintf("k%05d", i))); err == nil {
				f.Close()
			}
		}
	}()
	waitFor(t, 20*time.Second, "40 acknowledged store writes", func() bool { return len(acked(d1)) >= 40 })
	d1.kill9(t)
	close(stop)
	<-writing
	ack := acked(d1)
	t.Logf("killed with SIGKILL after %d acknowledged writes", len(ack))

	// The chain the crash left verifies, before anything touches the database again.
	if out, code := jibril(t, "audit", "verify", "--state-dir", state); code != 0 {
		t.Fatalf("audit verify after kill -9: exit %d\n%s", code, out)
	} else {
		t.Logf("after kill -9: %s", strings.TrimSpace(out))
	}
	checkAcked(t, state, ack)
	checkAudited(t, state, ack)

	// A reboot: the kernel forgets the nftables table; only the store remembers the block.
	testkit.Run(t, "ip", "netns", "exec", ns, "nft", "delete", "table", "inet", "jibril")
	time.Sleep(2 * time.Second) // let the block's remaining time drop measurably below its ttl
	restartAt := time.Now()
	d2 := startDaemon(t, daemonOpts{ns: ns, config: cfg, recipes: recipesDir, stateDir: state})
	d2.waitLog(t, 10*time.Second, func(l string) bool { return strings.Contains(l, `"msg":"network blocks restored"`) })
	timeout, expires, ok := nftElement(t, ns, "block4", ip)
	if !ok {
		t.Fatalf("%s is not in set block4 after the restart:\n%s", ip, testkit.Run(t, "ip", "netns", "exec", ns, "nft", "list", "ruleset"))
	}
	remaining := ttl - int(restartAt.Sub(blockedAt).Seconds())
	t.Logf("restored %s: nft timeout %ds, expires %ds; remaining at restart ≤ %ds", ip, timeout, expires, remaining)
	if timeout > remaining || timeout <= 0 {
		t.Fatalf("restored block has timeout %ds, want at most the %ds that remained (not a fresh %ds)", timeout, remaining, ttl)
	}
	if timeout < remaining-60 {
		t.Fatalf("restored block has timeout %ds, far below the %ds that remained", timeout, remaining)
	}
	if code := d2.stop(t); code != 0 {
		t.Fatalf("SIGTERM after the restart: exit %d", code)
	}
	if out, code := jibril(t, "audit", "verify", "--state-dir", state); code != 0 {
		t.Fatalf("audit verify after the restart: exit %d\n%s", code, out)
	}
	checkAcked(t, state, ack)
}

// acked reads the store writes the reaction logged after DataSet returned 0. That log line is
// the acknowledgement: DataSet returns 0 only after the store's COMMIT returned, and the line
// reached our pipe before the kill. Before it, the reaction's two audited effects
// (CreateTempDir, RemoveDir) were appended to the audit chain, also synchronously.
func acked(d *daemon) map[string]string {
	out := map[string]string{}
	for _, l := range d.logLines() {
		var m struct {
			Msg    string `json:"msg"`
			Recipe string `json:"recipe"`
		}
		if json.Unmarshal([]byte(l), &m) != nil || m.Recipe != "faults_store" || !strings.HasPrefix(m.Msg, "acked ") {
			continue
		}
		f := strings.Fields(m.Msg)
		if len(f) == 3 {
			out[f[1]] = f[2]
		}
	}
	return out
}

// checkAcked verifies that every acknowledged write is in the store with its value.
func checkAcked(t *testing.T, state string, ack map[string]string) {
	t.Helper()
	out, code := jibril(t, "store", "list", "faults_store", "--json", "--state-dir", state)
	if code != 0 {
		t.Fatalf("store list: exit %d\n%s", code, out)
	}
	var items []struct{ Key, Value string }
	if err := json.Unmarshal([]byte(out), &items); err != nil {
		t.Fatalf("store list --json: %v\n%s", err, out)
	}
	have := map[string]string{}
	for _, it := range items {
		have[it.Key] = it.Value
	}
	var lost []string
	for k, v := range ack {
		if have[k] != v {
			lost = append(lost, k)
		}
	}
	sort.Strings(lost)
	if len(lost) > 0 {
		t.Fatalf("%d acknowledged writes are not in the store: %v", len(lost), lost)
	}
	// And one through `store get`, the command an operator would use.
	for k, v := range ack {
		got, code := jibril(t, "store", "get", "faults_store", k, "--state-dir", state)
		if code != 0 || strings.TrimSpace(got) != v {
			t.Fatalf("store get faults_store %s: exit %d, %q, want %q", k, code, got, v)
		}
		break
	}
}

// checkAudited verifies that both audited effects of every acknowledged reaction are in the
// audit trail.
func checkAudited(t *testing.T, state string, ack map[string]string) {
	t.Helper()
	out, code := jibril(t, "audit", "list", "--json", "--recipe", "faults_store", "--state-dir", state)
	if code != 0 {
		t.Fatalf("audit list: exit %d\n%s", code, out)
	}
	var rows []struct {
		EventUUID string `json:"event_uuid"`
		Helper    string `json:"helper"`
		Outcome   string `json:"outcome"`
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatalf("audit list --json: %v", err)
	}
	have := map[string]int{}
	for _, r := range rows {
		if r.Outcome == "done" && (r.Helper == "CreateTempDir" || r.Helper == "RemoveDir") {
			have[r.EventUUID]++
		}
	}
	for k, uuid := range ack {
		if have[uuid] != 2 {
			t.Fatalf("acknowledged write %s (event %s): %d of its 2 audit rows in the trail", k, uuid, have[uuid])
		}
	}
	t.Logf("audit trail: %d rows of faults_store, every acknowledged reaction's 2 rows present", len(rows))
}

// nftElement finds ip in an nftables set of table inet jibril inside ns: its timeout and the
// time until it expires, in seconds.
func nftElement(t *testing.T, ns, set, ip string) (timeout, expires int, ok bool) {
	t.Helper()
	out := testkit.Run(t, "ip", "netns", "exec", ns, "nft", "-j", "list", "set", "inet", "jibril", set)
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("nft -j: %v\n%s", err, out)
	}
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, raw := range o.Set.Elem {
			var e struct {
				Elem struct {
					Val     string `json:"val"`
					Timeout int    `json:"timeout"`
					Expires int    `json:"expires"`
				} `json:"elem"`
			}
			if json.Unmarshal(raw, &e) == nil && e.Elem.Val == ip {
				return e.Elem.Timeout, e.Elem.Expires, true
			}
			var s string
			if json.Unmarshal(raw, &s) == nil && s == ip {
				return 0, 0, true // permanent
			}
		}
	}
	return 0, 0, false
}

// mountTmpfs mounts a tmpfs of the given size on dir and unmounts it when the test ends.
func mountTmpfs(t *testing.T, dir, size string) {
	t.Helper()
	mkdirs(t, dir)
	testkit.Run(t, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "jibril-faults", dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			_ = exec.Command("umount", "-l", dir).Run()
			t.Logf("umount %s: %v %s", dir, err, out)
		}
	})
}

// fill writes to path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", path, err)
			}
			break
		}
	}
	// The last partial pages too.
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
}

// TestFullDisk fills the file system of the state directory under a running daemon: detections
// keep being printed, store and audit writes fail visibly (the reaction sees -1 and the reason,
// the audit failure is logged), the daemon does not crash, and once space is back the audit
// chain still verifies.
func TestFullDisk(t *testing.T) {
	need(t, "mount", "umount")
	root := t.TempDir()
	watched, recipesDir, state := filepath.Join(root, "watched"), filepath.Join(root, "recipes"), filepath.Join(root, "state")
	mkdirs(t, watched, recipesDir)
	mountTmpfs(t, state, "64m")
	testkit.Write(t, filepath.Join(recipesDir, "r.yaml"), createRecipe("faults_disk", watched, "medium", `
function process(data) {
  var v = new Array(4097).join("v");
  var r = DataSet(data.file.basename, v);
  var e = Errno();
  var d = CreateTempDir("faults-*");
  Info("wrote " + data.file.basename + ": " + r + " " + e + " / tempdir " + (d === "" ? Errno() : "ok"));
  if (d !== "") { RemoveDir(d); }
}`))
	testkit.Write(t, filepath.Join(recipesDir, "faults_disk.policy.yaml"), "recipe: faults_disk\nmode: enforce\ncapabilities:\n  store: true\n  tempdir: true\n")
	cfg := filepath.Join(root, "config.yaml")
	testkit.Write(t, cfg, fmt.Sprintf("metrics: {address: %q}\n", metricsAddr))
	ns := newNetns(t)
	d := startDaemon(t, daemonOpts{ns: ns, config: cfg, recipes: recipesDir, stateDir: state})

	touch(t, filepath.Join(watched, "before"))
	d.waitLog(t, 20*time.Second, func(l string) bool { return strings.Contains(l, `"msg":"wrote before: 0 `) })

	filler := filepath.Join(state, "filler")
	fill(t, filler)
	var st syscall.Statfs_t
	if err := syscall.Statfs(state, &st); err == nil {
		t.Logf("state file system full: %d free blocks", st.Bavail)
	}
	// Writes until the store reports the full disk (SQLite may still fit a few rows into pages
	// it already holds), at most 40 events at ~30/s (the policy's rate is 50/s).
	const n = 40
	for i := 0; i < n; i++ {
		touch(t, filepath.Join(watched, fmt.Sprintf("full%03d", i)))
		time.Sleep(30 * time.Millisecond)
	}
	d.waitPrinted(t, "faults_disk", n+1, 20*time.Second)
	waitFor(t, 20*time.Second, "every reaction to finish", func() bool { return d.countLog("reaction done", `"recipe":"faults_disk"`) >= n+1 })
	failed, shown := 0, false
	for _, l := range d.logLines() {
		if strings.Contains(l, `"msg":"wrote full`) && strings.Contains(l, ": -1 ") {
			if failed == 0 {
				t.Logf("reaction: %s", l)
			}
			failed++
		}
		if strings.Contains(l, `"msg":"audit write failed"`) && !shown {
			t.Logf("daemon: %s", l)
			shown = true
		}
	}
	auditFailed := d.countLog("audit write failed")
	t.Logf("with the disk full: %d detections printed, %d DataSet calls failed, %d audit writes failed", n, failed, auditFailed)
	if failed == 0 {
		t.Fatalf("no DataSet failed on a full disk:\n%s", d.tail(10))
	}
	if !strings.Contains(strings.Join(d.logLines(), "\n"), "full") {
		t.Fatalf("no failure names the full disk")
	}
	if auditFailed == 0 {
		t.Fatalf("no audit write failure was logged with the disk full")
	}
	if d.exited() {
		t.Fatalf("daemon exited: %v", d.waitErr)
	}
	// The daemon still detects and still reacts once space is back.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	touch(t, filepath.Join(watched, "after"))
	d.waitLog(t, 20*time.Second, func(l string) bool { return strings.Contains(l, `"msg":"wrote after: 0 `) })
	if code := d.stop(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	if out, code := jibril(t, "audit", "verify", "--state-dir", state); code != 0 {
		t.Fatalf("audit verify after the full disk: exit %d\n%s", code, out)
	}
}

// TestReadOnlyStateDir starts the daemon on a state directory that cannot be written (a
// read-only bind mount over an existing database). A security agent that cannot audit its
// effects must not perform them, but detection needs no state: the daemon starts degraded,
// says so (log, metric, an event to the printers), prints detections, forces every reaction to
// dry-run (the block is recorded, not applied) and the data store fails visibly.
func TestReadOnlyStateDir(t *testing.T) {
	need(t, "mount", "umount", "nft")
	// Two ways in: a state directory holding only the database (its sub-directories cannot
	// be made), and one a previous daemon left complete (the database cannot be opened).
	for _, complete := range []bool{false, true} {
		name := "database only"
		if complete {
			name = "complete state directory"
		}
		t.Run(name, func(t *testing.T) { testReadOnlyStateDir(t, complete) })
	}
}

func testReadOnlyStateDir(t *testing.T, complete bool) {
	root := t.TempDir()
	watched, recipesDir, state := filepath.Join(root, "watched"), filepath.Join(root, "recipes"), filepath.Join(root, "state")
	mkdirs(t, watched, recipesDir, state)
	const ip = "198.18.78.8"
	testkit.Write(t, filepath.Join(recipesDir, "r.yaml"), createRecipe("faults_ro", watched, "high", fmt.Sprintf(`
function process(data) {
  var r = DataSet("k", data.uuid);
  Info("set " + r + " " + Errno());
  var b = NetBlockIpTimer("%s", 60);
  Info("block " + b + " " + Errno());
}`, ip)))
	testkit.Write(t, filepath.Join(recipesDir, "faults_ro.policy.yaml"),
		"recipe: faults_ro\nmode: enforce\ncapabilities:\n  store: true\n  net.block.ip: {allow: true, max_ttl: 1h}\n")
	cfg := filepath.Join(root, "config.yaml")
	testkit.Write(t, cfg, fmt.Sprintf("metrics: {address: %q}\n", metricsAddr))
	if out, code := jibril(t, "store", "set", "faults_ro", "before", "1", "--state-dir", state); code != 0 {
		t.Fatalf("store set: exit %d\n%s", code, out)
	}
	if complete {
		mkdirs(t, filepath.Join(state, "tmp"), filepath.Join(state, "evidence"), filepath.Join(state, "cache", "wazero"))
	}
	testkit.Run(t, "mount", "--bind", state, state)
	t.Cleanup(func() { _ = exec.Command("umount", state).Run() })
	testkit.Run(t, "mount", "-o", "remount,bind,ro", state)
	if err := os.WriteFile(filepath.Join(state, "probe"), nil, 0o600); err == nil {
		t.Fatal("the state directory is still writable")
	}

	ns := newNetns(t)
	d := startDaemon(t, daemonOpts{ns: ns, config: cfg, recipes: recipesDir, stateDir: state})
	if d.countLog("DEGRADED: "+"state unavailable: detections continue, every reaction is forced to dry-run, "+
		"the data store, the audit trail and network block restore are disabled") == 0 {
		t.Fatalf("no loud DEGRADED line about the state:\n%s", d.tail(20))
	}
	if !strings.Contains(d.tail(1), `"dry_run":true`) {
		t.Fatalf("ready line does not say dry_run: %s", d.tail(1))
	}
	if m := d.scrape(t); m[`jibril_feature_degraded{feature="state"}`] != 1 {
		t.Fatalf("jibril_feature_degraded{feature=\"state\"} = %v, want 1", m[`jibril_feature_degraded{feature="state"}`])
	}
	d.waitPrinted(t, "jibril_degraded", 1, 10*time.Second)

	touch(t, filepath.Join(watched, "x"))
	d.waitPrinted(t, "faults_ro", 1, 20*time.Second)
	setLine := d.waitLog(t, 20*time.Second, func(l string) bool { return strings.Contains(l, `"msg":"set `) })
	blockLine := d.waitLog(t, 20*time.Second, func(l string) bool { return strings.Contains(l, `"msg":"block `) })
	t.Logf("reaction: %s\nreaction: %s", setLine, blockLine)
	if !strings.Contains(setLine, `"msg":"set -1 state unavailable`) {
		t.Fatalf("DataSet on an unusable state: %s, want -1 naming the state", setLine)
	}
	if !strings.Contains(blockLine, `"msg":"block 0 `) {
		t.Fatalf("dry-run NetBlockIpTimer: %s, want 0 (recorded)", blockLine)
	}
	done := d.waitLog(t, 20*time.Second, func(l string) bool {
		return strings.Contains(l, `"msg":"reaction done"`) && strings.Contains(l, `"recipe":"faults_ro"`)
	})
	if !strings.Contains(done, `"mode":"dry-run"`) {
		t.Fatalf("the enforce recipe's reaction did not run in dry-run: %s", done)
	}
	if out, _ := exec.Command("ip", "netns", "exec", ns, "nft", "list", "ruleset").CombinedOutput(); strings.Contains(string(out), ip) {
		t.Fatalf("%s was blocked by a daemon that cannot audit:\n%s", ip, out)
	}
	if d.countLog("audit write failed") == 0 {
		t.Fatalf("the audit row of the recorded block was dropped silently")
	}
	if code := d.stop(t); code != 0 {
		t.Fatalf("SIGTERM: exit %d", code)
	}
	// The database is as it was. (The state commands open the database read-write, so they
	// need the mount gone.)
	testkit.Run(t, "umount", state)
	if out, code := jibril(t, "store", "get", "faults_ro", "before", "--state-dir", state); code != 0 || strings.TrimSpace(out) != "1" {
		t.Fatalf("store get after the degraded run: exit %d, %q", code, out)
	}
}

// hangingServer is an HTTP server inside a network namespace that accepts webhook posts and
// never answers them until released.
type hangingServer struct {
	url      string
	received atomic.Int64
	inflight atomic.Int64
	release  chan struct{}
	srv      *http.Server
}

func newHangingServer(t *testing.T, ns string) *hangingServer {
	t.Helper()
	ln, err := listenIn(ns, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingServer{url: "http://" + ln.Addr().String() + "/hook", release: make(chan struct{})}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.received.Add(1)
		h.inflight.Add(1)
		defer h.inflight.Add(-1)
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
	}), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = h.srv.Serve(ln) }()
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() { close(h.release) })
		h.srv.Close()
	})
	return h
}

// TestHangingWebhook runs reactions that kill victims with and without a webhook printer whose
// server never answers: the kills happen while the webhook still hangs, and the webhook's
// full queue drops events and counts them.
func TestHangingWebhook(t *testing.T) {
	need(t)
	for _, withHook := range []bool{false, true} {
		name := "no webhook"
		if withHook {
			name = "hanging webhook"
		}
		t.Run(name, func(t *testing.T) {
			tok := testkit.Token(t)
			root := t.TempDir()
			recipesDir, state := filepath.Join(root, "recipes"), filepath.Join(root, "state")
			mkdirs(t, recipesDir)
			victim := filepath.Join(binDir, "victim-"+tok)
			copyFile(t, "/bin/sleep", victim)
			t.Cleanup(func() { os.Remove(victim) })
			testkit.Write(t, filepath.Join(recipesDir, "r.yaml"), fmt.Sprintf(`
- kind: faults
  name: faults_hook
  mechanism: execution
  importance: high
  dir: %s
  base: victim-%s
  reactions:
    - format: js
      code: |
        function process(data) { var r = KillCurrent(); Info("killed " + r + " " + Errno()); }
`, binDir, tok))
			testkit.Write(t, filepath.Join(recipesDir, "faults_hook.policy.yaml"),
				"recipe: faults_hook\nmode: enforce\ncapabilities:\n  process.kill: [current]\n")
			ns := newNetns(t)
			var hook *hangingServer
			conf := fmt.Sprintf("metrics: {address: %q}\n", metricsAddr)
			if withHook {
				hook = newHangingServer(t, ns)
				conf += fmt.Sprintf("printers: {webhook: {url: %q, batch: 1, queue: 2, flush_interval: 10ms, timeout: 60s, retries: 0}}\n", hook.url)
			}
			cfg := filepath.Join(root, "config.yaml")
			testkit.Write(t, cfg, conf)
			d := startDaemon(t, daemonOpts{ns: ns, config: cfg, recipes: recipesDir, stateDir: state})

			// Eight victims: under the policy's circuit breaker (10 distinct targets a minute).
			const victims = 8
			var took []time.Duration
			for i := 0; i < victims; i++ {
				start := time.Now()
				cmd := exec.Command(victim, "30")
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				waited := make(chan error, 1)
				go func() { waited <- cmd.Wait() }()
				select {
				case err := <-waited:
					var ee *exec.ExitError
					if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
						t.Fatalf("victim %d ended with %v, want SIGKILL", i, err)
					}
					took = append(took, time.Since(start))
				case <-time.After(15 * time.Second):
					_ = cmd.Process.Kill()
					<-waited
					t.Fatalf("victim %d not killed in 15s", i)
				}
				if hook == nil {
					continue
				}
				if i == 0 {
					// The first detection's post: from now on the webhook hangs.
					waitFor(t, 10*time.Second, "the webhook post to hang", func() bool { return hook.inflight.Load() > 0 })
				} else if hook.inflight.Load() == 0 {
					t.Fatalf("the webhook server stopped hanging (it answered): the test proves nothing")
				}
			}
			sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
			t.Logf("%d victims killed; start→death p50 %s, max %s", victims, took[len(took)/2].Round(time.Microsecond), took[len(took)-1].Round(time.Microsecond))
			if hook == nil {
				return
			}
			if hook.inflight.Load() == 0 || hook.received.Load() == 0 {
				t.Fatalf("webhook server: %d posts received, %d still hanging; want the first one hanging", hook.received.Load(), hook.inflight.Load())
			}
			m := d.scrape(t)
			dropped := m[`jibril_printer_dropped_total{printer="webhook"}`]
			t.Logf("webhook: %d post(s) hanging, printer dropped %v, stdout printed %v", hook.inflight.Load(), dropped, m[`jibril_printer_printed_total{printer="stdout"}`])
			if dropped == 0 {
				t.Fatalf("the hanging webhook's queue dropped nothing (want the overflow counted):\n%v", m)
			}
			// Shutdown is bounded even with a post hanging: the printers' flush gives up.
			stopStart := time.Now()
			if code := d.stop(t); code != 0 {
				t.Fatalf("SIGTERM with a hanging webhook: exit %d", code)
			}
			t.Logf("stopped in %s with the webhook still hanging", time.Since(stopStart).Round(time.Millisecond))
		})
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestReactionTimeouts floods a recipe whose reaction never returns (`while(true){}`): every
// call times out and its instance is recycled, while the daemon keeps detecting and another
// recipe's reactions keep running.
func TestReactionTimeouts(t *testing.T) {
	need(t)
	root := t.TempDir()
	spinDir, okDir, recipesDir, state := filepath.Join(root, "spin"), filepath.Join(root, "ok"), filepath.Join(root, "recipes"), filepath.Join(root, "state")
	mkdirs(t, spinDir, okDir, recipesDir)
	testkit.Write(t, filepath.Join(recipesDir, "r.yaml"),
		createRecipe("faults_spin", spinDir, "medium", "function process(data) { while (true) {} }")+
			createRecipe("faults_ok", okDir, "medium", `function process(data) { Info("ok " + data.file.basename); }`))
	testkit.Write(t, filepath.Join(recipesDir, "faults_spin.policy.yaml"), "recipe: faults_spin\nmode: enforce\nlimits: {timeout: 50ms}\n")
	testkit.Write(t, filepath.Join(recipesDir, "faults_ok.policy.yaml"), "recipe: faults_ok\nmode: enforce\n")
	cfg := filepath.Join(root, "config.yaml")
	testkit.Write(t, cfg, fmt.Sprintf("metrics: {address: %q}\n", metricsAddr))
	ns := newNetns(t)
	d := startDaemon(t, daemonOpts{ns: ns, config: cfg, recipes: recipesDir, stateDir: state})

	const timeoutKey = `jibril_reactions_total{recipe="faults_spin",status="timeout"}`
	// Two rounds: the timeouts keep coming (instances are recycled, not used up).
	const perRound, oks = 30, 10
	var counts []float64
	for round := 0; round < 2; round++ {
		for i := 0; i < perRound; i++ {
			touch(t, filepath.Join(spinDir, fmt.Sprintf("r%d-%03d", round, i)))
			if i%3 == 0 {
				touch(t, filepath.Join(okDir, fmt.Sprintf("r%d-%03d", round, i)))
			}
			time.Sleep(30 * time.Millisecond) // ~33/s: under the policy rate of 50/s
		}
		want := float64((round + 1) * perRound)
		waitFor(t, 30*time.Second, "the spinning reactions to time out", func() bool {
			return d.scrape(t)[timeoutKey] >= want
		})
		counts = append(counts, d.scrape(t)[timeoutKey])
	}
	d.waitPrinted(t, "faults_spin", 2*perRound, 20*time.Second)
	d.waitPrinted(t, "faults_ok", 2*oks, 20*time.Second)
	waitFor(t, 20*time.Second, "every ok reaction", func() bool { return d.countLog("reaction done", `"recipe":"faults_ok"`, `"status":"ok"`) == 2*oks })
	m := d.scrape(t)
	t.Logf("timeouts after each round: %v; faults_ok reactions ok: %v; spin statuses other than timeout: %v",
		counts, m[`jibril_reactions_total{recipe="faults_ok",status="ok"}`], m[`jibril_reactions_total{recipe="faults_spin",status="ok"}`])
	if counts[1] <= counts[0] {
		t.Fatalf("timeouts stopped growing: %v", counts)
	}
	if m[`jibril_reactions_total{recipe="faults_ok",status="ok"}`] != 2*oks {
		t.Fatalf("faults_ok: %v reactions ok, want %d", m[`jibril_reactions_total{recipe="faults_ok",status="ok"}`], 2*oks)
	}
	for k, v := range m {
		if strings.HasPrefix(k, `jibril_reactions_total{recipe="faults_spin"`) && k != timeoutKey && v > 0 {
			t.Fatalf("%s = %v: a spinning reaction ended otherwise than by timeout", k, v)
		}
	}
}
