package proctable

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/engine/kclock"
	"github.com/jibril-rt/jibril/engine/procfs"
)

// Bounds on what is read from /proc. Everything there can be shaped by the process it
// describes (comm, cmdline) or be a fake (a test's ProcRoot): reads are bounded and parsers
// never trust lengths or separators.
const (
	maxStatBytes    = 4 << 10
	maxStatusBytes  = 16 << 10
	maxCmdlineBytes = 32 << 10
	maxCgroupBytes  = 8 << 10
	maxArgs         = 4096
	maxComm         = 64
	maxPathLen      = 4096
)

// userHZ is USER_HZ, the unit of /proc/PID/stat times: 100 on every Linux architecture.
const userHZ = 100

// readBounded reads at most max bytes of a file and reports whether it was longer.
func readBounded(path string, max int) ([]byte, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(max)+1))
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	if len(b) > max {
		return b[:max], true, nil
	}
	return b, false, nil
}

// stat is what proctable uses of /proc/PID/stat.
type stat struct {
	pid        int32
	comm       string
	state      byte
	ppid       int32
	startTicks uint64 // field 22, clock ticks after boot (CLOCK_BOOTTIME)
}

// parseStat parses a stat line. comm (field 2) may contain spaces, parentheses and newlines:
// it runs from the first '(' to the last ')'.
func parseStat(b []byte) (stat, error) {
	open := bytes.IndexByte(b, '(')
	cls := bytes.LastIndexByte(b, ')')
	if open < 0 || cls < open {
		return stat{}, errors.New("field 2 (comm): no parentheses")
	}
	pid, err := strconv.ParseInt(string(bytes.TrimSpace(b[:open])), 10, 32)
	if err != nil || pid <= 0 {
		return stat{}, fmt.Errorf("field 1 (pid): %q is not a pid", bytes.TrimSpace(b[:open]))
	}
	comm := b[open+1 : cls]
	if len(comm) > maxComm {
		comm = comm[:maxComm]
	}
	f := bytes.Fields(b[cls+1:])
	// f[0] is field 3 (state), so field n is f[n-3].
	if len(f) < 20 {
		return stat{}, fmt.Errorf("%d fields after comm, want at least 20", len(f))
	}
	if len(f[0]) != 1 {
		return stat{}, fmt.Errorf("field 3 (state): %q", f[0])
	}
	ppid, err := strconv.ParseInt(string(f[1]), 10, 32)
	if err != nil || ppid < 0 {
		return stat{}, fmt.Errorf("field 4 (ppid): %q", f[1])
	}
	start, err := strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return stat{}, fmt.Errorf("field 22 (starttime): %q", f[19])
	}
	return stat{pid: int32(pid), comm: string(comm), state: f[0][0], ppid: int32(ppid),
		startTicks: start}, nil
}

// parseStatus reads the real uid and gid (first value of the Uid: and Gid: lines).
func parseStatus(b []byte) (uid, gid uint32, ok bool) {
	var haveU, haveG bool
	for _, line := range bytes.Split(b, []byte{'\n'}) {
		var dst *uint32
		var have *bool
		switch {
		case bytes.HasPrefix(line, []byte("Uid:")):
			dst, have = &uid, &haveU
		case bytes.HasPrefix(line, []byte("Gid:")):
			dst, have = &gid, &haveG
		default:
			continue
		}
		f := bytes.Fields(line[4:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseUint(string(f[0]), 10, 32)
		if err != nil {
			continue
		}
		*dst, *have = uint32(v), true
	}
	return uid, gid, haveU && haveG
}

// parseCmdline splits a cmdline into argv. A process that rewrote its arguments may leave
// no NUL at all (setproctitle): the whole text is then one argument.
func parseCmdline(b []byte) []string {
	b = bytes.TrimRight(b, "\x00")
	if len(b) == 0 {
		return nil
	}
	parts := bytes.SplitN(b, []byte{0}, maxArgs+1)
	if len(parts) > maxArgs {
		parts = parts[:maxArgs]
	}
	argv := make([]string, len(parts))
	for i, p := range parts {
		argv[i] = string(p)
	}
	return argv
}

// parseCgroup returns the cgroup v2 path (the "0::" line), else the first v1 line's path.
func parseCgroup(b []byte) string {
	var first string
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") || len(parts[2]) > maxPathLen {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			return parts[2]
		}
		if first == "" {
			first = parts[2]
		}
	}
	return first
}

