// Package proc is the live process actuator behind the reaction helpers
// KillCurrent, KillParent, KillProcess, KillTree, Freeze and Thaw.
//
// Every signal goes through a pidfd opened before the process is verified,
// so a pid recycled between the event and the reaction is never hit, and
// every target passes the safety floor (SPEC §4) whatever the policy says.
package proc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultMinPID is protect.min_pid when the configuration leaves it unset.
const DefaultMinPID = 500

// ErrRefused is wrapped by every refusal of the safety floor.
var ErrRefused = errors.New("refused by safety floor")

// ErrGone is wrapped when the target no longer exists: it exited, or its
// pid now names another process.
var ErrGone = errors.New("process is gone")

// Floor is the safety floor: processes that are never signalled.
type Floor struct {
	MinPID         int      // pids below it are refused; 0 means DefaultMinPID
	Self, Parent   int      // the daemon and its parent; 0 means os.Getpid/os.Getppid
	ProtectedNames []string // comm names (compared on the kernel's 15 bytes)
}

// Target names a process as the event saw it. StartTicks (field 22 of
// /proc/PID/stat) guards against a recycled pid: when non-zero and
// different from the live process's, the target is gone. Pin, when set, is
// a pidfd taken when the event was seen: the process itself, whatever has
// become of its pid since (the engine pins the pids it hands to reactions).
type Target struct {
	PID        int
	StartTicks uint64
	Pin        *os.File
}

// Live signals real processes. It holds no mutable state and is safe for
// concurrent use.
type Live struct {
	floor Floor
}

// NewLive returns an actuator that enforces f.
func NewLive(f Floor) *Live {
	if f.MinPID <= 0 {
		f.MinPID = DefaultMinPID
	}
	if f.Self == 0 {
		f.Self = os.Getpid()
	}
	if f.Parent == 0 {
		f.Parent = os.Getppid()
	}
	f.ProtectedNames = slices.Clone(f.ProtectedNames)
	return &Live{floor: f}
}

// Check applies the safety floor to t without signalling it. A target that
// no longer exists gives an error wrapping ErrGone.
func (l *Live) Check(t Target) error {
	if err := l.checkPID(t.PID); err != nil {
		return err
	}
	if t.Pin != nil {
		if err := unix.PidfdSendSignal(int(t.Pin.Fd()), 0, nil, 0); errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("pid %d: %w (the process of the event exited)", t.PID, ErrGone)
		}
	}
	st, err := ReadStat(t.PID)
	if err != nil {
		if isGone(err) {
			return fmt.Errorf("pid %d: %w", t.PID, ErrGone)
		}
		return err
	}
	if t.StartTicks != 0 && st.StartTicks != t.StartTicks {
		return fmt.Errorf("pid %d: %w (start %d, event saw %d)", t.PID, ErrGone, st.StartTicks, t.StartTicks)
	}
	return l.checkStat(st)
}

// Kill sends SIGKILL and waits, bounded by ctx, until the process has
// exited. It returns 0 when killed, 1 when the target was already gone.
func (l *Live) Kill(ctx context.Context, t Target) (int, error) {
	h, err := l.open(t)
	if errors.Is(err, ErrGone) {
		return 1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("kill: %w", err)
	}
	defer h.close()
	if err := h.signal(unix.SIGKILL); err != nil {
		if errors.Is(err, ErrGone) {
			return 1, nil
		}
		return -1, fmt.Errorf("kill: %w", err)
	}
	if err := h.waitExit(ctx); err != nil {
		return -1, fmt.Errorf("kill: %w", err)
	}
	return 0, nil
}

// Freeze stops the process with SIGSTOP and waits, bounded by ctx, until it
// shows as stopped. It returns 1 when it was already stopped or is gone.
func (l *Live) Freeze(ctx context.Context, t Target) (int, error) {
	h, err := l.open(t)
	if errors.Is(err, ErrGone) {
		return 1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("freeze: %w", err)
	}
	defer h.close()
	if h.st.State == 'T' {
		return 1, nil
	}
	if err := h.signal(unix.SIGSTOP); err != nil {
		if errors.Is(err, ErrGone) {
			return 1, nil
		}
		return -1, fmt.Errorf("freeze: %w", err)
	}
	if err := h.waitStopped(ctx); err != nil {
		return -1, fmt.Errorf("freeze: %w", err)
	}
	return 0, nil
}

// Thaw resumes a stopped process with SIGCONT. It returns 1 when the
// process is gone or was not stopped.
func (l *Live) Thaw(ctx context.Context, t Target) (int, error) {
	if err := ctx.Err(); err != nil {
		return -1, fmt.Errorf("thaw pid %d: %w", t.PID, err)
	}
	h, err := l.open(t)
	if errors.Is(err, ErrGone) {
		return 1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("thaw: %w", err)
	}
	defer h.close()
	if h.st.State != 'T' {
		return 1, nil
	}
	if err := h.signal(unix.SIGCONT); err != nil {
		if errors.Is(err, ErrGone) {
			return 1, nil
		}
		return -1, fmt.Errorf("thaw: %w", err)
	}
	return 0, nil
}

