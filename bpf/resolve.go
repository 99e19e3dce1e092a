package bpf

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// resolveFileEvent fills AbsPath/AbsPath2 from /proc while the process is
// (hopefully) still there. Best effort: left empty when it is gone.
func resolveFileEvent(e *FileEvent) {
	tgid := strconv.FormatUint(uint64(e.TGID), 10)
	switch {
	case e.FDOnly:
		if e.FD >= 0 {
			e.AbsPath = readLink("/proc/" + tgid + "/fd/" + strconv.Itoa(int(e.FD)))
		}
	default:
		e.AbsPath = absPath(tgid, e.PID, e.DirFD, e.Path, e.Relative)
	}
	if e.Path2 != "" && e.Op != OpSymlink {
		e.AbsPath2 = absPath(tgid, e.PID, e.DirFD2, e.Path2, e.Relative2)
	}
}

func absPath(tgid string, pid uint32, dirfd int32, p string, relative bool) string {
	if !relative {
		// Lexical: "/tmp/../etc/x" becomes "/etc/x" (symbolic links are
		// not followed; the path may not exist yet).
		return filepath.Clean(p)
	}
	var base string
	if dirfd == AtFDCWD {
		base = readLink("/proc/" + tgid + "/task/" + strconv.FormatUint(uint64(pid), 10) + "/cwd")
	} else {
		base = readLink("/proc/" + tgid + "/fd/" + strconv.Itoa(int(dirfd)))
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
