package bpf

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// quietProc is a proc-only config in which nothing but an urgent exec and
// the reader's poll can wake the exec reader: batched records would need
// 8 MiB queued to force a wake-up.
func quietProc(flush time.Duration) Config {
	return Config{Sensors: SensorProc, FlushInterval: flush, ProcRingBytes: 16 << 20, WakeupBytes: 8 << 20}
}

// testNames returns a non-urgent and an urgent base name no other process
// uses; the urgent one is longer than a comm, so the kernel truncates it.
func testNames() (batched, urgent string) {
	r := rand.Uint32()
	return fmt.Sprintf("jibril-bat-%08x", r), fmt.Sprintf("jibril-urg-%08x", r)
}

func TestSetExecWakeupValidates(t *testing.T) {
	long := strings.Repeat("x", 15)
	many := make([]string, MaxUrgentComms+1)
	collapsing := make([]string, MaxUrgentComms+1) // one comm after truncation
	for i := range many {
		many[i] = fmt.Sprintf("n%d", i)
		collapsing[i] = fmt.Sprintf("%s%d", long, i)
	}
	for _, tc := range []struct {
		name  string
		comms []string
		err   string // "" means valid: the unloaded sensors refuse it instead
	}{
		{"empty", []string{"ok", ""}, "exec wake-up name 1: empty"},
		{"slash", []string{"a/b"}, `exec wake-up name 0 ("a/b"): contains '/'`},
		{"path", []string{"/usr/bin/xmrig"}, "contains '/'"},
		{"nul", []string{"a\x00b"}, "contains a NUL byte"},
		{"too many", many, fmt.Sprintf("%d distinct names, at most %d", MaxUrgentComms+1, MaxUrgentComms)},
		{"truncation collapses", collapsing, ""},
		{"none", nil, ""},
		{"valid", []string{"xmrig", "a name with spaces", "ünïcode"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := (&Sensors{}).SetExecWakeup(false, tc.comms)
			want := tc.err
			if want == "" {
				want = "the proc sensor is not loaded"
			}
			if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("SetExecWakeup: %v, want a one-line error with %q", err, want)
			}
		})
	}
}

// urgentState reads the wake-up state from the kernel maps.
func urgentState(t *testing.T, s *Sensors) (all bool, comms []string) {
	t.Helper()
	var c jcfg
	if err := s.procCfg.Lookup(uint32(0), &c); err != nil {
		t.Fatal(err)
	}
	var (
		k commKey
		v uint8
	)
	it := s.urgentMap.Iterate()
	for it.Next(&k, &v) {
		comms = append(comms, string(k[:]))
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(comms)
	return c.ExecWakeAll != 0, comms
}

func TestSetExecWakeupMaps(t *testing.T) {
	s := openSensors(t, Config{Sensors: SensorProc})
	pad := func(n string) string { return n + strings.Repeat("\x00", taskCommLen-len(n)) }
	steps := []struct {
		all       bool
		comms     []string
		wantComms []string
	}{
		{false, []string{"xmrig", "exactly-15-byte", "a-name-longer-than-a-comm", "xmrig"},
			[]string{pad("a-name-longer-t"), pad("exactly-15-byte"), pad("xmrig")}},
		{true, []string{"kworker", "xmrig"}, []string{pad("kworker"), pad("xmrig")}},
		{false, nil, nil},
	}
	if all, comms := urgentState(t, s); !all || len(comms) != 0 {
		t.Fatalf("default: wake all %v, names %q; want every exec urgent", all, comms)
	}
	for i, st := range steps {
		if err := s.SetExecWakeup(st.all, st.comms); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		all, comms := urgentState(t, s)
		if all != st.all || !slices.Equal(comms, st.wantComms) {
			t.Fatalf("step %d: wake all %v, names %q; want %v, %q", i, all, comms, st.all, st.wantComms)
		}
	}
	// A refused call changes nothing.
	if err := s.SetExecWakeup(true, []string{"a/b"}); err == nil {
		t.Fatal("a path was accepted")
	}
	if all, comms := urgentState(t, s); all || len(comms) != 0 {
		t.Fatalf("after a refused call: wake all %v, names %q", all, comms)
	}
	s.Close()
	if err := s.SetExecWakeup(true, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("SetExecWakeup after Close: %v", err)
	}
}

// wakeProbe watches the proc ring in place of the sensors' reader: an
// edge-triggered epoll on the ring reports whether the kernel woke its
// readers since the last check, whatever the ring holds.
type wakeProbe struct {
	t    *testing.T
	ep   int
	ring *ringbuf.Reader
}

func newWakeProbe(t *testing.T, s *Sensors) *wakeProbe {
	return newRingProbe(t, s, "proc_rb")
}

// newRingProbe is newWakeProbe on the ring named ring of the one sensor s runs.
func newRingProbe(t *testing.T, s *Sensors, ring string) *wakeProbe {
	t.Helper()
	// Stop the Go reader: it would consume the records and race the probe.
	if len(s.readers) != 1 || len(s.colls) != 1 {
		t.Fatalf("want one sensor alone, have %d readers", len(s.readers))
	}
	if w := s.wakes[0]; w != nil {
		w.Close() // ends the poll loop, which reads nothing more once it has returned
		s.wg.Wait()
	} else if err := s.readers[0].Close(); err != nil {
		t.Fatal(err)
	}
	rb := s.colls[0].Maps[ring]
	r, err := ringbuf.NewReader(rb)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(ep) })
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(rb.FD())}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, rb.FD(), &ev); err != nil {
		t.Fatal(err)
	}
	return &wakeProbe{t: t, ep: ep, ring: r}
}

