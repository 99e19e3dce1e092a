package faults

import (
	"fmt"
	"github.com/jibril-rt/jibril/tests/testkit"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// loadEvents is how many file events the load test generates (a fifth with -short). A million
// takes 10-35 s on a 2-vCPU VM, most of it the opens themselves under the sensors.
func loadEvents() int {
	if testing.Short() {
		return 200_000
	}
	return 1_000_000
}

// loadProcs generator processes share the work: more than the CPUs, so that the daemon competes
// with a saturated machine.
const loadProcs = 4

// TestLoadAndLoss floods the file sensor with a million opens of one file in a watched
// directory as fast as the machine goes, and checks that the daemon's memory stays bounded and
// that every event is accounted for: seen (a detection) or counted as lost.
//
// What "exactly" means here. The file sensor sees every process on the host. With one file
// recipe that names a directory, the daemon pushes that directory into the kernel's prefix
// filter, so the stream carries our events plus the few foreign ones the filter must let pass
// to fail closed (relative, unreadable or non-canonical paths and descriptor-only calls by other
// processes). Per stream the daemon counts received R and lost L (ring full, channel full),
// and per recipe its detections D; we count the openat calls we made, G. Then:
//
//	D ≤ G          every detection is one of our events (nothing invented, nothing doubled);
//	D + L ≥ G      every event of ours was seen or counted as lost: no silent loss;
//	L = 0 ⇒ D = G  with no loss, every event was seen;
//
// and the surplus D + L − G is the number of foreign events lost with ours. The kernel's loss
// counter cannot tell whose event it failed to queue, so that surplus can only be bounded: the
// foreign events the daemon did see are R − D, and they are lost at about the rate ours are.
func TestLoadAndLoss(t *testing.T) {
	need(t)
	root := t.TempDir()
	watched, recipesDir, state := filepath.Join(root, "watched"), filepath.Join(root, "recipes"), filepath.Join(root, "state")
	mkdirs(t, watched, recipesDir)
	target := filepath.Join(watched, "target")
	testkit.Write(t, target, "x")
	testkit.Write(t, filepath.Join(recipesDir, "load.yaml"), fmt.Sprintf(`
- kind: faults_load
  name: faults_load
  mechanism: file_access
  file_actions: [open]
  dir: %s
`, watched))
	cfg := filepath.Join(root, "config.yaml")
	// No stdout printer: a million JSON lines would measure the pipe, not the daemon.
	// Detections are still encoded and counted.
	testkit.Write(t, cfg, `
metrics: {address: "`+metricsAddr+`"}
printers: {stdout: {enabled: false}}
loss: {every: 1s, threshold: 1000000000, action: log}
`)
	ns := newNetns(t)
	d := startDaemon(t, daemonOpts{ns: ns, config: cfg, recipes: recipesDir, stateDir: state})

	// A warm-up the daemon keeps up with: no loss, and then every event is seen exactly once.
	before := d.scrape(t)
	const small = 2000
	if g, _ := spawnGenerators(t, target, 1, small).run(t); g != small {
		t.Fatalf("generated %d, want %d", g, small)
	}
	after := drain(t, d, before)
	switch R, L, D := delta(before, after); {
	case R < D || D > small || D+L < small:
		t.Fatalf("warm-up of %d events: %d detections, %d lost, %d received", small, D, L, R)
	case L == 0 && D != small:
		t.Fatalf("warm-up of %d events: nothing lost, but %d detections", small, D)
	case L == 0:
		t.Logf("warm-up: %d events, %d detections, 0 lost (%d foreign events received)", small, D, R-D)
	default:
		// Other processes flooded the stream past what the daemon keeps up with.
		t.Logf("warm-up: %d events, %d detections, %d lost with foreign events (%d received): exact equality not checked", small, D, L, R-D)
	}

	before = d.scrape(t)
	rss0, err := rssKiB(d.pid())
	if err != nil {
		t.Fatal(err)
	}

	// Sample the daemon's memory every 50 ms from the flood's start to the end of the drain.
	type sample struct {
		at  time.Duration
		kib int
	}
	var (
		smu     sync.Mutex
		samples []sample
	)
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	gen := spawnGenerators(t, target, loadProcs, loadEvents()/loadProcs)
	t0 := time.Now()
	go func() {
		defer close(sampled)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			if kib, err := rssKiB(d.pid()); err == nil {
				smu.Lock()
				samples = append(samples, sample{time.Since(t0), kib})
				smu.Unlock()
			}
			select {
			case <-stopSampling:
				return
			case <-tk.C:
			}
		}
	}()
	generated, genTook := gen.run(t)

	after = drain(t, d, before)
	drained := time.Since(t0)
	close(stopSampling)
	<-sampled

	R, L, D := delta(before, after)
	G := int64(generated)
	t.Logf("generated %d opens in %s (%.0f/s by %d processes); daemon: detections %d, received %d, lost %d (%.1f %%) in %s (%.0f events/s seen)",
		G, genTook.Round(time.Millisecond), float64(G)/genTook.Seconds(), loadProcs, D, R, L,
		100*float64(L)/float64(max(G, 1)), drained.Round(time.Millisecond), float64(D)/drained.Seconds())
	if G != int64(loadEvents()) {
		t.Fatalf("generated %d events, want %d", G, loadEvents())
	}
	if D > G {
		t.Errorf("detections %d > events generated %d: events invented or counted twice", D, G)
	}
	if D+L < G {
		t.Errorf("detections %d + lost %d = %d < generated %d: %d events vanished without being counted as lost",
			D, L, D+L, G, G-D-L)
	}
	if L == 0 && D != G {
		t.Errorf("no loss counted, but %d detections for %d events", D, G)
	}
	foreignSeen := R - D
	surplus := D + L - G
	if foreignSeen < 0 {
		t.Errorf("received %d < detections %d", R, D)
	}
	// Foreign events are lost at about the rate ours are: surplus ≈ foreignSeen·(G−D)/D. A loss
	// counter that counted some events twice would blow far past this (generous) bound.
	if bound := 4 * (foreignSeen + 100) * G / max(D, 1); surplus > bound {
		t.Errorf("lost counter surplus %d (foreign events lost?) exceeds %d (4× the foreign events seen, %d, scaled by the loss rate)",
			surplus, bound, foreignSeen)
	}
	if cpu := after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"]; R > 0 {
		t.Logf("daemon CPU: %.2fs for %d events received (%.0f µs each, detection encoding included)", cpu, R, cpu*1e6/float64(R))
	}
	t.Logf("accounting: D+L-G = %d foreign events lost with ours; R-D = %d foreign events seen", surplus, foreignSeen)

	// Memory: bounded, and not growing from the first half of the run to the second.
	smu.Lock()
	defer smu.Unlock()
	if len(samples) < 4 {
		t.Fatalf("only %d RSS samples", len(samples))
	}
	half := drained / 2
	var max1, max2, peak int
	for _, s := range samples {
		if s.at < half {
			max1 = max(max1, s.kib)
		} else {
			max2 = max(max2, s.kib)
		}
		peak = max(peak, s.kib)
	}
	rssEnd, err := rssKiB(d.pid())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("daemon RSS: %d KiB before, peak %d KiB (first half %d, second half %d), %d KiB after the drain; %d samples",
		rss0, peak, max1, max2, rssEnd, len(samples))
	const bound = 200 << 10
	if peak > bound {
		t.Errorf("daemon RSS peaked at %d KiB, above %d KiB", peak, bound)
	}
	if max2 > max1+max1/4+16<<10 {
		t.Errorf("daemon RSS grew from %d KiB (first half) to %d KiB (second half)", max1, max2)
	}
	if n := d.countLog("events lost"); L > 0 && n == 0 {
		t.Errorf("%d events lost but the loss watcher logged nothing", L)
	}
}

