package bpf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

func TestOpMask(t *testing.T) {
	for _, tc := range []struct {
		m    OpMask
		want string
	}{
		{0, "none"},
		{MaskOf(OpOpen), "open"},
		{MaskOf(OpWrite, OpUnlink), "write|unlink"},
		{MaskOf(OpChown, OpOpen, 0, 99), "open|chown"},
		{AllOps, "open|create|write|truncate|unlink|rmdir|rename|link|symlink|mkdir|chmod|chown"},
		{AllOps | 1, "open|create|write|truncate|unlink|rmdir|rename|link|symlink|mkdir|chmod|chown|0x1"},
	} {
		if got := tc.m.String(); got != tc.want {
			t.Errorf("%#x: %q, want %q", uint32(tc.m), got, tc.want)
		}
	}
	if MaskOf(OpOpen, OpChown)&^AllOps != 0 || !AllOps.Has(OpChown) || AllOps.Has(0) || AllOps.Has(OpChown+1) {
		t.Errorf("AllOps = %#x", uint32(AllOps))
	}
	// Ops is Actions as a set: the bits the kernel computes for an open.
	for _, tc := range []struct {
		ev   FileEvent
		want OpMask
	}{
		{FileEvent{Op: OpOpen, Flags: unix.O_RDONLY | unix.O_CLOEXEC}, MaskOf(OpOpen)},
		{FileEvent{Op: OpOpen, Flags: unix.O_WRONLY}, MaskOf(OpOpen, OpWrite)},
		{FileEvent{Op: OpOpen, Flags: unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC}, MaskOf(OpOpen, OpCreate, OpWrite, OpTruncate)},
		{FileEvent{Op: OpOpen, Flags: unix.O_TMPFILE | unix.O_RDWR}, MaskOf(OpOpen, OpCreate, OpWrite)},
		{FileEvent{Op: OpOpen, Flags: unix.O_DIRECTORY}, MaskOf(OpOpen)},
		{FileEvent{Op: OpRmdir}, MaskOf(OpRmdir)},
		{FileEvent{Op: OpTruncate, Flags: 0o100}, MaskOf(OpTruncate)}, // a length, not O_CREAT
	} {
		if got := tc.ev.Ops(); got != tc.want {
			t.Errorf("Ops(%v, %#o) = %v, want %v", tc.ev.Op, tc.ev.Flags, got, tc.want)
		}
	}
}

func TestFilterTrieValues(t *testing.T) {
	set := map[string]OpMask{"/a/": MaskOf(OpWrite), "/a/b/": MaskOf(OpOpen), "/c": MaskOf(OpUnlink)}
	for _, tc := range []struct {
		p             string
		union, lookup OpMask
	}{
		{"/a/", MaskOf(OpWrite), MaskOf(OpWrite)},
		{"/a/b/", MaskOf(OpWrite, OpOpen), MaskOf(OpOpen)},
		{"/a/b/c", MaskOf(OpWrite, OpOpen), MaskOf(OpOpen)},
		{"/a/x", MaskOf(OpWrite), MaskOf(OpWrite)},
		{"/cd", MaskOf(OpUnlink), MaskOf(OpUnlink)},
		{"/d", 0, 0},
	} {
		if got := unionUpTo(set, tc.p); got != tc.union {
			t.Errorf("unionUpTo(%s) = %v, want %v", tc.p, got, tc.union)
		}
		if got := longestMatch(set, tc.p); got != tc.lookup {
			t.Errorf("longestMatch(%s) = %v, want %v", tc.p, got, tc.lookup)
		}
	}
}

// fileStep is one system call of TestFileFilterOps and whether the kernel
// must deliver it.
type fileStep struct {
	name string
	do   func() error
	op   Op
	path string // the event's Path
	want bool
	flag func(FileEvent) bool // extra check of a delivered event
}