// woken reports (and clears) a wake-up since the last call. The kernel
// wakes readers from an irq_work queued by the exec'ing task, which has
// run long before that task could exit.
func (p *wakeProbe) woken() bool {
	var evs [1]unix.EpollEvent
	for {
		n, err := unix.EpollWait(p.ep, evs[:], 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			p.t.Fatal(err)
		}
		return n > 0
	}
}

// drain consumes the ring and returns the exec events in it.
func (p *wakeProbe) drain() []ExecEvent {
	var (
		out []ExecEvent
		rec ringbuf.Record
	)
	p.ring.SetDeadline(time.Now())
	for {
		err := p.ring.ReadInto(&rec)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			p.t.Fatal(err)
		}
		if k, err := recordKind(rec.RawSample); err == nil && k == kindExec {
			e, err := decodeExec(rec.RawSample, func(uint64) time.Time { return time.Time{} })
			if err != nil {
				p.t.Fatal(err)
			}
			out = append(out, e)
		}
	}
}

// runExec runs cmd and returns its pid. Its exit status is not checked:
// another jibril under test on this machine may kill it, when a file it
// made kill-on-exec and deleted left its inode to one of ours; the events
// and wake-ups checked here come from this test's sensors alone.
func runExec(t *testing.T, cmd *exec.Cmd) uint32 {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", cmd.Path, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Logf("%s: %v", cmd.Path, err)
	}
	return uint32(cmd.Process.Pid)
}

// TestExecWakeupKernelDecision checks, exec by exec, whether the kernel
// woke the ring's readers, with the Go reader stopped so that nothing
// consumes the records before the check. In selective mode no other
// process can wake the ring (batched records stay far below WakeupBytes),
// so a wake-up is the test's exec's own; every exec is still in the ring.
func TestExecWakeupKernelDecision(t *testing.T) {
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw_tp=%v", raw), func(t *testing.T) {
			cfg := quietProc(time.Hour)
			cfg.rawTPOnly = raw
			s := openSensors(t, cfg)
			p := newWakeProbe(t, s)
			dir := t.TempDir()
			batName, urgName := testNames()
			bat := copyExe(t, "/bin/true", dir, batName)
			urg := copyExe(t, "/bin/true", dir, urgName)
			kil := copyExe(t, "/bin/true", dir, strings.Replace(batName, "bat", "kil", 1))
			if err := s.KillOnExec(kil); err != nil {
				t.Fatal(err)
			}
			// A link named like nothing urgent to the urgent file: its comm is
			// the link's name, the file the kernel loads is the urgent one.
			lnk := filepath.Join(dir, strings.Replace(batName, "bat", "lnk", 1))
			if err := os.Symlink(urg, lnk); err != nil {
				t.Fatal(err)
			}
			urgFile, err := os.Open(urg)
			if err != nil {
				t.Fatal(err)
			}
			defer urgFile.Close()

			selective := func() error { return s.SetExecWakeup(false, []string{urgName, "jibril-other"}) }
			all := func() error { return s.SetExecWakeup(true, []string{urgName}) }
			steps := []struct {
				what   string
				set    func() error
				cmd    func() *exec.Cmd
				wake   bool
				killed bool
			}{
				{what: "non-urgent, never configured", cmd: func() *exec.Cmd { return exec.Command(bat) }, wake: true},
				{what: "non-urgent, selective", set: selective, cmd: func() *exec.Cmd { return exec.Command(bat) }},
				{what: "urgent (truncated comm)", cmd: func() *exec.Cmd { return exec.Command(urg) }, wake: true},
				{what: "symbolic link to an urgent file", cmd: func() *exec.Cmd { return exec.Command(lnk) }, wake: true},
				{what: "urgent file by /proc/self/fd", cmd: func() *exec.Cmd {
					c := exec.Command("/proc/self/fd/3")
					c.ExtraFiles = []*os.File{urgFile}
					return c
				}, wake: true},
				{what: "kill on exec", cmd: func() *exec.Cmd { return exec.Command(kil) }, wake: true, killed: true},
				{what: "non-urgent, selective again", cmd: func() *exec.Cmd { return exec.Command(bat) }},
				{what: "non-urgent, wake all", set: all, cmd: func() *exec.Cmd { return exec.Command(bat) }, wake: true},
				{what: "non-urgent, back to selective", set: selective, cmd: func() *exec.Cmd { return exec.Command(bat) }},
			}
			for _, st := range steps {
				if st.set != nil {
					if err := st.set(); err != nil {
						t.Fatal(err)
					}
				}
				p.woken()
				p.drain()
				pid := runExec(t, st.cmd())
				woken := p.woken()
				evs := slices.DeleteFunc(p.drain(), func(e ExecEvent) bool { return e.TGID != pid })
				if len(evs) != 1 || evs[0].Prevented != st.killed {
					t.Fatalf("%s: exec events of pid %d in the ring: %+v", st.what, pid, evs)
				}
				if woken != st.wake {
					t.Errorf("%s (comm %q): woke the reader %v, want %v", st.what, evs[0].Comm, woken, st.wake)
				}
			}
		})
	}
}

