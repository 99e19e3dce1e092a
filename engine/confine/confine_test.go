package confine

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// The tests confine a child process (this test binary, re-executed with childEnv set),
// never the test process itself: confinement cannot be undone.
const (
	childEnv = "JIBRIL_CONFINE_CHILD" // which child: "apply", "daemon" or "broker"
	specEnv  = "JIBRIL_CONFINE_SPEC"  // the child's spec, JSON
)

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "apply":
		os.Exit(applyChild())
	case "daemon":
		os.Exit(daemonChild())
	case "broker":
		os.Exit(brokerChild())
	default:
		fmt.Fprintln(os.Stderr, "unknown child", os.Getenv(childEnv))
		os.Exit(3)
	}
}

// spec tells a child what to confine and where to probe.
type spec struct {
	Keep      []Cap
	Landlock  LandlockMode
	StateDir  string
	Outside   string // a directory outside the state directory
	OtherPID  int    // a process of another user, started by the test
	OtherFile string // a 0600 file of another user
	StateExe  string // an executable copied into the state directory
	KillExe   string // daemon child: kill-on-exec target
	DenyExe   string // daemon child: fanotify deny target
	ProbeExe  string // daemon child: an exec the sensors must report
	Block     string // daemon child: address blocked in nftables
}

// result is what a child prints.
type result struct {
	Step    string
	Report  Report
	Threads []ThreadStatus
	Probes  map[string]string // probe name -> "ok" or the errno name
	Links   []int             // daemon child: ids of cgroup links
	Err     string
}

func errName(err error) string {
	if err == nil {
		return "ok"
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return unix.ErrnoName(en)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "signal " + unix.SignalName(ws.Signal())
		}
		return fmt.Sprintf("exit %d", ee.ExitCode())
	}
	return err.Error()
}

func readSpec() (spec, error) {
	var s spec
	err := json.Unmarshal([]byte(os.Getenv(specEnv)), &s)
	return s, err
}

func emit(r result) {
	b, _ := json.Marshal(r)
	os.Stdout.Write(append(b, '\n'))
}

// parkThreads starts n goroutines that each hold an OS thread until the process exits,
// so that the process has threads Apply must reach.
func parkThreads(n int) {
	ready := make(chan struct{})
	for range n {
		go func() {
			runtime.LockOSThread()
			ready <- struct{}{}
			select {}
		}()
	}
	for range n {
		<-ready
	}
}

// probes tries what the confinement allows and refuses.
func probes(s spec) map[string]string {
	p := map[string]string{}
	stateFile := filepath.Join(s.StateDir, "probe")
	p["write_state"] = errName(os.WriteFile(stateFile, []byte("x"), 0o600))
	p["write_outside"] = errName(os.WriteFile(filepath.Join(s.Outside, "probe"), []byte("x"), 0o600))
	p["exec_system"] = errName(exec.Command("/bin/true").Run())
	p["exec_state"] = errName(exec.Command(s.StateExe).Run())
	p["shell_devnull"] = errName(exec.Command("/bin/sh", "-c", "echo x > /dev/null").Run())
	p["kill_other_user"] = errName(unix.Kill(s.OtherPID, 0))
	_, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.OtherPID))
	p["proc_exe_other_user"] = errName(err)
	_, err = os.Readlink(fmt.Sprintf("/proc/%d/cwd", s.OtherPID))
	p["proc_cwd_other_user"] = errName(err)
	_, err = os.ReadFile(s.OtherFile)
	p["read_other_user_file"] = errName(err)
	p["chown"] = errName(os.Chown(stateFile, 65534, 65534))
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
	if err == nil {
		unix.Close(fd)
	}
	p["raw_socket"] = errName(err)
	fd, err = unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC, unix.O_RDONLY)
	if err == nil {
		unix.Close(fd)
	}
	p["fanotify_init"] = errName(err)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err == nil {
		m.Close()
	}
	p["bpf_map_create"] = errName(err)
	fifo := make(chan error)
	go func() {
		runtime.LockOSThread() // the thread dies with the goroutine, whatever its policy
		fifo <- unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_FIFO, Priority: 1}, 0)
	}()
	p["sched_fifo"] = errName(<-fifo)
	return p
}

func applyChild() int {
	s, err := readSpec()
	if err != nil {
		emit(result{Err: "spec: " + err.Error()})
		return 1
	}
	parkThreads(4)
	rep, err := Apply(Options{Keep: s.Keep, StateDir: s.StateDir, Landlock: s.Landlock})
	if err != nil {
		emit(result{Report: rep, Err: err.Error()})
		return 1
	}
	parkThreads(4) // created after Apply: they inherit
	th, err := Threads()
	if err != nil {
		emit(result{Report: rep, Err: err.Error()})
		return 1
	}
	emit(result{Report: rep, Threads: th, Probes: probes(s)})
	return 0
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: capabilities to drop and processes of another user")
	}
}