const (
	fileRecv = `jibril_events_received_total{stream="file"}`
	fileLost = `jibril_events_lost_total{stream="file"}`
	loadDet  = `jibril_detections_total{recipe="faults_load"}`
)

// drain waits, once the generators are done, until the daemon has dealt with every event of
// ours: the file stream's counters stop moving (rings and channels empty), or, should other
// processes keep feeding the stream, our detections stop moving for 1.5 s. It returns the
// last scrape.
func drain(t *testing.T, d *daemon, before map[string]float64) map[string]float64 {
	t.Helper()
	prevRL, prevD := -1.0, -1.0
	var dSince time.Time
	deadline := time.Now().Add(90 * time.Second)
	for {
		time.Sleep(300 * time.Millisecond)
		after := d.scrape(t)
		rl, det := after[fileRecv]+after[fileLost], after[loadDet]
		if det != prevD {
			prevD, dSince = det, time.Now()
		}
		if det > before[loadDet] && (rl == prevRL || time.Since(dSince) >= 1500*time.Millisecond) {
			return after
		}
		prevRL = rl
		if time.Now().After(deadline) {
			t.Fatalf("the daemon's detections still move 90s after the flood: %v", det)
		}
	}
}

// delta is what the file stream received and lost, and the detections, between two scrapes.
func delta(before, after map[string]float64) (R, L, D int64) {
	return int64(after[fileRecv] - before[fileRecv]), int64(after[fileLost] - before[fileLost]),
		int64(after[loadDet] - before[loadDet])
}

