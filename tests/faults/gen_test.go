package faults

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The event generator is this test binary re-executed with genEnv set: it opens one file
// genCountEnv times (openat + close, nothing else), once its parent writes a byte on stdin,
// and prints how many openat calls it made.
const (
	genEnv      = "JIBRIL_FAULTS_GEN_PATH"
	genCountEnv = "JIBRIL_FAULTS_GEN_COUNT"
)

func generatorMain() int {
	path := os.Getenv(genEnv)
	n, err := strconv.Atoi(os.Getenv(genCountEnv))
	if err != nil || n < 0 {
		fmt.Fprintln(os.Stderr, "generator: bad count")
		return 2
	}
	p, err := unix.BytePtrFromString(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "generator:", err)
		return 2
	}
	var go1 [1]byte
	if _, err := io.ReadFull(os.Stdin, go1[:]); err != nil {
		fmt.Fprintln(os.Stderr, "generator: no start signal:", err)
		return 2
	}
	// Raw system calls: one openat per event and nothing that allocates per iteration.
	atFDCWD := unix.AT_FDCWD
	made := 0
	for i := 0; i < n; i++ {
		fd, _, errno := unix.Syscall6(unix.SYS_OPENAT, uintptr(atFDCWD), uintptr(unsafe.Pointer(p)),
			uintptr(unix.O_RDONLY|unix.O_CLOEXEC), 0, 0, 0)
		made++
		if errno != 0 {
			fmt.Fprintln(os.Stderr, "generator: openat:", errno)
			fmt.Println(made)
			return 1
		}
		unix.Close(int(fd))
	}
	fmt.Println(made)
	return 0
}

// generators are running generator processes, started together.
type generators struct {
	cmds  []*exec.Cmd
	stdin []io.WriteCloser
	outs  []*strings.Builder
	start time.Time
}

// spawnGenerators starts procs generators that will open path perProc times each; they wait
// for go().
func spawnGenerators(t *testing.T, path string, procs, perProc int) *generators {
	t.Helper()
	g := &generators{}
	for i := 0; i < procs; i++ {
		cmd := exec.Command(genBin, "-test.run=^$")
		cmd.Env = append(os.Environ(), genEnv+"="+path, genCountEnv+"="+strconv.Itoa(perProc))
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		out := &strings.Builder{}
		cmd.Stdout = out
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				_ = cmd.Wait()
			}
		})
		g.cmds, g.stdin, g.outs = append(g.cmds, cmd), append(g.stdin, in), append(g.outs, out)
	}
	return g
}

// run releases the generators and waits for them; it returns the number of openat calls they
// made and how long they took.
func (g *generators) run(t *testing.T) (int, time.Duration) {
	t.Helper()
	g.start = time.Now()
	for _, in := range g.stdin {
		if _, err := in.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		in.Close()
	}
	var wg sync.WaitGroup
	errs := make([]error, len(g.cmds))
	for i, c := range g.cmds {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = c.Wait() }()
	}
	wg.Wait()
	took := time.Since(g.start)
	total := 0
	for i, out := range g.outs {
		n, err := strconv.Atoi(strings.TrimSpace(out.String()))
		if err != nil || errs[i] != nil {
			t.Fatalf("generator %d: %v, output %q", i, errs[i], out.String())
		}
		total += n
	}
	return total, took
}
