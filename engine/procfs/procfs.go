// Package procfs is the one seam for the /proc reads that Landlock takes from a confined
// process: the links /proc/PID/{exe,cwd,root}, /proc/PID/task/TID/cwd and /proc/PID/fd/N, the
// files /proc/PID/{environ,maps} and the executable behind /proc/PID/exe. Once the daemon is
// Landlocked the kernel refuses them for every process outside its domain, whatever its
// capabilities (Landlock's ptrace hook denies ptrace_may_access); /proc/PID/{stat,status,
// cmdline,cgroup,net/*,task/*/children} and the listing of /proc/PID/fd stay readable and are
// read directly by their users.
//
// Two implementations: Direct reads /proc itself (tests, `sandbox exec`, a daemon without
// Landlock), Client asks the broker, a helper process started before Landlock is applied (so
// outside the domain) that serves only the fixed requests of this package.
package procfs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Item names one entry of /proc/PID.
type Item uint8

// The entries served. The numbers are the wire format: never renumber.
const (
	Exe     Item = 1 // /proc/PID/exe
	Cwd     Item = 2 // /proc/PID/cwd
	Root    Item = 3 // /proc/PID/root
	TaskCwd Item = 4 // /proc/PID/task/TID/cwd (Ref.Arg is TID)
	FD      Item = 5 // /proc/PID/fd/N (Ref.Arg is N)
	Environ Item = 6 // /proc/PID/environ
	Maps    Item = 7 // /proc/PID/maps
)

// Limits on what is asked and answered.
const (
	// MaxPID is the kernel's PID_MAX_LIMIT: no pid or tid is larger.
	MaxPID = 4 << 20
	// MaxFD bounds descriptor numbers (the kernel's NR_OPEN ceiling is 1<<30).
	MaxFD = 1 << 30
	// MaxLink bounds a link target; longer ones are refused (ENAMETOOLONG).
	MaxLink = 4096
	// MaxFDs bounds the descriptors FDs lists.
	MaxFDs = 1 << 16
)

// ErrRefused is wrapped by every request refused before /proc is touched.
var ErrRefused = errors.New("procfs: request refused")

// Ref is one entry of one process.
type Ref struct {
	PID  int32
	Item Item
	Arg  int32 // TID of TaskCwd, descriptor of FD, else 0
}

// op is what is done with a Ref (wire format: never renumber).
type op uint8

const (
	opReadlink op = 1
	opStat     op = 2
	opOpen     op = 3
	opFDs      op = 4
)

func (o op) String() string {
	switch o {
	case opReadlink:
		return "readlink"
	case opStat:
		return "stat"
	case opOpen:
		return "open"
	case opFDs:
		return "list"
	}
	return "op " + strconv.Itoa(int(o))
}

// allowed says which items each operation serves.
func allowed(o op, it Item) bool {
	switch o {
	case opReadlink:
		return it == Exe || it == Cwd || it == Root || it == TaskCwd || it == FD
	case opStat:
		return it == Exe
	case opOpen:
		return it == Exe || it == Environ || it == Maps
	}
	return false
}

// check validates r for o: a pid and tid in 1..MaxPID, a descriptor in 0..MaxFD-1, an item
// the operation serves, and no argument where the item takes none.
func (r Ref) check(o op) error {
	if r.PID <= 0 || r.PID > MaxPID {
		return fmt.Errorf("%w: pid %d is not in 1..%d", ErrRefused, r.PID, MaxPID)
	}
	if o == opFDs {
		if r.Item != 0 || r.Arg < 0 || r.Arg >= MaxFD {
			return fmt.Errorf("%w: listing takes no item and a start descriptor in 0..%d", ErrRefused, MaxFD-1)
		}
		return nil
	}
	if !allowed(o, r.Item) {
		return fmt.Errorf("%w: %s of item %d is not served", ErrRefused, o, r.Item)
	}
	switch r.Item {
	case TaskCwd:
		if r.Arg <= 0 || r.Arg > MaxPID {
			return fmt.Errorf("%w: tid %d is not in 1..%d", ErrRefused, r.Arg, MaxPID)
		}
	case FD:
		if r.Arg < 0 || r.Arg >= MaxFD {
			return fmt.Errorf("%w: descriptor %d is not in 0..%d", ErrRefused, r.Arg, MaxFD-1)
		}
	default:
		if r.Arg != 0 {
			return fmt.Errorf("%w: item %d takes no argument (got %d)", ErrRefused, r.Item, r.Arg)
		}
	}
	return nil
}

// path is the file r names under root. Only numbers and constant names go into it.
func (r Ref) path(root string) string {
	dir := root + "/" + strconv.Itoa(int(r.PID))
	switch r.Item {
	case Exe:
		return dir + "/exe"
	case Cwd:
		return dir + "/cwd"
	case Root:
		return dir + "/root"
	case TaskCwd:
		return dir + "/task/" + strconv.Itoa(int(r.Arg)) + "/cwd"
	case FD:
		return dir + "/fd/" + strconv.Itoa(int(r.Arg))
	case Environ:
		return dir + "/environ"
	case Maps:
		return dir + "/maps"
	}
	return dir + "/fd" // listing
}

// String is the /proc path of r, for messages.
func (r Ref) String() string { return r.path("/proc") }

// FileInfo is what Stat tells of the file a link leads to.
type FileInfo struct {
	Dev, Ino uint64
	Mode     uint32 // st_mode
	Size     int64
}

