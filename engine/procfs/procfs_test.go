package procfs_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/confine"
	"github.com/jibril-rt/jibril/engine/procfs"
	"github.com/jibril-rt/jibril/engine/proctable"
	"github.com/jibril-rt/jibril/sandbox/evidence"
)

// The test binary is also the broker and the Landlocked child: TestMain picks the role.
const (
	roleEnv = "JIBRIL_PROCFS_ROLE" // "broker" or "landlocked"
	keepEnv = "JIBRIL_PROCFS_KEEP" // broker: capabilities kept, comma-separated ("" = BrokerKeep)
	specEnv = "JIBRIL_PROCFS_SPEC" // landlocked child: its spec, JSON
)

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "":
		os.Exit(m.Run())
	case "broker":
		err := procfs.ServeBroker(procfs.BrokerFD, func() error {
			keep := confine.BrokerKeep()
			if s := os.Getenv(keepEnv); s != "" {
				keep = nil
				for _, n := range strings.Split(s, ",") {
					c, err := confine.ParseCap(n)
					if err != nil {
						return err
					}
					keep = append(keep, c)
				}
			}
			_, err := confine.ApplyBroker(keep)
			return err
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "landlocked":
		os.Exit(landlockedChild())
	default:
		fmt.Fprintln(os.Stderr, "unknown role", os.Getenv(roleEnv))
		os.Exit(3)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a broker with capabilities and a process of another user")
	}
}

