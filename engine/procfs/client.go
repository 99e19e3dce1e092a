package procfs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultTimeout bounds a request whose context has no deadline (the sensors' path: exec and
// file events). A healthy broker answers in tens of microseconds; a stuck one must not hold
// the event streams for long.
const DefaultTimeout = 250 * time.Millisecond

// StartTimeout bounds how long Spawn waits for the broker's first answer.
const StartTimeout = 10 * time.Second

// ErrBrokerGone is wrapped by every request made after the broker went away.
var ErrBrokerGone = errors.New("procfs: the /proc broker is gone")

// SpawnOptions say how to start the broker.
type SpawnOptions struct {
	// Path and Args (Args[0] included) run the broker: the daemon re-executes itself
	// (/proc/self/exe __proc-broker). The broker finds its socket at BrokerFD.
	Path string
	Args []string
	Env  []string // the broker's whole environment (nil: none)
	// Stderr receives what the broker prints (nil: discarded).
	Stderr io.Writer
	// Timeout bounds a request whose context has no deadline (0: DefaultTimeout).
	Timeout time.Duration
	// OnDeath is called once, with how the broker ended, if it goes away before Close.
	OnDeath func(error)
}

// Client is the daemon's end of the broker. It is safe for concurrent use; requests go one
// at a time (the broker answers one at a time anyway) over a blocking socket: a round trip is
// two context switches, no poller hand-offs. Each request carries an id, so a reply that
// arrives after its caller gave up is recognised and dropped by the next caller.
type Client struct {
	proc    *os.Process
	timeout time.Duration
	onDeath func(error)

	mu     sync.Mutex // one request at a time; guards what follows
	fd     int
	id     uint32
	recv   []byte
	oob    []byte
	rcvTO  time.Duration // SO_RCVTIMEO as last set
	closed bool

	closing  atomic.Bool
	gone     chan struct{} // closed when requests can no longer be answered
	goneOnce sync.Once
	goneErr  error
	exited   chan struct{} // closed when the broker process has been reaped
	exitErr  error         // how it ended, for OnDeath and the requests that fail
	waitErr  error         // what Wait said: nil after a clean exit
}

// Spawn starts the broker and returns its client. The broker is a child of a thread locked for
// its lifetime: its parent-death signal fires when that thread ends, and Go ends a thread only
// when a goroutine locked to it returns.
func Spawn(o SpawnOptions) (*Client, error) {
	if o.Path == "" || len(o.Args) == 0 {
		return nil, errors.New("proc broker: no program to run")
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("proc broker: socketpair: %w", err)
	}
	theirs := os.NewFile(uintptr(pair[1]), "proc-broker-child")
	defer theirs.Close()
	cmd := &exec.Cmd{Path: o.Path, Args: o.Args, Env: o.Env, Stderr: o.Stderr,
		// ExtraFiles[0] is BrokerFD in the child, the only descriptor it inherits besides 0-2.
		ExtraFiles: []*os.File{theirs},
		// Its own process group: a terminal's ^C is for the daemon, which then closes the socket.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}}
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	c := &Client{fd: pair[0], timeout: o.Timeout, onDeath: o.OnDeath, recv: make([]byte, maxReply+1),
		oob: make([]byte, unix.CmsgSpace(4*4)), gone: make(chan struct{}), exited: make(chan struct{})}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	// A send blocks only while the broker's receive queue is full (it stopped reading).
	if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, timeval(c.timeout)); err != nil {
		unix.Close(pair[0])
		return nil, fmt.Errorf("proc broker: %w", err)
	}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see Spawn
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		err := cmd.Wait()
		c.waitErr = err
		if err == nil {
			err = errors.New("exited")
		}
		c.exitErr = fmt.Errorf("proc broker (pid %d): %w", cmd.Process.Pid, err)
		close(c.exited)
		c.fail(c.exitErr)
		if !c.closing.Load() && c.onDeath != nil {
			c.onDeath(c.exitErr)
		}
	}()
	if err := <-started; err != nil {
		unix.Close(pair[0])
		return nil, fmt.Errorf("proc broker: start %s: %w", o.Path, err)
	}
	c.proc = cmd.Process
	// The first answer marks the broker ready: starting it (exec, runtime, confinement) can
	// take far longer than a request's timeout on a loaded host. Any reply will do, a
	// refusal included; no reply within StartTimeout and the broker is useless.
	ctx, cancel := context.WithTimeout(context.Background(), StartTimeout)
	defer cancel()
	_, err = c.Readlink(ctx, Ref{PID: int32(cmd.Process.Pid), Item: Exe})
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrBrokerGone) {
		c.Close()
		return nil, fmt.Errorf("proc broker (pid %d) did not answer its first request within %s: %w", cmd.Process.Pid, StartTimeout, err)
	}
	return c, nil
}

