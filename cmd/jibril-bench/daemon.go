package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	stormRounds = 15     // with/without pairs, alternating which comes first (rounds on this VM spread by ±15 %)
	stormExecs  = 2000   // execs of /bin/true per round
	stormOpens  = 150000 // open+close pairs per round
	openBatch   = 1000   // opens timed together (one open is ~1 µs: too short to time alone)
)

// benchConfig is the daemon's configuration for the storms: the built-in library as shipped,
// except that the one recipe enforced out of the box (crypto_miner_binary) only records, so
// that the daemon cannot kill anything on this shared machine that the bench did not start.
const benchConfig = `recipe_modes:
  crypto_miner_binary: dry-run
`

// storms are the per-operation times of one round.
type storms struct {
	exec  []time.Duration // one fork+exec+wait of /bin/true
	open  []time.Duration // openBatch open+close pairs
	execT time.Duration
	openT time.Duration
	// CPU time the storm itself used: the storm's thread, plus the exec'd children for
	// execs. Far less sensitive than wall time to other load on a shared machine, it still
	// sees what the sensors cost the traced process (their programs run in its context).
	execCPU time.Duration
	openCPU time.Duration
}

// benchDaemon measures what a running daemon (`jibril run`, built-in recipes, in a network
// namespace the bench creates) costs the rest of the machine: an exec storm and an open storm,
// with and without the daemon, interleaved, and the daemon's resident memory.
func benchDaemon(ctx context.Context, o options, jibrilBin string) (map[string]float64, []string, error) {
	if err := needKernel(); err != nil {
		return nil, nil, err
	}
	for _, tool := range []string{"ip", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, nil, fmt.Errorf("needs %s", tool)
		}
	}
	jibrilBin, err := filepath.Abs(jibrilBin)
	if err != nil {
		return nil, nil, err
	}
	if _, err := os.Stat(jibrilBin); err != nil {
		return nil, nil, fmt.Errorf("the jibril binary (make build): %w", err)
	}
	root, err := os.MkdirTemp("/tmp", "jibril-bench-daemon-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(root)
	state, stormDir, cfg := filepath.Join(root, "state"), filepath.Join(root, "storm"), filepath.Join(root, "config.yaml")
	if err := os.MkdirAll(stormDir, 0o755); err != nil {
		return nil, nil, err
	}
	for i := range ingestFiles {
		if err := os.WriteFile(filepath.Join(stormDir, fmt.Sprintf("f%02d", i)), []byte("x"), 0o644); err != nil {
			return nil, nil, err
		}
	}
	if err := os.WriteFile(cfg, []byte(benchConfig), 0o600); err != nil {
		return nil, nil, err
	}
	ns := "jbench" + token()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("ip netns add %s: %v: %s", ns, err, out)
	}
	defer exec.Command("ip", "netns", "del", ns).Run()
	if out, err := exec.Command("ip", "-n", ns, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		return nil, nil, fmt.Errorf("ip -n %s link set lo up: %v: %s", ns, err, out)
	}

	rounds, execs, opens := stormRounds, stormExecs, stormOpens
	if o.quick {
		rounds, execs, opens = 2, 500, 50000
	}
	var with, without []storms
	var rss []float64
	var rssSplit string // of the last round
	var startups []time.Duration
	for r := range rounds {
		runWithout := func() error {
			s, err := runStorms(ctx, execs, opens, stormDir)
			without = append(without, s)
			return err
		}
		runWith := func() error {
			t0 := time.Now()
			d, err := startDaemon(ctx, jibrilBin, ns, cfg, state)
			if err != nil {
				return err
			}
			startups = append(startups, time.Since(t0))
			defer d.stop()
			// Let the start-up settle (the first events, the process-table scan, pools filling).
			time.Sleep(time.Second)
			s, err := runStorms(ctx, execs, 0, stormDir)
			if err != nil {
				return err
			}
			m, err := memOf(d.pid)
			if err != nil {
				return fmt.Errorf("daemon RSS: %w", err)
			}
			rss = append(rss, float64(m["VmRSS"])/1024)
			rssSplit = fmt.Sprintf("anonymous %.1f MiB, file-backed %.1f MiB, shared memory %.1f MiB",
				float64(m["RssAnon"])/1024, float64(m["RssFile"])/1024, float64(m["RssShmem"])/1024)
			so, err := runStorms(ctx, 0, opens, stormDir)
			s.open, s.openT, s.openCPU = so.open, so.openT, so.openCPU
			with = append(with, s)
			if err == nil && !d.alive() {
				err = fmt.Errorf("the daemon died during the storms:\n%s", d.tail())
			}
			return err
		}
		first, second := runWithout, runWith
		if r%2 == 1 {
			first, second = runWith, runWithout
		}
		if err := first(); err != nil {
			return nil, nil, err
		}
		if err := second(); err != nil {
			return nil, nil, err
		}
		fmt.Fprintf(os.Stderr, "bench: storms round %d: exec %s with / %s without, open %s / %s, rss %.1f MiB\n", r+1,
			with[r].execT.Round(time.Millisecond), without[r].execT.Round(time.Millisecond),
			with[r].openT.Round(time.Millisecond), without[r].openT.Round(time.Millisecond), rss[r])
	}
	var we, wo, oe, oo, wce, wco, oce, oco time.Duration
	var ewith, ewo, owith, owo, execPct, openPct, wallExec, wallOpen []float64
	var perRound []string
	for i := range with {
		we, wo = we+with[i].execT, wo+without[i].execT
		oe, oo = oe+with[i].openT, oo+without[i].openT
		wce, wco = wce+with[i].execCPU, wco+without[i].execCPU
		oce, oco = oce+with[i].openCPU, oco+without[i].openCPU
		ewith, ewo = appendUS(ewith, with[i].exec, 1), appendUS(ewo, without[i].exec, 1)
		owith, owo = appendUS(owith, with[i].open, openBatch), appendUS(owo, without[i].open, openBatch)
		// A round's overhead compares its typical operation with and without the daemon
		// (medians), so that a burst of other load in one half moves it little; the rounds'
		// wall-time ratios are in the note.
		execPct = append(execPct, overPct(percentile(with[i].exec, 0.5), percentile(without[i].exec, 0.5)))
		openPct = append(openPct, overPct(percentile(with[i].open, 0.5), percentile(without[i].open, 0.5)))
		wallExec = append(wallExec, pct(with[i].execT, without[i].execT))
		wallOpen = append(wallOpen, pct(with[i].openT, without[i].openT))
		perRound = append(perRound, fmt.Sprintf("%+.1f/%+.1f (wall %+.1f/%+.1f)", execPct[i], openPct[i], wallExec[i], wallOpen[i]))
	}
	res := map[string]float64{
		"exec_storm_overhead_pct":     median(execPct),
		"open_storm_overhead_pct":     median(openPct),
		"exec_storm_cpu_overhead_pct": pct(wce, wco),
		"open_storm_cpu_overhead_pct": pct(oce, oco),
		"exec_storm_us_p50":           quantileOf(ewith, 0.5),
		"exec_storm_us_p99":           quantileOf(ewith, 0.99),
		"baseline_exec_storm_us_p50":  quantileOf(ewo, 0.5),
		"baseline_exec_storm_us_p99":  quantileOf(ewo, 0.99),
		"open_storm_ns_p50":           1000 * quantileOf(owith, 0.5),
		"open_storm_ns_p99":           1000 * quantileOf(owith, 0.99),
		"baseline_open_storm_ns_p50":  1000 * quantileOf(owo, 0.5),
		"baseline_open_storm_ns_p99":  1000 * quantileOf(owo, 0.99),
		"daemon_rss_mib":              maxOf(rss),
		"daemon_startup_ms_p50":       1000 * quantileOf(secondsOf(startups), 0.5),
	}
	notes := []string{fmt.Sprintf("storms: %d rounds of %d execs and %d opens, with/without the daemon alternating which goes first; overhead per round of the median operation (exec/open, %%), with the round's wall-time overhead: %s (the figures are the medians of the rounds: %+.1f/%+.1f; of the wall-time overheads: %+.1f/%+.1f; over the summed times: %+.1f/%+.1f); the storms' own CPU time: exec %s with / %s without, open %s / %s; daemon RSS per round (MiB): %s (last: %s)",
		rounds, execs, opens, strings.Join(perRound, ", "), median(execPct), median(openPct), median(wallExec), median(wallOpen), pct(we, wo), pct(oe, oo),
		wce.Round(time.Millisecond), wco.Round(time.Millisecond), oce.Round(time.Millisecond), oco.Round(time.Millisecond), joinF(rss), rssSplit)}
	return res, notes, nil
}

