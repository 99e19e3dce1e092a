package shell

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// logBuf is a concurrency-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newSpec(t *testing.T, code string) (Spec, *logBuf) {
	t.Helper()
	lb := &logBuf{}
	return Spec{
		Code:     code,
		Event:    []byte(`{"uuid":"0b9e6a8e-6f1c-4c43-9d0a-3e2f5b7c9a01","event_type":"execution"}`),
		TempRoot: t.TempDir(),
		Timeout:  10 * time.Second,
		Recipe:   "test_recipe",
		Index:    1,
		Logger:   slog.New(slog.NewTextHandler(lb, nil)),
	}, lb
}

func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read temp root: %v", err)
	}
	if len(entries) != 0 {
		t.Errorf("temp root not cleaned: %v", entries)
	}
}

func TestReactionData(t *testing.T) {
	out := filepath.Join(t.TempDir(), "data.json")
	// Quotes, newlines, a dollar sign, unicode and a backslash: the shell must not touch them.
	ev := []byte("{\"uuid\":\"u-1\",\"note\":\"a \\\"quoted\\\" $HOME `x` \\\\ line\\nnext é\"}")
	spec, logs := newSpec(t, `printf '%s' "$REACTION_DATA" > "$OUT_FILE"; echo "recipe=$JIBRIL_RECIPE uuid=$JIBRIL_UUID"`)
	spec.Event = ev
	spec.Code = strings.ReplaceAll(spec.Code, "$OUT_FILE", out)
	res := Run(context.Background(), spec)
	if res.Status != StatusOK || res.ExitCode != 0 || res.Err != nil {
		t.Fatalf("run: %+v", res)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("script output file: %v", err)
	}
	if !bytes.Equal(got, ev) {
		t.Errorf("REACTION_DATA = %q, want %q", got, ev)
	}
	if want := "recipe=test_recipe uuid=u-1\n"; res.Stdout != want {
		t.Errorf("stdout = %q, want %q", res.Stdout, want)
	}
	l := logs.String()
	if !strings.Contains(l, "recipe=test_recipe") || !strings.Contains(l, "reaction=1") ||
		!strings.Contains(l, `line="recipe=test_recipe uuid=u-1"`) {
		t.Errorf("output not logged with tags:\n%s", l)
	}
	emptyDir(t, spec.TempRoot)
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		name   string
		code   string
		status Status
		exit   int
		stderr string
	}{
		{"ok", "true", StatusOK, 0, ""},
		{"exit 3", "echo boom >&2; exit 3", StatusError, 3, "boom\n"},
		{"not found", "/nonexistent/cmd", StatusError, 127, ""},
		{"syntax error", "if then fi (", StatusError, 2, ""},
		{"self kill", "kill -TERM $$", StatusError, -1, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec, _ := newSpec(t, c.code)
			res := Run(context.Background(), spec)
			if res.Status != c.status || res.ExitCode != c.exit {
				t.Fatalf("status %s exit %d, want %s %d (%+v)", res.Status, res.ExitCode, c.status, c.exit, res)
			}
			if c.status != StatusOK && res.Err == nil {
				t.Error("error status without Err")
			}
			if c.stderr != "" && res.Stderr != c.stderr {
				t.Errorf("stderr = %q, want %q", res.Stderr, c.stderr)
			}
			if c.name == "self kill" && res.Signal != int(unix.SIGTERM) {
				t.Errorf("signal = %d, want SIGTERM", res.Signal)
			}
			emptyDir(t, spec.TempRoot)
		})
	}
}

// alive reports whether pid exists and is not a zombie. The pid is one our test's script
// started and wrote down, so it is only ever inspected, never signalled.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	st, _, ok := statStateGroup(b)
	return ok && st != 'Z' && st != 'X'
}

func readPid(t *testing.T, p string) int {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("pid file holds %q", b)
	}
	return pid
}

