package bpf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// ExecRequest is a pending exec of a marked file, as given to a Decider.
type ExecRequest struct {
	PID  int32  // the process calling exec
	File FileID // the marked file
	Path string // its path now (best effort, from the event's descriptor)
}

// DenierConfig tunes a Denier.
type DenierConfig struct {
	// Decide, when set, is asked about each exec of a marked file and
	// returns true to allow it. Its context carries the deadline; with no
	// answer in time the exec is denied. Without Decide, marked execs are
	// always denied.
	Decide func(ctx context.Context, req ExecRequest) bool
	// Deadline bounds a decision (default 100 ms). The exec waits for it.
	Deadline time.Duration
	// MaxPending bounds the decisions in flight (default 64); beyond it
	// marked execs are denied at once.
	MaxPending int
}

// DenierStats counts the answers of a Denier.
type DenierStats struct {
	Allowed   uint64 // unmarked inodes (a mark being removed) or Decide said yes
	Denied    uint64
	Timeouts  uint64 // denied because Decide did not answer in time
	Saturated uint64 // denied because MaxPending decisions were in flight
	Overflows uint64 // the kernel queue overflowed (events lost)
}

// Denier refuses, with EPERM, the exec of marked inodes using fanotify
// exec permission events (FAN_OPEN_EXEC_PERM). It fails closed for marked
// inodes (no answer in time: deny) and open for the rest. If the Denier
// dies, the kernel allows the execs still pending; if it is stopped
// (SIGSTOP), execs of marked files wait for it.
type Denier struct {
	cfg  DenierConfig
	fan  *os.File
	sem  chan struct{}
	wg   sync.WaitGroup
	self FileID

	mu    sync.RWMutex
	marks map[FileID]*os.File

	allowed, denied, timeouts, saturated, overflows atomic.Uint64
	closeOnce                                       sync.Once
}

// NewDenier creates the fanotify group and starts answering its events.
func NewDenier(cfg DenierConfig) (*Denier, error) {
	if cfg.Deadline <= 0 {
		cfg.Deadline = 100 * time.Millisecond
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 64
	}
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK,
		unix.O_RDONLY|unix.O_CLOEXEC|unix.O_LARGEFILE)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init(FAN_CLASS_CONTENT): %w", err)
	}
	d := &Denier{
		cfg:   cfg,
		fan:   os.NewFile(uintptr(fd), "fanotify"), // non-blocking: served by the Go poller
		sem:   make(chan struct{}, cfg.MaxPending),
		marks: map[FileID]*os.File{},
	}
	if id, err := FileIDOf("/proc/self/exe"); err == nil {
		d.self = id
	}
	d.wg.Add(1)
	go d.loop()
	return d, nil
}

