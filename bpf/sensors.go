package bpf

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/engine/kclock"
)

// SensorSet selects the kernel programs to load.
type SensorSet uint8

const (
	SensorProc SensorSet = 1 << iota // exec, fork, exit (and kill-on-exec)
	SensorFile                       // file system calls
	SensorNet                        // TCP states, connect/sendto/sendmsg peers
	SensorDNS                        // DNS answers (cgroup_skb on the root cgroup v2)

	AllSensors = SensorProc | SensorFile | SensorNet | SensorDNS
)

// Config tunes Open. The zero value loads every sensor with the defaults.
type Config struct {
	Sensors SensorSet // zero means AllSensors

	// ExecKillInodes are executables killed at exec (see KillOnExec).
	ExecKillInodes []string
	// FileFilter and FilePrefixes (every operation wanted) turn the
	// in-kernel file filter on (see SetFileFilter).
	FileFilter   []FilePrefix
	FilePrefixes []string
	// WatchSelf reports the file and socket system calls of this process;
	// by default they are ignored in the kernel to avoid feedback loops.
	WatchSelf bool

	// ChannelSize bounds each event channel. A full channel holds its
	// ring-buffer reader back: events wait in the ring (megabytes) instead,
	// the kernel side never blocks, and what the ring cannot hold is
	// counted there as lost.
	ChannelSize int
	// FlushInterval bounds how long a batched event waits in a ring before
	// the reader polls it (default 20 ms).
	FlushInterval time.Duration
	// WakeupBytes: batched streams (fork, exit, file, net, and the execs
	// SetExecWakeup does not make urgent) wake the reader only once this
	// much is queued (default 256 KiB). DNS and urgent execs wake it for
	// every event; by default every exec is urgent.
	WakeupBytes int
	// Ring sizes in bytes (powers of two, at least a page). Defaults: proc
	// 4 MiB, file 16 MiB, net 4 MiB, DNS 1 MiB.
	ProcRingBytes int
	FileRingBytes int
	NetRingBytes  int
	DNSRingBytes  int
	// UDPPeerWindow reports a UDP peer of a process at most once per
	// window (default 1 s; negative: report every datagram).
	UDPPeerWindow time.Duration
	// CgroupPath is the cgroup v2 directory the DNS program is attached to
	// (default: /sys/fs/cgroup/unified or /sys/fs/cgroup, the first that is
	// a cgroup2 mount).
	CgroupPath string
	// NoResolvePaths disables filling FileEvent.AbsPath from /proc.
	NoResolvePaths bool
	// RealtimeExecReader runs the exec ring reader on its own SCHED_FIFO
	// thread, blocked in epoll_wait. Otherwise it parks on the Go netpoller
	// like the other readers, which measured faster from exec to kill (that
	// thread held a P in a system call: the runtime retook it, and the reader
	// then waited for a P after each wake-up) and lets sysmon sleep.
	RealtimeExecReader bool

	// refuseFIFO acts as if SCHED_FIFO were refused, for tests of that fallback.
	refuseFIFO bool
	// rawTPOnly skips tp_btf, for tests of the raw_tp fallback.
	rawTPOnly bool
	// rawSysEnter attaches the file and net system call programs to
	// raw_tp/sys_enter, for tests of the fallback of the syscalls
	// tracepoints.
	rawSysEnter bool
}

const (
	defaultChannelSize = 4096
	defaultFlush       = 20 * time.Millisecond
	defaultWakeup      = 256 << 10
	defaultUDPWindow   = time.Second
)