func pct(with, without time.Duration) float64 { return overPct(float64(with), float64(without)) }

// overPct is how much more with is than without, in percent.
func overPct(with, without float64) float64 {
	if without <= 0 {
		return 0
	}
	return (with/without - 1) * 100
}

// median of v (the mean of the middle two for an even count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func appendUS(dst []float64, d []time.Duration, per int) []float64 {
	for _, v := range d {
		dst = append(dst, float64(v.Nanoseconds())/1000/float64(per))
	}
	return dst
}

func secondsOf(d []time.Duration) []float64 {
	out := make([]float64, len(d))
	for i, v := range d {
		out[i] = v.Seconds()
	}
	return out
}

func maxOf(v []float64) float64 {
	m := 0.0
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func joinF(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = strconv.FormatFloat(x, 'f', 1, 64)
	}
	return strings.Join(s, ", ")
}

// runStorms runs execs of /bin/true one after the other, then opens open+close pairs over the
// files of dir, timing each exec and each batch of openBatch opens.
func runStorms(ctx context.Context, execs, opens int, dir string) (storms, error) {
	// One thread runs the whole storm, so that its CPU time can be read per thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var s storms
	th0, ch0 := cpuTimes()
	t0 := time.Now()
	for range execs {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		st := time.Now()
		p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
		if err != nil {
			return s, fmt.Errorf("exec storm: %w", err)
		}
		if _, err := p.Wait(); err != nil {
			return s, fmt.Errorf("exec storm: %w", err)
		}
		s.exec = append(s.exec, time.Since(st))
	}
	s.execT = time.Since(t0)
	th1, ch1 := cpuTimes()
	s.execCPU = th1 - th0 + ch1 - ch0
	if opens == 0 {
		return s, nil
	}
	paths := make([]string, ingestFiles)
	for i := range paths {
		paths[i] = filepath.Join(dir, fmt.Sprintf("f%02d", i))
	}
	t0 = time.Now()
	for b := 0; b < opens; b += openBatch {
		if err := ctx.Err(); err != nil {
			return s, err
		}
		st := time.Now()
		for i := b; i < b+openBatch; i++ {
			fd, err := unix.Open(paths[i%len(paths)], unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return s, fmt.Errorf("open storm: %w", err)
			}
			unix.Close(fd)
		}
		s.open = append(s.open, time.Since(st))
	}
	s.openT = time.Since(t0)
	th2, _ := cpuTimes()
	s.openCPU = th2 - th1
	return s, nil
}

