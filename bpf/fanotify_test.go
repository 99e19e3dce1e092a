package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func newDenier(t *testing.T, cfg DenierConfig) *Denier {
	t.Helper()
	needRoot(t)
	d, err := NewDenier(cfg)
	if err != nil {
		if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.EPERM) {
			t.Skipf("fanotify permission events unavailable: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("Denier.Close: %v", err)
		}
	})
	return d
}

// execCmd execs path from a shell, not from this process: Go forks with
// vfork, and its thread blocked in vfork (holding its P) while the child
// waits for the permission this process must answer can deadlock with a
// garbage collection that waits for every P.
func execCmd(path string) *exec.Cmd {
	return exec.Command("/bin/sh", "-c", `exec "$0"`, path)
}

// execErr runs path (see execCmd); an exec the shell reports refused with
// EPERM is syscall.EPERM.
func execErr(path string) error {
	out, err := execCmd(path).CombinedOutput()
	if err == nil {
		return nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 126 && strings.Contains(strings.ToLower(string(out)), syscall.EPERM.Error()) {
		return syscall.EPERM
	}
	return fmt.Errorf("%w: %s", err, out)
}

func TestDenierDeny(t *testing.T) {
	dir := t.TempDir()
	marked := copyExe(t, "/bin/true", dir, "jmarked")
	free := copyExe(t, "/bin/true", dir, "jfree")
	d := newDenier(t, DenierConfig{})
	if err := d.Mark(marked); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		if err := execErr(marked); !errors.Is(err, syscall.EPERM) {
			t.Fatalf("run %d: exec of the marked copy: %v, want EPERM", i, err)
		}
		if err := execErr(free); err != nil {
			t.Fatalf("run %d: exec of the unmarked copy: %v", i, err)
		}
	}
	if st := d.Stats(); st.Denied != 20 {
		t.Errorf("stats %+v, want 20 denied", st)
	}
	if err := d.Unmark(marked); err != nil {
		t.Fatal(err)
	}
	if err := execErr(marked); err != nil {
		t.Fatalf("exec after Unmark: %v", err)
	}
	for _, bad := range []string{dir, "/proc/self/exe", dir + "/missing"} {
		if err := d.Mark(bad); err == nil {
			t.Errorf("Mark(%s) accepted", bad)
		}
	}
}

func TestDenierDecide(t *testing.T) {
	dir := t.TempDir()
	exe := copyExe(t, "/bin/true", dir, "jasked")
	var mode atomic.Int32 // 0 allow, 1 deny, 2 too slow
	var lastPID atomic.Int32
	d := newDenier(t, DenierConfig{
		Deadline: 50 * time.Millisecond,
		Decide: func(ctx context.Context, req ExecRequest) bool {
			lastPID.Store(req.PID)
			if req.Path != exe {
				return false
			}
			switch mode.Load() {
			case 0:
				return true
			case 2:
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
				return true // too late: already denied
			}
			return false
		},
	})
	if err := d.Mark(exe); err != nil {
		t.Fatal(err)
	}
	cmd := execCmd(exe)
	if err := cmd.Run(); err != nil {
		t.Fatalf("allowed by Decide: %v", err)
	}
	if got := lastPID.Load(); got != int32(cmd.Process.Pid) {
		t.Errorf("Decide saw pid %d, want %d", got, cmd.Process.Pid)
	}
	mode.Store(1)
	if err := execErr(exe); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("denied by Decide: %v", err)
	}
	mode.Store(2)
	if err := execErr(exe); !errors.Is(err, syscall.EPERM) {
		t.Fatalf("slow Decide: %v, want EPERM (fail closed)", err)
	}
	if st := d.Stats(); st.Timeouts != 1 || st.Denied != 2 || st.Allowed != 1 {
		t.Errorf("stats %+v", st)
	}
	// Close with a mark in place: the file runs again.
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(exe); err != nil {
		t.Fatal(err)
	}
	if err := execErr(exe); err != nil {
		t.Fatalf("exec after Close: %v", err)
	}
}
