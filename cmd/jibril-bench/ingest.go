package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine"
	"github.com/jibril-rt/jibril/recipes/builtin"
	"github.com/jibril-rt/jibril/sandbox"
)

// openStormArg is the hidden first argument that turns the bench binary into one open-storm
// generator process (a separate process: the sensors ignore the bench's own system calls).
const openStormArg = "__open-storm"

const (
	ingestFiles    = 64
	ingestSeconds  = 4 * time.Second
	ingestRounds   = 3
	ingestBaseline = 2 * time.Second
)

// counter is the ingest bench's printer: it only counts.
type counter struct{ n atomic.Uint64 }

func (c *counter) Print([]byte) { c.n.Add(1) }

// benchIngest drives a file-open storm through the whole engine: proc and file sensors with the
// in-kernel prefix filter on the storm's directory, engine.Feed, enrichment and engine.Handle
// against the built-in library (reactions on recorders: nothing is touched). The generators'
// own rate with no sensor attached is measured first, as the baseline.
func benchIngest(ctx context.Context, o options) (map[string]float64, []string, error) {
	if err := needKernel(); err != nil {
		return nil, nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, nil, fmt.Errorf("find the bench binary: %w", err)
	}
	root, err := os.MkdirTemp("", "jibril-bench-ingest-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(root)
	storm := filepath.Join(root, "storm")
	if err := os.MkdirAll(storm, 0o755); err != nil {
		return nil, nil, err
	}
	for i := range ingestFiles {
		if err := os.WriteFile(filepath.Join(storm, fmt.Sprintf("f%02d", i)), []byte("x"), 0o644); err != nil {
			return nil, nil, err
		}
	}
	procs := o.generators
	if procs <= 0 {
		procs = 2 * runtime.NumCPU()
	}
	dur, baseDur := ingestSeconds, ingestBaseline
	if o.quick {
		dur, baseDur = 2*time.Second, time.Second
	}

	alone, err := generate(ctx, self, storm, procs, baseDur)
	if err != nil {
		return nil, nil, err
	}
	rec := &sandbox.Recorder{}
	w := sandbox.World{Proc: rec, Net: rec, Power: rec, Evidence: rec}
	pr := &counter{}
	rig, err := newEngineRig(ctx, filepath.Join(root, "state"), w, w, pr,
		[]engine.Source{{Name: "builtin", FS: builtin.FS(), Dir: "."}})
	if err != nil {
		return nil, nil, err
	}
	defer rig.close()
	f, err := rig.feed(ctx, bpf.Config{Sensors: bpf.SensorProc | bpf.SensorFile, FilePrefixes: []string{storm + "/"}})
	if err != nil {
		return nil, nil, err
	}
	defer f.stop()

	// Three storms, each drained to its last event; the rate is the median storm's, so that
	// a burst of other load on the machine during one of them does not decide it.
	n := ingestRounds
	if o.quick {
		n = 1
	}
	var rounds []ingestRound
	for range n {
		r, err := ingestStorm(ctx, f, rig, self, storm, procs, dur)
		if err != nil {
			return nil, nil, err
		}
		rounds = append(rounds, r)
	}
	var rates, genRates []float64
	var sum ingestRound
	var perRound []string
	for _, r := range rounds {
		rates = append(rates, float64(r.recv)/r.secs)
		genRates = append(genRates, float64(r.gen)/dur.Seconds())
		perRound = append(perRound, fmt.Sprintf("%.0f/s (Go %.0f ns/event)", float64(r.recv)/r.secs, float64(r.cpu.Nanoseconds())/float64(max(r.recv, 1))))
		sum.recv, sum.lost, sum.dropped, sum.missed = sum.recv+r.recv, sum.lost+r.lost, sum.dropped+r.dropped, sum.missed+r.missed
		sum.handled, sum.detections, sum.gen = sum.handled+r.handled, sum.detections+r.detections, sum.gen+r.gen
		sum.secs, sum.cpu = sum.secs+r.secs, sum.cpu+r.cpu
	}
	res := map[string]float64{
		"ingest_events_per_s":          median(rates),
		"ingest_lost":                  float64(sum.lost + sum.dropped),
		"ingest_handled_per_s":         float64(sum.handled) / sum.secs,
		"ingest_generator_opens_per_s": median(genRates),
		"baseline_ingest_opens_per_s":  float64(alone) / baseDur.Seconds(),
	}
	if sum.recv > 0 {
		res["ingest_go_cpu_ns_per_event"] = float64(sum.cpu.Nanoseconds()) / float64(sum.recv)
	}
	notes := []string{fmt.Sprintf("ingest: %d storms of %s by %d generator processes (events received: %s; %.0f opens/s with no sensor), %d opens in all; Go received %d file events (%d lost in the ring, %d dropped at the channel, %d missed by recursion) in %.2f s including the drains; engine.Handle ran on %d events, %d detections",
		len(rounds), dur, procs, strings.Join(perRound, ", "), float64(alone)/baseDur.Seconds(), sum.gen, sum.recv, sum.lost, sum.dropped, sum.missed, sum.secs, sum.handled, sum.detections)}
	return res, notes, nil
}

// ingestRound is what one storm produced.
type ingestRound struct {
	recv, lost, dropped, missed, handled, detections, gen uint64
	secs                                                  float64 // storm start to the last event received
	cpu                                                   time.Duration
}

// ingestStorm runs one storm and drains it.
func ingestStorm(ctx context.Context, f *feeding, rig *engineRig, self, storm string, procs int, dur time.Duration) (ingestRound, error) {
	s0, e0 := f.sensors.Stats()["file"], rig.eng.Stats()
	cpu0 := selfCPU()
	t0 := time.Now()
	gen, err := generate(ctx, self, storm, procs, dur)
	if err != nil {
		return ingestRound{}, err
	}
	// Drain: the rate counts every event the storm produced, up to the last one Go received.
	last, t1 := s0.Received, time.Now()
	for still := 0; still < 5 && time.Since(t1) < 10*time.Second; {
		time.Sleep(20 * time.Millisecond)
		if r := f.sensors.Stats()["file"].Received; r != last {
			last, t1, still = r, time.Now(), 0
		} else {
			still++
		}
	}
	// Let the feed hand the queued events to the engine before reading its counter.
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if len(f.sensors.File()) == 0 {
			break
		}
	}
	s1, e1 := f.sensors.Stats()["file"], rig.eng.Stats()
	return ingestRound{
		recv: s1.Received - s0.Received, lost: s1.Lost - s0.Lost, dropped: s1.Dropped - s0.Dropped,
		missed: s1.Missed - s0.Missed, handled: e1.Events - e0.Events, detections: e1.Detections - e0.Detections,
		gen: gen, secs: t1.Sub(t0).Seconds(), cpu: selfCPU() - cpu0,
	}, nil
}