func (c *Config) setDefaults() error {
	if c.Sensors == 0 {
		c.Sensors = AllSensors
	}
	if c.Sensors&^AllSensors != 0 {
		return fmt.Errorf("config Sensors: unknown bits %#x", uint8(c.Sensors&^AllSensors))
	}
	if c.ChannelSize == 0 {
		c.ChannelSize = defaultChannelSize
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = defaultFlush
	}
	if c.WakeupBytes == 0 {
		c.WakeupBytes = defaultWakeup
	}
	if c.UDPPeerWindow == 0 {
		c.UDPPeerWindow = defaultUDPWindow
	}
	if c.UDPPeerWindow < 0 {
		c.UDPPeerWindow = 0
	}
	for _, r := range []struct {
		name string
		v    *int
		def  int
	}{
		{"ProcRingBytes", &c.ProcRingBytes, 4 << 20},
		{"FileRingBytes", &c.FileRingBytes, 16 << 20},
		{"NetRingBytes", &c.NetRingBytes, 4 << 20},
		{"DNSRingBytes", &c.DNSRingBytes, 1 << 20},
	} {
		if *r.v == 0 {
			*r.v = r.def
		}
		if *r.v < os.Getpagesize() || *r.v&(*r.v-1) != 0 || *r.v > 1<<30 {
			return fmt.Errorf("config %s: %d is not a power of two between a page and 1 GiB", r.name, *r.v)
		}
	}
	if c.ChannelSize < 0 || c.FlushInterval < 0 || c.WakeupBytes < 0 {
		return errors.New("config: ChannelSize, FlushInterval and WakeupBytes must not be negative")
	}
	return nil
}

// Stream names used by Stats.
const (
	streamExec = iota
	streamFork
	streamExit
	streamFile
	streamNet
	streamDNS
	numStreams
)

var streamNames = [numStreams]string{"exec", "fork", "exit", "file", "net", "dns"}

// StreamStats counts the events of one stream.
type StreamStats struct {
	Received  uint64 // decoded from the ring buffer
	Lost      uint64 // the kernel found the ring buffer full
	Dropped   uint64 // decoded while the sensors were closing: never delivered
	Malformed uint64 // records (or DNS messages) that failed to decode
	// Missed counts runs the kernel skipped because the program was already
	// running on that CPU (preempted or interrupted): events never seen.
	Missed uint64
}

type streamCounters struct {
	received, dropped, malformed atomic.Uint64
}

// ErrClosed is returned by the methods of closed Sensors.
var ErrClosed = errors.New("sensors closed")

// Sensors are the loaded and attached kernel programs and their readers.
type Sensors struct {
	cfg   Config
	clock wallClock

	colls []*ebpf.Collection
	// fileStrings interns the file events' comms and paths (the file reader's alone).
	fileStrings interner
	progIDs     map[ebpf.ProgramID]progRef // our programs by kernel ID, built on first use (guard.go)
	links       []link.Link
	readers     []*ringbuf.Reader
	wakes       []*os.File // per reader: its ring on the Go netpoller (pollLoop); nil for readLoop
	wg          sync.WaitGroup

	exec chan ExecEvent
	fork chan ForkEvent
	exit chan ExitEvent
	file chan FileEvent
	net  chan NetEvent
	dns  chan DNSEvent

	counters [numStreams]streamCounters
	// final holds the kernel's counts as Close found them, for Stats after Close.
	final struct {
		taken        bool
		lost, missed [numStreams]uint64
	}
	lost  []*ebpf.Map
	progs []streamProg

	killMap   *ebpf.Map
	urgentMap *ebpf.Map // urgent_comm of the proc object
	procCfg   *ebpf.Map // cfg of the proc object
	prefixMap *ebpf.Map
	fileCfg   *ebpf.Map
	ignore    []*ebpf.Map

	attached []string
	selfExe  FileID

	mu        sync.Mutex        // map updates and Close
	prefixes  map[string]OpMask // the prefixes trie as written
	closed    bool
	closeOnce sync.Once
	stop      chan struct{} // closed first by Close: releases readers waiting on a full channel
	flushing  chan struct{} // closed when flushLoop has returned (nil: never started)
}

type streamProg struct {
	prog   *ebpf.Program
	stream int
}

// jcfg mirrors struct jcfg of c/common.h.
type jcfg struct {
	WakeBytes   uint64
	UDPWindowNs uint64
	FilterOn    uint32
	ExecWakeAll uint32
}

