package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine"
	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/proc"
)

const (
	execVictims   = 2000 // measured victims per path: 20 above the p99, which then holds from run to run
	execWarmup    = 20   // victims per path not measured (pools, page cache, branch predictors)
	victimTimeout = 5 * time.Second
)

// killerRecipe scopes one JS reaction calling KillCurrent to the victim binary.
const killerRecipe = `- kind: bench
  name: bench_exec_killer
  mechanism: execution
  dir: %s
  base: %s
  reactions:
    - format: js
      code: |
        function process(data) {
          if (KillCurrent() !== 0) Warn("kill failed: " + Errno());
        }
`

// killerPolicy lifts the rate limit and the disarm breaker above what the bench needs: they
// exist to stop a runaway recipe, and the bench kills hundreds of its own victims a minute.
const killerPolicy = `recipe: bench_exec_killer
mode: enforce
limits:
  rate: 1000/s
  disarm: {max_targets: 100000, per: 1m}
capabilities:
  process.kill: [current]
`

// execKill is what one measured path produced.
type execKill struct {
	us       []float64 // exec ktime → victim dead, µs
	toGo     []float64 // exec ktime → the event in Go (tracer) or printed by the engine (jibril), µs
	toKill   []float64 // jibril: exec ktime → the reaction's kill reaches the process actuator, µs
	missed   int       // victims the path did not kill in victimTimeout
	unseen   int       // victims killed whose exec the path never reported
	lossExec uint64    // exec events lost or dropped by the sensors
}

