package proctable

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/kclock"
	"github.com/jibril-rt/jibril/engine/procfs"
)

// fakeClock is a settable clock for exit eviction.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func monoNow() uint64 { return uint64(kclock.Read(unix.CLOCK_MONOTONIC)) }

func TestScanFindsSelfAndParents(t *testing.T) {
	tbl := New(Options{})
	if err := tbl.Scan(context.Background()); err != nil {
		t.Fatalf("scan: %v", err)
	}
	self := int32(os.Getpid())
	p, ok := tbl.Get(self)
	if !ok {
		t.Fatal("own process not in the table")
	}
	exe, _ := os.Executable()
	if p.PPID != int32(os.Getppid()) || p.UID != uint32(os.Getuid()) || p.GID != uint32(os.Getgid()) {
		t.Errorf("ids: %+v", p)
	}
	if p.Exe != exe || !slices.Equal(p.Argv, os.Args) || !strings.HasPrefix(filepath.Base(exe), p.Comm) {
		t.Errorf("exe %q argv %q comm %q; want %q %q", p.Exe, p.Argv, p.Comm, exe, os.Args)
	}
	if !p.FromProc || p.Start == 0 || p.Start > monoNow() || p.StartTime.After(time.Now()) {
		t.Errorf("start %d (%s) not before now", p.Start, p.StartTime)
	}
	if p.Cgroup == "" || !strings.HasPrefix(p.Cgroup, "/") {
		t.Errorf("cgroup = %q", p.Cgroup)
	}
	anc := tbl.Ancestry(self)
	if len(anc) < 2 {
		t.Fatalf("ancestry too short: %+v", anc)
	}
	last, parent := anc[len(anc)-1], anc[len(anc)-2]
	if last.PID != self || parent.PID != int32(os.Getppid()) || last.PPID != parent.PID {
		t.Errorf("ancestry tail: %+v %+v", parent, last)
	}
	if anc[0].PPID != 0 {
		t.Errorf("ancestry does not reach the top: first %+v", anc[0])
	}
	for i := 1; i < len(anc); i++ {
		if anc[i].PPID != anc[i-1].PID {
			t.Errorf("ancestry broken at %d: %+v after %+v", i, anc[i], anc[i-1])
		}
	}
	if last.Cmd != strings.Join(os.Args, " ") || last.Start == "" {
		t.Errorf("self ancestor: %+v", last)
	}
}