// floodUntil runs rounds of generators opening path until stop is closed or limit passes. It
// runs on its own goroutine: failures are reported with Errorf, never Fatal.
func floodUntil(t *testing.T, path string, stop <-chan struct{}, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-stop:
			return
		default:
		}
		var cmds []*exec.Cmd
		// More producers than CPUs by far: the daemon's reader must fall behind a
		// one-page ring (a full channel only holds the reader back).
		for i := 0; i < 4*runtime.NumCPU(); i++ {
			cmd := exec.Command(genBin, "-test.run=^$")
			cmd.Env = append(os.Environ(), genEnv+"="+path, genCountEnv+"=20000")
			cmd.Stdin = strings.NewReader("g")
			if err := cmd.Start(); err != nil {
				t.Errorf("start a generator: %v", err)
				return
			}
			cmds = append(cmds, cmd)
		}
		for _, c := range cmds {
			if err := c.Wait(); err != nil {
				t.Errorf("generator: %v", err)
				return
			}
		}
	}
}

// TestLossActions overflows a tiny file ring and channel (sensors.file_ring_bytes,
// sensors.channel_size) and checks what the loss watcher does past its threshold: exit makes
// the daemon stop with a non-zero status naming the loss; alert prints a jibril_event_loss
// event to the printers and keeps running.
func TestLossActions(t *testing.T) {
	need(t)
	for _, action := range []string{"exit", "alert"} {
		t.Run(action, func(t *testing.T) {
			root := t.TempDir()
			watched, recipesDir, state := filepath.Join(root, "watched"), filepath.Join(root, "recipes"), filepath.Join(root, "state")
			mkdirs(t, watched, recipesDir)
			target := filepath.Join(watched, "target")
			testkit.Write(t, target, "x")
			// The recipe puts the directory and opens into the kernel filter, so the flood reaches
			// the daemon; its regex matches nothing there, so the flood costs no detection, only
			// ring space (a full channel holds the reader back, the one-page ring overflows).
			testkit.Write(t, filepath.Join(recipesDir, "loss.yaml"), fmt.Sprintf(`
- kind: faults_loss
  name: faults_loss
  mechanism: file_access
  file_actions: [open]
  dir: %s
  regex: 'no-such-file$'
`, watched))
			cfg := filepath.Join(root, "config.yaml")
			testkit.Write(t, cfg, `
metrics: {address: "`+metricsAddr+`"}
sensors: {channel_size: 1, file_ring_bytes: 4096}
loss: {every: 1s, threshold: 1, action: `+action+`}
`)
			ns := newNetns(t)
			d := startDaemon(t, daemonOpts{ns: ns, config: cfg, recipes: recipesDir, stateDir: state, exitOK: action == "exit"})
			stop := make(chan struct{})
			flooded := make(chan struct{})
			go func() {
				defer close(flooded)
				floodUntil(t, target, stop, 30*time.Second)
			}()
			defer func() { close(stop); <-flooded }()

			switch action {
			case "exit":
				select {
				case <-d.done:
				case <-time.After(30 * time.Second):
					t.Fatal("the daemon did not exit on loss within 30s")
				}
				if code := d.exitCode(); code == 0 {
					t.Fatalf("daemon exited 0 on loss, want non-zero")
				}
				last := d.tail(3)
				if !strings.Contains(last, "loss threshold passed") || !strings.Contains(last, "events lost") {
					t.Fatalf("the daemon's last words do not name the loss:\n%s", last)
				}
				t.Logf("exit %d: %s", d.exitCode(), d.tail(1))
			case "alert":
				waitFor(t, 30*time.Second, "a jibril_event_loss event", func() bool {
					return countNamed(d.printed(), "jibril_event_loss") > 0
				})
				for _, e := range d.printed() {
					if testkit.Str(e, "metadata", "name") == "jibril_event_loss" {
						if !strings.Contains(testkit.Str(e, "note"), "events lost") || testkit.Str(e, "metadata", "importance") != "high" {
							t.Fatalf("loss event = %v", e)
						}
						t.Logf("printed: %s", testkit.Str(e, "note"))
						break
					}
				}
				if d.exited() {
					t.Fatalf("the daemon exited on loss with action alert: %v", d.waitErr)
				}
				// The tiny channels lose on whichever stream overflows first (the file flood, or
				// the host's own execs): the alert must match a counted loss somewhere.
				m := d.scrape(t)
				var lost float64
				for k, v := range m {
					if strings.HasPrefix(k, "jibril_events_lost_total{") {
						lost += v
					}
				}
				if lost == 0 {
					t.Fatal("a loss was alerted but no stream's lost counter moved")
				}
			}
		})
	}
}