// benchExecToKill measures exec → victim dead through the whole daemon path (sensors,
// process table, enrichment, engine.Handle, a JS reaction calling KillCurrent, pidfd kill)
// and through a minimal tracer (sensors' exec channel → pidfd_send_signal), both attached at
// once with their victims alternating one by one, and draws both distributions into svgPath.
func benchExecToKill(ctx context.Context, o options, svgPath string) (map[string]float64, []string, error) {
	if err := needKernel(); err != nil {
		return nil, nil, err
	}
	root, err := os.MkdirTemp("", "jibril-bench-exec-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(root)
	tok := token()
	bin, recipesDir := filepath.Join(root, "bin"), filepath.Join(root, "recipes")
	for _, d := range []string{bin, recipesDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, nil, err
		}
	}
	// One victim binary per path, so that both paths stay attached and their victims alternate
	// one by one: a burst of load on the machine then lands on both alike.
	base, tracerBase := "victim-"+tok, "vbase-"+tok
	victim, tracerVictim := filepath.Join(bin, base), filepath.Join(bin, tracerBase)
	for _, v := range []string{victim, tracerVictim} {
		if err := copyFile("/bin/sleep", v, 0o755); err != nil {
			return nil, nil, fmt.Errorf("copy the victim binary: %w", err)
		}
	}
	tracerID, err := bpf.FileIDOf(tracerVictim)
	if err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(recipesDir, "bench.yaml"), fmt.Appendf(nil, killerRecipe, bin, base), 0o600); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(recipesDir, "bench_exec_killer.policy.yaml"), []byte(killerPolicy), 0o600); err != nil {
		return nil, nil, err
	}

	// The live world of the daemon for processes (pidfd kills behind the safety floor); the
	// rest is recorded, so nothing but the victims can be touched.
	rec := &sandbox.Recorder{}
	// The pid space wraps on small machines: a victim may get a pid below the usual floor
	// (protect.min_pid 500); pid 1, the bench and its parent stay refused.
	tp := &timedProc{Live: proc.NewLive(proc.Floor{MinPID: 2})}
	live := sandbox.World{Proc: tp, Net: rec, Power: rec, Evidence: rec}
	dry := sandbox.World{Proc: rec, Net: rec, Power: rec, Evidence: rec}
	pr := &payloads{ch: make(chan printed, 64)}
	rig, err := newEngineRig(ctx, filepath.Join(root, "state"), live, dry, pr, []engine.Source{engine.DirSource(recipesDir)})
	if err != nil {
		return nil, nil, err
	}
	defer rig.close()
	if len(rig.set.Recipes) != 1 {
		return nil, nil, fmt.Errorf("expected the one bench recipe, loaded %v", rig.set.Names())
	}

	n := execVictims
	if o.quick {
		n = 60
	}
	// Each path's exec reader wakes at once only for its own victim, as the daemon's wakes
	// for the names its recipes watch (SetExecWakeup); other execs wait for the flush.
	f, err := rig.feed(ctx, bpf.Config{Sensors: bpf.SensorProc})
	if err != nil {
		return nil, nil, err
	}
	defer f.stop()
	if err := f.sensors.SetExecWakeup(false, []string{base}); err != nil {
		return nil, nil, err
	}
	tr, err := startTracer(ctx, tracerID, tracerBase)
	if err != nil {
		return nil, nil, fmt.Errorf("baseline tracer: %w", err)
	}
	defer tr.close()
	var jib, base0 execKill
	var conv []float64 // |recovered - true| kernel time of the baseline's events, µs
	for i := range execWarmup + n {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		measure := i >= execWarmup
		// Alternate which path goes first, so that neither always follows the other's kill.
		for k := range 2 {
			if (i+k)%2 == 0 {
				err = jibrilOne(rig, pr, tp, victim, measure, &jib)
			} else {
				err = tr.one(tracerVictim, measure, &base0, &conv)
			}
			if err != nil {
				return nil, nil, err
			}
		}
		if (i+1)%500 == 0 {
			fmt.Fprintf(os.Stderr, "bench: exec-to-kill: %d victims per path\n", i+1)
		}
	}
	jib.lossExec, base0.lossExec = lossOf(f.sensors), lossOf(tr.s)
	if len(jib.us) == 0 || len(base0.us) == 0 {
		return nil, nil, fmt.Errorf("no samples (jibril %d, baseline %d)", len(jib.us), len(base0.us))
	}
	res := map[string]float64{
		"exec_to_kill_us_p50":          quantileOf(jib.us, 0.5),
		"exec_to_kill_us_p99":          quantileOf(jib.us, 0.99),
		"baseline_exec_to_kill_us_p50": quantileOf(base0.us, 0.5),
		"baseline_exec_to_kill_us_p99": quantileOf(base0.us, 0.99),
		"exec_to_kill_victims":         float64(len(jib.us)),
	}
	notes := []string{fmt.Sprintf("exec_to_kill: %d victims through jibril (%d not killed in %s, %d kills without a detection seen, %d exec events lost), %d through the baseline (%d not killed, %d exec events lost); kernel time recovered from the event stamp within %.1f µs (median), %.1f µs (max)",
		len(jib.us), jib.missed, victimTimeout, jib.unseen, jib.lossExec, len(base0.us), base0.missed, base0.lossExec, quantileOf(conv, 0.5), quantileOf(conv, 1)),
		fmt.Sprintf("exec_to_kill split, p50/p99 µs: jibril exec → detection printed (sensors, feed, process table, enrichment, match, JSON) %.0f/%.0f, printed → KillCurrent reaches the actuator (queue, worker wake-up, wasm instance, event hand-over, JS) %.0f/%.0f, actuator → victim dead (pidfd_open, /proc check, SIGKILL, exit) %.0f/%.0f; baseline exec → event in Go %.0f/%.0f, event → victim dead %.0f/%.0f",
			quantileOf(jib.toGo, 0.5), quantileOf(jib.toGo, 0.99), quantileOf(diff(jib.toKill, jib.toGo), 0.5), quantileOf(diff(jib.toKill, jib.toGo), 0.99),
			quantileOf(diff(jib.us, jib.toKill), 0.5), quantileOf(diff(jib.us, jib.toKill), 0.99),
			quantileOf(base0.toGo, 0.5), quantileOf(base0.toGo, 0.99), quantileOf(diff(base0.us, base0.toGo), 0.5), quantileOf(diff(base0.us, base0.toGo), 0.99))}
	svg := cdfSVG("exec → victim dead: jibril (engine + JS KillCurrent) vs minimal tracer", []cdfSeries{
		{name: "jibril: sensors → engine → JS KillCurrent", color: "#c0392b", samples: jib.us},
		{name: "baseline: sensors → pidfd_send_signal", color: "#2471a3", samples: base0.us},
	})
	if err := os.MkdirAll(filepath.Dir(svgPath), 0o755); err != nil {
		return res, notes, err
	}
	if err := os.WriteFile(svgPath, []byte(svg), 0o644); err != nil {
		return res, notes, err
	}
	return res, notes, nil
}