// cpuTimes is the user+system time of the calling thread and of the reaped children.
func cpuTimes() (thread, children time.Duration) {
	var t, c unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_THREAD, &t)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &c)
	tv := func(v unix.Timeval) time.Duration { return time.Duration(v.Nano()) }
	return tv(t.Utime) + tv(t.Stime), tv(c.Utime) + tv(c.Stime)
}

// memOf reads the Vm* and Rss* lines (KiB) of /proc/PID/status.
func memOf(pid int) (map[string]int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]int64{}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) >= 2 && (strings.HasPrefix(l, "Vm") || strings.HasPrefix(l, "Rss")) {
			if v, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				m[strings.TrimSuffix(f[0], ":")] = v
			}
		}
	}
	if _, ok := m["VmRSS"]; !ok {
		return nil, errors.New("no VmRSS line")
	}
	return m, nil
}

// runningDaemon is a `jibril run` started by the bench.
type runningDaemon struct {
	cmd   *exec.Cmd
	pid   int
	done  chan struct{}
	ready chan struct{}

	mu      sync.Mutex
	partial []byte
	log     []string
	isReady bool
}

// Write receives the daemon's log (stderr): it keeps the last lines and notices "ready".
func (d *runningDaemon) Write(b []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.partial = append(d.partial, b...)
	for {
		i := bytes.IndexByte(d.partial, '\n')
		if i < 0 {
			break
		}
		line := string(d.partial[:i])
		d.partial = d.partial[i+1:]
		d.log = append(d.log, line)
		if len(d.log) > 40 {
			d.log = d.log[1:]
		}
		if !d.isReady && strings.Contains(line, `"msg":"ready"`) {
			d.isReady = true
			close(d.ready)
		}
	}
	if len(d.partial) > 1<<20 {
		d.partial = d.partial[:0]
	}
	return len(b), nil
}

// startDaemon starts `jibril run` under nsenter in the bench's network namespace (so that any
// nftables change stays there) and waits for it to say it is ready.
func startDaemon(ctx context.Context, bin, ns, cfg, state string) (*runningDaemon, error) {
	cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, bin, "run", "--config", cfg,
		"--no-metrics", "--state-dir", state, "--log-format", "json")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "JIBRIL_") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	ready := make(chan struct{})
	d := &runningDaemon{cmd: cmd, done: make(chan struct{}), ready: ready}
	// Detections go to stdout: read and dropped. Logs: kept (the last lines) for errors.
	cmd.Stdout = io.Discard
	cmd.Stderr = d
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the daemon: %w", err)
	}
	d.pid = cmd.Process.Pid
	go func() { _ = cmd.Wait(); close(d.done) }()
	select {
	case <-ready:
	case <-d.done:
		return nil, fmt.Errorf("the daemon exited during start-up:\n%s", d.tail())
	case <-time.After(120 * time.Second):
		d.stop()
		return nil, fmt.Errorf("the daemon was not ready in 120 s:\n%s", d.tail())
	case <-ctx.Done():
		d.stop()
		return nil, ctx.Err()
	}
	// nsenter executes jibril in place: the pid is the daemon's.
	if exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", d.pid)); err != nil || filepath.Base(exe) != filepath.Base(bin) {
		d.stop()
		return nil, fmt.Errorf("pid %d is %q, not the daemon (%v)", d.pid, exe, err)
	}
	return d, nil
}

func (d *runningDaemon) alive() bool {
	select {
	case <-d.done:
		return false
	default:
		return true
	}
}

func (d *runningDaemon) tail() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return strings.Join(d.log, "\n")
}

// stop sends SIGTERM (a graceful stop) and SIGKILL after 15 s.
func (d *runningDaemon) stop() {
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}
