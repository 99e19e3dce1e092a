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
	ingestSeconds  = 5 * time.Second
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

	s0, e0 := f.sensors.Stats()["file"], rig.eng.Stats()
	cpu0 := selfCPU()
	t0 := time.Now()
	gen, err := generate(ctx, self, storm, procs, dur)
	if err != nil {
		return nil, nil, err
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
	cpu := selfCPU() - cpu0
	recv := s1.Received - s0.Received
	lost := (s1.Lost - s0.Lost) + (s1.Dropped - s0.Dropped)
	secs := t1.Sub(t0).Seconds()
	res := map[string]float64{
		"ingest_events_per_s":          float64(recv) / secs,
		"ingest_lost":                  float64(lost),
		"ingest_handled_per_s":         float64(e1.Events-e0.Events) / secs,
		"ingest_generator_opens_per_s": float64(gen) / dur.Seconds(),
		"baseline_ingest_opens_per_s":  float64(alone) / baseDur.Seconds(),
	}
	if recv > 0 {
		res["ingest_go_cpu_ns_per_event"] = float64(cpu.Nanoseconds()) / float64(recv)
	}
	notes := []string{fmt.Sprintf("ingest: %d generator processes, %d opens in %s (%.0f/s; %.0f/s with no sensor), Go received %d file events (%d lost in the ring, %d dropped at the channel, %d missed by recursion) in %.2f s including the drain; engine.Handle ran on %d events, %d detections",
		procs, gen, dur, float64(gen)/dur.Seconds(), float64(alone)/baseDur.Seconds(), recv, s1.Lost-s0.Lost, s1.Dropped-s0.Dropped, s1.Missed-s0.Missed, secs, e1.Events-e0.Events, e1.Detections-e0.Detections)}
	return res, notes, nil
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