// TestExecWakeupDelivery runs the real reader. With an hour-long flush
// interval only a wake-up delivers an exec within the test's wait: in
// selective mode an urgent exec's, which also brings the batched execs
// queued before it, in ring order.
func TestExecWakeupDelivery(t *testing.T) {
	dir := t.TempDir()
	batName, urgName := testNames()
	bat := copyExe(t, "/bin/true", dir, batName)
	urg := copyExe(t, "/bin/true", dir, urgName)
	runPath := func(t *testing.T, path string) uint32 { return runExec(t, exec.Command(path)) }
	byPID := func(pid uint32) func(ExecEvent) bool { return func(e ExecEvent) bool { return e.TGID == pid } }

	// batchedThenUrgent execs bat then urg and waits for urg's event: bat's
	// must have come first.
	batchedThenUrgent := func(t *testing.T, s *Sensors) {
		t.Helper()
		b := runPath(t, bat)
		u := runPath(t, urg)
		var seen []uint32
		waitFor(t, s.Exec(), "urgent exec", byPID(u), func(e ExecEvent) { seen = append(seen, e.TGID) })
		if !slices.Contains(seen, b) {
			t.Errorf("the batched exec (pid %d) did not arrive before the urgent one (pid %d)", b, u)
		}
	}

	t.Run("selective", func(t *testing.T) {
		s := openSensors(t, quietProc(time.Hour))
		if err := s.SetExecWakeup(false, []string{urgName}); err != nil {
			t.Fatal(err)
		}
		batchedThenUrgent(t, s)
	})
	t.Run("all", func(t *testing.T) {
		s := openSensors(t, quietProc(time.Hour))
		if err := s.SetExecWakeup(true, []string{urgName}); err != nil {
			t.Fatal(err)
		}
		// Alone, a non-urgent exec wakes the reader itself.
		waitFor(t, s.Exec(), "non-urgent exec alone", byPID(runPath(t, bat)), nil)
		batchedThenUrgent(t, s)
	})
	t.Run("selective, flushed", func(t *testing.T) {
		// No urgent exec at all: the reader's poll delivers the batched one.
		s := openSensors(t, quietProc(time.Second))
		if err := s.SetExecWakeup(false, []string{urgName}); err != nil {
			t.Fatal(err)
		}
		e := waitFor(t, s.Exec(), "batched exec", byPID(runPath(t, bat)), nil)
		if e.Comm != batName[:taskCommLen-1] {
			t.Errorf("comm %q, want %q", e.Comm, batName[:taskCommLen-1])
		}
		if st := s.Stats()["exec"]; st.Lost != 0 || st.Dropped != 0 {
			t.Errorf("exec stream lost events: %+v", st)
		}
	})
}