// Pid is the broker's process id.
func (c *Client) Pid() int { return c.proc.Pid }

// Close ends the broker (it exits when its end of the socket closes) and waits for it, at
// most two seconds before killing it. The error says how the broker ended when it did not
// exit cleanly.
func (c *Client) Close() error {
	c.closing.Store(true)
	c.fail(errors.New("closed"))
	c.mu.Lock()
	if !c.closed {
		unix.Close(c.fd)
		c.closed = true
	}
	c.mu.Unlock()
	select {
	case <-c.exited:
	case <-time.After(2 * time.Second):
		_ = c.proc.Kill()
		<-c.exited
	}
	if c.waitErr != nil {
		return fmt.Errorf("proc broker (pid %d): %w", c.proc.Pid, c.waitErr)
	}
	return nil
}

// fail makes every request from now on fail with err, and wakes a request blocked on the
// socket (shutdown, not close: the descriptor is closed by Close, under the lock, so that no
// request can find its number reused).
func (c *Client) fail(err error) {
	c.goneOnce.Do(func() {
		c.goneErr = err
		close(c.gone)
		_ = unix.Shutdown(c.fd, unix.SHUT_RDWR)
	})
}

// rightsOf takes the descriptors out of control data.
func rightsOf(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var out []int
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err == nil {
			out = append(out, fds...)
		}
	}
	return out
}

// closeAll closes descriptors, skipping -1.
func closeAll(fds []int) {
	for _, fd := range fds {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
}

// timeval is d for SO_RCVTIMEO/SO_SNDTIMEO, at least a microsecond (0 would mean forever).
func timeval(d time.Duration) *unix.Timeval {
	tv := unix.NsecToTimeval(max(d, time.Microsecond).Nanoseconds())
	return &tv
}

// do sends one request and waits for its reply, until ctx's deadline (or the client's timeout
// when ctx has none; a caller that discards late replies may wait it again per reply). The descriptor returned (-1 for none) is the caller's to close, error or
// not.
func (c *Client) do(ctx context.Context, o op, r Ref) (reply, int, error) {
	if err := r.check(o); err != nil {
		return reply{}, -1, err
	}
	if err := ctx.Err(); err != nil {
		return reply{}, -1, fmt.Errorf("%s %s: proc broker: %w", o, r, err)
	}
	deadline, hasDeadline := ctx.Deadline()
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.gone:
		return reply{}, -1, fmt.Errorf("%s %s: %w: %v", o, r, ErrBrokerGone, c.goneErr)
	default:
	}
	if c.id++; c.id == 0 {
		c.id++
	}
	id := c.id
	if err := unix.Sendmsg(c.fd, request{id: id, op: o, ref: r}.encode(), nil, nil, unix.MSG_NOSIGNAL); err != nil {
		return reply{}, -1, c.ioErr(o, r, "send", err)
	}
	for {
		// Without a deadline, the client's timeout (set once and kept: no system call).
		if to := c.timeout; hasDeadline || c.rcvTO != to {
			if hasDeadline {
				to = time.Until(deadline)
			}
			if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, timeval(to)); err != nil {
				return reply{}, -1, fmt.Errorf("%s %s: proc broker: %w", o, r, err)
			}
			c.rcvTO = to
		}
		n, oobn, flags, _, err := unix.Recvmsg(c.fd, c.recv, c.oob, unix.MSG_CMSG_CLOEXEC)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return reply{}, -1, c.ioErr(o, r, "receive", err)
		}
		if n == 0 {
			c.fail(errors.New("the broker closed its end"))
			return reply{}, -1, fmt.Errorf("%s %s: %w", o, r, ErrBrokerGone)
		}
		fds := rightsOf(c.oob[:oobn])
		var rep reply
		var rerr error
		switch {
		case n > maxReply || flags&unix.MSG_TRUNC != 0:
			rerr = fmt.Errorf("reply longer than %d bytes", maxReply)
			rep, _ = decodeReply(c.recv[:replyHeader])
		case flags&unix.MSG_CTRUNC != 0 || len(fds) > 1:
			rerr = errors.New("reply carried more descriptors than one")
			rep, _ = decodeReply(c.recv[:n])
		default:
			rep, rerr = decodeReply(c.recv[:n])
		}
		if rep.id != id { // the late answer to a request that gave up
			closeAll(fds)
			continue
		}
		if rerr != nil {
			closeAll(fds)
			return reply{}, -1, fmt.Errorf("%s %s: proc broker: %w", o, r, rerr)
		}
		rep.payload = bytes.Clone(rep.payload) // c.recv is reused by the next request
		fd := -1
		if len(fds) == 1 {
			fd = fds[0]
		}
		return rep, fd, replyErr(o, r, rep)
	}
}