// Open loads and attaches the selected sensors and starts their readers.
// ctx bounds the loading; the sensors run until Close. Any failure undoes
// what was done and names the sensor and the program.
func Open(ctx context.Context, cfg Config) (*Sensors, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Sensors{
		cfg:      cfg,
		stop:     make(chan struct{}),
		exec:     make(chan ExecEvent, cfg.ChannelSize),
		fork:     make(chan ForkEvent, cfg.ChannelSize),
		exit:     make(chan ExitEvent, cfg.ChannelSize),
		file:     make(chan FileEvent, cfg.ChannelSize),
		net:      make(chan NetEvent, cfg.ChannelSize),
		dns:      make(chan DNSEvent, cfg.ChannelSize),
		prefixes: map[string]OpMask{},
	}
	s.clock.refresh()
	if id, err := FileIDOf("/proc/self/exe"); err == nil {
		s.selfExe = id
	}
	if err := s.open(ctx); err != nil {
		s.Close()
		return nil, err
	}
	s.flushing = make(chan struct{})
	go s.flushLoop()
	return s, nil
}

// flushLoop delivers the batched records: every FlushInterval it flushes the
// readers whose ring holds data (a memory read, no system call), and refreshes
// the wall clock. The readers otherwise wait until the kernel wakes them, so an
// idle daemon makes no periodic system calls: each one after an idle spell
// would wake the Go runtime's sysmon into 20 µs polling.
func (s *Sensors) flushLoop() {
	defer close(s.flushing)
	t := time.NewTicker(s.cfg.FlushInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.clock.refresh()
		for i, r := range s.readers {
			if r.AvailableBytes() == 0 {
				continue
			}
			if w := s.wakes[i]; w != nil {
				_ = w.SetReadDeadline(pastDeadline()) // ends pollLoop's wait
			} else {
				_ = r.Flush() // fails only once the reader is closed
			}
		}
	}
}

func (s *Sensors) open(ctx context.Context) error {
	steps := []struct {
		set  SensorSet
		name string
		fn   func() error
	}{
		{SensorProc, "proc", s.openProc},
		{SensorFile, "file", s.openFile},
		{SensorNet, "net", s.openNet},
		{SensorDNS, "dns", s.openDNS},
	}
	for _, st := range steps {
		if s.cfg.Sensors&st.set == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("open sensors: %w", err)
		}
		if err := st.fn(); err != nil {
			return fmt.Errorf("open %s sensor: %w", st.name, err)
		}
	}
	for _, p := range s.cfg.ExecKillInodes {
		if err := s.KillOnExec(p); err != nil {
			return err
		}
	}
	filter := slices.Clone(s.cfg.FileFilter)
	for _, p := range s.cfg.FilePrefixes {
		filter = append(filter, FilePrefix{Prefix: p, Ops: AllOps})
	}
	if len(filter) > 0 {
		if err := s.SetFileFilter(filter); err != nil {
			return err
		}
	}
	return nil
}

// loadSpec loads a collection with only the programs keep accepts, sizing
// its ring buffer and writing its cfg map.
func (s *Sensors) loadSpec(spec *ebpf.CollectionSpec, ring string, ringBytes int, keep func(string) bool) (*ebpf.Collection, error) {
	spec = spec.Copy()
	for name := range spec.Programs {
		if !keep(name) {
			delete(spec.Programs, name)
		}
	}
	rb, ok := spec.Maps[ring]
	if !ok {
		return nil, fmt.Errorf("object has no map %s", ring)
	}
	rb.MaxEntries = uint32(ringBytes)
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		return nil, fmt.Errorf("load programs: %w", err)
	}
	wake := uint64(s.cfg.WakeupBytes)
	if half := uint64(ringBytes) / 2; wake > half {
		wake = half
	}
	c := jcfg{WakeBytes: wake, UDPWindowNs: uint64(s.cfg.UDPPeerWindow), ExecWakeAll: 1}
	if err := coll.Maps["cfg"].Update(uint32(0), c, ebpf.UpdateAny); err != nil {
		coll.Close()
		return nil, fmt.Errorf("write cfg map: %w", err)
	}
	return coll, nil
}

// attachTP attaches a tp_btf or raw_tp program to the tracepoint tp.
func attachTP(p *ebpf.Program, tp string) (link.Link, error) {
	if p.Type() == ebpf.Tracing {
		return link.AttachTracing(link.TracingOptions{Program: p})
	}
	return link.AttachRawTracepoint(link.RawTracepointOptions{Name: tp, Program: p})
}