// runSteps does the steps in order, then a sentinel unlink in dir/sub, and checks that
// exactly the wanted events for paths under dir arrived, in order (a ring
// buffer keeps one thread's records in order: an event missing before the
// sentinel was dropped in the kernel).
func runSteps(t *testing.T, s *Sensors, dir string, steps []fileStep) {
	t.Helper()
	sentinel := filepath.Join(dir, "sub", fmt.Sprintf("sentinel%d", time.Now().UnixNano()))
	if err := os.WriteFile(sentinel, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var want []string
	var wanted []fileStep
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.want {
			want = append(want, st.op.String()+" "+st.path)
			wanted = append(wanted, st)
		}
	}
	if err := os.Remove(sentinel); err != nil {
		t.Fatal(err)
	}
	want = append(want, "unlink "+sentinel)
	var got []string
	var events []FileEvent
	waitFor(t, s.File(), "sentinel unlink", func(e FileEvent) bool {
		if !strings.HasPrefix(e.Path, dir+"/") || e.Path == sentinel && e.Op != OpUnlink {
			return false
		}
		got = append(got, e.Op.String()+" "+e.Path)
		events = append(events, e)
		return e.Path == sentinel
	}, nil)
	if !slices.Equal(got, want) {
		t.Fatalf("delivered:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	for i, st := range wanted {
		if st.flag != nil && !st.flag(events[i]) {
			t.Errorf("%s: event %+v (ops %v)", st.name, events[i], events[i].Ops())
		}
	}
}

func TestFileFilterOps(t *testing.T) {
	dir := t.TempDir()
	sub := filepath.Join(dir, "sub")
	f, g, h := filepath.Join(dir, "f"), filepath.Join(sub, "g"), filepath.Join(dir, "h")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f, g, h} {
		if err := os.WriteFile(p, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Our own process does the calls: WatchSelf, and paths under dir only.
	s := openSensors(t, Config{Sensors: SensorFile, WatchSelf: true, FileFilter: []FilePrefix{
		{Prefix: dir + "/", Ops: MaskOf(OpWrite, OpUnlink)},
		{Prefix: sub + "/", Ops: MaskOf(OpChmod)},
	}})
	readOnly := func(p string) func() error {
		return func() error {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}
	}
	writeOnly := func(p string) func() error {
		return func() error {
			fd, err := unix.Open(p, unix.O_WRONLY|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
			return err
		}
	}
	matched := func(e FileEvent) bool { return e.Matched && !e.NonCanonical }
	nonCanon := dir + "/./f"
	runSteps(t, s, dir, []fileStep{
		{name: "read-only open under write|unlink", do: readOnly(f), op: OpOpen, path: f},
		{name: "chmod under write|unlink", do: func() error { return os.Chmod(f, 0o644) }, op: OpChmod, path: f},
		{name: "mkdir under write|unlink", do: func() error { return os.Mkdir(filepath.Join(dir, "m"), 0o700) }, op: OpMkdir, path: filepath.Join(dir, "m")},
		{name: "non-canonical read-only open", do: readOnly(nonCanon), op: OpOpen, path: nonCanon, want: true,
			flag: func(e FileEvent) bool { return e.NonCanonical && !e.Matched }},
		{name: "write open", do: writeOnly(f), op: OpOpen, path: f, want: true,
			flag: func(e FileEvent) bool { return matched(e) && e.Ops() == MaskOf(OpOpen, OpWrite) }},
		{name: "read-only open under chmod", do: readOnly(g), op: OpOpen, path: g},
		{name: "chmod under chmod", do: func() error { return os.Chmod(g, 0o644) }, op: OpChmod, path: g, want: true, flag: matched},
		// sub/ inherits dir/'s write (and unlink, for the sentinel): the
		// trie answers with the longest prefix only.
		{name: "truncating open under sub/", do: func() error { return os.WriteFile(g, []byte("y"), 0o600) }, op: OpOpen, path: g, want: true,
			flag: func(e FileEvent) bool { return matched(e) && e.Ops() == MaskOf(OpOpen, OpCreate, OpWrite, OpTruncate) }},
		{name: "unlink", do: func() error { return os.Remove(f) }, op: OpUnlink, path: f, want: true, flag: matched},
	})

	// Every op under dir/: the read-only open and chmod are delivered; sub/
	// no longer wanted alone is gone from the trie.
	if err := s.SetFileFilter([]FilePrefix{{Prefix: dir + "/", Ops: AllOps}}); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.prefixes[sub+"/"]; ok || s.prefixes[dir+"/"] != AllOps || len(s.prefixes) != 1 {
		t.Errorf("trie after the switch: %v", s.prefixes)
	}
	runSteps(t, s, dir, []fileStep{
		{name: "read-only open with every op", do: readOnly(h), op: OpOpen, path: h, want: true, flag: matched},
		{name: "chmod with every op", do: func() error { return os.Chmod(h, 0o600) }, op: OpChmod, path: h, want: true, flag: matched},
	})

	// Equal prefixes merge; the filter on sub/ alone drops dir/h.
	if err := s.SetFileFilter([]FilePrefix{{Prefix: sub + "/", Ops: MaskOf(OpWrite, OpUnlink)}, {Prefix: sub + "/", Ops: MaskOf(OpOpen)}}); err != nil {
		t.Fatal(err)
	}
	runSteps(t, s, dir, []fileStep{
		{name: "read-only open outside", do: readOnly(h), op: OpOpen, path: h},
		{name: "read-only open of merged prefix", do: readOnly(g), op: OpOpen, path: g, want: true, flag: matched},
	})

	for _, bad := range [][]FilePrefix{
		{{Prefix: "/x/", Ops: AllOps | 1}},
		{{Prefix: "/x/", Ops: 1 << 20}},
		{{Prefix: "rel/", Ops: AllOps}},
	} {
		if err := s.SetFileFilter(bad); err == nil {
			t.Errorf("SetFileFilter(%v) accepted", bad)
		}
	}
}

// stormEnv makes TestOpenStormChild the storm of BenchmarkOpenStorm: a
// separate process, so that its CPU time (the sensor's program runs in it)
// is apart from the ring reader's.
const stormEnv = "JIBRIL_OPEN_STORM"

func TestOpenStormChild(t *testing.T) {
	arg := os.Getenv(stormEnv)
	if arg == "" {
		t.Skip("the child of BenchmarkOpenStorm")
	}
	var n int
	var path string
	if _, err := fmt.Sscanf(arg, "%d %s", &n, &path); err != nil {
		t.Fatalf("%s=%q: %v", stormEnv, arg, err)
	}
	for range n {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
	}
}

// BenchmarkOpenStorm measures what the file filter costs an open+close
// storm of read-only opens of a file in a /tmp directory: with no sensors,
// with the filter wanting every operation under /tmp/ (the filter before
// operation masks), and with the modifications the built-in recipes want
// there. Reported: the medians over rounds of the storm's CPU per open (its
// process: the BPF program runs there), of the reader's (this process),
// and of the storm's CPU overhead against the round's run without sensors.
//
//	go test -run '^$' -bench OpenStorm -benchtime 200000x ./bpf
func BenchmarkOpenStorm(b *testing.B) {
	const rounds = 5
	if os.Geteuid() != 0 {
		b.Skip("needs root to load BPF programs")
	}
	dir, err := os.MkdirTemp("/tmp", "jibril-openstorm-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	target := filepath.Join(dir, "f")
	if err := os.WriteFile(target, []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	// The run time of the BPF programs (counted while the descriptor is open).
	if st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
		defer st.Close()
	}
	daemonOps := MaskOf(OpCreate, OpWrite, OpTruncate, OpUnlink, OpRmdir, OpRename, OpLink, OpSymlink, OpMkdir)
	modes := []struct {
		name   string
		filter []FilePrefix
	}{
		{"none", nil},
		{"allops", []FilePrefix{{Prefix: "/tmp/", Ops: AllOps}}},
		{"masked", []FilePrefix{{Prefix: "/tmp/", Ops: daemonOps}}},
	}
	storm, reader, over, prog := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	received := map[string]uint64{}
	for range rounds {
		var base float64
		for _, m := range modes {
			c, r, p, got := openStorm(b, m.filter, target)
			prog[m.name] = append(prog[m.name], p)
			storm[m.name] = append(storm[m.name], c)
			reader[m.name] = append(reader[m.name], r)
			received[m.name] += got
			if m.filter == nil {
				base = c
			} else {
				over[m.name] = append(over[m.name], 100*(c-base)/base)
			}
		}
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	for _, m := range modes {
		b.ReportMetric(median(storm[m.name]), m.name+"-storm-cpu-ns/open")
		if m.filter != nil {
			b.ReportMetric(median(reader[m.name]), m.name+"-reader-cpu-ns/open")
			b.ReportMetric(median(over[m.name]), m.name+"-overhead-%")
			b.ReportMetric(float64(received[m.name])/rounds, m.name+"-events/round")
			b.ReportMetric(median(prog[m.name]), m.name+"-prog-ns/run")
		}
	}
}

// openStorm runs one storm of b.N opens of target and returns the CPU time
// per open of the storm and of this process in ns, the mean run time of the
// file program (every system call on the machine meanwhile) and the file
// events received.
func openStorm(b *testing.B, filter []FilePrefix, target string) (storm, reader, prog float64, received uint64) {
	b.Helper()
	var s *Sensors
	if filter != nil {
		var err error
		s, err = Open(b.Context(), Config{Sensors: SensorFile, ChannelSize: 1 << 16, FileFilter: filter})
		if err != nil {
			b.Skipf("open sensors: %v", err)
		}
		defer s.Close()
		defer func() {
			for _, sp := range s.progs {
				if st, err := sp.prog.Stats(); err == nil && sp.stream == streamFile && st.RunCount > 0 {
					prog = float64(st.Runtime) / float64(st.RunCount)
				}
			}
		}()
		go func() { // a consumer, as the daemon has
			for range s.File() {
			}
		}()
	}
	var self0, self1 unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &self0)
	cmd := exec.Command(os.Args[0], "-test.run=^TestOpenStormChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s", stormEnv, b.N, target))
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v: %s", err, out)
	}
	if s != nil {
		time.Sleep(2 * defaultFlush) // the last batch reaches the reader
		received = s.Stats()["file"].Received
	}
	unix.Getrusage(unix.RUSAGE_SELF, &self1)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	n := float64(b.N)
	storm = float64(ru.Utime.Nano()+ru.Stime.Nano()) / n
	reader = float64(self1.Utime.Nano()+self1.Stime.Nano()-self0.Utime.Nano()-self0.Stime.Nano()) / n
	return storm, reader, prog, received
}
