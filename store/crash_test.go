package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// crashEnv tells a re-executed test binary to act as the crash child and
// names its database.
const crashEnv = "JIBRIL_STORE_CRASH_CHILD_DB"

// crashChildMax bounds the child's loop should the parent fail to kill it.
const crashChildMax = 100000

// TestHelperProcess is the child of TestCrashSafety: it writes forever and
// prints one line per write after the store acknowledged it.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(crashEnv)
	if path == "" {
		t.Skip("crash child; runs only when re-executed by TestCrashSafety")
	}
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Unbuffered: each line is one write(2), atomic on a pipe, so the
	// parent sees exactly the writes acknowledged so far.
	out := os.Stdout
	for i := 0; i < crashChildMax; i++ {
		if err := crashChildStep(ctx, s, out, i); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(3) // also the way out once the parent closes the pipe
		}
	}
	os.Exit(0)
}

func crashChildStep(ctx context.Context, s *Store, out io.Writer, i int) error {
	key, val := fmt.Sprintf("k%06d", i), fmt.Sprintf("v%06d", i)
	if err := s.Set(ctx, "crash", key, val); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(out, "kv %s %s\n", key, val); err != nil {
		return err
	}
	if err := s.Push(ctx, "crash", "", val); err != nil {
		return err
	}
	if _, err := fmt.Fprintf(out, "push %s\n", val); err != nil {
		return err
	}
	e, err := s.AppendAudit(ctx, sampleEntry(i))
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "audit %d %s\n", e.Seq, e.Hash)
	return err
}

// acks is what the child reported as acknowledged before it died.
type acks struct {
	kv     map[string]string
	pushes []string
	audit  map[int64]string
}

func TestCrashSafety(t *testing.T) {
	cases := []struct {
		name      string
		killAfter int // acknowledged lines read before SIGKILL
	}{
		{"early", 30},
		{"later", 600},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "crash.db")
			got := runAndKillChild(t, path, c.killAfter)
			checkSurvived(t, path, got)
		})
	}
}

// runAndKillChild starts the child, reads killAfter acknowledgements and
// SIGKILLs it while it is still writing.
func runAndKillChild(t *testing.T, path string, killAfter int) acks {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start child: %v", err)
	}
	waited := false
	t.Cleanup(func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	got := acks{kv: map[string]string{}, audit: map[int64]string{}}
	sc := bufio.NewScanner(stdout)
	for n := 0; n < killAfter && sc.Scan(); n++ {
		if err := got.parse(sc.Text()); err != nil {
			t.Fatal(err)
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	// Lines already in the pipe were acknowledged too.
	for sc.Scan() {
		if err := got.parse(sc.Text()); err != nil {
			t.Fatal(err)
		}
	}
	err = cmd.Wait()
	waited = true
	checkKilled(t, err, stderr.String())
	if len(got.kv) == 0 || len(got.audit) == 0 {
		t.Fatalf("child acknowledged nothing; stderr: %s", stderr.String())
	}
	return got
}

func checkKilled(t *testing.T, err error, stderr string) {
	t.Helper()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("child wait = %v; stderr: %s", err, stderr)
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, not by SIGKILL mid-stream; stderr: %s", err, stderr)
	}
}

func (a *acks) parse(line string) error {
	f := strings.Fields(line)
	switch {
	case len(f) == 3 && f[0] == "kv":
		a.kv[f[1]] = f[2]
	case len(f) == 2 && f[0] == "push":
		a.pushes = append(a.pushes, f[1])
	case len(f) == 3 && f[0] == "audit":
		seq, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return fmt.Errorf("bad child line %q: %w", line, err)
		}
		a.audit[seq] = f[2]
	default:
		return fmt.Errorf("unexpected child line %q", line)
	}
	return nil
}

// checkSurvived reopens the database and requires every acknowledged write.
// Writes committed just before the kill but not yet reported may also be
// there; that is fine.
func checkSurvived(t *testing.T, path string, a acks) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.Close()
	for k, v := range a.kv {
		got, ok, err := s.Get(ctx, "crash", k)
		if err != nil || !ok || got != v {
			t.Errorf("acknowledged %s=%s lost: got %q, %v, %v", k, v, got, ok, err)
		}
	}
	checkPushesSurvived(t, s, a.pushes)
	rep, err := s.VerifyAudit(ctx)
	if err != nil || !rep.OK || rep.Rows < int64(len(a.audit)) {
		t.Fatalf("VerifyAudit after crash = %+v, %v; acknowledged %d rows", rep, err, len(a.audit))
	}
	entries, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if h, ok := a.audit[e.Seq]; ok && h != e.Hash {
			t.Errorf("audit seq %d hash %s, acknowledged %s", e.Seq, e.Hash, h)
		}
		delete(a.audit, e.Seq)
	}
	if len(a.audit) != 0 {
		t.Errorf("acknowledged audit rows lost: %v", a.audit)
	}
}

// checkPushesSurvived pops the list: after at most one unreported push on
// top, the acknowledged values must come back in reverse order.
func checkPushesSurvived(t *testing.T, s *Store, pushes []string) {
	t.Helper()
	var popped []string
	for {
		v, ok, err := s.Pop(context.Background(), "crash", "")
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		popped = append(popped, v)
	}
	if extra := len(popped) - len(pushes); extra < 0 || extra > 1 {
		t.Fatalf("list holds %d items, %d acknowledged", len(popped), len(pushes))
	}
	popped = popped[len(popped)-len(pushes):]
	for i, v := range pushes {
		if got := popped[len(popped)-1-i]; got != v {
			t.Fatalf("list item %d = %q, want %q", i, got, v)
		}
	}
}