// copyBin copies a binary into a temp dir, so the test runs a file nothing else uses.
func copyBin(t *testing.T, src string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Skipf("no %s: %v", src, err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestChildForkExecExit(t *testing.T) {
	sleep := copyBin(t, "/bin/sleep")
	clk := &fakeClock{t: time.Now()}
	tbl := New(Options{ExitedTTL: time.Minute, Now: clk.Now})
	if err := tbl.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	before := monoNow()
	cmd := exec.Command(sleep, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	child, self := int32(cmd.Process.Pid), int32(os.Getpid())

	// The real start time, from /proc, brackets the fork.
	real, err := readProc("/proc", procfs.Direct{}, child, clock{})
	if err != nil {
		t.Fatal(err)
	}
	if tick := uint64(20 * time.Millisecond); real.Start+tick < before || real.Start > monoNow()+tick {
		t.Errorf("converted start %d outside [%d, %d]", real.Start, before, monoNow())
	}
	start := real.Start + 3 // a bpf start time is exact; /proc rounds to ticks

	tbl.OnFork(bpf.ForkEvent{ParentPID: uint32(self), ParentTGID: uint32(self), ChildPID: uint32(child),
		ChildStart: start, Comm: "proctable.test"})
	forked, ok := tbl.Get(child)
	if !ok || forked.PPID != self || forked.Start != start || forked.FromProc {
		t.Fatalf("after fork: %+v", forked)
	}
	selfExe, _ := os.Executable()
	if forked.Exe != selfExe {
		t.Errorf("forked child exe = %q, want the parent's %q", forked.Exe, selfExe)
	}

	tbl.OnExec(bpf.ExecEvent{PID: uint32(child), TGID: uint32(child), PPID: uint32(self), StartTime: start,
		UID: 0, GID: 0, Comm: "sleep", Filename: sleep, Interp: sleep, Argv: []string{sleep, "30"}})
	p, ok := tbl.Get(child)
	if !ok || p.Exe != sleep || !slices.Equal(p.Argv, []string{sleep, "30"}) || p.Comm != "sleep" {
		t.Fatalf("after exec: %+v", p)
	}
	if p.PrevExe != selfExe || p.Start != start {
		t.Errorf("prev exe %q start %d", p.PrevExe, p.Start)
	}
	anc := tbl.Ancestry(child)
	if n := len(anc); n < 3 || anc[n-1].PID != child || anc[n-1].Exe != sleep || anc[n-1].Args != "30" ||
		anc[n-2].PID != self {
		t.Fatalf("ancestry: %+v", anc)
	}

	// An exit with another start time is a different process: ignored.
	tbl.OnExit(bpf.ExitEvent{TGID: uint32(child), StartTime: start + 1})
	if p, _ := tbl.Get(child); p.Exited {
		t.Error("exit of another incarnation applied")
	}

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	tbl.OnExit(bpf.ExitEvent{Time: clk.Now(), TGID: uint32(child), StartTime: start, Signal: 9, Status: 9})
	p, ok = tbl.Get(child)
	if !ok || !p.Exited || p.Signal != 9 {
		t.Fatalf("exited process not kept: %+v %v", p, ok)
	}
	if anc := tbl.Ancestry(child); len(anc) == 0 || anc[len(anc)-1].PID != child {
		t.Errorf("ancestry of an exited process: %+v", anc)
	}
	clk.Add(2 * time.Minute)
	if _, ok := tbl.Get(child); ok {
		t.Error("exited process still served after its TTL")
	}
	tbl.OnExit(bpf.ExitEvent{TGID: 1 << 30}) // any write evicts
	tbl.mu.RLock()
	_, kept := tbl.procs[child]
	tbl.mu.RUnlock()
	if kept {
		t.Error("exited process not evicted")
	}
}

func TestPIDReuse(t *testing.T) {
	tbl := New(Options{ProcRoot: t.TempDir()})
	sec := uint64(time.Second)
	tbl.OnExec(bpf.ExecEvent{TGID: 500, PPID: 1, StartTime: 10 * sec, Comm: "old", Filename: "/bin/old"})
	tbl.OnExec(bpf.ExecEvent{TGID: 500, PPID: 1, StartTime: 10 * sec, Comm: "new", Filename: "/bin/new"})
	if p, _ := tbl.Get(500); p.PrevExe != "/bin/old" {
		t.Errorf("exec of the same process: prev %q", p.PrevExe)
	}
	tbl.OnExec(bpf.ExecEvent{TGID: 500, PPID: 1, StartTime: 99 * sec, Comm: "other", Filename: "/bin/other"})
	if p, _ := tbl.Get(500); p.PrevExe != "" || p.Exe != "/bin/other" {
		t.Errorf("reused pid inherited the old process: %+v", p)
	}
	// A parent that started after its child is a reused pid: the chain stops there.
	tbl.OnExec(bpf.ExecEvent{TGID: 600, PPID: 500, StartTime: 50 * sec, Filename: "/bin/child"})
	if anc := tbl.Ancestry(600); len(anc) != 1 {
		t.Errorf("ancestry crossed a reused pid: %+v", anc)
	}
}

func TestBoundedEviction(t *testing.T) {
	clk := &fakeClock{t: time.Unix(1000, 0)}
	tbl := New(Options{ProcRoot: t.TempDir(), Max: 4, Now: clk.Now})
	for pid := uint32(1); pid <= 4; pid++ {
		tbl.OnExec(bpf.ExecEvent{TGID: pid, StartTime: uint64(pid), Filename: "/bin/x"})
	}
	tbl.OnExit(bpf.ExitEvent{TGID: 3, StartTime: 3})
	tbl.OnExec(bpf.ExecEvent{TGID: 5, StartTime: 5, Filename: "/bin/x"})
	has := func(pid int32) bool {
		tbl.mu.RLock()
		defer tbl.mu.RUnlock()
		return tbl.procs[pid] != nil
	}
	if has(3) || !has(1) || !has(5) || tbl.Len() != 4 {
		t.Errorf("exited entry not evicted first (len %d)", tbl.Len())
	}
	// No exited entry: the least recently updated goes.
	tbl.OnExec(bpf.ExecEvent{TGID: 1, StartTime: 1, Filename: "/bin/y"}) // refresh 1
	tbl.OnExec(bpf.ExecEvent{TGID: 6, StartTime: 6, Filename: "/bin/x"})
	if has(2) || !has(1) || !has(6) || tbl.Len() != 4 {
		t.Errorf("oldest live entry not evicted (len %d)", tbl.Len())
	}
}

// statLine builds a stat line with the given raw comm, ppid and starttime (field 22).
func statLine(pid int, comm string, ppid, start string) string {
	return fmt.Sprintf("%d (%s) S %s 1 1 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 1 0 %s 1000 200 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
		pid, comm, ppid, start)
}

type fakeProc struct {
	pid     int
	stat    *string // nil: no stat file
	cmdline string
	status  string
	exe     string
}

func writeFakeRoot(t *testing.T, root string, procs []fakeProc) {
	t.Helper()
	for _, p := range procs {
		dir := filepath.Join(root, fmt.Sprint(p.pid))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if p.stat != nil {
			must(t, os.WriteFile(filepath.Join(dir, "stat"), []byte(*p.stat), 0o644))
		}
		if p.cmdline != "" {
			must(t, os.WriteFile(filepath.Join(dir, "cmdline"), []byte(p.cmdline), 0o644))
		}
		if p.status != "" {
			must(t, os.WriteFile(filepath.Join(dir, "status"), []byte(p.status), 0o644))
		}
		if p.exe != "" {
			must(t, os.Symlink(p.exe, filepath.Join(dir, "exe")))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func str(s string) *string { return &s }

func TestHostileProcRoot(t *testing.T) {
	root := t.TempDir()
	huge := strings.Repeat("A\x00", 200<<10)
	procs := []fakeProc{
		{pid: 1, stat: str(statLine(1, "init", "0", "5")), cmdline: "/sbin/init\x00", exe: "/sbin/init",
			status: "Name:\tinit\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"},
		{pid: 10, stat: str(statLine(10, "a) b\n(c", "1", "100")), cmdline: "sshd: user@pts/0",
			status: "Uid:\t1000\t1000\t1000\t1000\nGid:\t50\t50\t50\t50\n", exe: "/usr/sbin/sshd (deleted)"},
		{pid: 11, stat: str(statLine(11, "selfparent", "11", "100"))},
		{pid: 12, stat: str(statLine(12, "cyc-a", "13", "100"))},
		{pid: 13, stat: str(statLine(13, "cyc-b", "12", "100"))},
		{pid: 14, stat: str("garbage without any structure")},
		{pid: 15}, // no stat at all
		{pid: 16, stat: str(statLine(99, "liar", "1", "100"))},
		{pid: 17, stat: str(statLine(17, "huge", "1", "100")), cmdline: huge,
			status: "Uid:\tnope\nGid:\n"},
		{pid: 18, stat: str("18 (" + strings.Repeat("x", 10<<10) + ") S 1 " + strings.Repeat("0 ", 20))},
		{pid: 19, stat: str(statLine(19, "badstart", "1", "-5"))},
		{pid: 20, stat: str(statLine(20, "negppid", "-3", "100"))},
		{pid: 21, stat: str("21 (short) S 1 2 3\n")},
		{pid: 22, stat: str(statLine(22, "emptycmd", "10", "100")), cmdline: "\x00\x00\x00"},
	}
	// A 200-deep chain 1000 -> 1001 -> ... with a realistic start order.
	for i := 0; i < 200; i++ {
		ppid := "1"
		if i > 0 {
			ppid = fmt.Sprint(1000 + i - 1)
		}
		procs = append(procs, fakeProc{pid: 1000 + i, stat: str(statLine(1000+i, "deep", ppid, fmt.Sprint(10+i)))})
	}
	writeFakeRoot(t, root, procs)
	must(t, os.Symlink("1", filepath.Join(root, "self")))
	must(t, os.MkdirAll(filepath.Join(root, "sys"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "0123"), nil, 0o644))

	clk := &fakeClock{t: time.Unix(1000, 0)}
	tbl := New(Options{ProcRoot: root, MaxDepth: 32, Now: clk.Now})
	if err := tbl.Scan(context.Background()); err != nil {
		t.Fatalf("scan of a hostile root: %v", err)
	}

	p, ok := tbl.Get(10)
	if !ok || p.Comm != "a) b\n(c" || p.PPID != 1 || p.UID != 1000 || p.GID != 50 {
		t.Errorf("pid 10: %+v", p)
	}
	if !slices.Equal(p.Argv, []string{"sshd: user@pts/0"}) || p.Exe != "/usr/sbin/sshd (deleted)" {
		t.Errorf("pid 10 argv %q exe %q", p.Argv, p.Exe)
	}
	if anc := tbl.Ancestry(10); len(anc) != 2 || anc[0].PID != 1 || anc[0].Exe != "/sbin/init" || anc[1].Cmd != "sshd: user@pts/0" {
		t.Errorf("ancestry of 10: %+v", anc)
	}
	if anc := tbl.Ancestry(11); len(anc) != 1 || anc[0].PID != 11 {
		t.Errorf("ppid cycle to self: %+v", anc)
	}
	if anc := tbl.Ancestry(12); len(anc) != 2 || anc[1].PID != 12 || anc[0].PID != 13 {
		t.Errorf("two-process cycle: %+v", anc)
	}
	for _, pid := range []int32{14, 15, 16, 18, 19, 20, 21, 77777} {
		if p, ok := tbl.Get(pid); ok {
			t.Errorf("pid %d accepted: %+v", pid, p)
		}
		if anc := tbl.Ancestry(pid); len(anc) != 0 {
			t.Errorf("pid %d has an ancestry: %+v", pid, anc)
		}
	}
	p17, ok := tbl.Get(17)
	if !ok || len(p17.Argv) == 0 || len(p17.Argv) > maxArgs || p17.UID != 0 {
		t.Errorf("pid 17: %d args, uid %d", len(p17.Argv), p17.UID)
	}
	if p22, ok := tbl.Get(22); !ok || p22.Argv != nil || p22.Ancestor().Cmd != "" {
		t.Errorf("pid 22: %+v", p22)
	}
	anc := tbl.Ancestry(1199)
	if len(anc) != 32 || anc[31].PID != 1199 || anc[0].PID != 1199-31 {
		t.Errorf("deep chain: %d entries, ends %+v", len(anc), anc[len(anc)-1])
	}

	// A pid that appears after the scan is read lazily; a missing one is not retried at once.
	fresh := []fakeProc{{pid: 30, stat: str(statLine(30, "late", "10", "200"))}}
	if _, ok := tbl.Get(30); ok {
		t.Fatal("pid 30 found before it exists")
	}
	writeFakeRoot(t, root, fresh)
	if _, ok := tbl.Get(30); ok {
		t.Error("missing pid retried within the negative TTL")
	}
	clk.Add(2 * negativeTTL)
	if p, ok := tbl.Get(30); !ok || p.Comm != "late" || p.PPID != 10 {
		t.Errorf("lazy read: %+v %v", p, ok)
	}
	if anc := tbl.Ancestry(30); len(anc) != 3 {
		t.Errorf("lazy ancestry: %+v", anc)
	}
}

func TestParseStat(t *testing.T) {
	cases := []struct {
		name string
		line string
		ok   bool
		comm string
	}{
		{"plain", statLine(5, "bash", "1", "42"), true, "bash"},
		{"spaces and parens", statLine(5, ") ( )", "1", "42"), true, ") ( )"},
		{"empty comm", statLine(5, "", "1", "42"), true, ""},
		{"no parens", "5 bash S 1", false, ""},
		{"reversed parens", "5 )bash( S 1", false, ""},
		{"pid not a number", "x (bash) S 1 " + strings.Repeat("0 ", 20), false, ""},
		{"long state", "5 (bash) SS 1 " + strings.Repeat("0 ", 20), false, ""},
		{"empty", "", false, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, err := parseStat([]byte(c.line))
			if (err == nil) != c.ok {
				t.Fatalf("err = %v, want ok=%v", err, c.ok)
			}
			if c.ok && (st.comm != c.comm || st.pid != 5 || st.ppid != 1 || st.startTicks != 42) {
				t.Errorf("parsed %+v", st)
			}
		})
	}
	if _, err := parseStat([]byte(statLine(5, strings.Repeat("c", 500), "1", "42"))); err != nil {
		t.Errorf("long comm: %v", err)
	} else if st, _ := parseStat([]byte(statLine(5, strings.Repeat("c", 500), "1", "42"))); len(st.comm) != maxComm {
		t.Errorf("comm not bounded: %d bytes", len(st.comm))
	}
}

func TestExePath(t *testing.T) {
	self := uint32(os.Getpid())
	cwd, _ := os.Getwd()
	exe, _ := os.Executable()
	cases := []struct {
		name string
		ev   bpf.ExecEvent
		want string
	}{
		{"absolute", bpf.ExecEvent{TGID: self, Filename: "/usr/bin/../bin/true"}, "/usr/bin/true"},
		{"relative", bpf.ExecEvent{TGID: self, Filename: "./run.sh"}, filepath.Join(cwd, "run.sh")},
		{"fexecve", bpf.ExecEvent{TGID: self, Filename: "/dev/fd/3"}, exe},
		{"empty", bpf.ExecEvent{TGID: self}, exe},
		{"gone", bpf.ExecEvent{TGID: 1 << 30, Filename: "rel"}, ""},
	}
	for _, c := range cases {
		if got := ExePath(c.ev, nil); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

func TestConcurrentReadersOneWriter(t *testing.T) {
	tbl := New(Options{ProcRoot: t.TempDir(), Max: 64})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				pid := int32(i%100 + 1)
				tbl.Get(pid)
				tbl.Ancestry(pid)
			}
		}()
	}
	for i := 0; i < 5000; i++ {
		pid := uint32(i%100 + 1)
		switch i % 3 {
		case 0:
			tbl.OnExec(bpf.ExecEvent{TGID: pid, PPID: pid - 1, StartTime: uint64(i), Filename: "/bin/x"})
		case 1:
			tbl.OnFork(bpf.ForkEvent{ParentTGID: pid, ChildPID: pid + 1, ChildStart: uint64(i)})
		default:
			tbl.OnExit(bpf.ExitEvent{TGID: pid, StartTime: uint64(i - 1)})
		}
	}
	cancel()
	wg.Wait()
	if n := tbl.Len(); n > 64 || n == 0 {
		t.Errorf("table size %d outside (0, 64]", n)
	}
}

// The clock carried by the runtime's monotonic reading must agree with clock_gettime.
func TestClockMonoToWall(t *testing.T) {
	c := newClock()
	time.Sleep(20 * time.Millisecond)
	mono := uint64(kclock.Read(unix.CLOCK_MONOTONIC))
	got, want := c.monoToWall(mono), clock{}.monoToWall(mono)
	if d := got.Sub(want); d < -50*time.Microsecond || d > 50*time.Microsecond {
		t.Fatalf("monoToWall: carried clock %v, clock_gettime %v (off by %v)", got, want, d)
	}
	if !c.monoToWall(0).IsZero() {
		t.Fatal("monoToWall(0) must be the zero time")
	}
}