// checkPID applies the parts of the floor that need only the pid.
func (l *Live) checkPID(pid int) error {
	f := l.floor
	switch {
	case pid <= 0:
		return fmt.Errorf("pid %d: invalid pid", pid)
	case pid == 1:
		return fmt.Errorf("%w: pid 1", ErrRefused)
	case pid < f.MinPID:
		return fmt.Errorf("%w: pid %d below protect.min_pid %d", ErrRefused, pid, f.MinPID)
	case pid == f.Self:
		return fmt.Errorf("%w: pid %d is the daemon itself", ErrRefused, pid)
	case pid == f.Parent:
		return fmt.Errorf("%w: pid %d is the daemon's parent", ErrRefused, pid)
	}
	return nil
}

// checkStat applies the whole floor to a process as /proc shows it.
func (l *Live) checkStat(st Stat) error {
	if err := l.checkPID(st.PID); err != nil {
		return err
	}
	if st.KernelThread() {
		return fmt.Errorf("%w: pid %d is a kernel thread", ErrRefused, st.PID)
	}
	for _, name := range l.floor.ProtectedNames {
		// The kernel keeps 15 bytes of the name (TASK_COMM_LEN - 1).
		if name != "" && (st.Comm == name || len(name) > 15 && st.Comm == name[:15]) {
			return fmt.Errorf("%w: pid %d has protected process name %s", ErrRefused, st.PID, name)
		}
	}
	return nil
}

// handle is a verified pidfd of a process that passed the floor.
type handle struct {
	fd int
	st Stat
}

// open pins t with a pidfd, then verifies through /proc that the pinned
// process is the one the target names and that the floor allows it.
func (l *Live) open(t Target) (*handle, error) {
	return l.openAs(t, -1)
}

// openAs is open that also requires the process's parent to be ppid
// (when ppid >= 0), for walking a tree.
func (l *Live) openAs(t Target, ppid int) (*handle, error) {
	if err := l.checkPID(t.PID); err != nil {
		return nil, err
	}
	var fd int
	var err error
	if t.Pin != nil {
		// The pidfd taken with the event: a copy, so that this handle may close it.
		fd, err = unix.FcntlInt(t.Pin.Fd(), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("duplicate the pidfd of %d: %w", t.PID, err)
		}
	} else if fd, err = unix.PidfdOpen(t.PID, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("pid %d: %w", t.PID, ErrGone)
		}
		return nil, fmt.Errorf("pidfd_open %d: %w", t.PID, err)
	}
	h := &handle{fd: fd}
	fail := func(err error) (*handle, error) {
		h.close()
		return nil, err
	}
	// Read /proc only after the pidfd pins the process, then prove with
	// signal 0 that the pinned process still existed after the read: its
	// pid cannot have been reused, so what we read describes it.
	st, err := ReadStat(t.PID)
	if err != nil {
		if isGone(err) {
			return fail(fmt.Errorf("pid %d: %w", t.PID, ErrGone))
		}
		return fail(err)
	}
	h.st = st
	if err := h.signal(0); err != nil {
		return fail(err)
	}
	if t.StartTicks != 0 && st.StartTicks != t.StartTicks {
		return fail(fmt.Errorf("pid %d: %w (start %d, event saw %d)", t.PID, ErrGone, st.StartTicks, t.StartTicks))
	}
	if ppid >= 0 && st.PPID != ppid {
		return fail(fmt.Errorf("pid %d: %w (parent is now %d)", t.PID, ErrGone, st.PPID))
	}
	if st.State == 'Z' || st.State == 'X' {
		return fail(fmt.Errorf("pid %d: %w (already exited)", t.PID, ErrGone))
	}
	if err := l.checkStat(st); err != nil {
		return fail(err)
	}
	return h, nil
}

func (h *handle) close() {
	if h.fd >= 0 {
		unix.Close(h.fd)
		h.fd = -1
	}
}

func (h *handle) signal(sig unix.Signal) error {
	for {
		err := unix.PidfdSendSignal(h.fd, sig, nil, 0)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ESRCH):
			return fmt.Errorf("pid %d: %w", h.st.PID, ErrGone)
		default:
			return fmt.Errorf("pidfd_send_signal %v to pid %d: %w", sig, h.st.PID, err)
		}
	}
}

// pollSlice bounds one poll so that a cancelled ctx is noticed promptly.
const pollSlice = 50 * time.Millisecond

// waitExit waits until the pidfd reports that the process has exited.
func (h *handle) waitExit(ctx context.Context) error {
	for {
		ms := int(pollSlice / time.Millisecond)
		if dl, ok := ctx.Deadline(); ok {
			if left := time.Until(dl); left < pollSlice {
				ms = int(left/time.Millisecond) + 1
			}
		}
		fds := []unix.PollFd{{Fd: int32(h.fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, ms)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll pidfd of pid %d: %w", h.st.PID, err)
		}
		if n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("pid %d signalled but still running: %w", h.st.PID, err)
		}
	}
}

// stopPoll is how often a stopping process's state is re-read.
const stopPoll = 2 * time.Millisecond

// waitStopped waits until /proc shows the process stopped (or gone).
func (h *handle) waitStopped(ctx context.Context) error {
	for {
		st, err := ReadStat(h.st.PID)
		if err != nil {
			if isGone(err) {
				return nil
			}
			return err
		}
		if st.StartTicks != h.st.StartTicks {
			return nil
		}
		switch st.State {
		case 'T', 'Z', 'X':
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pid %d sent SIGSTOP but not stopped (state %c): %w", h.st.PID, st.State, ctx.Err())
		case <-time.After(stopPoll):
		}
	}
}

// isGone reports whether a /proc read failed because the process exited.
func isGone(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ESRCH)
}