// BenchmarkExecStorm measures what the exec monitor costs the processes
// that exec: a shell runs b.N execs of a copied /bin/true, with no sensors,
// with every exec waking the reader and with none of them urgent, the
// three interleaved over stormRounds rounds against the noise of a shared
// machine. Reported are the medians per exec of the CPU time of the shell
// and its children (wait4's rusage) and of this process (the ring reader),
// and the median over rounds of the storm's CPU overhead against the
// round's run without sensors. Run with
//
//	go test -run '^$' -bench ExecStorm -benchtime 2000x ./bpf
func BenchmarkExecStorm(b *testing.B) {
	const stormRounds = 9
	if os.Geteuid() != 0 {
		b.Skip("needs root to load BPF programs")
	}
	tru := filepath.Join(b.TempDir(), "jstorm-true")
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		b.Skip(err)
	}
	if err := os.WriteFile(tru, data, 0o755); err != nil {
		b.Fatal(err)
	}
	// The run time of the BPF programs, wake-ups included (the kernel
	// counts it while the returned descriptor is open).
	if st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		defer st.Close()
	}
	modes := []string{"none", "all", "sel"}
	storm, reader, prog, over := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	for range stormRounds {
		var base float64
		for _, mode := range modes {
			c, r, p := execStorm(b, mode, tru)
			storm[mode] = append(storm[mode], c)
			reader[mode] = append(reader[mode], r)
			prog[mode] = append(prog[mode], p)
			if mode == "none" {
				base = c
			} else {
				// Paired with the round's own baseline: the load of the
				// machine drifts between rounds.
				over[mode] = append(over[mode], 100*(c-base)/base)
			}
		}
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	for _, mode := range modes {
		b.ReportMetric(median(storm[mode]), mode+"-storm-cpu-µs/exec")
		b.ReportMetric(median(reader[mode]), mode+"-reader-cpu-µs/exec")
		if mode != "none" {
			b.ReportMetric(median(over[mode]), mode+"-overhead-%")
			b.ReportMetric(median(prog[mode]), mode+"-exec-prog-µs/run")
		}
	}
}

// execStorm runs one storm of b.N execs and returns the CPU time per exec
// of the storm and of this process, and the mean run time of the exec
// program (every exec on the machine meanwhile), in µs.
func execStorm(b *testing.B, mode, tru string) (storm, reader, prog float64) {
	b.Helper()
	if mode != "none" {
		s, err := Open(b.Context(), Config{Sensors: SensorProc, ChannelSize: 1 << 16})
		if err != nil {
			b.Skipf("open sensors: %v", err)
		}
		defer s.Close()
		if err := s.SetExecWakeup(mode == "all", []string{"jibril-urgent"}); err != nil {
			b.Fatal(err)
		}
		defer func() {
			for _, sp := range s.progs {
				if st, err := sp.prog.Stats(); err == nil && sp.stream == streamExec && st.RunCount > 0 {
					prog = float64(st.Runtime) / 1e3 / float64(st.RunCount)
				}
			}
		}()
		go func() { // a consumer, as the daemon has
			for range s.Exec() {
			}
		}()
	}
	script := fmt.Sprintf("i=0; while [ $i -lt %d ]; do %s; i=$((i+1)); done", b.N, tru)
	var self0, self1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &self0)
	cmd := exec.Command("/bin/sh", "-c", script)
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	unix.Getrusage(unix.RUSAGE_SELF, &self1)
	// wait4's rusage of the shell includes the children it waited for.
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	n := float64(b.N)
	storm = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e3 / n
	reader = float64(self1.Utime.Nano()+self1.Stime.Nano()-self0.Utime.Nano()-self0.Stime.Nano()) / 1e3 / n
	return storm, reader, prog
}