// otherUser starts a process of uid 65534 (killed at cleanup) and a 0600 file it owns.
func otherUser(t *testing.T, dir string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "120")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	f := filepath.Join(dir, "secret")
	if err := os.WriteFile(f, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(f, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// The directory itself must be searchable by nobody for the test of DAC_READ_SEARCH
	// to be about the file, not the path.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return cmd, f
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

// startChild runs this test binary as the named child with s.
func startChild(t *testing.T, kind string, s spec, wrap ...string) (*exec.Cmd, io.WriteCloser, *bufio.Scanner, *strings.Builder) {
	t.Helper()
	js, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, wrap...), self, "-test.run=^$")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = append(os.Environ(), childEnv+"="+kind, specEnv+"="+string(js))
	stderr := &strings.Builder{}
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	return cmd, in, sc, stderr
}

func readResult(t *testing.T, sc *bufio.Scanner, stderr *strings.Builder) result {
	t.Helper()
	if !sc.Scan() {
		t.Fatalf("child printed nothing: %v\nstderr:\n%s", sc.Err(), stderr)
	}
	var r result
	if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
		t.Fatalf("child output %q: %v", sc.Text(), err)
	}
	if r.Err != "" {
		t.Fatalf("child: %s\nstderr:\n%s", r.Err, stderr)
	}
	return r
}

func ownStatus(t *testing.T) ThreadStatus {
	t.Helper()
	st, err := ReadStatus("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkMasks asserts the exact sets of every thread of a confined child.
func checkMasks(t *testing.T, r result, keep Mask, bnd Mask) {
	t.Helper()
	if r.Report.Kept != keep || r.Report.Bounding != bnd || !r.Report.NoNewPrivs {
		t.Errorf("report %+v, want kept %s bounding %s", r.Report, keep, bnd)
	}
	if len(r.Threads) < 9 || r.Report.Threads < 5 {
		t.Errorf("%d threads after Apply, %d checked by it: the child parked 8", len(r.Threads), r.Report.Threads)
	}
	for _, th := range r.Threads {
		if th.Eff != keep || th.Prm != keep || th.Inh != 0 || th.Amb != 0 || th.Bnd != bnd || !th.NoNewPrivs {
			t.Errorf("thread %d: CapEff=%s CapPrm=%s CapInh=%s CapAmb=%s CapBnd=%s NoNewPrivs=%v; want CapEff=CapPrm=%s CapInh=CapAmb=0 CapBnd=%s NoNewPrivs=1",
				th.TID, th.Eff, th.Prm, th.Inh, th.Amb, th.Bnd, th.NoNewPrivs, keep, bnd)
		}
	}
}

func TestApply(t *testing.T) {
	needRoot(t)
	own := ownStatus(t)
	ll := LandlockABI() > 0
	cases := []struct {
		name     string
		keep     []Cap
		landlock LandlockMode
		want     map[string]string
	}{
		{"daemon set with landlock", DaemonKeep(), LandlockAuto, map[string]string{
			"write_state": "ok", "write_outside": "EACCES", "exec_system": "ok", "exec_state": "EACCES",
			"shell_devnull": "ok", "kill_other_user": "ok",
			// Landlock refuses ptrace-mode access (/proc/PID/exe, cwd, fd, environ) to
			// every process outside the domain, whatever the capabilities.
			"proc_exe_other_user": "EACCES", "proc_cwd_other_user": "EACCES", "read_other_user_file": "ok",
			"chown": "EPERM", "raw_socket": "EPERM", "fanotify_init": "EPERM", "bpf_map_create": "EPERM", "sched_fifo": "EPERM",
		}},
		{"daemon set without landlock", DaemonKeep(), LandlockOff, map[string]string{
			"write_state": "ok", "write_outside": "ok", "exec_system": "ok", "exec_state": "ok",
			"shell_devnull": "ok", "kill_other_user": "ok", "proc_exe_other_user": "ok", "proc_cwd_other_user": "ok", "read_other_user_file": "ok",
			"chown": "EPERM", "raw_socket": "EPERM", "fanotify_init": "EPERM", "bpf_map_create": "EPERM", "sched_fifo": "EPERM",
		}},
		{"nothing kept", nil, LandlockOff, map[string]string{
			"write_state": "ok", "exec_system": "ok", "kill_other_user": "EPERM", "proc_exe_other_user": "EACCES",
			"read_other_user_file": "EACCES", "chown": "EPERM", "raw_socket": "EPERM", "fanotify_init": "EPERM",
			"bpf_map_create": "EPERM", "sched_fifo": "EPERM",
		}},
		{"kill only", []Cap{unix.CAP_KILL}, LandlockOff, map[string]string{
			"kill_other_user": "ok", "proc_exe_other_user": "EACCES", "read_other_user_file": "EACCES", "chown": "EPERM",
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.landlock != LandlockOff && !ll {
				t.Skip("the kernel has no Landlock")
			}
			state, outside := t.TempDir(), t.TempDir()
			other, file := otherUser(t, outside)
			exe := filepath.Join(state, "true")
			copyFile(t, "/bin/true", exe)
			s := spec{Keep: c.keep, Landlock: c.landlock, StateDir: state, Outside: outside, OtherPID: other.Process.Pid, OtherFile: file, StateExe: exe}
			cmd, _, sc, stderr := startChild(t, "apply", s)
			r := readResult(t, sc, stderr)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("child: %v\n%s", err, stderr)
			}
			keep := MaskOf(c.keep...)
			checkMasks(t, r, keep, own.Bnd&keep)
			if c.landlock != LandlockOff && (!r.Report.Landlock.Applied || r.Report.Landlock.ABI == 0) {
				t.Errorf("landlock report %+v", r.Report.Landlock)
			}
			for probe, want := range c.want {
				if got := r.Probes[probe]; got != want {
					t.Errorf("%s: %s, want %s", probe, got, want)
				}
			}
			t.Logf("kept %s (%s), bounding %s, landlock %+v, %d threads", keep, strings.Join(keep.Names(), ","), r.Report.Bounding, r.Report.Landlock, len(r.Threads))
		})
	}
}

func TestOptionsRefused(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name string
		o    Options
		want string
	}{
		{"landlock mode", Options{StateDir: dir, Landlock: "maybe"}, `landlock mode "maybe"`},
		{"no state dir", Options{}, "no state directory"},
		{"relative state dir", Options{StateDir: "var/lib"}, `state directory "var/lib" is not an absolute path`},
		{"relative read-write", Options{StateDir: dir, ReadWrite: []string{"logs"}}, `read-write path "logs"`},
		{"missing state dir", Options{StateDir: filepath.Join(dir, "nope")}, "no such file"},
		{"capability range", Options{StateDir: dir, Keep: []Cap{64}}, "capability 64 out of range"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Apply(c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Apply(%+v) = %v, want an error with %q", c.o, err, c.want)
			}
		})
	}
	// Nothing was changed on the way: this process still has what it had.
	if st := ownStatus(t); st.NoNewPrivs && os.Getenv(childEnv) == "" && os.Geteuid() == 0 && st.Eff == 0 {
		t.Fatalf("the test process lost its privileges: %+v", st)
	}
}