// readLink reads a link of /proc/PID through proc (Landlock refuses them to a confined
// daemon: see engine/procfs), "" when it cannot.
func readLink(proc procfs.ProcFS, r procfs.Ref) string {
	s, err := proc.Readlink(context.Background(), r)
	if err != nil || len(s) > maxPathLen {
		return ""
	}
	return s
}

// readProc reads one process from procRoot, and its links through proc. stat is required; the
// other files are best effort (a process may hide them, or exit while we read).
func readProc(procRoot string, proc procfs.ProcFS, pid int32, clk clock) (*Proc, error) {
	dir := procRoot + "/" + strconv.FormatInt(int64(pid), 10)
	b, _, err := readBounded(dir+"/stat", maxStatBytes)
	if err != nil {
		return nil, fmt.Errorf("read %s/stat: %w", dir, err)
	}
	st, err := parseStat(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s/stat: %w", dir, err)
	}
	if st.pid != pid {
		return nil, fmt.Errorf("parse %s/stat: field 1 (pid) is %d", dir, st.pid)
	}
	p := &Proc{PID: pid, PPID: st.ppid, Comm: st.comm, FromProc: true}
	p.Start = clk.bootTicksToMono(st.startTicks)
	p.StartTime = clk.monoToWall(p.Start)
	if b, _, err := readBounded(dir+"/status", maxStatusBytes); err == nil {
		if uid, gid, ok := parseStatus(b); ok {
			p.UID, p.GID = uid, gid
		}
	}
	if b, _, err := readBounded(dir+"/cmdline", maxCmdlineBytes); err == nil {
		p.Argv = parseCmdline(b)
	}
	p.Exe = readLink(proc, procfs.Ref{PID: pid, Item: procfs.Exe})
	if b, _, err := readBounded(dir+"/cgroup", maxCgroupBytes); err == nil {
		p.Cgroup = parseCgroup(b)
	}
	return p, nil
}

// clock converts between the kernel clocks: bpf start times are CLOCK_MONOTONIC ns
// (task->start_time), /proc/PID/stat field 22 counts USER_HZ ticks of CLOCK_BOOTTIME
// (task->start_boottime). Offsets are read at each conversion so suspends and clock steps
// are followed; CLOCK_MONOTONIC is carried by kclock (the exec path converts a start time
// per event).
type clock struct{ mono kclock.Mono }

func newClock() clock { return clock{mono: kclock.New()} }

// bootTicksToMono converts stat field 22 to CLOCK_MONOTONIC ns (10 ms resolution).
func (clock) bootTicksToMono(ticks uint64) uint64 {
	const nsPerTick = uint64(time.Second) / userHZ
	if ticks > (1<<63-1)/nsPerTick {
		return 0
	}
	boot := ticks * nsPerTick
	off := kclock.Read(unix.CLOCK_BOOTTIME) - kclock.Read(unix.CLOCK_MONOTONIC) // time spent suspended
	if off < 0 {
		off = 0
	}
	if boot < uint64(off) {
		return 0
	}
	return boot - uint64(off)
}

// monoToWall converts CLOCK_MONOTONIC ns to wall-clock time; 0 gives the zero time.
func (c clock) monoToWall(ns uint64) time.Time {
	if ns == 0 || ns > 1<<62 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns)+c.mono.WallOffset())
}
