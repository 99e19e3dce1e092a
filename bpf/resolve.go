package bpf

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/jibril-rt/jibril/engine/lexpath"
)

// ProcLinks reads the /proc links that give a file event's relative paths their base. The
// sensors read /proc directly; a Landlocked reader cannot (the kernel refuses the links of
// processes outside its domain) and resolves through a broker instead (engine/procfs.Links,
// with Config.NoResolvePaths set). Each returns "" when the link cannot be read.
type ProcLinks interface {
	TaskCwd(tgid, tid uint32) string     // /proc/TGID/task/TID/cwd
	FDPath(tgid uint32, fd int32) string // /proc/TGID/fd/FD
}

// directLinks reads /proc itself.
type directLinks struct{}

func (directLinks) TaskCwd(tgid, tid uint32) string {
	return readLink("/proc/" + strconv.FormatUint(uint64(tgid), 10) + "/task/" + strconv.FormatUint(uint64(tid), 10) + "/cwd")
}

func (directLinks) FDPath(tgid uint32, fd int32) string {
	return readLink("/proc/" + strconv.FormatUint(uint64(tgid), 10) + "/fd/" + strconv.Itoa(int(fd)))
}

// resolveFileEvent fills AbsPath/AbsPath2 from /proc while the process is
// (hopefully) still there. Best effort: left empty when it is gone.
func resolveFileEvent(e *FileEvent) { ResolveFileEvent(e, directLinks{}) }

// ResolveFileEvent fills AbsPath/AbsPath2 of e, reading the links it needs through links.
func ResolveFileEvent(e *FileEvent, links ProcLinks) {
	switch {
	case e.FDOnly:
		if e.FD >= 0 {
			e.AbsPath = links.FDPath(e.TGID, e.FD)
		}
	default:
		e.AbsPath = absPath(links, e.TGID, e.PID, e.DirFD, e.Path, e.Relative)
	}
	if e.Path2 != "" && e.Op != OpSymlink {
		e.AbsPath2 = absPath(links, e.TGID, e.PID, e.DirFD2, e.Path2, e.Relative2)
	}
}

func absPath(links ProcLinks, tgid, pid uint32, dirfd int32, p string, relative bool) string {
	if !relative {
		// Lexical: "/tmp/../etc/x" becomes "/etc/x" (symbolic links are
		// not followed; the path may not exist yet).
		if strings.HasPrefix(p, "/") {
			return lexpath.Clean(p) // no copy of the usual, clean path
		}
		return filepath.Clean(p)
	}
	var base string
	if dirfd == AtFDCWD {
		base = links.TaskCwd(tgid, pid)
	} else {
		base = links.FDPath(tgid, dirfd)
	}
	if base == "" || !strings.HasPrefix(base, "/") {
		return ""
	}
	if p == "" { // AT_EMPTY_PATH: the dirfd itself
		return base
	}
	return filepath.Join(base, p)
}

func readLink(p string) string {
	s, err := os.Readlink(p)
	if err != nil {
		return ""
	}
	return s
}