// FDLink is one open descriptor and its target; Err is set when the target is unreadable.
type FDLink struct {
	FD     int
	Target string
	Err    error
}

// ProcFS reads what Landlock hides. Every method fails for a request Ref.check refuses
// (ErrRefused); errors from /proc are *fs.PathError with the errno, as os returns them.
type ProcFS interface {
	// Readlink reads the link Exe, Cwd, Root, TaskCwd or FD.
	Readlink(ctx context.Context, r Ref) (string, error)
	// Stat describes the file the Exe link leads to.
	Stat(ctx context.Context, r Ref) (FileInfo, error)
	// Open opens Exe, Environ or Maps read-only.
	Open(ctx context.Context, r Ref) (*os.File, error)
	// FDs lists the open descriptors of pid with their targets, by number, at most MaxFDs;
	// a descriptor closed meanwhile is left out.
	FDs(ctx context.Context, pid int32) ([]FDLink, error)
}

// Direct reads /proc itself, as the calling process: what a Landlocked process asks of it
// about a process outside its domain fails with EACCES.
type Direct struct {
	Root string // "" = /proc; tests point it at a fake tree
}

func (d Direct) root() string {
	if d.Root == "" {
		return "/proc"
	}
	return d.Root
}

// Readlink implements ProcFS.
func (d Direct) Readlink(_ context.Context, r Ref) (string, error) {
	if err := r.check(opReadlink); err != nil {
		return "", err
	}
	return readlink(r.path(d.root()))
}

// Stat implements ProcFS.
func (d Direct) Stat(_ context.Context, r Ref) (FileInfo, error) {
	if err := r.check(opStat); err != nil {
		return FileInfo{}, err
	}
	return stat(r.path(d.root()))
}

// Open implements ProcFS.
func (d Direct) Open(_ context.Context, r Ref) (*os.File, error) {
	if err := r.check(opOpen); err != nil {
		return nil, err
	}
	fd, err := openItem(r.path(d.root()), r.Item)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), r.path(d.root())), nil
}

// FDs implements ProcFS.
func (d Direct) FDs(_ context.Context, pid int32) ([]FDLink, error) {
	r := Ref{PID: pid}
	if err := r.check(opFDs); err != nil {
		return nil, err
	}
	links, _, err := listFDs(r.path(d.root()), 0, MaxFDs, -1)
	return links, err
}

// readlink reads one link, refusing targets longer than MaxLink.
func readlink(p string) (string, error) {
	buf := make([]byte, MaxLink+1)
	n, err := unix.Readlink(p, buf)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: err}
	}
	if n > MaxLink {
		return "", &fs.PathError{Op: "readlink", Path: p, Err: syscall.ENAMETOOLONG}
	}
	return string(buf[:n]), nil
}

func stat(p string) (FileInfo, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return FileInfo{}, &fs.PathError{Op: "stat", Path: p, Err: err}
	}
	return FileInfo{Dev: st.Dev, Ino: st.Ino, Mode: st.Mode, Size: st.Size}, nil
}

// openItem opens an item read-only. exe is a link to follow (to a regular file only); the
// other items are files of /proc itself.
func openItem(p string, it Item) (int, error) {
	flags := unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NONBLOCK | unix.O_NOCTTY
	if it != Exe {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(p, flags, 0)
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: p, Err: err}
	}
	if it == Exe {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			unix.Close(fd)
			return -1, &fs.PathError{Op: "open", Path: p, Err: syscall.EINVAL}
		}
	}
	return fd, nil
}

// listFDs reads the targets of the descriptors numbered from start on in dir (/proc/PID/fd),
// at most max of them; budget > 0 also stops once the targets add up to that many bytes.
// next is the first descriptor left out, -1 when none was.
func listFDs(dir string, start, max, budget int) (links []FDLink, next int, err error) {
	dfd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, -1, &fs.PathError{Op: "open", Path: dir, Err: err}
	}
	f := os.NewFile(uintptr(dfd), dir)
	defer f.Close()
	var nums []int
	const maxNames = 1 << 20 // a listing is bounded even if the kernel kept answering
	for len(nums) < maxNames {
		names, rerr := f.Readdirnames(4096)
		for _, n := range names {
			if v, err := strconv.Atoi(n); err == nil && v >= start && v < MaxFD {
				nums = append(nums, v)
			}
		}
		if rerr != nil || len(names) == 0 {
			break
		}
	}
	sort.Ints(nums)
	next, used := -1, 0
	buf := make([]byte, MaxLink+1)
	for _, n := range nums {
		if len(links) >= max {
			next = n
			break
		}
		name := strconv.Itoa(n)
		l, rerr := unix.Readlinkat(dfd, name, buf)
		link := FDLink{FD: n}
		switch {
		case errors.Is(rerr, unix.ENOENT):
			continue // closed meanwhile
		case rerr != nil:
			link.Err = &fs.PathError{Op: "readlink", Path: dir + "/" + name, Err: rerr}
		case l > MaxLink:
			link.Err = &fs.PathError{Op: "readlink", Path: dir + "/" + name, Err: syscall.ENAMETOOLONG}
		default:
			link.Target = string(buf[:l])
		}
		if size := fdEntryHeader + len(link.Target); budget > 0 && used+size > budget {
			next = n
			break
		} else {
			used += size
		}
		links = append(links, link)
	}
	return links, next, nil
}