func TestParseStatus(t *testing.T) {
	full := "Name:\tx\nPid:\t42\nCapInh:\t0000000000000000\nCapPrm:\t0000000000081024\nCapEff:\t0000000000081024\nCapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n"
	st, err := parseStatus([]byte(full))
	if err != nil {
		t.Fatal(err)
	}
	want := ThreadStatus{TID: 42, Eff: 0x81024, Prm: 0x81024, Bnd: 0x1ffffffffff, NoNewPrivs: true, Seccomp: 2}
	if st != want {
		t.Fatalf("%+v, want %+v", st, want)
	}
	for _, c := range []struct{ name, in, want string }{
		{"no NoNewPrivs", strings.Replace(full, "NoNewPrivs:\t1\n", "", 1), "no NoNewPrivs line"},
		{"bad hex", strings.Replace(full, "CapEff:\t0000000000081024", "CapEff:\tzz", 1), `CapEff: "zz" is not a hex mask`},
		{"no CapBnd", strings.Replace(full, "CapBnd", "CapBmd", 1), "no CapBnd line"},
	} {
		if _, err := parseStatus([]byte(c.in)); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

func TestCapNames(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Cap
	}{{"CAP_KILL", 5}, {"net_admin", 12}, {" cap_bpf ", 39}, {"CAP_CHECKPOINT_RESTORE", 40}, {"chown", 0}} {
		got, err := ParseCap(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseCap(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	if _, err := ParseCap("CAP_EVERYTHING"); err == nil {
		t.Error("ParseCap accepted CAP_EVERYTHING")
	}
	m := MaskOf(DaemonKeep()...)
	if m.String() != "0000000000081024" || strings.Join(m.Names(), ",") != "CAP_DAC_READ_SEARCH,CAP_KILL,CAP_NET_ADMIN,CAP_SYS_PTRACE" {
		t.Fatalf("daemon set %s %v", m, m.Names())
	}
	if Cap(99).String() != "CAP_99" {
		t.Fatal(Cap(99).String())
	}
}

// waitExit waits for cmd and says how it ended.
func waitExit(cmd *exec.Cmd) string {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return errName(err)
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		return "timeout"
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