// tracepointProgs loads spec with the tp_btf programs and attaches them;
// when that fails it falls back to the raw_tp twins. progs maps the tp_btf
// program name to its tracepoint; the raw twin is named with _raw instead
// of _btf. Programs not in progs are kept when other accepts them; they
// are not attached.
func (s *Sensors) tracepointProgs(spec *ebpf.CollectionSpec, ring string, ringBytes int, progs map[string]string, other func(string) bool) (*ebpf.Collection, []link.Link, string, error) {
	twins := map[string]string{}
	for btf := range progs {
		twins[btf[:len(btf)-len("_btf")]+"_raw"] = btf
	}
	var errs []error
	modes := []string{"tp_btf", "raw_tp"}
	if s.cfg.rawTPOnly {
		modes = modes[1:]
	}
	for _, mode := range modes {
		keep := func(name string) bool {
			if _, ok := progs[name]; ok {
				return mode == "tp_btf"
			}
			if _, ok := twins[name]; ok {
				return mode == "raw_tp"
			}
			return other(name)
		}
		coll, err := s.loadSpec(spec, ring, ringBytes, keep)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", mode, err))
			continue
		}
		var links []link.Link
		for btf, tp := range progs {
			name := btf
			if mode == "raw_tp" {
				name = btf[:len(btf)-len("_btf")] + "_raw"
			}
			l, err := attachTP(coll.Programs[name], tp)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: attach %s to %s: %w", mode, name, tp, err))
				break
			}
			links = append(links, l)
		}
		if len(links) == len(progs) {
			return coll, links, mode, nil
		}
		for _, l := range links {
			l.Close()
		}
		coll.Close()
	}
	return nil, nil, "", errors.Join(errs...)
}

func (s *Sensors) openProc() error {
	spec, err := loadBpfProc()
	if err != nil {
		return err
	}
	coll, links, mode, err := s.tracepointProgs(spec, "proc_rb", s.cfg.ProcRingBytes, map[string]string{
		"exec_btf": "sched_process_exec",
		"fork_btf": "sched_process_fork",
		"exit_btf": "sched_process_exit",
	}, func(string) bool { return true })
	if err != nil {
		return err
	}
	s.colls = append(s.colls, coll)
	s.progIDs = nil
	s.links = append(s.links, links...)
	s.lost = append(s.lost, coll.Maps["lost"])
	s.killMap = coll.Maps["kill_on_exec"]
	s.urgentMap = coll.Maps["urgent_comm"]
	s.procCfg = coll.Maps["cfg"]
	for name, p := range coll.Programs {
		switch {
		case strings.HasPrefix(name, "exec_"):
			s.progs = append(s.progs, streamProg{p, streamExec})
		case strings.HasPrefix(name, "fork_"):
			s.progs = append(s.progs, streamProg{p, streamFork})
		case strings.HasPrefix(name, "exit_"):
			s.progs = append(s.progs, streamProg{p, streamExit})
		}
	}
	s.attached = append(s.attached, "exec, fork, exit: "+mode+"/sched_process_{exec,fork,exit}")
	return s.startReader(coll.Maps["proc_rb"], s.handleProc, s.cfg.RealtimeExecReader)
}

func (s *Sensors) openFile() error {
	spec, err := loadBpfFile()
	if err != nil {
		return err
	}
	progs := sysEnterProgs{tp: "file_syscall", raw: "file_sys_enter", calls: fileSyscalls()}
	coll, links, how, err := s.openSysEnter(spec, progs, func(keep func(string) bool) (*ebpf.Collection, []link.Link, error) {
		coll, err := s.loadSpec(spec, "file_rb", s.cfg.FileRingBytes, keep)
		return coll, nil, err
	})
	if err != nil {
		return err
	}
	s.colls = append(s.colls, coll)
	s.progIDs = nil
	s.links = append(s.links, links...)
	s.lost = append(s.lost, coll.Maps["lost"])
	s.prefixMap = coll.Maps["prefixes"]
	for _, p := range coll.Programs {
		s.progs = append(s.progs, streamProg{p, streamFile})
	}
	s.fileCfg = coll.Maps["cfg"]
	s.ignore = append(s.ignore, coll.Maps["ignore_tgid"])
	s.attached = append(s.attached, "file: "+how)
	return s.startReader(coll.Maps["file_rb"], s.handleFile, false)
}

