// Package shell runs a recipe's shell reaction (SPEC §6): `/bin/sh -c CODE` with the event as
// JSON in REACTION_DATA, a fixed minimal environment (never the daemon's), a fresh private
// temporary directory as working directory, its own process group killed as a whole on
// timeout or cancellation, and bounded output captured into the result and the log.
//
// Whether a recipe may run shell at all is the policy's business (capability "shell"); this
// package only runs what it is given.
package shell

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Status is how a shell reaction ended.
type Status string

// Statuses of a run.
const (
	StatusOK      Status = "ok"
	StatusError   Status = "error"
	StatusTimeout Status = "timeout"
)

// Defaults applied when a Spec leaves a field zero.
const (
	DefaultTimeout   = 5 * time.Second
	DefaultMaxOutput = 64 << 10
	// Path is the PATH given to every script.
	Path = "/usr/sbin:/usr/bin:/sbin:/bin"
	// TruncatedMarker ends a captured stream that hit MaxOutput.
	TruncatedMarker = "\n[output truncated]\n"
)

// Shell is the interpreter every reaction runs under.
const Shell = "/bin/sh"

// maxLogLine bounds one logged line; longer lines are cut.
const maxLogLine = 4 << 10

// groupGoneWait bounds how long Run waits for killed group members to disappear, and
// pipeDrainWait how long it waits for output after the group is gone (a member that left the
// group with setsid could hold a pipe open forever).
const (
	groupGoneWait = 2 * time.Second
	pipeDrainWait = 500 * time.Millisecond
)

// Spec is one shell reaction invocation.
type Spec struct {
	Code      string        // the script, run as /bin/sh -c Code
	Event     []byte        // the event JSON, passed as REACTION_DATA
	TempRoot  string        // parent of the private working directory ("" = os.TempDir())
	Timeout   time.Duration // 0 = DefaultTimeout
	Recipe    string        // recipe name: JIBRIL_RECIPE and log tags
	Index     int           // reaction index in the recipe: JIBRIL_REACTION and log tags
	UUID      string        // event uuid: JIBRIL_UUID ("" = read from Event)
	Logger    *slog.Logger  // nil = no logging
	MaxOutput int           // bytes kept per stream (0 = DefaultMaxOutput)
}

// Result is how a run ended. Err is set for every StatusError and StatusTimeout.
type Result struct {
	Status          Status
	ExitCode        int // -1 when killed by a signal or never started
	Signal          int // terminating signal, 0 when the shell exited
	Duration        time.Duration
	Stdout          string // at most MaxOutput bytes, then TruncatedMarker
	Stderr          string
	StdoutTruncated bool
	StderrTruncated bool
	Err             error
}

// Run executes the reaction and waits for it and its whole process group. It never returns
// while a member of the group it could kill is still alive (bounded by groupGoneWait).
func Run(ctx context.Context, s Spec) Result {
	start := time.Now()
	res := run(ctx, s)
	res.Duration = time.Since(start)
	if s.Logger != nil {
		lvl := slog.LevelInfo
		if res.Status != StatusOK {
			lvl = slog.LevelWarn
		}
		attrs := []any{"recipe", s.Recipe, "reaction", s.Index, "status", string(res.Status),
			"exit_code", res.ExitCode, "duration", res.Duration}
		if res.Err != nil {
			attrs = append(attrs, "error", res.Err.Error())
		}
		s.Logger.Log(context.Background(), lvl, "shell reaction finished", attrs...)
	}
	return res
}