func self(t testing.TB) string {
	t.Helper()
	p, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// spawn starts a broker (this binary) keeping keep ("" = BrokerKeep).
func spawn(t testing.TB, keep string) (*procfs.Client, *syncBuffer) {
	t.Helper()
	stderr := &syncBuffer{}
	c, err := procfs.Spawn(procfs.SpawnOptions{Path: self(t), Args: []string{self(t), "-test.run=^$"},
		Env: []string{roleEnv + "=broker", keepEnv + "=" + keep}, Stderr: stderr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, stderr
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// target is a process of user nobody (65534) the tests read /proc of: its working directory
// is dir, it holds file open as descriptor 7, its environment has env, and its executable is
// a copy of sleep only nobody may read (mode 0700, owned by nobody, so the process stays
// dumpable and its /proc entries are nobody's).
type target struct {
	pid       int
	dir, file string
	exe       string
	env       string
}

func startTarget(t *testing.T) target {
	t.Helper()
	// Not t.TempDir(): its parent is 0700, and nobody must reach this one.
	dir, err := os.MkdirTemp("", "jprocfs-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tg := target{dir: dir, file: filepath.Join(dir, "held.txt"), exe: filepath.Join(dir, "jprocfs-sleep"),
		env: fmt.Sprintf("JPROCFS_MARK=%d", time.Now().UnixNano())}
	if err := os.WriteFile(tg.file, []byte("held"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tg.exe, b, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(tg.exe, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", "-c", `exec 7<"$1"; exec "$2" 120`, "sh", tg.file, tg.exe)
	cmd.Dir, cmd.Env = dir, []string{tg.env}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	tg.pid = cmd.Process.Pid
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", tg.pid)); exe == tg.exe {
			return tg
		}
		if time.Now().After(deadline) {
			t.Fatalf("target %d never ran %s", tg.pid, tg.exe)
		}
	}
}

// gonePID is the pid of a process that exited and was reaped.
func gonePID(t *testing.T) int32 {
	t.Helper()
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return int32(cmd.Process.Pid)
}

func readAll(t *testing.T, f *os.File, err error) string {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func errnoOf(err error) string {
	var en syscall.Errno
	if errors.As(err, &en) {
		return unix.ErrnoName(en)
	}
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// TestBrokerAnswersLikeDirect: every request the broker serves, about a process of another
// user, answers as root's direct read does; and so do the errors for a process that is gone.
func TestBrokerAnswersLikeDirect(t *testing.T) {
	needRoot(t)
	tg := startTarget(t)
	c, stderr := spawn(t, "")
	ctx := context.Background()
	var direct procfs.ProcFS = procfs.Direct{}
	pid := int32(tg.pid)
	links := []struct {
		ref  procfs.Ref
		want string
	}{
		{procfs.Ref{PID: pid, Item: procfs.Exe}, tg.exe},
		{procfs.Ref{PID: pid, Item: procfs.Cwd}, tg.dir},
		{procfs.Ref{PID: pid, Item: procfs.Root}, "/"},
		{procfs.Ref{PID: pid, Item: procfs.TaskCwd, Arg: pid}, tg.dir},
		{procfs.Ref{PID: pid, Item: procfs.FD, Arg: 7}, tg.file},
	}
	for _, l := range links {
		got, err := c.Readlink(ctx, l.ref)
		want, derr := direct.Readlink(ctx, l.ref)
		if err != nil || derr != nil || got != want || got != l.want {
			t.Errorf("readlink %s: broker %q %v, direct %q %v, want %q\n%s", l.ref, got, err, want, derr, l.want, stderr)
		}
	}
	exeRef := procfs.Ref{PID: pid, Item: procfs.Exe}
	st, err := c.Stat(ctx, exeRef)
	dst, derr := direct.Stat(ctx, exeRef)
	var real unix.Stat_t
	if uerr := unix.Stat(tg.exe, &real); uerr != nil || err != nil || derr != nil || st != dst || st.Ino != real.Ino || st.Dev != real.Dev {
		t.Errorf("stat exe: broker %+v %v, direct %+v %v, file ino %d", st, err, dst, derr, real.Ino)
	}
	for _, it := range []procfs.Item{procfs.Environ, procfs.Maps, procfs.Exe} {
		r := procfs.Ref{PID: pid, Item: it}
		f, err := c.Open(ctx, r)
		got := readAll(t, f, err)
		f, err = direct.Open(ctx, r)
		want := readAll(t, f, err)
		if got != want || got == "" {
			t.Errorf("open %s: broker and direct differ (%d and %d bytes)", r, len(got), len(want))
		}
		if it == procfs.Environ && !strings.Contains(got, tg.env) {
			t.Errorf("environ %q lacks %s", got, tg.env)
		}
	}
	fds, err := c.FDs(ctx, pid)
	dfds, derr := direct.FDs(ctx, pid)
	if err != nil || derr != nil || fmt.Sprint(fds) != fmt.Sprint(dfds) {
		t.Errorf("fds: broker %v %v, direct %v %v", fds, err, dfds, derr)
	}
	if !slices.Contains(fds, procfs.FDLink{FD: 7, Target: tg.file}) {
		t.Errorf("fds %v, want 7 -> %s among them", fds, tg.file)
	}

	// A process that is gone: the same error, ENOENT, both ways.
	gone := procfs.Ref{PID: gonePID(t), Item: procfs.Exe}
	_, err = c.Readlink(ctx, gone)
	_, derr = direct.Readlink(ctx, gone)
	if !errors.Is(err, fs.ErrNotExist) || errnoOf(err) != errnoOf(derr) || err.Error() != derr.Error() {
		t.Errorf("gone process: broker %v, direct %v", err, derr)
	}
	_, err = c.FDs(ctx, gone.PID)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("fds of a gone process: %v", err)
	}

	// Concurrent callers each get their own answer.
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				l := links[(g+i)%len(links)]
				if got, err := c.Readlink(ctx, l.ref); err != nil || got != l.want {
					errs <- fmt.Errorf("goroutine %d: readlink %s = %q, %v; want %q", g, l.ref, got, err, l.want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	// A caller whose context is done gets its context's error.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Readlink(cctx, links[0].ref); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled request: %v", err)
	}
}

// rawBroker starts a broker and returns the daemon's end of its socket, to speak the wire
// format directly (the client never sends what the broker must refuse).
func rawBroker(t *testing.T) (int, *exec.Cmd, *syncBuffer) {
	t.Helper()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	theirs := os.NewFile(uintptr(pair[1]), "theirs")
	defer theirs.Close()
	stderr := &syncBuffer{}
	cmd := exec.Command(self(t), "-test.run=^$")
	cmd.Env, cmd.Stderr, cmd.ExtraFiles = []string{roleEnv + "=broker"}, stderr, []*os.File{theirs}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(pair[0]); _ = cmd.Wait() })
	// A broker that does not answer fails the test instead of hanging it.
	if err := unix.SetsockoptTimeval(pair[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 10}); err != nil {
		t.Fatal(err)
	}
	return pair[0], cmd, stderr
}

// wireRequest lays out a request: id u32, op u8, item u8, zero u16, pid i32, arg i32.
func wireRequest(id uint32, op, item uint8, reserved uint16, pid, arg int32) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint32(b, id)
	b[4], b[5] = op, item
	binary.LittleEndian.PutUint16(b[6:], reserved)
	binary.LittleEndian.PutUint32(b[8:], uint32(pid))
	binary.LittleEndian.PutUint32(b[12:], uint32(arg))
	return b
}

// TestBrokerRefusesHostileRequests sends what a compromised daemon could: each is refused
// with a reason, and the broker goes on answering.
func TestBrokerRefusesHostileRequests(t *testing.T) {
	needRoot(t)
	fd, cmd, stderr := rawBroker(t)
	const readlink, open = 1, 3
	secret := filepath.Join(t.TempDir(), "passed-descriptor")
	if err := os.WriteFile(secret, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	sf, err := os.Open(secret)
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	cases := []struct {
		name   string
		msg    []byte
		rights []byte
		reason string
	}{
		{"pid 0", wireRequest(1, readlink, 1, 0, 0, 0), nil, "pid 0 is not in 1..4194304"},
		{"pid -1", wireRequest(2, readlink, 1, 0, -1, 0), nil, "pid -1 is not in"},
		{"huge pid", wireRequest(3, readlink, 1, 0, 1<<30, 0), nil, "pid 1073741824 is not in"},
		{"unknown operation", wireRequest(4, 9, 1, 0, 1, 0), nil, "unknown operation 9"},
		{"unknown item", wireRequest(5, readlink, 99, 0, 1, 0), nil, "readlink of item 99 is not served"},
		{"item the operation does not serve", wireRequest(6, open, uint8(procfs.Cwd), 0, 1, 0), nil, "open of item 2 is not served"},
		{"readlink of environ", wireRequest(7, readlink, uint8(procfs.Environ), 0, 1, 0), nil, "readlink of item 6 is not served"},
		{"tid 0", wireRequest(8, readlink, uint8(procfs.TaskCwd), 0, 1, 0), nil, "tid 0 is not in"},
		{"negative descriptor", wireRequest(9, readlink, uint8(procfs.FD), 0, 1, -5), nil, "descriptor -5 is not in"},
		{"argument where none is taken", wireRequest(10, readlink, uint8(procfs.Exe), 0, 1, 7), nil, "takes no argument"},
		{"reserved bytes", wireRequest(11, readlink, uint8(procfs.Exe), 0x2e2e, 1, 0), nil, "reserved bytes are not zero"},
		{"a path instead of a request", []byte("\x0c\x00\x00\x00../../../../etc/shadow"), nil, "a request is 16 bytes, got 26"},
		{"oversize", append(wireRequest(13, readlink, 1, 0, 1, 0), make([]byte, 100000)...), nil, "a request is 16 bytes, got 100016"},
		{"with a descriptor", wireRequest(14, readlink, 1, 0, 1, 0), unix.UnixRights(int(sf.Fd())), "requests carry no descriptors"},
	}
	buf := make([]byte, 70000)
	for _, c := range cases {
		if err := unix.Sendmsg(fd, c.msg, c.rights, nil, 0); err != nil {
			t.Fatalf("%s: send: %v", c.name, err)
		}
		n, err := unix.Read(fd, buf)
		if err != nil || n < 16 {
			t.Fatalf("%s: no reply (%d, %v); broker stderr:\n%s", c.name, n, err, stderr)
		}
		id, status, reason := binary.LittleEndian.Uint32(buf), buf[4], string(buf[16:n])
		if status != 2 || id != binary.LittleEndian.Uint32(c.msg) || !strings.Contains(reason, c.reason) ||
			!strings.HasPrefix(reason, "procfs: request refused: ") {
			t.Errorf("%s: reply id %d status %d %q; want id %d refused with %q", c.name, id, status, reason, binary.LittleEndian.Uint32(c.msg), c.reason)
		}
	}
	// Still serving: a valid request is answered.
	if err := unix.Sendmsg(fd, wireRequest(99, readlink, uint8(procfs.Exe), 0, int32(os.Getpid()), 0), nil, nil, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.Read(fd, buf)
	if err != nil || n < 16 || buf[4] != 0 || string(buf[16:n]) != self(t) {
		t.Fatalf("valid request after the refusals: %d bytes %v %q", n, err, buf[:max(n, 0)])
	}
	// The descriptor sent along was not kept.
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", cmd.Process.Pid, e.Name())); l == secret {
			t.Errorf("the broker kept the descriptor sent with a request (fd %s)", e.Name())
		}
	}
}

// TestBrokerLifecycle: the broker exits cleanly when the daemon closes its end, refuses to run
// unless handed its socket, and runs confined.
func TestBrokerLifecycle(t *testing.T) {
	needRoot(t)
	t.Run("confined", func(t *testing.T) {
		c, _ := spawn(t, "")
		// Answered: it is serving, so it confined itself first.
		if _, err := c.Readlink(context.Background(), procfs.Ref{PID: int32(os.Getpid()), Item: procfs.Exe}); err != nil {
			t.Fatal(err)
		}
		keep := confine.MaskOf(confine.BrokerKeep()...)
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", c.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			st, err := confine.ReadStatus(fmt.Sprintf("/proc/%d/task/%s/status", c.Pid(), task.Name()))
			if err != nil {
				t.Fatal(err)
			}
			if st.Eff != keep || st.Prm != keep || st.Bnd != keep || st.Inh != 0 || st.Amb != 0 || !st.NoNewPrivs || st.Seccomp != 2 {
				t.Errorf("broker thread %d: %+v, want CapEff=CapPrm=CapBnd=%s, no_new_privs, seccomp filter", st.TID, st, keep)
			}
		}
		// Its only socket is the one handed over (the Go runtime holds a few descriptors of
		// its own: cgroup CPU limits, the poller).
		fds, err := procfs.Direct{}.FDs(context.Background(), int32(c.Pid()))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range fds {
			if strings.HasPrefix(l.Target, "socket:") != (l.FD == procfs.BrokerFD) {
				t.Errorf("broker descriptor %d -> %s: want a socket at %d only", l.FD, l.Target, procfs.BrokerFD)
			}
		}
	})
	t.Run("exits when the client closes", func(t *testing.T) {
		c, stderr := spawn(t, "")
		pid := c.Pid()
		if err := c.Close(); err != nil {
			t.Fatalf("close: %v\n%s", err, stderr)
		}
		if err := unix.Kill(pid, 0); !errors.Is(err, unix.ESRCH) {
			t.Fatalf("broker %d still there after Close: %v", pid, err)
		}
		if _, err := c.Readlink(context.Background(), procfs.Ref{PID: 1, Item: procfs.Exe}); !errors.Is(err, procfs.ErrBrokerGone) {
			t.Fatalf("request after Close: %v", err)
		}
	})
	t.Run("dies loudly when killed", func(t *testing.T) {
		died := make(chan error, 1)
		c, err := procfs.Spawn(procfs.SpawnOptions{Path: self(t), Args: []string{self(t), "-test.run=^$"},
			Env: []string{roleEnv + "=broker"}, OnDeath: func(err error) { died <- err }})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := unix.Kill(c.Pid(), unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-died:
			if !strings.Contains(err.Error(), "signal: killed") {
				t.Errorf("OnDeath(%v), want the kill", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("OnDeath not called")
		}
		if _, err := c.Readlink(context.Background(), procfs.Ref{PID: 1, Item: procfs.Exe}); !errors.Is(err, procfs.ErrBrokerGone) {
			t.Fatalf("request after the broker died: %v", err)
		}
	})
	t.Run("refuses to run without its socket", func(t *testing.T) {
		file, err := os.Open(self(t))
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		stream, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		streamEnd := os.NewFile(uintptr(stream[1]), "stream")
		defer unix.Close(stream[0])
		defer streamEnd.Close()
		for _, c := range []struct {
			name  string
			extra []*os.File
			want  string
		}{
			// Without ExtraFiles descriptor 3 is whatever the Go runtime opened first, or none.
			{"no descriptor 3", nil, "(run only by the daemon)"},
			{"a file", []*os.File{file}, "descriptor 3 is not a socket (run only by the daemon)"},
			{"a stream socket", []*os.File{streamEnd}, "descriptor 3 is not a SOCK_SEQPACKET socket"},
		} {
			cmd := exec.Command(self(t), "-test.run=^$")
			cmd.Env, cmd.ExtraFiles = []string{roleEnv + "=broker"}, c.extra
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), c.want) {
				t.Errorf("%s: %v %q, want exit 1 with %q", c.name, err, out, c.want)
			}
		}
	})
}

// TestBrokerCapabilities measures why the broker keeps CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH:
// without either, reads about another user's process fail.
func TestBrokerCapabilities(t *testing.T) {
	needRoot(t)
	tg := startTarget(t)
	pid := int32(tg.pid)
	cases := []struct {
		keep string
		want map[string]string
	}{
		{"", map[string]string{"exe": "ok", "fd": "ok", "environ": "ok", "open_exe": "ok"}},
		// ptrace_may_access passes, but /proc/PID/fd (0500) and environ (0400) are nobody's,
		// and so is the executable (0700).
		{"CAP_SYS_PTRACE", map[string]string{"exe": "ok", "fd": "EACCES", "environ": "EACCES", "open_exe": "EACCES"}},
		// File permissions pass, ptrace_may_access does not.
		{"CAP_DAC_READ_SEARCH", map[string]string{"exe": "EACCES", "fd": "EACCES", "environ": "EACCES", "open_exe": "EACCES"}},
		// Neither: only what any process of root may read.
		{"CAP_KILL", map[string]string{"exe": "EACCES", "fd": "EACCES", "environ": "EACCES", "open_exe": "EACCES"}},
	}
	for _, c := range cases {
		t.Run("keep "+c.keep, func(t *testing.T) {
			b, stderr := spawn(t, c.keep)
			ctx := context.Background()
			got := map[string]string{}
			_, err := b.Readlink(ctx, procfs.Ref{PID: pid, Item: procfs.Exe})
			got["exe"] = errnoOf(err)
			_, err = b.Readlink(ctx, procfs.Ref{PID: pid, Item: procfs.FD, Arg: 7})
			got["fd"] = errnoOf(err)
			for name, it := range map[string]procfs.Item{"environ": procfs.Environ, "open_exe": procfs.Exe} {
				f, err := b.Open(ctx, procfs.Ref{PID: pid, Item: it})
				if err == nil {
					f.Close()
				}
				got[name] = errnoOf(err)
			}
			for k, want := range c.want {
				if got[k] != want {
					t.Errorf("%s: %s, want %s\n%s", k, got[k], want, stderr)
				}
			}
		})
	}
}

// landlockedSpec is what the Landlocked child probes.
type landlockedSpec struct {
	Target   int
	Dir, Exe string
	State    string
}

// landlockedChild starts a broker, Landlocks itself as the daemon does, then reads /proc of
// the target (outside its domain) directly and through the broker. It prints the results as
// JSON and waits for stdin to close.
func landlockedChild() int {
	var s landlockedSpec
	out := map[string]string{}
	emit := func() {
		b, _ := json.Marshal(out)
		os.Stdout.Write(append(b, '\n'))
	}
	if err := json.Unmarshal([]byte(os.Getenv(specEnv)), &s); err != nil {
		out["error"] = err.Error()
		emit()
		return 1
	}
	me, _ := os.Executable()
	c, err := procfs.Spawn(procfs.SpawnOptions{Path: me, Args: []string{me, "-test.run=^$"}, Env: []string{roleEnv + "=broker"}, Stderr: os.Stderr})
	if err != nil {
		out["error"] = err.Error()
		emit()
		return 1
	}
	out["broker_pid"] = fmt.Sprint(c.Pid())
	rep, err := confine.Apply(confine.Options{Keep: confine.DaemonKeep(), StateDir: s.State, Landlock: confine.LandlockRequire})
	if err != nil || !rep.Landlock.Applied {
		out["error"] = fmt.Sprintf("landlock: %v %+v", err, rep.Landlock)
		emit()
		return 1
	}
	ctx, pid := context.Background(), int32(s.Target)
	for name, fsys := range map[string]procfs.ProcFS{"direct": procfs.Direct{}, "broker": c} {
		for item, r := range map[string]procfs.Ref{"exe": {PID: pid, Item: procfs.Exe}, "cwd": {PID: pid, Item: procfs.Cwd},
			"fd7": {PID: pid, Item: procfs.FD, Arg: 7}} {
			v, err := fsys.Readlink(ctx, r)
			if err != nil {
				v = errnoOf(err)
			}
			out[name+"_"+item] = v
		}
		if f, err := fsys.Open(ctx, procfs.Ref{PID: pid, Item: procfs.Environ}); err != nil {
			out[name+"_environ"] = errnoOf(err)
		} else {
			b, _ := io.ReadAll(f)
			f.Close()
			out[name+"_environ"] = string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		}
		// A file event's relative path, as the feed resolves it.
		ev := bpf.FileEvent{TGID: uint32(pid), PID: uint32(pid), DirFD: bpf.AtFDCWD, Path: "sub/new.txt", Relative: true, FD: -1}
		bpf.ResolveFileEvent(&ev, procfs.Links{FS: fsys})
		out[name+"_resolved"] = ev.AbsPath
		// process.exe of a relative exec, as the process table and enrichment see it.
		out[name+"_exepath"] = proctable.ExePath(bpf.ExecEvent{TGID: uint32(pid), Filename: "./" + filepath.Base(s.Exe)}, fsys)
		col := evidence.Collector{Dir: filepath.Join(s.State, "evidence-"+name), Proc: fsys}
		if fsys == procfs.ProcFS(procfs.Direct{}) {
			col.Proc = nil // the default
		}
		dir, err := col.Collect(ctx, s.Target)
		if err != nil {
			out[name+"_evidence"] = err.Error()
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
		if err != nil {
			out[name+"_evidence"] = err.Error()
			continue
		}
		out[name+"_evidence"] = string(b)
	}
	emit()
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// TestLandlockedProcessUsesBroker: a process Landlocked as the daemon is cannot read the links
// and files of a process outside its domain, and gets them all through the broker: process.exe,
// the base of a relative file path, evidence. When it dies, the broker dies with it.
func TestLandlockedProcessUsesBroker(t *testing.T) {
	needRoot(t)
	if confine.LandlockABI() == 0 {
		t.Skip("the kernel has no Landlock")
	}
	tg := startTarget(t)
	spec, err := json.Marshal(landlockedSpec{Target: tg.pid, Dir: tg.dir, Exe: tg.exe, State: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self(t), "-test.run=^$")
	cmd.Env = []string{roleEnv + "=landlocked", specEnv + "=" + string(spec)}
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		t.Fatalf("child printed nothing: %v\n%s", sc.Err(), stderr)
	}
	var out map[string]string
	if err := json.Unmarshal(sc.Bytes(), &out); err != nil || out["error"] != "" {
		t.Fatalf("child: %v %s\n%s", err, out["error"], stderr)
	}
	want := map[string]string{
		// Landlock refuses the direct reads, whatever the capabilities...
		"direct_exe": "EACCES", "direct_cwd": "EACCES", "direct_fd7": "EACCES", "direct_environ": "EACCES",
		"direct_resolved": "", "direct_exepath": "",
		// ... and the broker answers them.
		"broker_exe": tg.exe, "broker_cwd": tg.dir, "broker_fd7": tg.file,
		"broker_resolved": filepath.Join(tg.dir, "sub/new.txt"), "broker_exepath": tg.exe,
	}
	for k, v := range want {
		if out[k] != v {
			t.Errorf("%s = %q, want %q", k, out[k], v)
		}
	}
	if !strings.Contains(out["broker_environ"], tg.env) {
		t.Errorf("broker_environ = %q, want %s in it", out["broker_environ"], tg.env)
	}
	exe, err := os.ReadFile(tg.exe)
	if err != nil {
		t.Fatal(err)
	}
	var viaBroker, direct evidence.Manifest
	if err := json.Unmarshal([]byte(out["broker_evidence"]), &viaBroker); err != nil {
		t.Fatalf("evidence through the broker: %v: %s", err, out["broker_evidence"])
	}
	if err := json.Unmarshal([]byte(out["direct_evidence"]), &direct); err != nil {
		t.Fatalf("evidence read directly: %v: %s", err, out["direct_evidence"])
	}
	if viaBroker.ExeSHA256 != sha256Hex(exe) || len(viaBroker.Errors) != 0 {
		t.Errorf("evidence through the broker: exe sha256 %q errors %v", viaBroker.ExeSHA256, viaBroker.Errors)
	}
	var names []string
	for _, f := range viaBroker.Files {
		names = append(names, f.Name)
	}
	for _, n := range []string{"environ", "maps", "cwd", "exe", "exe.sha256", "fds.json"} {
		if !strings.Contains(","+strings.Join(names, ",")+",", ","+n+",") {
			t.Errorf("evidence through the broker lacks %s: %v", n, names)
		}
	}
	if direct.ExeSHA256 != "" || len(direct.Errors) < 5 {
		t.Errorf("evidence read directly under Landlock: exe sha256 %q, errors %v; want environ, maps, cwd, exe, hash refused", direct.ExeSHA256, direct.Errors)
	}

	// The broker dies with its parent.
	var brokerPID int
	fmt.Sscan(out["broker_pid"], &brokerPID)
	if brokerPID <= 0 {
		t.Fatalf("broker pid %q", out["broker_pid"])
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", brokerPID)); err != nil || !bytes.Contains(b, []byte("-test.run")) {
			break // gone, or reaped and its pid reused
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker %d outlived its parent", brokerPID)
		}
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// BenchmarkReadlink compares a file event's path resolution read directly and through the
// broker (one round trip per link), one caller and parallel callers.
func BenchmarkReadlink(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root")
	}
	c, _ := spawn(b, "")
	pid := int32(os.Getpid())
	r := procfs.Ref{PID: pid, Item: procfs.TaskCwd, Arg: pid}
	for _, impl := range []struct {
		name string
		fs   procfs.ProcFS
	}{{"direct", procfs.Direct{}}, {"broker", c}} {
		b.Run(impl.name, func(b *testing.B) {
			ctx := context.Background()
			for b.Loop() {
				if _, err := impl.fs.Readlink(ctx, r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(impl.name+"-parallel", func(b *testing.B) {
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					if _, err := impl.fs.Readlink(ctx, r); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