func TestTimeoutKillsGroup(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	spec, _ := newSpec(t, "sleep 1000 & echo $! > "+pidFile+"; echo started; wait")
	spec.Timeout = 300 * time.Millisecond
	res := Run(context.Background(), spec)
	if res.Status != StatusTimeout || res.Err == nil || res.Signal != int(unix.SIGKILL) {
		t.Fatalf("want timeout with SIGKILL, got %+v", res)
	}
	if res.Stdout != "started\n" {
		t.Errorf("stdout before the kill = %q", res.Stdout)
	}
	if pid := readPid(t, pidFile); alive(pid) {
		t.Errorf("backgrounded grandchild %d survived the timeout", pid)
	}
	emptyDir(t, spec.TempRoot)
}

func TestBackgroundKilledAfterNormalExit(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	// The background child keeps stdout open: Run must not wait for it until the timeout.
	spec, _ := newSpec(t, "sleep 1000 & echo $! > "+pidFile+"; exit 0")
	res := Run(context.Background(), spec)
	if res.Status != StatusOK {
		t.Fatalf("run: %+v", res)
	}
	if pid := readPid(t, pidFile); alive(pid) {
		t.Errorf("background child %d survived the reaction", pid)
	}
}

func TestCancel(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	spec, _ := newSpec(t, "sleep 1000 & echo $! > "+pidFile+"; wait")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the script has started its child.
		for i := 0; i < 1000; i++ {
			if _, err := os.Stat(pidFile); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	res := Run(ctx, spec)
	if res.Status != StatusError || res.Err == nil || !strings.Contains(res.Err.Error(), "cancel") {
		t.Fatalf("want cancelled error, got %+v", res)
	}
	if pid := readPid(t, pidFile); alive(pid) {
		t.Errorf("child %d survived cancellation", pid)
	}

	// An already cancelled context never starts the script.
	marker := filepath.Join(t.TempDir(), "ran")
	spec2, _ := newSpec(t, "touch "+marker)
	res = Run(ctx, spec2)
	if res.Status != StatusError {
		t.Fatalf("cancelled context: %+v", res)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("script ran under a cancelled context")
	}
}

func TestPrivateWorkingDir(t *testing.T) {
	info := filepath.Join(t.TempDir(), "info")
	spec, _ := newSpec(t, `{ pwd; stat -c %a .; echo "$HOME"; echo "$TMPDIR"; } > `+info+`; mkdir -p locked/deep; touch locked/deep/f; chmod 000 locked`)
	res := Run(context.Background(), spec)
	if res.Status != StatusOK {
		t.Fatalf("run: %+v", res)
	}
	b, err := os.ReadFile(info)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 4 {
		t.Fatalf("info = %q", b)
	}
	cwd := lines[0]
	if filepath.Dir(cwd) != spec.TempRoot || !strings.HasPrefix(filepath.Base(cwd), "jibril-shell-") {
		t.Errorf("cwd %q not a fresh dir under %q", cwd, spec.TempRoot)
	}
	if lines[1] != "700" {
		t.Errorf("cwd mode = %s, want 700", lines[1])
	}
	if lines[2] != cwd || lines[3] != cwd {
		t.Errorf("HOME=%q TMPDIR=%q, want %q", lines[2], lines[3], cwd)
	}
	if _, err := os.Stat(cwd); !os.IsNotExist(err) {
		t.Errorf("private dir %s still exists (err %v)", cwd, err)
	}
	emptyDir(t, spec.TempRoot)

	// Two runs never share a directory.
	spec2, _ := newSpec(t, "pwd")
	spec2.TempRoot = spec.TempRoot
	a, b2 := Run(context.Background(), spec2), Run(context.Background(), spec2)
	if a.Stdout == "" || a.Stdout == b2.Stdout {
		t.Errorf("runs shared a working dir: %q %q", a.Stdout, b2.Stdout)
	}
}

func TestEnvironmentDoesNotLeak(t *testing.T) {
	t.Setenv("JIBRIL_TEST_SECRET", "s3cr3t")
	spec, _ := newSpec(t, "env")
	res := Run(context.Background(), spec)
	if res.Status != StatusOK {
		t.Fatalf("run: %+v", res)
	}
	if strings.Contains(res.Stdout, "s3cr3t") || strings.Contains(res.Stdout, "JIBRIL_TEST_SECRET") {
		t.Errorf("daemon environment leaked:\n%s", res.Stdout)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(res.Stdout), "\n") {
		k, v, _ := strings.Cut(l, "=")
		got[k] = v
	}
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "REACTION_DATA", "JIBRIL_RECIPE", "JIBRIL_UUID", "JIBRIL_REACTION"} {
		if _, ok := got[k]; !ok {
			t.Errorf("%s missing from the environment", k)
		}
	}
	if got["PATH"] != Path {
		t.Errorf("PATH = %q", got["PATH"])
	}
	// sh itself adds PWD (and some shells SHLVL, OLDPWD, _); nothing else may appear.
	allowed := map[string]bool{"PATH": true, "HOME": true, "TMPDIR": true, "REACTION_DATA": true,
		"JIBRIL_RECIPE": true, "JIBRIL_UUID": true, "JIBRIL_REACTION": true, "PWD": true,
		"SHLVL": true, "OLDPWD": true, "_": true}
	for k := range got {
		if !allowed[k] {
			t.Errorf("unexpected variable %s in the environment", k)
		}
	}
}