func run(ctx context.Context, s Spec) Result {
	fail := func(err error) Result {
		return Result{Status: StatusError, ExitCode: -1, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return fail(fmt.Errorf("shell reaction %s#%d: not started: %w", s.Recipe, s.Index, err))
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	maxOut := s.MaxOutput
	if maxOut <= 0 {
		maxOut = DefaultMaxOutput
	}
	env, err := environment(s)
	if err != nil {
		return fail(fmt.Errorf("shell reaction %s#%d: %w", s.Recipe, s.Index, err))
	}
	if bytes.IndexByte([]byte(s.Code), 0) >= 0 {
		return fail(fmt.Errorf("shell reaction %s#%d: code contains a NUL byte", s.Recipe, s.Index))
	}

	root := s.TempRoot
	if root == "" {
		root = os.TempDir()
	}
	dir, err := os.MkdirTemp(root, "jibril-shell-")
	if err != nil {
		return fail(fmt.Errorf("shell reaction %s#%d: create private dir under %s: %w",
			s.Recipe, s.Index, root, err))
	}
	defer removeAll(dir, s.Logger)
	if err := os.Chmod(dir, 0o700); err != nil {
		return fail(fmt.Errorf("shell reaction %s#%d: chmod private dir %s: %w", s.Recipe, s.Index, dir, err))
	}
	env = append(env, "HOME="+dir, "TMPDIR="+dir)

	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("shell reaction %s#%d: stdout pipe: %w", s.Recipe, s.Index, err))
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return fail(fmt.Errorf("shell reaction %s#%d: stderr pipe: %w", s.Recipe, s.Index, err))
	}

	// Pdeathsig fires when the thread that forked the shell ends, not the process. Go ends a
	// thread only when a goroutine locked to it exits (as namespace helpers do): keeping this
	// thread locked until the shell is reaped means no one else can end it meanwhile.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	cmd := &exec.Cmd{
		Path:   Shell,
		Args:   []string{"sh", "-c", s.Code},
		Env:    env,
		Dir:    dir,
		Stdout: outW, // *os.File: handed to the child directly, no copying goroutine
		Stderr: errW,
		SysProcAttr: &syscall.SysProcAttr{
			Setpgid: true,
			// The shell dies with the daemon.
			Pdeathsig: syscall.SIGKILL,
		},
	}
	startErr := cmd.Start()
	outW.Close()
	errW.Close()
	if startErr != nil {
		outR.Close()
		errR.Close()
		return fail(fmt.Errorf("shell reaction %s#%d: start %s: %w", s.Recipe, s.Index, Shell, startErr))
	}
	pgid := cmd.Process.Pid

	stdout := newCapture(maxOut, s, "stdout")
	stderr := newCapture(maxOut, s, "stderr")
	var readers sync.WaitGroup
	readers.Add(2)
	go func() { defer readers.Done(); stdout.drain(outR) }()
	go func() { defer readers.Done(); stderr.drain(errR) }()

	// The group is killed only while the shell is unreaped: its pid, which is the group id,
	// cannot be reused until then, so the kill never reaches a stranger.
	var mu sync.Mutex
	reaped := false
	killGroup := func() {
		mu.Lock()
		defer mu.Unlock()
		if !reaped {
			_ = unix.Kill(-pgid, unix.SIGKILL)
		}
	}

	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		<-runCtx.Done()
		killGroup()
	}()

	waitExited(pgid)
	// Whatever the script left in the background dies with it.
	killGroup()
	waitGroupGone(pgid)
	mu.Lock()
	reaped = true
	mu.Unlock()
	waitErr := cmd.Wait()
	cancel() // keeps DeadlineExceeded when the deadline came first
	<-watchDone

	// Output is complete once every writer is gone; a writer that escaped the group is cut off.
	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(pipeDrainWait):
		_ = outR.SetReadDeadline(time.Now())
		_ = errR.SetReadDeadline(time.Now())
		<-drained
	}
	outR.Close()
	errR.Close()

	res := Result{ExitCode: -1}
	res.Stdout, res.StdoutTruncated = stdout.result()
	res.Stderr, res.StderrTruncated = stderr.result()
	if ps := cmd.ProcessState; ps != nil {
		res.ExitCode = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Signal = int(ws.Signal())
		}
	}
	timedOut := errors.Is(runCtx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
	switch {
	case timedOut && res.Signal == int(unix.SIGKILL):
		res.Status = StatusTimeout
		res.Err = fmt.Errorf("shell reaction %s#%d: timed out after %s, process group killed",
			s.Recipe, s.Index, timeout)
	case ctx.Err() != nil && res.Signal == int(unix.SIGKILL):
		res.Status = StatusError
		res.Err = fmt.Errorf("shell reaction %s#%d: cancelled, process group killed: %w",
			s.Recipe, s.Index, ctx.Err())
	case res.ExitCode == 0:
		res.Status = StatusOK
	case res.Signal != 0:
		res.Status = StatusError
		res.Err = fmt.Errorf("shell reaction %s#%d: killed by signal %d", s.Recipe, s.Index, res.Signal)
	default:
		res.Status = StatusError
		res.Err = fmt.Errorf("shell reaction %s#%d: exit status %d", s.Recipe, s.Index, res.ExitCode)
		if waitErr != nil && res.ExitCode < 0 {
			res.Err = fmt.Errorf("shell reaction %s#%d: wait: %w", s.Recipe, s.Index, waitErr)
		}
	}
	return res
}

// environment builds the fixed environment (without HOME/TMPDIR, added once the directory
// exists). Nothing of the daemon's own environment is passed on.
func environment(s Spec) ([]string, error) {
	if bytes.IndexByte(s.Event, 0) >= 0 {
		return nil, errors.New("event JSON contains a NUL byte")
	}
	uuid := s.UUID
	if uuid == "" && len(s.Event) > 0 {
		var head struct {
			UUID string `json:"uuid"`
		}
		if json.Unmarshal(s.Event, &head) == nil {
			uuid = head.UUID
		}
	}
	for _, kv := range []struct{ k, v string }{{"JIBRIL_RECIPE", s.Recipe}, {"JIBRIL_UUID", uuid}} {
		if bytes.IndexByte([]byte(kv.v), 0) >= 0 {
			return nil, fmt.Errorf("%s contains a NUL byte", kv.k)
		}
	}
	return []string{
		"PATH=" + Path,
		"REACTION_DATA=" + string(s.Event),
		"JIBRIL_RECIPE=" + s.Recipe,
		"JIBRIL_REACTION=" + strconv.Itoa(s.Index),
		"JIBRIL_UUID=" + uuid,
	}, nil
}

