package printer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// File appends JSON lines to a path and rotates it by size: path becomes
// path.1, path.1 becomes path.2, ... and path.Keep is the oldest kept.
type File struct {
	path    string
	maxSize int64
	keep    int

	f    *os.File
	size int64
	buf  []byte
}

// NewFile opens (or creates, mode 0600) path for appending. The parent
// directory must exist. The path must not be a symlink, must be a regular
// file and must have a single link, so that a planted link or FIFO cannot
// redirect or block the daemon's output.
func NewFile(path string, maxSize int64, keep int) (*File, error) {
	if path == "" {
		return nil, errors.New("file printer: empty path")
	}
	if maxSize <= 0 {
		return nil, fmt.Errorf("file printer %s: max size must be positive, got %d", path, maxSize)
	}
	if keep < 0 {
		return nil, fmt.Errorf("file printer %s: keep must not be negative, got %d", path, keep)
	}
	p := &File{path: path, maxSize: maxSize, keep: keep}
	if err := p.open(); err != nil {
		return nil, err
	}
	return p, nil
}

// Name implements Printer.
func (p *File) Name() string { return "file" }

// Path is the file being written.
func (p *File) Path() string { return p.path }

func (p *File) open() error {
	// O_NONBLOCK keeps a FIFO planted at the path from blocking the open; it
	// has no effect on the regular file we insist on below.
	fd, err := unix.Open(p.path, unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0o600)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return fmt.Errorf("open printer file %s: refusing a symlink", p.path)
		}
		return fmt.Errorf("open printer file %s: %w", p.path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return fmt.Errorf("stat printer file %s: %w", p.path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return fmt.Errorf("open printer file %s: not a regular file", p.path)
	}
	if st.Nlink != 1 {
		unix.Close(fd)
		return fmt.Errorf("open printer file %s: has %d hard links, refusing", p.path, st.Nlink)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return fmt.Errorf("open printer file %s: %w", p.path, err)
	}
	p.f = os.NewFile(uintptr(fd), p.path)
	p.size = st.Size
	return nil
}

// Write implements Printer. Lines are gathered into one write per file so
// that a rotation never splits an event across two files.
func (p *File) Write(_ context.Context, batch [][]byte) error {
	if p.f == nil {
		// A previous rotation failed half way: try again from scratch.
		if err := p.open(); err != nil {
			return err
		}
	}
	p.buf = p.buf[:0]
	for _, ev := range batch {
		n := int64(len(ev) + 1)
		if p.size+int64(len(p.buf))+n > p.maxSize && p.size+int64(len(p.buf)) > 0 {
			if err := p.flush(); err != nil {
				return err
			}
			if err := p.rotate(); err != nil {
				return err
			}
		}
		p.buf = append(p.buf, ev...)
		p.buf = append(p.buf, '\n')
	}
	return p.flush()
}

func (p *File) flush() error {
	if len(p.buf) == 0 {
		return nil
	}
	n, err := p.f.Write(p.buf)
	p.size += int64(n)
	p.buf = p.buf[:0]
	if err != nil {
		return fmt.Errorf("write printer file %s: %w", p.path, err)
	}
	return nil
}

// rotate closes the current file, shifts the old ones and opens a new one.
func (p *File) rotate() error {
	err := p.f.Sync()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.f = nil
	if err != nil {
		return fmt.Errorf("rotate printer file %s: %w", p.path, err)
	}
	if p.keep == 0 {
		if err := os.Remove(p.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate printer file %s: %w", p.path, err)
		}
	} else {
		// rename(2) replaces a symlink planted at a destination name instead
		// of following it, so shifting is safe in a hostile directory.
		if err := os.Remove(p.old(p.keep)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("rotate printer file %s: %w", p.path, err)
		}
		for i := p.keep - 1; i >= 1; i-- {
			if err := os.Rename(p.old(i), p.old(i+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("rotate printer file %s: %w", p.path, err)
			}
		}
		if err := os.Rename(p.path, p.old(1)); err != nil {
			return fmt.Errorf("rotate printer file %s: %w", p.path, err)
		}
	}
	return p.open()
}

func (p *File) old(i int) string { return p.path + "." + strconv.Itoa(i) }

// Close implements Printer: the file is synced to disk before it is closed.
func (p *File) Close(context.Context) error {
	if p.f == nil {
		return nil
	}
	err := p.f.Sync()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	p.f = nil
	if err != nil {
		return fmt.Errorf("close printer file %s: %w", p.path, err)
	}
	return nil
}