func quantileOf(v []float64, p float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return quantile(s, p)
}

// payloads is the bench's printer: it keeps a copy of each detection for later, without
// parsing it on the engine's path (the daemon's printer only queues too).
type payloads struct{ ch chan printed }

// printed is one detection and when (CLOCK_MONOTONIC) the engine printed it: right before it
// queued the reaction.
type printed struct {
	at int64
	b  []byte
}

func (p *payloads) Print(b []byte) {
	select {
	case p.ch <- printed{monoNow(), append([]byte(nil), b...)}:
	default:
	}
}

// ktimeOf finds the detection of pid among the printed ones and returns the kernel time of
// its exec: the event's timestamp is the kernel's CLOCK_MONOTONIC stamp plus the
// realtime-monotonic offset, which off undoes.
func (p *payloads) ktimeOf(pid int, off int64, wait time.Duration) (kt, at int64, ok bool) {
	deadline := time.After(wait)
	for {
		select {
		case pr := <-p.ch:
			b := pr.b
			var d struct {
				Timestamp string `json:"timestamp"`
				Process   struct {
					PID int `json:"pid"`
				} `json:"process"`
			}
			if json.Unmarshal(b, &d) != nil || d.Process.PID != pid {
				continue
			}
			t, err := event.ParseStamp(d.Timestamp)
			if err != nil {
				continue
			}
			return t.UnixNano() - off, pr.at, true
		case <-deadline:
			return 0, 0, false
		}
	}
}

// victimRun starts one victim and returns its pid and when (CLOCK_MONOTONIC) it was seen dead
// through a pidfd opened at its creation; killed says SIGKILL ended it.
func victimRun(path string) (pid int, dead int64, killed bool, err error) {
	pidfd := -1
	p, err := os.StartProcess(path, []string{path, "30"}, &os.ProcAttr{Sys: &syscall.SysProcAttr{PidFD: &pidfd}})
	if err != nil {
		return 0, 0, false, fmt.Errorf("start victim: %w", err)
	}
	defer func() {
		if pidfd >= 0 {
			unix.Close(pidfd)
		}
	}()
	if pidfd < 0 {
		_ = p.Kill()
		_, _ = p.Wait()
		return 0, 0, false, errors.New("no pidfd for the victim")
	}
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	end := time.Now().Add(victimTimeout)
	for {
		n, perr := unix.Poll(fds, int(time.Until(end)/time.Millisecond)+1)
		if n > 0 {
			dead = monoNow()
			break
		}
		if perr != nil && !errors.Is(perr, unix.EINTR) {
			_ = p.Kill()
			_, _ = p.Wait()
			return 0, 0, false, fmt.Errorf("poll the victim's pidfd: %w", perr)
		}
		if time.Now().After(end) {
			_ = p.Kill()
			_, _ = p.Wait()
			return p.Pid, 0, false, nil
		}
	}
	st, err := p.Wait()
	if err != nil {
		return 0, 0, false, fmt.Errorf("reap victim: %w", err)
	}
	ws, _ := st.Sys().(syscall.WaitStatus)
	return p.Pid, dead, ws.Signaled() && ws.Signal() == syscall.SIGKILL, nil
}

func lossOf(s *bpf.Sensors) uint64 {
	st := s.Stats()["exec"]
	return st.Lost + st.Dropped
}

// jibrilOne runs one victim of the jibril path and records it when measure is set.
func jibrilOne(rig *engineRig, pr *payloads, tp *timedProc, victim string, measure bool, out *execKill) error {
	reactions := rig.eng.Stats().Reactions
	off := wallMinusMono()
	pid, dead, killed, err := victimRun(victim)
	if err != nil {
		return err
	}
	kt, at, seen := pr.ktimeOf(pid, off, time.Second)
	// Let the worker finish (transcript, audit) so that victims do not overlap.
	for end := time.Now().Add(2 * time.Second); rig.eng.Stats().Reactions == reactions && time.Now().Before(end); {
		time.Sleep(200 * time.Microsecond)
	}
	if measure && out.add(killed, seen, kt, at, dead) {
		out.toKill = append(out.toKill, float64(tp.last.Load()-kt)/1000)
	}
	return nil
}

