// Package fsguard is the file system behind the ReadFile, WriteFile, Stat,
// HashFile, CreateTempDir and RemoveDir helpers.
//
// The capability policy grants paths by glob; this package makes sure the
// path that was matched is the file that is touched. Every path is cleaned
// and refused if it holds "..", and every open goes through openat2(2) from a
// descriptor of the root with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
// RESOLVE_NO_MAGICLINKS, so neither ".." nor a symlink in any component can
// lead elsewhere.
package fsguard

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Errors wrapped by the refusals of this package.
var (
	ErrSymlink   = errors.New("symlink refused")
	ErrEscape    = errors.New("path escapes the root")
	ErrProtected = errors.New("writes under /proc, /sys and /dev are refused")
	ErrNotFile   = errors.New("not a regular file")
	ErrHardlink  = errors.New("hard-linked file refused")
	ErrTooLarge  = errors.New("file too large")
	ErrMount     = errors.New("crosses a mount point")
)

const (
	resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS
	// maxPath is PATH_MAX: longer paths are refused before any syscall.
	maxPath = 4096
	// maxHash bounds HashFile (a /proc file such as kcore claims terabytes).
	maxHash = 4 << 30
	// maxDepth bounds the recursion of RemoveAll.
	maxDepth = 256
	// openRetries bounds the retries of openat2 when a concurrent rename
	// makes the kernel answer EAGAIN.
	openRetries = 16
)

// Info is what Stat returns.
type Info struct {
	Size    int64
	Mode    fs.FileMode
	ModTime time.Time
	IsDir   bool
}

// FS is a file system rooted at a directory descriptor.
type FS struct {
	root    string
	fd      int
	scratch bool
}

// New roots the FS at root: "/" is the live system; any other directory is
// a scratch root (dry-run), where the path /etc/x maps to root/etc/x.
// The root itself is trusted configuration and may be reached through
// symlinks; nothing below it may.
func New(root string) (*FS, error) {
	clean, err := Clean(root)
	if err != nil {
		return nil, fmt.Errorf("fs root: %w", err)
	}
	fd, err := unix.Open(clean, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("fs root %s: %w", clean, err)
	}
	// Probe openat2 once so that an old kernel fails here, not per call.
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: resolve}
	probe, err := unix.Openat2(fd, ".", &how)
	if err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.ENOSYS) {
			return nil, fmt.Errorf("fs root %s: openat2 is not supported by this kernel (5.6 or later needed)", clean)
		}
		return nil, fmt.Errorf("fs root %s: openat2: %w", clean, err)
	}
	unix.Close(probe)
	return &FS{root: clean, fd: fd, scratch: clean != "/"}, nil
}

// Close releases the root descriptor.
func (f *FS) Close() error {
	if f.fd < 0 {
		return nil
	}
	err := unix.Close(f.fd)
	f.fd = -1
	return err
}

// Root returns the directory the FS is rooted at.
func (f *FS) Root() string { return f.root }