func (s *Sensors) openNet() error {
	spec, err := loadBpfNet()
	if err != nil {
		return err
	}
	var mode string
	progs := sysEnterProgs{tp: "net_syscall", raw: "net_sys_enter", calls: netSyscalls()}
	coll, links, how, err := s.openSysEnter(spec, progs, func(keep func(string) bool) (*ebpf.Collection, []link.Link, error) {
		coll, links, m, err := s.tracepointProgs(spec, "net_rb", s.cfg.NetRingBytes, map[string]string{
			"state_btf": "inet_sock_set_state",
		}, keep)
		mode = m
		return coll, links, err
	})
	if err != nil {
		return err
	}
	s.colls = append(s.colls, coll)
	s.progIDs = nil
	s.links = append(s.links, links...)
	s.lost = append(s.lost, coll.Maps["lost"])
	for _, p := range coll.Programs {
		s.progs = append(s.progs, streamProg{p, streamNet})
	}
	s.ignore = append(s.ignore, coll.Maps["ignore_tgid"])
	s.attached = append(s.attached, "tcp states: "+mode+"/inet_sock_set_state", "connect/sendto/sendmsg: "+how)
	return s.startReader(coll.Maps["net_rb"], s.handleNet, false)
}

func closeAll(coll *ebpf.Collection, links []link.Link) {
	closeLinks(links)
	coll.Close()
}