// add records one measured victim, and reports whether it has times (killed, and its
// exec seen by the path): kt the exec's kernel time, at when the path had the event, dead
// when the victim was seen dead (CLOCK_MONOTONIC ns).
func (k *execKill) add(killed, seen bool, kt, at, dead int64) bool {
	switch {
	case !killed:
		k.missed++
	case !seen:
		k.unseen++
	default:
		k.us = append(k.us, float64(dead-kt)/1000)
		k.toGo = append(k.toGo, float64(at-kt)/1000)
		return true
	}
	return false
}

// tracer is the baseline: the same sensors, and on its victim's exec event a
// pidfd_send_signal(SIGKILL), with no process table, enrichment, engine or sandbox.
type tracer struct {
	s    *bpf.Sensors
	hits chan hit
	done chan struct{}
}

func startTracer(ctx context.Context, id bpf.FileID, comm string) (*tracer, error) {
	s, err := bpf.Open(ctx, bpf.Config{Sensors: bpf.SensorProc})
	if err != nil {
		return nil, fmt.Errorf("attach the sensors: %w", err)
	}
	if err := s.SetExecWakeup(false, []string{comm}); err != nil {
		_ = s.Close()
		return nil, err
	}
	t := &tracer{s: s, hits: make(chan hit, 64), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		for {
			select {
			case ev, ok := <-s.Exec():
				if !ok {
					return
				}
				if ev.Exe != id {
					continue
				}
				at := monoNow()
				if fd, err := unix.PidfdOpen(int(ev.TGID), 0); err == nil {
					_ = unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
					unix.Close(fd)
				}
				select {
				case t.hits <- hit{int(ev.TGID), int64(ev.Ktime), ev.Time.UnixNano(), at}:
				default:
				}
			case _, ok := <-s.Fork():
				if !ok {
					return
				}
			case _, ok := <-s.Exit():
				if !ok {
					return
				}
			}
		}
	}()
	return t, nil
}

func (t *tracer) close() {
	_ = t.s.Close()
	<-t.done
}

// one runs one victim of the baseline and records it when measure is set.
func (t *tracer) one(victim string, measure bool, out *execKill, conv *[]float64) error {
	off := wallMinusMono()
	pid, dead, killed, err := victimRun(victim)
	if err != nil {
		return err
	}
	h, seen := waitHit(t.hits, pid, time.Second)
	if seen {
		// The jibril path recovers the kernel time from the event's wall stamp: check
		// here, where both are known, how far off that recovery is.
		*conv = append(*conv, float64(abs64(h.wall-off-h.ktime))/1000)
	}
	if measure {
		out.add(killed, seen, h.ktime, h.at, dead)
	}
	return nil
}

// hit is the baseline tracer's record of a victim's exec.
type hit struct {
	pid         int
	ktime, wall int64
	at          int64 // CLOCK_MONOTONIC when the tracer had the event
}

func waitHit(hits <-chan hit, pid int, wait time.Duration) (hit, bool) {
	deadline := time.After(wait)
	for {
		select {
		case h := <-hits:
			if h.pid == pid {
				return h, true
			}
		case <-deadline:
			return hit{}, false
		}
	}
}

// timedProc is the live process actuator, noting when a kill reaches it: that splits the
// engine's share (queue, worker, sandbox, JS) from the kill itself, with no hook in the engine.
type timedProc struct {
	*proc.Live
	last atomic.Int64 // CLOCK_MONOTONIC ns of the last Kill call
}

func (t *timedProc) Kill(ctx context.Context, target proc.Target) (int, error) {
	t.last.Store(monoNow())
	return t.Live.Kill(ctx, target)
}

// diff is a[i]-b[i].
func diff(a, b []float64) []float64 {
	out := make([]float64, min(len(a), len(b)))
	for i := range out {
		out[i] = a[i] - b[i]
	}
	return out
}

func abs64(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}
