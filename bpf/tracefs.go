package bpf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// tracefsDir is where jibril mounts tracefs when it finds none: the kernel's
// canonical mount point, one of those cilium/ebpf checks.
const tracefsDir = "/sys/kernel/tracing"

// tracefs says where the tracing file system is, through which the
// syscalls tracepoints are attached (their event ids are files there).
type tracefs struct {
	Path    string
	Mounted bool // jibril mounted it: there was none
}

func (t tracefs) String() string {
	if t.Mounted {
		return "tracefs mounted by jibril at " + t.Path
	}
	return "tracefs at " + t.Path
}

// ensureTracefs finds tracefs where cilium/ebpf looks for it (the first
// tracefs of /proc/self/mountinfo, else a debugfs with a tracing directory)
// and, with mount set, mounts it at /sys/kernel/tracing when there is none.
// cilium/ebpf looks tracefs up once per process and keeps the answer,
// failures included: call this before anything in the process attaches a
// tracepoint or a kprobe.
func ensureTracefs(mount bool) (tracefs, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return tracefs{}, fmt.Errorf("find tracefs: %w", err)
	}
	defer f.Close()
	return tracefsIn(f, mount)
}

// errNoTracefs is ensureTracefs without mount when tracefs is nowhere.
var errNoTracefs = errors.New("tracefs is not mounted (jibril run mounts it at " + tracefsDir + ")")

// tracefsIn is ensureTracefs on a mountinfo listing.
func tracefsIn(mountinfo io.Reader, mount bool) (tracefs, error) {
	p, err := findTracefs(mountinfo)
	if err != nil {
		return tracefs{}, fmt.Errorf("find tracefs in /proc/self/mountinfo: %w", err)
	}
	if p != "" {
		return tracefs{Path: p}, nil
	}
	if !mount {
		return tracefs{}, errNoTracefs
	}
	if err := unix.Mount("nodev", tracefsDir, "tracefs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return tracefs{}, fmt.Errorf("tracefs is not mounted and mounting it at %s failed: %w", tracefsDir, err)
	}
	return tracefs{Path: tracefsDir, Mounted: true}, nil
}

// findTracefs returns the mount point of the first tracefs mounted from its
// root in a mountinfo listing, else the tracing directory of such a debugfs,
// else "".
func findTracefs(r io.Reader) (string, error) {
	var debugfs []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		// id parent maj:min root mount-point options [optional...] - fstype source super-options
		pre, post, ok := bytes.Cut(sc.Bytes(), []byte(" - "))
		if !ok {
			return "", fmt.Errorf("line %d: no \" - \" separator", n)
		}
		fields, typ := strings.Fields(string(pre)), strings.Fields(string(post))
		if len(fields) < 6 || len(typ) < 1 {
			return "", fmt.Errorf("line %d: %d fields before the separator, %d after", n, len(fields), len(typ))
		}
		if fields[3] != "/" {
			continue // a bind mount of a subdirectory
		}
		mp, err := unescapeMount(fields[4])
		if err != nil {
			return "", fmt.Errorf("line %d: mount point: %w", n, err)
		}
		switch typ[0] {
		case "tracefs":
			return mp, nil
		case "debugfs":
			debugfs = append(debugfs, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	for _, d := range debugfs {
		t := filepath.Join(d, "tracing")
		if st, err := os.Stat(t); err == nil && st.IsDir() {
			return t, nil
		}
	}
	return "", nil
}

// unescapeMount undoes the octal escapes (\040 for a space...) of a
// mountinfo path.
func unescapeMount(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+4 > len(s) {
			return "", fmt.Errorf("%q: truncated escape", s)
		}
		v, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("%q: bad escape %q", s, s[i:i+4])
		}
		b.WriteByte(byte(v))
		i += 3
	}
	return b.String(), nil
}