// closeLinks closes links concurrently: closing the perf event of a
// tracepoint waits for RCU grace periods (60-90 ms each here, partly under
// a kernel mutex); concurrent closes overlap the rest (29 links: 2 s
// one by one, 1 s together).
func closeLinks(links []link.Link) error {
	errs := make([]error, len(links))
	var wg sync.WaitGroup
	for i, l := range links {
		wg.Go(func() {
			if err := l.Close(); err != nil {
				errs[i] = fmt.Errorf("detach: %w", err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Sensors) openDNS() error {
	path := s.cfg.CgroupPath
	if path == "" {
		var err error
		if path, err = cgroup2Path(); err != nil {
			return err
		}
	}
	spec, err := loadBpfDNS()
	if err != nil {
		return err
	}
	coll, err := s.loadSpec(spec, "dns_rb", s.cfg.DNSRingBytes, func(string) bool { return true })
	if err != nil {
		return err
	}
	s.colls = append(s.colls, coll)
	s.progIDs = nil
	s.lost = append(s.lost, coll.Maps["lost"])
	l, err := link.AttachCgroup(link.CgroupOptions{
		Path:    path,
		Attach:  ebpf.AttachCGroupInetIngress,
		Program: coll.Programs["dns_ingress"],
	})
	if err != nil {
		return fmt.Errorf("attach cgroup_skb/ingress to %s: %w", path, err)
	}
	s.links = append(s.links, l)
	s.attached = append(s.attached, "dns: cgroup_skb/ingress on "+path)
	return s.startReader(coll.Maps["dns_rb"], s.handleDNS, false)
}

// ignoreSelf writes our pid in the ignore_tgid map of coll, unless
// WatchSelf: before the system call programs are attached, as attaching
// them makes system calls (tracefs reads).
func (s *Sensors) ignoreSelf(coll *ebpf.Collection) error {
	if s.cfg.WatchSelf {
		return nil
	}
	if err := coll.Maps["ignore_tgid"].Update(uint32(os.Getpid()), uint32(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("ignore own pid: %w", err)
	}
	return nil
}

// cgroup2Path finds the cgroup v2 mount: hybrid hosts mount it at
// /sys/fs/cgroup/unified, pure v2 hosts at /sys/fs/cgroup.
func cgroup2Path() (string, error) {
	for _, p := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup"} {
		var st unix.Statfs_t
		if unix.Statfs(p, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
			return p, nil
		}
	}
	return "", errors.New("no cgroup v2 mount at /sys/fs/cgroup/unified or /sys/fs/cgroup")
}

func (s *Sensors) startReader(m *ebpf.Map, handle func([]byte), realtime bool) error {
	r, err := ringbuf.NewReader(m)
	if err != nil {
		return fmt.Errorf("ring buffer reader of %s: %w", m.String(), err)
	}
	s.readers = append(s.readers, r)
	s.wakes = append(s.wakes, nil)
	i := len(s.wakes) - 1
	s.wg.Add(1)
	// The realtime exec reader first tries SCHED_FIFO on its own thread; refused (no
	// CAP_SYS_NICE, RestrictRealtime), it waits on the netpoller like the others, which is
	// the faster of the two on default scheduling.
	mode := make(chan *os.File, 1) // the wake to poll on; nil: epoll_wait in readLoop
	if realtime {
		sched := make(chan error, 1)
		go s.readLoop(r, handle, sched, mode)
		err := <-sched
		if err == nil {
			s.attached = append(s.attached, "exec reader: SCHED_FIFO")
			mode <- nil
			return nil
		}
		s.attached = append(s.attached, fmt.Sprintf("exec reader: SCHED_FIFO refused (%v), the Go netpoller instead", err))
	} else {
		go s.readLoop(r, handle, nil, mode)
	}
	wake, err := pollable(m)
	if err != nil {
		s.attached = append(s.attached, fmt.Sprintf("%s reader: waits in epoll_wait (%v)", m.String(), err))
		mode <- nil
		return nil
	}
	r.SetDeadline(pastDeadline()) // ReadInto never waits: pollLoop waits on the netpoller
	s.wakes[i] = wake
	mode <- wake
	return nil
}

// readLoop drains one ring, waiting for records in epoll_wait: the realtime
// exec reader, whose thread the kernel wakes itself (no netpoller hop).
// Batched producers do not wake it: flushLoop does. A full channel holds it
// back (send).
//
// With sched set, it first asks for SCHED_FIFO on a thread of its own and reports the
// answer there. mode then says how to wait: on the netpoller (pollLoop) when it gives a
// wake, else here.
func (s *Sensors) readLoop(r *ringbuf.Reader, handle func([]byte), sched chan<- error, mode <-chan *os.File) {
	if sched != nil {
		// The thread keeps its policy and dies with the goroutine.
		runtime.LockOSThread()
		err := unix.SchedSetAttr(0, &unix.SchedAttr{
			Size:     unix.SizeofSchedAttr,
			Policy:   unix.SCHED_FIFO,
			Priority: 1,
		}, 0)
		fifo := err == nil
		if s.cfg.refuseFIFO && fifo {
			if unix.SchedSetAttr(0, &unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: 0}, 0) == nil { // SCHED_NORMAL again
				fifo = false
			}
			err = unix.EPERM
		}
		if !fifo {
			runtime.UnlockOSThread() // a thread on SCHED_FIFO stays locked: it dies with the goroutine
		}
		sched <- err
	}
	if wake := <-mode; wake != nil {
		s.pollLoop(r, wake, handle)
		return
	}
	defer s.wg.Done()
	var rec ringbuf.Record
	for {
		err := r.ReadInto(&rec)
		switch {
		case err == nil:
			handle(rec.RawSample)
		case errors.Is(err, ringbuf.ErrFlushed), errors.Is(err, os.ErrDeadlineExceeded):
		case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
			return
		default:
			// Not expected from epoll; do not spin on a persistent error.
			select {
			case <-s.stop:
				return
			case <-time.After(s.cfg.FlushInterval):
			}
		}
	}
}

// pastDeadline is a deadline that has passed: it makes a wait return at once.
func pastDeadline() time.Time { return time.Unix(1, 0) }

// pollable returns the ring's descriptor registered with the Go netpoller (a
// duplicate, non-blocking), or an error when the kernel cannot poll it so.
func pollable(m *ebpf.Map) (*os.File, error) {
	fd, err := unix.FcntlInt(uintptr(m.FD()), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate the ring's descriptor: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("make the ring's descriptor non-blocking: %w", err)
	}
	f := os.NewFile(uintptr(fd), m.String())
	if err := f.SetReadDeadline(time.Time{}); err != nil { // fails when not on the netpoller
		f.Close()
		return nil, fmt.Errorf("ring descriptor not pollable: %w", err)
	}
	return f, nil
}

// pollLoop drains one ring and waits for its next records on the Go netpoller:
// the goroutine parks, holding no thread in a system call. A kernel wake-up or
// flushLoop's deadline on wake ends the wait. A full channel holds it back
// (send). Close closes wake, which ends the loop; the reader is closed after.
func (s *Sensors) pollLoop(r *ringbuf.Reader, wake *os.File, handle func([]byte)) {
	defer s.wg.Done()
	rc, err := wake.SyscallConn()
	if err != nil {
		return
	}
	var rec ringbuf.Record
	for {
		for { // what the ring holds; ReadInto's deadline has passed, so it never waits
			err := r.ReadInto(&rec)
			if err == nil {
				handle(rec.RawSample)
				continue
			}
			switch {
			case errors.Is(err, ringbuf.ErrClosed), errors.Is(err, os.ErrClosed):
				return
			case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, ringbuf.ErrFlushed):
			default:
				// Not expected (a damaged ring): do not spin on a persistent error.
				select {
				case <-s.stop:
					return
				case <-time.After(s.cfg.FlushInterval):
				}
			}
			break // drained
		}
		err := rc.Read(func(uintptr) bool { return r.AvailableBytes() > 0 })
		switch {
		case err == nil:
		case errors.Is(err, os.ErrDeadlineExceeded):
			_ = wake.SetReadDeadline(time.Time{})
		default:
			return // wake closed (the poller says "use of closed file", not os.ErrClosed)
		}
	}
}

// send hands an event to its consumer, waiting while the channel is full:
// a burst then backs up into the ring buffer, which holds far more than the
// channel, rather than being dropped here. Only a closing Sensors drops.
func send[T any](ch chan T, ev T, c *streamCounters, stop <-chan struct{}) {
	c.received.Add(1)
	select {
	case ch <- ev:
		return
	default:
	}
	select {
	case ch <- ev:
	case <-stop:
		c.dropped.Add(1)
	}
}

func (s *Sensors) handleProc(b []byte) {
	kind, err := recordKind(b)
	if err != nil {
		s.counters[streamExec].malformed.Add(1)
		return
	}
	wall := s.clock.wall
	switch kind {
	case kindExec:
		if e, err := decodeExec(b, wall); err == nil {
			send(s.exec, e, &s.counters[streamExec], s.stop)
		} else {
			s.counters[streamExec].malformed.Add(1)
		}
	case kindFork:
		if e, err := decodeFork(b, wall); err == nil {
			send(s.fork, e, &s.counters[streamFork], s.stop)
		} else {
			s.counters[streamFork].malformed.Add(1)
		}
	case kindExit:
		if e, err := decodeExit(b, wall); err == nil {
			send(s.exit, e, &s.counters[streamExit], s.stop)
		} else {
			s.counters[streamExit].malformed.Add(1)
		}
	default:
		s.counters[streamExec].malformed.Add(1)
	}
}

func (s *Sensors) handleFile(b []byte) {
	e, err := decodeFile(b, s.clock.wall, &s.fileStrings)
	if err != nil {
		s.counters[streamFile].malformed.Add(1)
		return
	}
	if !s.cfg.NoResolvePaths {
		resolveFileEvent(&e)
	}
	send(s.file, e, &s.counters[streamFile], s.stop)
}

func (s *Sensors) handleNet(b []byte) {
	e, err := decodeNet(b, s.clock.wall)
	if err != nil {
		s.counters[streamNet].malformed.Add(1)
		return
	}
	send(s.net, e, &s.counters[streamNet], s.stop)
}

func (s *Sensors) handleDNS(b []byte) {
	e, err := decodeDNS(b, s.clock.wall)
	if err != nil {
		s.counters[streamDNS].malformed.Add(1)
		return
	}
	send(s.dns, e, &s.counters[streamDNS], s.stop)
}

// Exec, Fork, Exit, File, Net and DNS deliver the events of each stream.
// They are closed by Close; a sensor that was not loaded never delivers.
func (s *Sensors) Exec() <-chan ExecEvent { return s.exec }
func (s *Sensors) Fork() <-chan ForkEvent { return s.fork }
func (s *Sensors) Exit() <-chan ExitEvent { return s.exit }
func (s *Sensors) File() <-chan FileEvent { return s.file }
func (s *Sensors) Net() <-chan NetEvent   { return s.net }
func (s *Sensors) DNS() <-chan DNSEvent   { return s.dns }

// Attachments describes, one line each, how the loaded sensors are hooked
// (tp_btf or the raw_tp fallback, the cgroup of the DNS program).
func (s *Sensors) Attachments() []string {
	return append([]string(nil), s.attached...)
}

// Stats returns the counters of every stream, keyed exec, fork, exit, file,
// net, dns.
func (s *Sensors) Stats() map[string]StreamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]StreamStats, numStreams)
	lost, missed := s.final.lost, s.final.missed // after Close: what the maps held then
	if !s.final.taken {
		lost, missed = s.kernelCounts()
	}
	for i, name := range streamNames {
		c := &s.counters[i]
		out[name] = StreamStats{
			Received:  c.received.Load(),
			Lost:      lost[i],
			Dropped:   c.dropped.Load(),
			Malformed: c.malformed.Load(),
			Missed:    missed[i],
		}
	}
	return out
}