// TestBatchedWakeupOncePerBand checks that batched records wake the ring's
// readers once per WakeupBytes produced, not on every record once the backlog
// is past WakeupBytes: with the reader held back, that woke the producer's CPU
// with an inter-processor interrupt per record. The Go reader is stopped, so
// the backlog only grows; other processes' records count in it as well.
func TestBatchedWakeupOncePerBand(t *testing.T) {
	const band = 16 << 10
	cfg := quietProc(time.Hour)
	cfg.WakeupBytes = band
	s := openSensors(t, cfg)
	p := newWakeProbe(t, s)
	if err := s.SetExecWakeup(false, []string{"jibril-other"}); err != nil {
		t.Fatal(err)
	}
	bat, _ := testNames()
	exe := copyExe(t, "/bin/true", t.TempDir(), bat)
	p.woken() // forget what came before
	start := p.ring.AvailableBytes()
	wakes, past := 0, 0
	for i := 0; i < 400 && p.ring.AvailableBytes()-start < 12*band; i++ {
		runExec(t, exec.Command(exe))
		if p.woken() {
			wakes++
		}
		if p.ring.AvailableBytes()-start > band {
			past++ // execs with the backlog past WakeupBytes
		}
	}
	bands := (p.ring.AvailableBytes() - start) / band
	t.Logf("%d bytes produced (%d bands), %d wake-ups, %d execs past the first band", p.ring.AvailableBytes()-start, bands, wakes, past)
	if bands < 4 {
		t.Fatalf("only %d bands produced: the execs' records are smaller than assumed", bands)
	}
	if wakes == 0 {
		t.Error("no wake-up although the backlog crossed WakeupBytes several times")
	}
	if wakes > bands+2 || wakes >= past {
		t.Errorf("%d wake-ups for %d bands crossed (%d execs past the first): a wake-up per record", wakes, bands, past)
	}
}

// TestFileWakeupOncePerBand: file records wake the reader about once per WakeupBytes of
// output, not once per record: at most one wake-up per band crossed (plus one per CPU, for
// racing producers).
func TestFileWakeupOncePerBand(t *testing.T) {
	const band = 16 << 10
	dir := t.TempDir()
	s := openSensors(t, Config{Sensors: SensorFile, WatchSelf: true, FlushInterval: time.Hour, WakeupBytes: band, FilePrefixes: []string{dir + "/"}})
	p := newRingProbe(t, s, "file_rb")
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	p.woken() // forget what came before
	start := p.ring.AvailableBytes()
	wakes, opens := 0, 0
	for ; opens < 20000 && p.ring.AvailableBytes()-start < 12*band; opens++ {
		fd, err := unix.Open(f, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		if p.woken() {
			wakes++
		}
	}
	bands := int((p.ring.AvailableBytes() - start) / band)
	t.Logf("%d opens, %d bytes (%d bands), %d wake-ups", opens, p.ring.AvailableBytes()-start, bands, wakes)
	if bands < 4 {
		t.Fatalf("only %d bands produced in %d opens: the filter dropped the opens?", bands, opens)
	}
	if wakes == 0 {
		t.Error("no wake-up although the backlog crossed WakeupBytes several times")
	}
	if wakes > bands+runtime.NumCPU()+1 {
		t.Errorf("%d wake-ups for %d bands: more than one per band and CPU", wakes, bands)
	}
}

// TestFileWakeupAcrossCPUs: with the opens spread evenly over the CPUs, the reader is still
// woken before half the ring is queued. (A per-CPU count of output, tried to spare the read
// of the ring's shared producer position, let the ring fill before any wake-up.)
func TestFileWakeupAcrossCPUs(t *testing.T) {
	cpus := runtime.NumCPU()
	if cpus < 2 {
		t.Skipf("needs two CPUs, the host has %d", cpus)
	}
	const ring = 64 << 10
	dir := t.TempDir()
	s := openSensors(t, Config{Sensors: SensorFile, WatchSelf: true, FlushInterval: time.Hour, FileRingBytes: ring,
		WakeupBytes: ring / 2, FilePrefixes: []string{dir + "/"}})
	p := newRingProbe(t, s, "file_rb")
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var all unix.CPUSet
	if err := unix.SchedGetaffinity(0, &all); err != nil {
		t.Fatal(err)
	}
	defer unix.SchedSetaffinity(0, &all)
	var usable []int
	for c := 0; c < 1024 && len(usable) < cpus; c++ {
		if all.IsSet(c) {
			usable = append(usable, c)
		}
	}
	if len(usable) < 2 {
		t.Skipf("the test may run on %d CPU only", len(usable))
	}
	p.woken()
	start := p.ring.AvailableBytes()
	for i := 0; i < 4000; i++ {
		var one unix.CPUSet
		one.Set(usable[i%len(usable)])
		if err := unix.SchedSetaffinity(0, &one); err != nil {
			t.Fatal(err)
		}
		fd, err := unix.Open(f, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		if p.woken() {
			queued := p.ring.AvailableBytes() - start
			t.Logf("first wake-up after %d opens on %d CPUs, %d bytes queued", i+1, len(usable), queued)
			if queued > ring/2+1024 {
				t.Fatalf("woken with %d bytes queued in a %d-byte ring: more than half", queued, ring)
			}
			return
		}
	}
	t.Fatalf("no wake-up in 4000 opens (%d bytes queued, %d lost)", p.ring.AvailableBytes()-start, s.Stats()["file"].Lost)
}
