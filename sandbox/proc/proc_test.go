package proc

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the actuator signals processes and reads all of /proc")
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// copyBin copies src into a fresh temp dir as name, so that the test's
// victims are binaries nothing else runs.
func copyBin(t *testing.T, src, name string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), name)
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
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

type victim struct {
	cmd   *exec.Cmd
	pid   int
	start uint64
	done  chan error
}

// startVictim starts a process the test owns and reaps it when it exits;
// cleanup kills it if it still runs.
func startVictim(t *testing.T, path string, args ...string) *victim {
	t.Helper()
	cmd := exec.Command(path, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	v := &victim{cmd: cmd, pid: cmd.Process.Pid, done: make(chan error, 1)}
	go func() { v.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-v.done
	})
	// Wait until the exec is done so that comm and start time are final.
	want := filepath.Base(path)
	if len(want) > 15 {
		want = want[:15]
	}
	waitFor(t, "exec of "+path, func() bool {
		st, err := ReadStat(v.pid)
		return err == nil && st.Comm == want
	})
	var err error
	if v.start, err = StartTicks(v.pid); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *victim) target() Target { return Target{PID: v.pid, StartTicks: v.start} }

// alive reports whether the victim still runs (not a zombie, not reaped).
func (v *victim) alive() bool {
	st, err := ReadStat(v.pid)
	return err == nil && st.StartTicks == v.start && st.State != 'Z' && st.State != 'X'
}