// kernelCounts reads the kernel's per-stream loss and recursion misses. s.mu is held, and
// the maps are open.
func (s *Sensors) kernelCounts() (lost, missed [numStreams]uint64) {
	for _, sp := range s.progs {
		if st, err := sp.prog.Stats(); err == nil {
			missed[sp.stream] += st.RecursionMisses
		}
	}
	for _, m := range s.lost {
		for i := range numStreams {
			var perCPU []uint64
			if err := m.Lookup(uint32(i), &perCPU); err != nil {
				continue
			}
			for _, v := range perCPU {
				lost[i] += v
			}
		}
	}
	return lost, missed
}

// IgnoreProcess stops reporting the file and socket system calls of a
// process (by TGID) in the kernel. UnignoreProcess undoes it.
func (s *Sensors) IgnoreProcess(tgid uint32) error {
	return s.eachIgnore(func(m *ebpf.Map) error { return m.Update(tgid, uint32(1), ebpf.UpdateAny) })
}

func (s *Sensors) UnignoreProcess(tgid uint32) error {
	return s.eachIgnore(func(m *ebpf.Map) error {
		if err := m.Delete(tgid); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		return nil
	})
}

func (s *Sensors) eachIgnore(fn func(*ebpf.Map) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, m := range s.ignore {
		if err := fn(m); err != nil {
			return fmt.Errorf("update ignore_tgid: %w", err)
		}
	}
	return nil
}