// Clean returns path cleaned. It refuses an empty or relative path, a NUL
// byte, any ".." component (checked before cleaning, so that "/a/../b"
// cannot slip past a glob on "/a/**") and a path longer than PATH_MAX.
func Clean(path string) (string, error) {
	switch {
	case path == "":
		return "", errors.New("fs: empty path")
	case len(path) > maxPath:
		return "", fmt.Errorf("fs: path longer than %d bytes", maxPath)
	case strings.IndexByte(path, 0) >= 0:
		return "", fmt.Errorf("fs: %q: NUL byte in path", path)
	case path[0] != '/':
		return "", fmt.Errorf("fs: %s: relative path refused", path)
	}
	for _, c := range strings.Split(path, "/") {
		if c == ".." {
			return "", fmt.Errorf("fs: %s: \"..\" refused", path)
		}
	}
	// Lexical cleaning is safe now that no component is "..".
	var out []string
	for _, c := range strings.Split(path, "/") {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return "/" + strings.Join(out, "/"), nil
}

// rel turns a clean absolute path into the path relative to the root.
func rel(clean string) string {
	if clean == "/" {
		return "."
	}
	return clean[1:]
}

func refuseWrite(clean string) error {
	if clean == "/" {
		return fmt.Errorf("fs: /: %w", ErrProtected)
	}
	for _, p := range []string{"/proc", "/sys", "/dev"} {
		if clean == p || strings.HasPrefix(clean, p+"/") {
			return fmt.Errorf("fs: %s: %w", clean, ErrProtected)
		}
	}
	return nil
}

// openat2 opens name beneath dirfd, retrying on EAGAIN/EINTR.
func openat2(dirfd int, name string, flags uint64, mode uint64) (int, error) {
	how := unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Mode: mode, Resolve: resolve}
	var err error
	for range openRetries {
		var fd int
		fd, err = unix.Openat2(dirfd, name, &how)
		if err == nil {
			return fd, nil
		}
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			break
		}
	}
	return -1, err
}

// pathErr turns an errno from a call on clean into a clear error. For a
// symlink it names the component that is the link.
func (f *FS) pathErr(op, clean string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("fs: %s: %w", f.findSymlink(clean), ErrSymlink)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("fs: %s: %w", clean, ErrEscape)
	}
	return fmt.Errorf("fs: %s %s: %w", op, clean, err)
}

// findSymlink returns the first component of clean that is a symlink, or
// clean itself when none is found (the tree changed meanwhile).
func (f *FS) findSymlink(clean string) string {
	parts := strings.Split(rel(clean), "/")
	for i := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		fd, err := openat2(f.fd, prefix, unix.O_PATH|unix.O_NOFOLLOW, 0)
		if err != nil {
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		unix.Close(fd)
		if err == nil && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return "/" + prefix
		}
	}
	return clean
}

// openRegular opens an existing regular file. It first inspects the file
// through an O_PATH descriptor, which has no side effect, so that a FIFO or
// a device (whose open may block or act) is refused before it is opened,
// then checks that the opened file is the one inspected.
func (f *FS) openRegular(op, clean string, flags uint64) (*os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	pfd, err := openat2(f.fd, rel(clean), unix.O_PATH, 0)
	if err != nil {
		return nil, st, f.pathErr(op, clean, err)
	}
	err = unix.Fstat(pfd, &st)
	unix.Close(pfd)
	if err != nil {
		return nil, st, fmt.Errorf("fs: stat %s: %w", clean, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, st, fmt.Errorf("fs: %s: %w", clean, ErrNotFile)
	}
	fd, err := openat2(f.fd, rel(clean), flags|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, st, f.pathErr(op, clean, err)
	}
	var st2 unix.Stat_t
	if err := unix.Fstat(fd, &st2); err != nil {
		unix.Close(fd)
		return nil, st, fmt.Errorf("fs: stat %s: %w", clean, err)
	}
	if st2.Dev != st.Dev || st2.Ino != st.Ino || st2.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, st, fmt.Errorf("fs: %s: replaced while being opened", clean)
	}
	return os.NewFile(uintptr(fd), clean), st2, nil
}