func (v *victim) waitDead(t *testing.T) {
	t.Helper()
	select {
	case err := <-v.done:
		v.done <- err // let cleanup receive it too
		if err == nil {
			t.Fatalf("pid %d exited normally, want killed", v.pid)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("pid %d still not reaped", v.pid)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deadOrZombie reports whether pid with start time start no longer runs.
func deadOrZombie(pid int, start uint64) bool {
	st, err := ReadStat(pid)
	return err != nil || st.StartTicks != start || st.State == 'Z' || st.State == 'X'
}

// killPinned kills a process the test started but no longer parents.
func killPinned(pid int, start uint64) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if s, err := StartTicks(pid); err == nil && s == start {
		unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
	}
}

func TestParseStat(t *testing.T) {
	tail := " S 1234 10 10 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 987654 1000 100 18446744073709551615"
	tests := []struct {
		name, line string
		want       Stat
		err        string
	}{
		{name: "plain", line: "4321 (sleep)" + tail,
			want: Stat{PID: 4321, Comm: "sleep", State: 'S', PPID: 1234, Flags: 4194560, StartTicks: 987654}},
		{name: "comm with parens and spaces", line: "4321 (a) (b) c)" + tail,
			want: Stat{PID: 4321, Comm: "a) (b) c", State: 'S', PPID: 1234, Flags: 4194560, StartTicks: 987654}},
		{name: "comm with newline", line: "4321 (x\n) 5 6)" + tail,
			want: Stat{PID: 4321, Comm: "x\n) 5 6", State: 'S', PPID: 1234, Flags: 4194560, StartTicks: 987654}},
		{name: "kernel thread", line: "2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 1 0 0",
			want: Stat{PID: 2, Comm: "kthreadd", State: 'S', PPID: 0, Flags: 2129984, StartTicks: 1}},
		{name: "no comm", line: "4321 sleep S 1", err: "no (comm) field"},
		{name: "bad pid", line: "x (sleep)" + tail, err: "field 1 (pid)"},
		{name: "short", line: "4321 (sleep) S 1 2 3", err: "fields after comm"},
		{name: "bad state", line: "4321 (sleep) SS" + tail[2:], err: "field 3 (state)"},
		{name: "bad ppid", line: "4321 (sleep) S -5" + tail[7:], err: "field 4 (ppid)"},
		{name: "bad starttime", line: strings.Replace("4321 (sleep)"+tail, "987654", "9x", 1), err: "field 22 (starttime)"},
		{name: "empty", line: "", err: "no (comm) field"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseStat([]byte(tc.line))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestStartTicksHostileComm(t *testing.T) {
	needRoot(t)
	// The kernel takes comm from the file name: give it ")" and spaces.
	v := startVictim(t, copyBin(t, "/bin/sleep", "a) b(c"), "60")
	st, err := ReadStat(v.pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.Comm != "a) b(c" || st.PPID != os.Getpid() || st.StartTicks == 0 {
		t.Fatalf("stat = %+v", st)
	}
	self, err := StartTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self > st.StartTicks {
		t.Fatalf("the test (start %d) started after its child (start %d)", self, st.StartTicks)
	}
}

func TestAncestry(t *testing.T) {
	needRoot(t)
	v := startVictim(t, copyBin(t, "/bin/sleep", "jibril-anc"), "60")
	chain, err := Ancestry(v.pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) < 2 || chain[len(chain)-1] != v.pid || chain[len(chain)-2] != os.Getpid() {
		t.Fatalf("ancestry of %d = %v, want ... %d %d", v.pid, chain, os.Getpid(), v.pid)
	}
	for i := 1; i < len(chain); i++ {
		st, err := ReadStat(chain[i])
		if err != nil {
			t.Fatal(err)
		}
		if st.PPID != chain[i-1] {
			t.Fatalf("chain %v: parent of %d is %d", chain, chain[i], st.PPID)
		}
	}
	if st, _ := ReadStat(chain[0]); st.PPID != 0 {
		t.Fatalf("chain %v does not start at a root (ppid %d)", chain, st.PPID)
	}
	if _, err := Ancestry(-3); err == nil {
		t.Fatal("Ancestry(-3) succeeded")
	}
}

func TestKill(t *testing.T) {
	needRoot(t)
	bin := copyBin(t, "/bin/sleep", "jibril-victim")
	l := NewLive(Floor{MinPID: testMinPID})
	ctx := testCtx(t)

	t.Run("current", func(t *testing.T) {
		v := startVictim(t, bin, "60")
		code, err := l.Kill(ctx, v.target())
		if code != 0 || err != nil {
			t.Fatalf("Kill = %d, %v", code, err)
		}
		v.waitDead(t)
	})
	t.Run("no start time given", func(t *testing.T) {
		v := startVictim(t, bin, "60")
		code, err := l.Kill(ctx, Target{PID: v.pid})
		if code != 0 || err != nil {
			t.Fatalf("Kill = %d, %v", code, err)
		}
		v.waitDead(t)
	})
	t.Run("already dead", func(t *testing.T) {
		v := startVictim(t, bin, "60")
		v.cmd.Process.Kill()
		v.waitDead(t)
		code, err := l.Kill(ctx, v.target())
		if code != 1 || err != nil {
			t.Fatalf("Kill of a reaped process = %d, %v, want 1", code, err)
		}
	})
	t.Run("recycled pid", func(t *testing.T) {
		v := startVictim(t, bin, "60")
		code, err := l.Kill(ctx, Target{PID: v.pid, StartTicks: v.start + 1})
		if code != 1 || err != nil {
			t.Fatalf("Kill with a stale start time = %d, %v, want 1", code, err)
		}
		if !v.alive() {
			t.Fatal("the process that now holds the pid was killed")
		}
		if err := l.Check(Target{PID: v.pid, StartTicks: v.start + 1}); !errors.Is(err, ErrGone) {
			t.Fatalf("Check with a stale start time = %v, want ErrGone", err)
		}
	})
}

// testMinPID is the floor's min_pid for the processes the tests start: pids wrap (pid_max is
// 32768 on the CI machines), so a victim may well get a pid below DefaultMinPID.
const testMinPID = 2

func TestFloorCheck(t *testing.T) {
	needRoot(t)
	v := startVictim(t, copyBin(t, "/bin/sleep", "jibril-prot"), "60")
	// The kernel cuts comm to 15 bytes: a long protected name still matches.
	long := startVictim(t, copyBin(t, "/bin/sleep", "jibril-longname-victim"), "60")
	def := NewLive(Floor{})
	low := NewLive(Floor{MinPID: 1})
	named := NewLive(Floor{MinPID: 1, ProtectedNames: []string{"sshd", "jibril-prot", "jibril-longname-victim"}})
	tests := []struct {
		name string
		l    *Live
		pid  int
		want string
	}{
		{"pid 1", def, 1, "pid 1"},
		{"pid 1 with min pid 1", low, 1, "pid 1"},
		{"below min pid", def, 42, "pid 42 below protect.min_pid 500"},
		{"kthreadd below min pid", def, 2, "pid 2 below protect.min_pid 500"},
		{"kernel thread", low, 2, "kernel thread"},
		{"the daemon itself", low, os.Getpid(), "the daemon itself"},
		{"the daemon's parent", low, os.Getppid(), "the daemon's parent"},
		{"protected name", named, v.pid, "protected process name jibril-prot"},
		{"long protected name", named, long.pid, "protected process name jibril-longname-victim"},
		{"invalid", def, -7, "invalid pid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.l.Check(Target{PID: tc.pid})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check(%d) = %v, want %q", tc.pid, err, tc.want)
			}
			if tc.name != "invalid" && !errors.Is(err, ErrRefused) {
				t.Fatalf("Check(%d) = %v, not ErrRefused", tc.pid, err)
			}
		})
	}
	if err := NewLive(Floor{MinPID: testMinPID}).Check(v.target()); err != nil {
		t.Fatalf("Check of an ordinary process = %v", err)
	}
	t.Run("kernel thread above min pid", func(t *testing.T) {
		kt := findKernelThread(t, DefaultMinPID)
		if err := def.Check(Target{PID: kt}); err == nil || !strings.Contains(err.Error(), "kernel thread") {
			t.Fatalf("Check(kernel thread %d) = %v", kt, err)
		}
	})
}

func findKernelThread(t *testing.T, minPID int) int {
	names, err := readDirNames("/proc", 1<<22)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil || pid < minPID {
			continue
		}
		if st, err := ReadStat(pid); err == nil && st.KernelThread() {
			return pid
		}
	}
	t.Skipf("no kernel thread with pid >= %d on this machine", minPID)
	return 0
}

// TestFloorActuators proves that every actuator applies the floor, on
// targets the test owns (so a bug kills only our own process).
func TestFloorActuators(t *testing.T) {
	needRoot(t)
	v := startVictim(t, copyBin(t, "/bin/sleep", "jibril-keep"), "60")
	ctx := testCtx(t)
	floors := map[string]Floor{
		"protected name":  {MinPID: testMinPID, ProtectedNames: []string{"jibril-keep"}},
		"the daemon":      {MinPID: testMinPID, Self: v.pid},
		"its parent":      {MinPID: testMinPID, Parent: v.pid},
		"below min pid":   {MinPID: v.pid + 1},
		"another process": {MinPID: testMinPID, ProtectedNames: []string{"sshd"}},
	}
	actuators := map[string]func(*Live, context.Context, Target) (int, error){
		"Kill": (*Live).Kill, "KillTree": (*Live).KillTree, "Freeze": (*Live).Freeze, "Thaw": (*Live).Thaw,
	}
	for fname, f := range floors {
		if fname == "another process" {
			if err := NewLive(f).Check(v.target()); err != nil {
				t.Fatalf("%s: Check = %v, want allowed", fname, err)
			}
			continue
		}
		for aname, act := range actuators {
			code, err := act(NewLive(f), ctx, v.target())
			if code != -1 || !errors.Is(err, ErrRefused) {
				t.Fatalf("%s with floor %q = %d, %v, want -1 and ErrRefused", aname, fname, code, err)
			}
		}
	}
	if !v.alive() {
		t.Fatal("a refused target was killed")
	}
	if st, _ := ReadStat(v.pid); st.State == 'T' {
		t.Fatal("a refused target was stopped")
	}
}

func TestFreezeThaw(t *testing.T) {
	needRoot(t)
	v := startVictim(t, copyBin(t, "/bin/sleep", "jibril-frz"), "60")
	l := NewLive(Floor{MinPID: testMinPID})
	ctx := testCtx(t)
	state := func() byte {
		st, err := ReadStat(v.pid)
		if err != nil {
			t.Fatal(err)
		}
		return st.State
	}
	steps := []struct {
		name  string
		act   func(context.Context, Target) (int, error)
		code  int
		state func(byte) bool
	}{
		{"freeze", l.Freeze, 0, func(s byte) bool { return s == 'T' }},
		{"freeze again", l.Freeze, 1, func(s byte) bool { return s == 'T' }},
		{"thaw", l.Thaw, 0, func(s byte) bool { return s != 'T' }},
		{"thaw again", l.Thaw, 1, func(s byte) bool { return s != 'T' }},
	}
	for _, s := range steps {
		code, err := s.act(ctx, v.target())
		if code != s.code || err != nil {
			t.Fatalf("%s = %d, %v, want %d", s.name, code, err, s.code)
		}
		if st := state(); !s.state(st) {
			t.Fatalf("after %s the state is %c", s.name, st)
		}
	}
	if !v.alive() {
		t.Fatal("freeze/thaw killed the process")
	}
	v.cmd.Process.Kill()
	v.waitDead(t)
	if code, err := l.Freeze(ctx, v.target()); code != 1 || err != nil {
		t.Fatalf("Freeze of a dead process = %d, %v, want 1", code, err)
	}
	if code, err := l.Thaw(ctx, v.target()); code != 1 || err != nil {
		t.Fatalf("Thaw of a dead process = %d, %v, want 1", code, err)
	}
}

type member struct {
	pid   int
	start uint64
}

// startTree starts sh running the given commands in the background and
// waits until sh has that many children that exec'd into comm names.
func startTree(t *testing.T, bins ...string) (*victim, []member) {
	t.Helper()
	var script strings.Builder
	for _, b := range bins {
		script.WriteString("'" + b + "' 60 & ")
	}
	script.WriteString("wait")
	sh := startVictim(t, "/bin/sh", "-c", script.String())
	var kids []member
	waitFor(t, "the children of sh", func() bool {
		pids, err := children(sh.pid)
		if err != nil || len(pids) != len(bins) {
			return false
		}
		kids = kids[:0]
		for _, p := range pids {
			st, err := ReadStat(p)
			if err != nil || !strings.HasPrefix(st.Comm, "jibril-") {
				return false
			}
			kids = append(kids, member{p, st.StartTicks})
		}
		return true
	})
	t.Cleanup(func() {
		for _, k := range kids {
			killPinned(k.pid, k.start)
		}
	})
	return sh, kids
}

func TestChildrenListing(t *testing.T) {
	needRoot(t)
	bin := copyBin(t, "/bin/sleep", "jibril-kid")
	sh, kids := startTree(t, bin, bin)
	fromTasks, err := children(sh.pid)
	if err != nil {
		t.Fatal(err)
	}
	fromScan, err := scanChildren(sh.pid)
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for _, k := range kids {
		want = append(want, k.pid)
	}
	slices.Sort(want)
	if !slices.Equal(fromTasks, want) || !slices.Equal(fromScan, want) {
		t.Fatalf("children: tasks %v, scan %v, want %v", fromTasks, fromScan, want)
	}
}

func TestKillTree(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	l := NewLive(Floor{MinPID: testMinPID, ProtectedNames: []string{"jibril-keeptree"}})
	bin := copyBin(t, "/bin/sleep", "jibril-tree")

	t.Run("all dead", func(t *testing.T) {
		sh, kids := startTree(t, bin, bin)
		code, err := l.KillTree(ctx, sh.target())
		if code != 0 || err != nil {
			t.Fatalf("KillTree = %d, %v", code, err)
		}
		sh.waitDead(t)
		for _, k := range kids {
			if !deadOrZombie(k.pid, k.start) {
				t.Fatalf("child %d survived", k.pid)
			}
		}
		if code, err := l.KillTree(ctx, sh.target()); code != 1 || err != nil {
			t.Fatalf("KillTree of a dead tree = %d, %v, want 1", code, err)
		}
	})

	t.Run("nested", func(t *testing.T) {
		inner := filepath.Join(t.TempDir(), "inner.sh")
		if err := os.WriteFile(inner, []byte("#!/bin/sh\n'"+bin+"' 60 &\n'"+bin+"' 60 &\nwait\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		sh := startVictim(t, "/bin/sh", "-c", "/bin/sh '"+inner+"' & '"+bin+"' 60 & wait")
		var all []member
		waitFor(t, "three sleeps in the tree", func() bool {
			all = all[:0]
			for _, p := range descendants(sh.pid) {
				if st, err := ReadStat(p); err == nil && st.Comm == "jibril-tree" {
					all = append(all, member{p, st.StartTicks})
				}
			}
			return len(all) == 3
		})
		t.Cleanup(func() {
			for _, m := range all {
				killPinned(m.pid, m.start)
			}
		})
		code, err := l.KillTree(ctx, sh.target())
		if code != 0 || err != nil {
			t.Fatalf("KillTree = %d, %v", code, err)
		}
		sh.waitDead(t)
		for _, m := range all {
			if !deadOrZombie(m.pid, m.start) {
				t.Fatalf("grandchild %d survived", m.pid)
			}
		}
	})

	t.Run("protected member skipped", func(t *testing.T) {
		keep := copyBin(t, "/bin/sleep", "jibril-keeptree")
		sh, kids := startTree(t, bin, keep)
		code, err := l.KillTree(ctx, sh.target())
		var te *TreeError
		if code != 0 || !errors.As(err, &te) || !errors.Is(err, ErrRefused) {
			t.Fatalf("KillTree = %d, %v, want 0 and a TreeError wrapping ErrRefused", code, err)
		}
		if te.Killed != 2 || !strings.Contains(err.Error(), "protected process name jibril-keeptree") {
			t.Fatalf("TreeError = %v (killed %d)", err, te.Killed)
		}
		sh.waitDead(t)
		for _, k := range kids {
			st, _ := ReadStat(k.pid)
			if protected := st.Comm == "jibril-keeptree"; protected == deadOrZombie(k.pid, k.start) {
				t.Fatalf("child %d (%q): protected=%v but dead=%v", k.pid, st.Comm, protected, !protected)
			}
		}
	})
}

func descendants(pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		kids, _ := children(queue[0])
		queue = append(queue[1:], kids...)
		out = append(out, kids...)
	}
	return out
}

// TestKillTreeForking kills a tree whose root keeps forking: stopping the
// tree first must leave no child that escaped.
func TestKillTreeForking(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	spawn := copyBin(t, "/bin/sleep", "jibril-spawn")
	// Bounded so that a broken KillTree cannot turn into a fork bomb.
	sh := startVictim(t, "/bin/sh", "-c", "i=0; while [ $i -lt 300 ]; do '"+spawn+"' 60 & i=$((i+1)); done; wait")
	ours := func() []member {
		var out []member
		names, _ := readDirNames("/proc", 1<<22)
		for _, n := range names {
			pid, err := strconv.Atoi(n)
			if err != nil {
				continue
			}
			exe, err := os.Readlink("/proc/" + n + "/exe")
			if err != nil || exe != spawn {
				continue
			}
			if st, err := ReadStat(pid); err == nil && st.State != 'Z' {
				out = append(out, member{pid, st.StartTicks})
			}
		}
		return out
	}
	t.Cleanup(func() {
		for _, m := range ours() {
			killPinned(m.pid, m.start)
		}
	})
	waitFor(t, "the loop to fork", func() bool { return len(ours()) >= 10 })
	code, err := NewLive(Floor{MinPID: testMinPID}).KillTree(ctx, sh.target())
	if code != 0 || err != nil {
		t.Fatalf("KillTree = %d, %v", code, err)
	}
	sh.waitDead(t)
	if left := ours(); len(left) > 0 {
		t.Fatalf("%d children escaped the tree kill, e.g. pid %d", len(left), left[0].pid)
	}
}
