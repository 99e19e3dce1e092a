package confine

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// ThreadStatus is what /proc/PID/task/TID/status says about a thread's privileges.
type ThreadStatus struct {
	TID        int
	Eff, Prm   Mask
	Inh, Bnd   Mask
	Amb        Mask
	NoNewPrivs bool
	Seccomp    int
}

// ReadStatus parses one status file (/proc/self/status, /proc/PID/task/TID/status).
func ReadStatus(path string) (ThreadStatus, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ThreadStatus{}, fmt.Errorf("read %s: %w", path, err)
	}
	st, err := parseStatus(b)
	if err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}

func parseStatus(b []byte) (ThreadStatus, error) {
	var st ThreadStatus
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		var dst *Mask
		switch k {
		case "Pid":
			n, err := strconv.Atoi(v)
			if err != nil {
				return st, fmt.Errorf("Pid: %q", v)
			}
			st.TID = n
		case "CapEff":
			dst = &st.Eff
		case "CapPrm":
			dst = &st.Prm
		case "CapInh":
			dst = &st.Inh
		case "CapBnd":
			dst = &st.Bnd
		case "CapAmb":
			dst = &st.Amb
		case "NoNewPrivs":
			st.NoNewPrivs = v == "1"
		case "Seccomp":
			st.Seccomp, _ = strconv.Atoi(v)
		default:
			continue
		}
		seen[k] = true
		if dst != nil {
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return st, fmt.Errorf("%s: %q is not a hex mask", k, v)
			}
			*dst = Mask(n)
		}
	}
	for _, k := range []string{"CapEff", "CapPrm", "CapInh", "CapBnd", "NoNewPrivs"} {
		if !seen[k] {
			return st, fmt.Errorf("no %s line", k)
		}
	}
	return st, nil
}

// Threads reads the status of every thread of this process.
func Threads() ([]ThreadStatus, error) {
	dir := fmt.Sprintf("/proc/%d/task", os.Getpid())
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list threads: %w", err)
	}
	var out []ThreadStatus
	for _, e := range ents {
		st, err := ReadStatus(filepath.Join(dir, e.Name(), "status"))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue // the thread exited meanwhile
			}
			return nil, err
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].TID < out[j].TID })
	return out, nil
}