func TestOutputTruncation(t *testing.T) {
	spec, logs := newSpec(t, "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done; echo err >&2")
	spec.MaxOutput = 100
	res := Run(context.Background(), spec)
	if res.Status != StatusOK {
		t.Fatalf("run: %+v", res)
	}
	if !res.StdoutTruncated || !strings.HasSuffix(res.Stdout, TruncatedMarker) {
		t.Errorf("stdout not marked truncated: %q", res.Stdout)
	}
	if kept := strings.TrimSuffix(res.Stdout, TruncatedMarker); len(kept) != 100 || !strings.HasPrefix(kept, "line-0\nline-1\n") {
		t.Errorf("kept %d bytes: %q", len(kept), kept)
	}
	if res.StderrTruncated || res.Stderr != "err\n" {
		t.Errorf("stderr = %q truncated=%v", res.Stderr, res.StderrTruncated)
	}
	l := logs.String()
	if strings.Contains(l, "line-1999") || !strings.Contains(l, "line=line-0") ||
		!strings.Contains(l, "output truncated") {
		t.Errorf("log not bounded or truncation not logged:\n%.2000s", l)
	}
}

func TestHostileSpec(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Spec)
	}{
		{"nul in event", func(s *Spec) { s.Event = []byte("{\"a\":\"\x00\"}") }},
		{"nul in code", func(s *Spec) { s.Code = "true\x00; touch x" }},
		{"nul in recipe", func(s *Spec) { s.Recipe = "a\x00b" }},
		{"missing temp root", func(s *Spec) { s.TempRoot = "/nonexistent/jibril" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			spec, _ := newSpec(t, "true")
			c.mod(&spec)
			res := Run(context.Background(), spec)
			if res.Status != StatusError || res.Err == nil || res.ExitCode != -1 {
				t.Errorf("want a setup error, got %+v", res)
			}
		})
	}
}

// TestHelperDaemon is the "daemon" of TestDaemonCrashKillsShell, run in a child process.
func TestHelperDaemon(t *testing.T) {
	pidFile := os.Getenv("JIBRIL_SHELL_HELPER")
	if pidFile == "" {
		t.Skip("helper process only")
	}
	Run(context.Background(), Spec{Code: "echo $$ > " + pidFile + "; exec sleep 1000",
		TempRoot: filepath.Dir(pidFile), Timeout: time.Minute})
}

func TestDaemonCrashKillsShell(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	daemon := exec.Command(os.Args[0], "-test.run=^TestHelperDaemon$", "-test.count=1")
	daemon.Env = append(os.Environ(), "JIBRIL_SHELL_HELPER="+pidFile)
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = daemon.Process.Kill(); _ = daemon.Wait() })
	var pid int
	for i := 0; i < 500 && pid == 0; i++ {
		if b, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(b), "\n") {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if pid <= 1 || !alive(pid) {
		t.Fatalf("reaction did not start (pid %d)", pid)
	}
	// The daemon crashes: the reaction must not outlive it.
	_ = daemon.Process.Kill()
	_ = daemon.Wait()
	for i := 0; i < 500 && alive(pid); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if alive(pid) {
		t.Errorf("reaction %d survived the daemon", pid)
	}
}