// Mark makes the exec of the file at path (its inode) fail with EPERM,
// unless Decide allows it. It refuses non-regular files and this daemon's
// own executable.
func (d *Denier) Mark(path string) error {
	f, err := openForMark(path)
	if err != nil {
		return fmt.Errorf("deny exec: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return fmt.Errorf("deny exec: stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		f.Close()
		return fmt.Errorf("deny exec: %s is not a regular file", path)
	}
	id := FileID{Dev: st.Dev, Ino: st.Ino}
	if id == d.self {
		f.Close()
		return errors.New("deny exec: refusing to deny the daemon's own executable")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.marks[id]; ok {
		f.Close()
		return nil
	}
	// Record the mark first: an event arriving right after fanotify_mark
	// must find it.
	d.marks[id] = f
	if err := d.mark(unix.FAN_MARK_ADD, f); err != nil {
		delete(d.marks, id)
		f.Close()
		return fmt.Errorf("deny exec: fanotify_mark %s: %w", path, err)
	}
	return nil
}

// openForMark opens the object to mark, following symbolic links as exec
// does, so that the inode marked is the inode checked. O_RDONLY, not
// O_PATH: fanotify_mark refuses O_PATH descriptors on some kernels.
func openForMark(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// mark calls fanotify_mark on the group's descriptor without taking it
// out of the Go poller (File.Fd would make it blocking).
func (d *Denier) mark(flags uint, obj *os.File) error {
	rc, err := d.fan.SyscallConn()
	if err != nil {
		return err
	}
	var merr error
	if err := rc.Control(func(fd uintptr) {
		merr = unix.FanotifyMark(int(fd), flags, unix.FAN_OPEN_EXEC_PERM, int(obj.Fd()), "")
	}); err != nil {
		return err
	}
	return merr
}

// Unmark removes the mark of the file at path.
func (d *Denier) Unmark(path string) error {
	id, err := FileIDOf(path)
	if err != nil {
		return fmt.Errorf("allow exec: %w", err)
	}
	return d.UnmarkID(id)
}

// UnmarkID removes the mark of a file; unmarking an unmarked file is not
// an error.
func (d *Denier) UnmarkID(id FileID) error {
	d.mu.Lock()
	f, ok := d.marks[id]
	delete(d.marks, id) // from now on its execs are allowed
	d.mu.Unlock()
	if !ok {
		return nil
	}
	defer f.Close()
	if err := d.mark(unix.FAN_MARK_REMOVE, f); err != nil {
		return fmt.Errorf("allow exec: fanotify_mark remove %s: %w", id, err)
	}
	return nil
}

func (d *Denier) marked(id FileID) bool {
	d.mu.RLock()
	defer d.mu.RUnlock()
	_, ok := d.marks[id]
	return ok
}

// Stats returns the counters of the Denier.
func (d *Denier) Stats() DenierStats {
	return DenierStats{
		Allowed:   d.allowed.Load(),
		Denied:    d.denied.Load(),
		Timeouts:  d.timeouts.Load(),
		Saturated: d.saturated.Load(),
		Overflows: d.overflows.Load(),
	}
}

// Close stops answering and removes every mark. Execs still pending are
// allowed by the kernel when the group is closed.
func (d *Denier) Close() error {
	var err error
	d.closeOnce.Do(func() {
		err = d.fan.Close()
		d.wg.Wait()
		d.mu.Lock()
		for id, f := range d.marks {
			f.Close()
			delete(d.marks, id)
		}
		d.mu.Unlock()
	})
	return err
}

const fanMetaLen = 24 // sizeof(struct fanotify_event_metadata)

func (d *Denier) loop() {
	defer d.wg.Done()
	buf := make([]byte, 64*fanMetaLen)
	for {
		n, err := d.fan.Read(buf)
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			// Unexpected: do not spin.
			time.Sleep(time.Millisecond)
			continue
		}
		for off := 0; off+fanMetaLen <= n; {
			evLen := int(binary.LittleEndian.Uint32(buf[off:]))
			vers := buf[off+4]
			if evLen < fanMetaLen || off+evLen > n || vers != unix.FANOTIFY_METADATA_VERSION {
				break // malformed: nothing more can be trusted in this read
			}
			mask := binary.LittleEndian.Uint64(buf[off+8:])
			fd := int32(binary.LittleEndian.Uint32(buf[off+16:]))
			pid := int32(binary.LittleEndian.Uint32(buf[off+20:]))
			off += evLen
			d.handle(mask, fd, pid)
		}
	}
}

func (d *Denier) handle(mask uint64, fd, pid int32) {
	if mask&unix.FAN_Q_OVERFLOW != 0 {
		d.overflows.Add(1)
	}
	if fd < 0 {
		return
	}
	if mask&unix.FAN_OPEN_EXEC_PERM == 0 {
		unix.Close(int(fd))
		return
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(fd), &st); err != nil {
		// Cannot tell which inode: it is one we marked, deny.
		d.answer(fd, false)
		return
	}
	id := FileID{Dev: st.Dev, Ino: st.Ino}
	if !d.marked(id) {
		d.answer(fd, true)
		return
	}
	if d.cfg.Decide == nil {
		d.answer(fd, false)
		return
	}
	select {
	case d.sem <- struct{}{}:
	default:
		d.saturated.Add(1)
		d.answer(fd, false)
		return
	}
	req := ExecRequest{PID: pid, File: id, Path: readLink("/proc/self/fd/" + strconv.Itoa(int(fd)))}
	go d.decide(fd, req)
}

// decide asks Decide and answers by the deadline; a late Decide keeps its
// MaxPending slot until it returns, so a stuck Decide ends up denying
// everything at once rather than piling up goroutines.
func (d *Denier) decide(fd int32, req ExecRequest) {
	ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Deadline)
	defer cancel()
	res := make(chan bool, 1)
	go func() {
		defer func() { <-d.sem }()
		res <- d.cfg.Decide(ctx, req)
	}()
	select {
	case ok := <-res:
		d.answer(fd, ok)
	case <-ctx.Done():
		d.timeouts.Add(1)
		d.answer(fd, false)
	}
}

func (d *Denier) answer(fd int32, allow bool) {
	resp := uint32(unix.FAN_DENY)
	if allow {
		resp = unix.FAN_ALLOW
		d.allowed.Add(1)
	} else {
		d.denied.Add(1)
	}
	var b [8]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(fd))
	binary.LittleEndian.PutUint32(b[4:], resp)
	// A failed write (group closed) lets the kernel decide: it allows.
	_, _ = d.fan.Write(b[:])
	unix.Close(int(fd))
}