// ioErr shapes a socket error: a timeout is the caller's, the rest means the broker is gone.
func (c *Client) ioErr(o op, r Ref, what string, err error) error {
	if errors.Is(err, unix.EAGAIN) {
		return fmt.Errorf("%s %s: proc broker: %s: %w", o, r, what, context.DeadlineExceeded)
	}
	select {
	case <-c.gone:
		return fmt.Errorf("%s %s: %w: %v", o, r, ErrBrokerGone, c.goneErr)
	default:
	}
	c.fail(err)
	return fmt.Errorf("%s %s: %w: %s: %v", o, r, ErrBrokerGone, what, err)
}

// replyErr is the error a reply carries, shaped as the direct read's would be.
func replyErr(o op, r Ref, rep reply) error {
	switch rep.status {
	case statusOK:
		return nil
	case statusErrno:
		return &fs.PathError{Op: o.String(), Path: r.String(), Err: syscall.Errno(rep.code)}
	}
	return fmt.Errorf("%w by the broker: %s", ErrRefused, rep.payload)
}

// Readlink implements ProcFS.
func (c *Client) Readlink(ctx context.Context, r Ref) (string, error) {
	rep, fd, err := c.do(ctx, opReadlink, r)
	closeAll([]int{fd})
	if err != nil {
		return "", err
	}
	if len(rep.payload) > MaxLink {
		return "", fmt.Errorf("readlink %s: proc broker: target of %d bytes", r, len(rep.payload))
	}
	return string(rep.payload), nil
}

// Stat implements ProcFS.
func (c *Client) Stat(ctx context.Context, r Ref) (FileInfo, error) {
	rep, fd, err := c.do(ctx, opStat, r)
	closeAll([]int{fd})
	if err != nil {
		return FileInfo{}, err
	}
	fi, err := decodeStat(rep.payload)
	if err != nil {
		return FileInfo{}, fmt.Errorf("stat %s: proc broker: %w", r, err)
	}
	return fi, nil
}

// Open implements ProcFS: the broker opens the file and sends the descriptor.
func (c *Client) Open(ctx context.Context, r Ref) (*os.File, error) {
	_, fd, err := c.do(ctx, opOpen, r)
	if err != nil {
		closeAll([]int{fd})
		return nil, err
	}
	if fd < 0 {
		return nil, fmt.Errorf("open %s: proc broker: no descriptor in the reply", r)
	}
	return os.NewFile(uintptr(fd), r.String()), nil
}

// FDs implements ProcFS, a page (one reply) at a time.
func (c *Client) FDs(ctx context.Context, pid int32) ([]FDLink, error) {
	var out []FDLink
	start := int32(0)
	for {
		rep, fd, err := c.do(ctx, opFDs, Ref{PID: pid, Arg: start})
		closeAll([]int{fd})
		if err != nil {
			return out, err
		}
		entries, err := decodeFDEntries(rep.payload)
		if err != nil {
			return out, fmt.Errorf("list %s: proc broker: %w", Ref{PID: pid}, err)
		}
		for _, e := range entries {
			if len(out) >= MaxFDs {
				return out, nil
			}
			l := FDLink{FD: e.fd, Target: e.target}
			if e.errno != 0 {
				l.Err = &fs.PathError{Op: "readlink", Path: Ref{PID: pid, Item: FD, Arg: int32(e.fd)}.String(), Err: syscall.Errno(e.errno)}
			}
			out = append(out, l)
		}
		if rep.next < 0 || len(out) >= MaxFDs {
			return out, nil
		}
		if rep.next <= start {
			return out, fmt.Errorf("list %s: proc broker: page does not advance (%d after %d)", Ref{PID: pid}, rep.next, start)
		}
		start = rep.next
	}
}

// Links adapts a ProcFS to the file sensors' path resolution (bpf.ProcLinks): the base of a
// relative path, "" when it cannot be read.
type Links struct{ FS ProcFS }

// TaskCwd is the target of /proc/TGID/task/TID/cwd.
func (l Links) TaskCwd(tgid, tid uint32) string {
	if tgid > MaxPID || tid > MaxPID {
		return ""
	}
	s, _ := l.FS.Readlink(context.Background(), Ref{PID: int32(tgid), Item: TaskCwd, Arg: int32(tid)})
	return s
}

// FDPath is the target of /proc/TGID/fd/N.
func (l Links) FDPath(tgid uint32, fd int32) string {
	if tgid > MaxPID {
		return ""
	}
	s, _ := l.FS.Readlink(context.Background(), Ref{PID: int32(tgid), Item: FD, Arg: fd})
	return s
}