// selfCPU is the CPU time this process has used, every thread (not its children).
func selfCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// generate runs procs open-storm processes for d and returns the opens they made.
func generate(ctx context.Context, self, dir string, procs int, d time.Duration) (uint64, error) {
	var total atomic.Uint64
	var wg sync.WaitGroup
	errs := make([]error, procs)
	for i := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
			defer cancel()
			var out bytes.Buffer
			cmd := exec.CommandContext(cctx, self, openStormArg, dir, d.String(), strconv.Itoa(ingestFiles), strconv.Itoa(i))
			cmd.Stdout = &out
			cmd.Stderr = os.Stderr
			if err := cmd.Run(); err != nil {
				errs[i] = fmt.Errorf("open-storm generator %d: %w", i, err)
				return
			}
			n, err := strconv.ParseUint(strings.TrimSpace(out.String()), 10, 64)
			if err != nil {
				errs[i] = fmt.Errorf("open-storm generator %d printed %q", i, out.String())
				return
			}
			total.Add(n)
		}()
	}
	wg.Wait()
	return total.Load(), errors.Join(errs...)
}

// openStorm is the generator process: open and close the files of dir as fast as it can for
// the given duration, then print how many opens it made.
func openStorm(args []string) error {
	if len(args) != 4 {
		return errors.New("usage: __open-storm DIR DURATION FILES INDEX")
	}
	d, err := time.ParseDuration(args[1])
	if err != nil {
		return fmt.Errorf("duration %q: %w", args[1], err)
	}
	n, err := strconv.Atoi(args[2])
	if err != nil || n <= 0 || n > 10000 {
		return fmt.Errorf("files %q: not a count between 1 and 10000", args[2])
	}
	start, _ := strconv.Atoi(args[3])
	paths := make([]*byte, n)
	for i := range paths {
		if paths[i], err = unix.BytePtrFromString(filepath.Join(args[0], fmt.Sprintf("f%02d", i))); err != nil {
			return err
		}
	}
	end := time.Now().Add(d)
	var count uint64
	fdcwd := unix.AT_FDCWD
	atFDCWD := uintptr(fdcwd)
	// The descriptors are closed a batch at a time with one close_range(2): the storm measures
	// the sensors' opens, and a close per open would spend a third of the generator's time.
	const batch = 64
	var first uintptr
	for i := start; ; i++ {
		if i&255 == 0 && time.Now().After(end) {
			break
		}
		// RawSyscall: an open of a cached file does not block, so the Go scheduler need not
		// hear of it (entersyscall/exitsyscall cost the generator ~5 % per open).
		fd, _, errno := unix.RawSyscall6(unix.SYS_OPENAT, atFDCWD, uintptr(unsafe.Pointer(paths[i%n])),
			uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
		if errno != 0 {
			return fmt.Errorf("open: %w", errno)
		}
		if count%batch == 0 {
			first = fd
		}
		count++
		if count%batch == 0 {
			if _, _, errno := unix.RawSyscall(unix.SYS_CLOSE_RANGE, first, fd, 0); errno != 0 {
				return fmt.Errorf("close_range: %w", errno)
			}
		}
	}
	fmt.Println(count)
	return nil
}
