package liveworld

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jibril-rt/jibril/engine/procfs"
	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/fsguard"
)

// procFiles serves a reaction's reads of /proc/PID/environ and /proc/PID/maps through the
// daemon's ProcFS: under Landlock the daemon may not open them for processes outside its
// domain, and these are what a reaction reads of the process it responds to. Everything
// else, and every write, goes to the guarded file system as before.
type procFiles struct {
	sandbox.GuardedFiles
	proc procfs.ProcFS
}

// procItem recognises /proc/PID/environ and /proc/PID/maps (after fsguard's cleaning, which
// refuses "..", relative paths and NUL bytes).
func procItem(p string) (procfs.Ref, bool) {
	clean, err := fsguard.Clean(p)
	if err != nil {
		return procfs.Ref{}, false
	}
	rest, ok := strings.CutPrefix(clean, "/proc/")
	if !ok {
		return procfs.Ref{}, false
	}
	pidText, name, ok := strings.Cut(rest, "/")
	if !ok || pidText == "" || pidText[0] == '0' || len(pidText) > 7 {
		return procfs.Ref{}, false
	}
	pid, err := strconv.Atoi(pidText)
	if err != nil || pid <= 0 || pid > procfs.MaxPID {
		return procfs.Ref{}, false
	}
	switch name {
	case "environ":
		return procfs.Ref{PID: int32(pid), Item: procfs.Environ}, true
	case "maps":
		return procfs.Ref{PID: int32(pid), Item: procfs.Maps}, true
	}
	return procfs.Ref{}, false
}

// ReadFile reads at most max bytes.
func (f procFiles) ReadFile(p string, max int64) ([]byte, error) {
	r, ok := procItem(p)
	if !ok {
		return f.GuardedFiles.ReadFile(p, max)
	}
	if max <= 0 {
		return nil, fmt.Errorf("fs: read %s: limit %d is not positive", p, max)
	}
	file, err := f.proc.Open(context.Background(), r)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return fsguard.ReadLimited(file, p, max)
}
