package proc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
)

// Bounds on what we read from /proc: a stat line is well under 1 KiB even
// with a 64-byte kernel thread name, and a children file lists pids of one
// task; anything larger is hostile or broken and is refused.
const (
	maxStatBytes     = 4 << 10
	maxChildrenBytes = 1 << 20
	maxTasks         = 1 << 16
	maxAncestry      = 4096
)

// pfKthread is PF_KTHREAD from include/linux/sched.h, set in the flags field
// of /proc/PID/stat for kernel threads.
const pfKthread = 0x00200000

// Stat holds the fields of /proc/PID/stat that the actuator relies on.
type Stat struct {
	PID        int
	Comm       string
	State      byte   // R, S, D, T, t, Z, X, I, ...
	PPID       int    // thread-group id of the parent
	Flags      uint64 // PF_* flags
	StartTicks uint64 // field 22: start time in clock ticks after boot
}

// KernelThread reports whether the process is a kernel thread.
func (s Stat) KernelThread() bool { return s.Flags&pfKthread != 0 }

// ReadStat reads and parses /proc/PID/stat.
func ReadStat(pid int) (Stat, error) {
	if pid <= 0 {
		return Stat{}, fmt.Errorf("read stat of pid %d: invalid pid", pid)
	}
	path := "/proc/" + strconv.Itoa(pid) + "/stat"
	b, err := readBounded(path, maxStatBytes)
	if err != nil {
		return Stat{}, err
	}
	st, err := parseStat(b)
	if err != nil {
		return Stat{}, fmt.Errorf("parse %s: %w", path, err)
	}
	if st.PID != pid {
		return Stat{}, fmt.Errorf("parse %s: field 1 (pid) is %d", path, st.PID)
	}
	return st, nil
}

// StartTicks returns field 22 of /proc/PID/stat, the start time of the
// process in clock ticks after boot; with the pid it names one process.
func StartTicks(pid int) (uint64, error) {
	st, err := ReadStat(pid)
	if err != nil {
		return 0, err
	}
	return st.StartTicks, nil
}

// Ancestry returns the pids from the oldest ancestor to pid. If an ancestor
// exits while the chain is walked, the chain stops at its last readable
// member; an unreadable pid itself is an error.
func Ancestry(pid int) ([]int, error) {
	var chain []int
	seen := map[int]bool{}
	cur := pid
	for len(chain) < maxAncestry {
		st, err := ReadStat(cur)
		if err != nil {
			if cur == pid {
				return nil, fmt.Errorf("ancestry of pid %d: %w", pid, err)
			}
			break
		}
		chain = append(chain, cur)
		seen[cur] = true
		if st.PPID <= 0 || seen[st.PPID] {
			break
		}
		cur = st.PPID
	}
	slices.Reverse(chain)
	return chain, nil
}

// parseStat parses one /proc/PID/stat line. The comm field may hold spaces,
// parentheses and newlines, so it is delimited by the first "(" and the
// last ")".
func parseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 1 || closing < open {
		return Stat{}, errors.New("no (comm) field")
	}
	var st Stat
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b[:open])))
	if err != nil || pid <= 0 {
		return Stat{}, fmt.Errorf("field 1 (pid) %q is not a pid", b[:open])
	}
	st.PID = pid
	st.Comm = string(b[open+1 : closing])
	// Field n (1-based) of the line is rest[n-3].
	rest := strings.Fields(string(b[closing+1:]))
	if len(rest) < 20 {
		return Stat{}, fmt.Errorf("%d fields after comm, want at least 20", len(rest))
	}
	if len(rest[0]) != 1 {
		return Stat{}, fmt.Errorf("field 3 (state) %q is not one character", rest[0])
	}
	st.State = rest[0][0]
	if st.PPID, err = strconv.Atoi(rest[1]); err != nil || st.PPID < 0 {
		return Stat{}, fmt.Errorf("field 4 (ppid) %q is not a pid", rest[1])
	}
	if st.Flags, err = strconv.ParseUint(rest[6], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("field 9 (flags) %q: %w", rest[6], err)
	}
	if st.StartTicks, err = strconv.ParseUint(rest[19], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("field 22 (starttime) %q: %w", rest[19], err)
	}
	return st, nil
}

// readBounded reads a whole file but refuses one larger than max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("read %s: larger than %d bytes", path, max)
	}
	return b, nil
}

// children lists the pids whose parent is pid, from the children file of
// every task of pid (CONFIG_PROC_CHILDREN), or by scanning every process's
// ppid where that file does not exist.
func children(pid int) ([]int, error) {
	taskDir := "/proc/" + strconv.Itoa(pid) + "/task"
	if _, err := os.Stat(taskDir + "/" + strconv.Itoa(pid) + "/children"); errors.Is(err, fs.ErrNotExist) {
		if _, err := os.Stat(taskDir); err != nil {
			return nil, err
		}
		return scanChildren(pid)
	}
	tasks, err := readDirNames(taskDir, maxTasks)
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, tid := range tasks {
		if _, err := strconv.Atoi(tid); err != nil {
			continue
		}
		b, err := readBounded(taskDir+"/"+tid+"/children", maxChildrenBytes)
		if err != nil {
			// The task exited between the listing and the read.
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			kid, err := strconv.Atoi(f)
			if err != nil || kid <= 0 {
				return nil, fmt.Errorf("%s/%s/children: %q is not a pid", taskDir, tid, f)
			}
			kids = append(kids, kid)
		}
	}
	slices.Sort(kids)
	return slices.Compact(kids), nil
}

// scanChildren finds the children of pid by reading every process's ppid.
func scanChildren(pid int) ([]int, error) {
	names, err := readDirNames("/proc", 1<<22)
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, name := range names {
		p, err := strconv.Atoi(name)
		if err != nil || p <= 0 {
			continue
		}
		st, err := ReadStat(p)
		if err != nil {
			continue
		}
		if st.PPID == pid {
			kids = append(kids, p)
		}
	}
	slices.Sort(kids)
	return kids, nil
}

func readDirNames(dir string, max int) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	for {
		batch, err := f.Readdirnames(1024)
		names = append(names, batch...)
		if len(names) > max {
			return nil, fmt.Errorf("list %s: more than %d entries", dir, max)
		}
		if err == io.EOF {
			return names, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
	}
}