// ReadFile returns the content of a regular file, refusing one larger than
// max bytes. Files of /proc report size 0, so the limit is applied to what
// is read, not to the size.
func (f *FS) ReadFile(path string, max int64) ([]byte, error) {
	clean, err := Clean(path)
	if err != nil {
		return nil, err
	}
	if max <= 0 {
		return nil, fmt.Errorf("fs: read %s: limit %d is not positive", clean, max)
	}
	file, _, err := f.openRegular("read", clean, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	return ReadLimited(file, clean, max)
}

// ReadLimited reads all of r, refusing more than max bytes (ErrTooLarge); name is for errors.
func ReadLimited(r io.Reader, name string, max int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, fmt.Errorf("fs: read %s: %w", name, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("fs: read %s: %w (more than %d bytes)", name, ErrTooLarge, max)
	}
	return b, nil
}

// HashFile returns the sha256 of a regular file in hex.
func (f *FS) HashFile(path string) (string, error) {
	clean, err := Clean(path)
	if err != nil {
		return "", err
	}
	file, _, err := f.openRegular("hash", clean, unix.O_RDONLY)
	if err != nil {
		return "", err
	}
	defer file.Close()
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(file, maxHash+1))
	if err != nil {
		return "", fmt.Errorf("fs: hash %s: %w", clean, err)
	}
	if n > maxHash {
		return "", fmt.Errorf("fs: hash %s: %w (more than %d bytes)", clean, ErrTooLarge, int64(maxHash))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Stat describes a file. A symlink in any component, the last included, is
// refused like everywhere else.
func (f *FS) Stat(path string) (Info, error) {
	clean, err := Clean(path)
	if err != nil {
		return Info{}, err
	}
	fd, err := openat2(f.fd, rel(clean), unix.O_PATH, 0)
	if err != nil {
		return Info{}, f.pathErr("stat", clean, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return Info{}, fmt.Errorf("fs: stat %s: %w", clean, err)
	}
	mode := fileMode(st.Mode)
	return Info{
		Size:    st.Size,
		Mode:    mode,
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		IsDir:   mode.IsDir(),
	}, nil
}

// WriteFile creates or truncates a regular file and writes data. A new file
// gets mode 0600 whatever the umask; an existing file keeps its mode and
// owner, and is refused when it has other hard links (a link planted to
// make us overwrite another file). Missing parent directories are an error
// on the live root and are created 0700 in a scratch root.
func (f *FS) WriteFile(path string, data []byte) error {
	clean, err := Clean(path)
	if err != nil {
		return err
	}
	if err := refuseWrite(clean); err != nil {
		return err
	}
	dir, base := splitPath(clean)
	dfd, err := f.openDir(dir, f.scratch)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := refuseSpecialFS(dfd, dir); err != nil {
		return err
	}

	const wflags = unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_NOCTTY
	created := true
	fd, err := openat2(dfd, base, wflags|unix.O_CREAT|unix.O_EXCL, 0o600)
	if errors.Is(err, unix.EEXIST) {
		created = false
		fd, err = f.openExisting(dfd, base, clean, wflags)
	}
	if err != nil {
		if _, ok := errors.AsType[*refusal](err); ok {
			return err
		}
		return f.pathErr("write", clean, err)
	}
	file := os.NewFile(uintptr(fd), clean)
	defer file.Close()
	if created {
		if err := file.Chmod(0o600); err != nil {
			return fmt.Errorf("fs: chmod %s: %w", clean, err)
		}
	} else if err := file.Truncate(0); err != nil {
		return fmt.Errorf("fs: truncate %s: %w", clean, err)
	}
	if _, err := file.Write(data); err != nil {
		return fmt.Errorf("fs: write %s: %w", clean, err)
	}
	if err := file.Close(); err != nil {
		return fmt.Errorf("fs: close %s: %w", clean, err)
	}
	return nil
}

// refusal marks errors that are already worded for the caller.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// openExisting opens an existing file for writing, without truncating it,
// after checking through O_PATH that it is a regular file with one link.
func (f *FS) openExisting(dfd int, base, clean string, flags uint64) (int, error) {
	pfd, err := openat2(dfd, base, unix.O_PATH|unix.O_NOFOLLOW, 0)
	if err != nil {
		return -1, err
	}
	var st unix.Stat_t
	err = unix.Fstat(pfd, &st)
	unix.Close(pfd)
	if err != nil {
		return -1, err
	}
	if err := checkWritable(clean, st); err != nil {
		return -1, err
	}
	fd, err := openat2(dfd, base, flags, 0)
	if err != nil {
		return -1, err
	}
	var st2 unix.Stat_t
	if err := unix.Fstat(fd, &st2); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if st2.Dev != st.Dev || st2.Ino != st.Ino {
		unix.Close(fd)
		return -1, &refusal{fmt.Errorf("fs: %s: replaced while being opened", clean)}
	}
	if err := checkWritable(clean, st2); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func checkWritable(clean string, st unix.Stat_t) error {
	switch {
	case st.Mode&unix.S_IFMT == unix.S_IFLNK:
		return &refusal{fmt.Errorf("fs: %s: %w", clean, ErrSymlink)}
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return &refusal{fmt.Errorf("fs: %s: %w", clean, ErrNotFile)}
	case st.Nlink > 1:
		return &refusal{fmt.Errorf("fs: %s: %w (%d links)", clean, ErrHardlink, st.Nlink)}
	}
	return nil
}

// refuseSpecialFS refuses writes into kernel file systems wherever they are
// mounted (a bind mount of /proc elsewhere, cgroupfs, debugfs...).
func refuseSpecialFS(dfd int, dir string) error {
	var s unix.Statfs_t
	if err := unix.Fstatfs(dfd, &s); err != nil {
		return fmt.Errorf("fs: statfs %s: %w", dir, err)
	}
	switch s.Type {
	case unix.PROC_SUPER_MAGIC, unix.SYSFS_MAGIC, unix.CGROUP_SUPER_MAGIC, unix.CGROUP2_SUPER_MAGIC,
		unix.DEBUGFS_MAGIC, unix.TRACEFS_MAGIC, unix.SECURITYFS_MAGIC, unix.BPF_FS_MAGIC,
		unix.DEVPTS_SUPER_MAGIC, unix.EFIVARFS_MAGIC:
		return fmt.Errorf("fs: %s: %w (kernel file system 0x%x)", dir, ErrProtected, s.Type)
	}
	return nil
}

// openDir opens a directory beneath the root as an O_PATH descriptor. With
// create, missing components are made 0700 one at a time, each made and
// then opened relative to its verified parent.
func (f *FS) openDir(clean string, create bool) (int, error) {
	if !create {
		fd, err := openat2(f.fd, rel(clean), unix.O_PATH|unix.O_DIRECTORY, 0)
		if err != nil {
			return -1, f.pathErr("open directory", clean, err)
		}
		return fd, nil
	}
	fd, err := unix.Dup(f.fd)
	if err != nil {
		return -1, fmt.Errorf("fs: dup root: %w", err)
	}
	if clean == "/" {
		return fd, nil
	}
	for _, c := range strings.Split(rel(clean), "/") {
		err := unix.Mkdirat(fd, c, 0o700)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return -1, fmt.Errorf("fs: mkdir %s: %w", clean, err)
		}
		next, err := openat2(fd, c, unix.O_PATH|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			return -1, f.pathErr("open directory", clean, err)
		}
		fd = next
	}
	return fd, nil
}

func splitPath(clean string) (dir, base string) {
	i := strings.LastIndexByte(clean, '/')
	dir, base = clean[:i], clean[i+1:]
	if dir == "" {
		dir = "/"
	}
	return dir, base
}

// MkdirTemp creates a new directory with mode 0700 in dir and returns its
// path. A pattern ending in "*" has the star replaced by a random string,
// otherwise the random string is appended; "" means "jibril-*".
func (f *FS) MkdirTemp(dir, pattern string) (string, error) {
	clean, err := Clean(dir)
	if err != nil {
		return "", err
	}
	if err := refuseWrite(clean); err != nil && clean != "/" {
		return "", err
	}
	if pattern == "" {
		pattern = "jibril-*"
	}
	if strings.ContainsAny(pattern, "/\x00") || pattern == "." || pattern == ".." || len(pattern) > 200 {
		return "", fmt.Errorf("fs: temp dir pattern %q refused", pattern)
	}
	prefix, suffix := pattern, ""
	if i := strings.LastIndexByte(pattern, '*'); i >= 0 {
		prefix, suffix = pattern[:i], pattern[i+1:]
	}
	dfd, err := f.openDir(clean, f.scratch)
	if err != nil {
		return "", err
	}
	defer unix.Close(dfd)
	if err := refuseSpecialFS(dfd, clean); err != nil {
		return "", err
	}
	for range 100 {
		var rnd [6]byte
		rand.Read(rnd[:])
		name := prefix + hex.EncodeToString(rnd[:]) + suffix
		err := unix.Mkdirat(dfd, name, 0o700)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		path := strings.TrimSuffix(clean, "/") + "/" + name
		if err != nil {
			return "", fmt.Errorf("fs: mkdir %s: %w", path, err)
		}
		// Undo whatever the umask removed from 0700.
		fd, err := openat2(dfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return "", f.pathErr("open directory", path, err)
		}
		err = unix.Fchmod(fd, 0o700)
		unix.Close(fd)
		if err != nil {
			return "", fmt.Errorf("fs: chmod %s: %w", path, err)
		}
		return path, nil
	}
	return "", fmt.Errorf("fs: mkdir in %s: no free name for pattern %q", clean, pattern)
}

// RemoveAll removes path and, for a directory, everything below it. It
// never follows a symlink (links inside the tree are removed, not
// followed; a link as path itself is refused) and never descends into
// another mounted file system. A path that does not exist is not an error.
func (f *FS) RemoveAll(path string) error {
	clean, err := Clean(path)
	if err != nil {
		return err
	}
	if err := refuseWrite(clean); err != nil {
		return err
	}
	dir, base := splitPath(clean)
	dfd, err := f.openDir(dir, false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	if err := refuseSpecialFS(dfd, dir); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("fs: stat %s: %w", clean, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFLNK:
		return fmt.Errorf("fs: %s: %w", clean, ErrSymlink)
	case unix.S_IFDIR:
		if err := removeContents(dfd, base, clean, st.Dev, 0); err != nil {
			return err
		}
		if err := unix.Unlinkat(dfd, base, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("fs: remove %s: %w", clean, err)
		}
	default:
		if err := unix.Unlinkat(dfd, base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("fs: remove %s: %w", clean, err)
		}
	}
	return nil
}

// removeContents empties the directory name beneath parent.
func removeContents(parent int, name, path string, dev uint64, depth int) error {
	if depth >= maxDepth {
		return fmt.Errorf("fs: remove %s: deeper than %d levels", path, maxDepth)
	}
	fd, err := openat2(parent, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return fmt.Errorf("fs: %s: %w", path, ErrSymlink)
		}
		return fmt.Errorf("fs: open %s: %w", path, err)
	}
	dir := os.NewFile(uintptr(fd), path)
	defer dir.Close()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fs: stat %s: %w", path, err)
	}
	if st.Dev != dev {
		return fmt.Errorf("fs: remove %s: %w", path, ErrMount)
	}
	for {
		names, err := dir.Readdirnames(256)
		for _, n := range names {
			child := path + "/" + n
			var cst unix.Stat_t
			if err := unix.Fstatat(fd, n, &cst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				if errors.Is(err, unix.ENOENT) {
					continue
				}
				return fmt.Errorf("fs: stat %s: %w", child, err)
			}
			if cst.Mode&unix.S_IFMT == unix.S_IFDIR {
				if err := removeContents(fd, n, child, dev, depth+1); err != nil {
					return err
				}
				if err := unix.Unlinkat(fd, n, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
					return fmt.Errorf("fs: remove %s: %w", child, err)
				}
				continue
			}
			if err := unix.Unlinkat(fd, n, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("fs: remove %s: %w", child, err)
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("fs: list %s: %w", path, err)
		}
		if len(names) == 0 {
			return nil
		}
	}
}

// fileMode converts a stat mode to an fs.FileMode.
func fileMode(m uint32) fs.FileMode {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode
}