// TestReactionFlood floods a low-importance recipe whose reaction never ends by itself (it
// runs into its timeout) while a critical recipe keeps firing: the critical reactions all run,
// and the low ones that found their queue full are dropped and counted.
func TestReactionFlood(t *testing.T) {
	need(t)
	root := t.TempDir()
	lowDir, critDir, recipesDir, state := filepath.Join(root, "low"), filepath.Join(root, "crit"), filepath.Join(root, "recipes"), filepath.Join(root, "state")
	mkdirs(t, lowDir, critDir, recipesDir)
	testkit.Write(t, filepath.Join(recipesDir, "flood.yaml"), fmt.Sprintf(`
- kind: faults_flood
  name: faults_low
  mechanism: file_access
  file_actions: [create]
  importance: low
  dir: %s
  reactions:
    - format: js
      code: |
        function process(data) { while (true) {} }
- kind: faults_flood
  name: faults_critical
  mechanism: file_access
  file_actions: [create]
  importance: critical
  dir: %s
  reactions:
    - format: js
      code: |
        function process(data) { Info("critical ran " + data.file.basename); }
`, lowDir, critDir))
	testkit.Write(t, filepath.Join(recipesDir, "faults_low.policy.yaml"), "recipe: faults_low\nmode: enforce\nlimits: {timeout: 100ms}\n")
	testkit.Write(t, filepath.Join(recipesDir, "faults_critical.policy.yaml"), "recipe: faults_critical\nmode: enforce\n")
	cfg := filepath.Join(root, "config.yaml")
	testkit.Write(t, cfg, `
metrics: {address: "`+metricsAddr+`"}
engine: {workers: 2, queue: 8}
loss: {every: 1s, threshold: 1000000, action: log}
`)
	ns := newNetns(t)
	d := startDaemon(t, daemonOpts{ns: ns, config: cfg, recipes: recipesDir, stateDir: state})

	const lows, crits = 300, 20
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < lows; i++ {
			touch(t, filepath.Join(lowDir, fmt.Sprintf("l%04d", i)))
		}
	}()
	for i := 0; i < crits; i++ {
		touch(t, filepath.Join(critDir, fmt.Sprintf("c%04d", i)))
		time.Sleep(40 * time.Millisecond)
	}
	<-done
	waitFor(t, 30*time.Second, "every critical reaction", func() bool {
		return d.countLog("critical ran "+"c"+fmt.Sprintf("%04d", crits-1)) > 0 || countCritical(d) == crits
	})
	waitFor(t, 30*time.Second, "every critical reaction", func() bool { return countCritical(d) == crits })
	d.waitPrinted(t, "faults_low", lows, 30*time.Second)
	dropped := d.countLog("reaction queue full: reactions dropped", `"importance":"low"`)
	critDropped := d.countLog("reaction queue full: reactions dropped", `"importance":"critical"`)
	m := d.scrape(t)
	t.Logf("low: %d detections, %d reactions dropped, %v timeouts; critical: %d of %d reactions ran",
		lows, dropped, m[`jibril_reactions_total{recipe="faults_low",status="timeout"}`], countCritical(d), crits)
	if critDropped != 0 {
		t.Errorf("%d critical reactions dropped", critDropped)
	}
	if dropped == 0 {
		t.Errorf("no low reaction dropped: the flood did not fill the queue")
	}
	waitFor(t, 10*time.Second, "the loss watcher to count the dropped reactions", func() bool {
		return d.countLog("events lost", `"reactions":`) > 0
	})
}

func countCritical(d *daemon) int {
	seen := map[string]bool{}
	for _, l := range d.logLines() {
		if i := strings.Index(l, `"msg":"critical ran `); i >= 0 {
			rest := l[i+len(`"msg":"critical ran `):]
			if j := strings.IndexByte(rest, '"'); j > 0 {
				seen[rest[:j]] = true
			}
		}
	}
	return len(seen)
}