// Close detaches every program, stops the readers, closes the channels and
// frees the maps. It is safe to call more than once.
func (s *Sensors) Close() error {
	var errs []error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		if s.flushing != nil {
			<-s.flushing // before the readers close: it reads their rings
		}
		if err := closeLinks(s.links); err != nil {
			errs = append(errs, err)
		}
		// Poll loops end when their wake closes, and read their rings until then: their
		// readers close after them. Blocking readers end when their reader closes.
		closeReaders := func(polled bool) {
			for i, r := range s.readers {
				if (s.wakes[i] != nil) != polled {
					continue
				}
				if err := r.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close ring reader: %w", err))
				}
			}
		}
		for _, w := range s.wakes {
			if w != nil {
				w.Close()
			}
		}
		closeReaders(false)
		s.wg.Wait()
		closeReaders(true)
		close(s.exec)
		close(s.fork)
		close(s.exit)
		close(s.file)
		close(s.net)
		close(s.dns)
		// The kernel's counts die with the maps: keep them for Stats.
		s.mu.Lock()
		s.final.lost, s.final.missed = s.kernelCounts()
		s.final.taken = true
		s.mu.Unlock()
		for _, c := range s.colls {
			c.Close()
		}
	})
	return errors.Join(errs...)
}

// wallClock converts CLOCK_MONOTONIC (bpf_ktime_get_ns) to wall time. The
// offset is refreshed at every flush so that clock steps are followed, without
// a system call (kclock).
type wallClock struct {
	off  atomic.Int64
	mono kclock.Mono // set by the first refresh, in Open
}

func (c *wallClock) refresh() {
	if c.mono.IsZero() {
		c.mono = kclock.New()
	}
	c.off.Store(c.mono.WallOffset())
}

func (c *wallClock) wall(kt uint64) time.Time {
	return time.Unix(0, int64(kt)+c.off.Load())
}
