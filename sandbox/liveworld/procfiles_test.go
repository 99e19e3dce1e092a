package liveworld

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/engine/procfs"
	"github.com/jibril-rt/jibril/sandbox/fsguard"
)

func TestProcItem(t *testing.T) {
	for _, tc := range []struct {
		path string
		want procfs.Ref
		ok   bool
	}{
		{"/proc/123/environ", procfs.Ref{PID: 123, Item: procfs.Environ}, true},
		{"/proc/4194304/maps", procfs.Ref{PID: 4194304, Item: procfs.Maps}, true},
		{"/proc//123//environ", procfs.Ref{PID: 123, Item: procfs.Environ}, true},
		{"/proc/self/environ", procfs.Ref{}, false},
		{"/proc/0123/environ", procfs.Ref{}, false},
		{"/proc/0/environ", procfs.Ref{}, false},
		{"/proc/4194305/environ", procfs.Ref{}, false},
		{"/proc/123/../1/environ", procfs.Ref{}, false},
		{"/proc/123/environ/x", procfs.Ref{}, false},
		{"/proc/123/exe", procfs.Ref{}, false},
		{"/proc/123/cmdline", procfs.Ref{}, false},
		{"proc/123/environ", procfs.Ref{}, false},
		{"/etc/passwd", procfs.Ref{}, false},
	} {
		got, ok := procItem(tc.path)
		if ok != tc.ok || got != tc.want {
			t.Errorf("procItem(%q) = %+v, %v; want %+v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
}

// countingProc is the ProcFS seam with a count of the files it opened.
type countingProc struct {
	procfs.Direct
	opened []procfs.Ref
}

func (c *countingProc) Open(ctx context.Context, r procfs.Ref) (*os.File, error) {
	c.opened = append(c.opened, r)
	return c.Direct.Open(ctx, r)
}

// A reaction's read of /proc/PID/environ goes through the daemon's ProcFS (its broker under
// Landlock); other paths keep going through the guarded root.
func TestProcFilesRoutesEnvironThroughProcFS(t *testing.T) {
	root, err := fsguard.New("/")
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	cmd := exec.Command("/bin/sleep", "30")
	cmd.Env = []string{"JIBRIL_PROCFILES_MARK=42"}
	if err := cmd.Start(); err != nil {
		t.Skipf("start a child: %v", err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Start returns once the child's exec has replaced its memory, which is before the kernel
	// has laid out its arguments and environment: wait (reading /proc directly) until it has.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/environ"); len(b) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the child's environment never appeared")
		}
	}
	cp := &countingProc{}
	f := files(root, cp)
	env := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/environ"
	b, err := f.ReadFile(env, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "JIBRIL_PROCFILES_MARK=42") {
		t.Fatalf("environ %q lacks the child's variable", b)
	}
	if len(cp.opened) != 1 || cp.opened[0] != (procfs.Ref{PID: int32(cmd.Process.Pid), Item: procfs.Environ}) {
		t.Fatalf("ProcFS opened %+v, want the child's environ once", cp.opened)
	}
	if _, err := f.ReadFile(env, 4); !errors.Is(err, fsguard.ErrTooLarge) {
		t.Fatalf("a read past its limit: %v, want ErrTooLarge", err)
	}
	if _, err := f.ReadFile("/etc/hostname", 1<<16); err != nil && !os.IsNotExist(errors.Unwrap(err)) {
		t.Fatalf("a plain file: %v", err)
	}
	if len(cp.opened) != 2 {
		t.Fatalf("ProcFS opened %+v: a plain file must not go through it", cp.opened)
	}
}