// waitExited blocks until pid has exited without reaping it (WNOWAIT).
func waitExited(pid int) {
	for {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			return
		}
	}
}

// waitGroupGone polls until no member of the group is left to signal. Killed members are
// reaped by their new parent (init or a subreaper), normally within milliseconds.
func waitGroupGone(pgid int) {
	deadline := time.Now().Add(groupGoneWait)
	for delay := 100 * time.Microsecond; time.Now().Before(deadline); delay = min(delay*2, 20*time.Millisecond) {
		if members, _ := groupMembers(pgid); members == 0 {
			return
		}
		time.Sleep(delay)
	}
}

// groupMembers counts live (non-zombie) members of the group other than its leader, which is
// our own unreaped child. It reads /proc; a process that vanishes meanwhile is skipped.
func groupMembers(pgid int) (int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || pid == pgid {
			continue
		}
		b, err := readSmall("/proc/" + name + "/stat")
		if err != nil {
			continue
		}
		state, pg, ok := statStateGroup(b)
		if ok && pg == pgid && state != 'Z' && state != 'X' {
			n++
		}
	}
	return n, nil
}

func readSmall(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, 4<<10))
}

// statStateGroup reads the state (field 3) and process group (field 5) of a stat line. The
// comm field may hold anything, so parsing starts after the last ')'.
func statStateGroup(b []byte) (byte, int, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 3 || len(f[0]) != 1 {
		return 0, 0, false
	}
	pg, err := strconv.Atoi(string(f[2]))
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], pg, true
}

// removeAll deletes the private directory, making sub-directories the script locked
// (chmod 000) writable first.
func removeAll(dir string, log *slog.Logger) {
	if os.RemoveAll(dir) == nil {
		return
	}
	_ = unlockTree(dir)
	if err := os.RemoveAll(dir); err != nil && log != nil {
		log.Warn("shell reaction: remove private dir", "dir", dir, "error", err.Error())
	}
}

func unlockTree(dir string) error {
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.IsDir() {
			_ = unlockTree(dir + "/" + e.Name())
		}
	}
	return nil
}

// capture keeps the first max bytes of a stream and logs it line by line.
type capture struct {
	max       int
	buf       bytes.Buffer
	truncated bool
	line      []byte
	log       *slog.Logger
	recipe    string
	index     int
	stream    string
}

func newCapture(max int, s Spec, stream string) *capture {
	return &capture{max: max, log: s.Logger, recipe: s.Recipe, index: s.Index, stream: stream}
}

// drain reads r to its end (or a read deadline), keeping and logging what fits.
func (c *capture) drain(r io.Reader) {
	chunk := make([]byte, 32<<10)
	for {
		n, err := r.Read(chunk)
		if n > 0 {
			c.write(chunk[:n])
		}
		if err != nil {
			break
		}
	}
	c.flushLine()
}

func (c *capture) write(p []byte) {
	if room := c.max - c.buf.Len(); room > 0 {
		keep := min(room, len(p))
		c.buf.Write(p[:keep])
		c.logBytes(p[:keep])
		if keep < len(p) {
			c.truncated = true
		}
	} else if len(p) > 0 {
		c.truncated = true
	}
}

func (c *capture) logBytes(p []byte) {
	if c.log == nil {
		return
	}
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			room := maxLogLine - len(c.line)
			c.line = append(c.line, p[:min(room, len(p))]...)
			return
		}
		room := maxLogLine - len(c.line)
		c.line = append(c.line, p[:min(room, i)]...)
		c.flushLine()
		p = p[i+1:]
	}
}

func (c *capture) flushLine() {
	if c.log == nil || len(c.line) == 0 {
		return
	}
	c.log.Info("shell reaction output", "recipe", c.recipe, "reaction", c.index,
		"stream", c.stream, "line", string(c.line))
	c.line = c.line[:0]
}

func (c *capture) result() (string, bool) {
	if c.truncated {
		if c.log != nil {
			c.log.Warn("shell reaction output truncated", "recipe", c.recipe, "reaction", c.index,
				"stream", c.stream, "kept_bytes", c.max)
		}
		return c.buf.String() + TruncatedMarker, true
	}
	return c.buf.String(), false
}
