// Package evidence implements CollectEvidence: a bundle of /proc facts about
// a process, written to a fresh directory with a manifest of hashes.
//
// Everything under /proc/PID is read relative to one descriptor of that
// directory, opened first: if the process exits and its pid is reused while
// we collect, the reads fail instead of describing the newcomer. What a
// Landlocked daemon cannot read itself (environ, maps, the cwd and exe links,
// the executable, the descriptors' targets) goes through Collector.Proc by
// pid, and is kept only if that descriptor still reaches the process
// afterwards: alive then, it held its pid all along.
package evidence

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/engine/procfs"
)

const (
	// MaxFileBytes caps every file copied from /proc into the bundle; a
	// larger one is kept truncated and the truncation listed in errors.
	MaxFileBytes = 4 << 20
	// maxExeBytes caps the hashing of the executable.
	maxExeBytes = 1 << 30
	// maxFDs caps the descriptors listed.
	maxFDs = procfs.MaxFDs
)

// Collector writes evidence bundles under Dir.
type Collector struct {
	Dir string           // evidence root
	Now func() time.Time // clock; nil means time.Now
	// Proc reads what Landlock hides from a confined daemon (the /proc
	// broker); nil reads /proc directly.
	Proc procfs.ProcFS
}

// Manifest describes a bundle; it is written as manifest.json.
type Manifest struct {
	PID         int         `json:"pid"`
	StartTicks  uint64      `json:"start_ticks,omitempty"`
	CollectedAt time.Time   `json:"collected_at"`
	ExeSHA256   string      `json:"exe_sha256,omitempty"`
	Files       []FileEntry `json:"files"`
	Errors      []string    `json:"errors"`
}

// FileEntry is one file of the bundle.
type FileEntry struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// FD is one open descriptor of the process (fds.json).
type FD struct {
	FD     int    `json:"fd"`
	Target string `json:"target"`
}

// Socket is one socket of the process (sockets.json), joined with its line
// in /proc/PID/net/{tcp,tcp6,udp,udp6,unix} when one matches.
type Socket struct {
	FD     int    `json:"fd"`
	Inode  uint64 `json:"inode"`
	Proto  string `json:"proto"` // tcp, tcp6, udp, udp6, unix, or "" when no table lists it
	Local  string `json:"local,omitempty"`
	Remote string `json:"remote,omitempty"`
	State  string `json:"state,omitempty"`
	Path   string `json:"path,omitempty"` // unix sockets
	Line   string `json:"line,omitempty"`
}

// Collect writes a bundle for pid into a new directory under Dir named
// "<pid>-<unix nanos>" (0700) and returns its path. What cannot be read is
// listed in the manifest's errors; a pid that does not exist is an error.
func (c *Collector) Collect(ctx context.Context, pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("collect evidence: invalid pid %d", pid)
	}
	if c.Dir == "" {
		return "", errors.New("collect evidence: no evidence directory configured")
	}
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("collect evidence for pid %d: %w", pid, err)
	}
	procDir := "/proc/" + strconv.Itoa(pid)
	pfd, err := unix.Open(procDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", fmt.Errorf("collect evidence for pid %d: no such process", pid)
		}
		return "", fmt.Errorf("collect evidence for pid %d: open %s: %w", pid, procDir, err)
	}
	defer unix.Close(pfd)

	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	at := now()
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return "", fmt.Errorf("collect evidence for pid %d: %w", pid, err)
	}
	dir := filepath.Join(c.Dir, fmt.Sprintf("%d-%d", pid, at.UnixNano()))
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("collect evidence for pid %d: %w", pid, err)
	}
	pfs := c.Proc
	if pfs == nil {
		pfs = procfs.Direct{}
	}
	b := &bundle{ctx: ctx, dir: dir, proc: pfd, procDir: procDir, pid: int32(pid), fs: pfs,
		m: Manifest{PID: pid, CollectedAt: at.UTC(), Files: []FileEntry{}, Errors: []string{}}}

	if st, err := b.read("stat"); err == nil {
		b.m.StartTicks = startTicks(st)
	}
	steps := []func(){
		func() { b.copy("cmdline") },
		func() { b.copyVia(procfs.Environ, "environ") },
		func() { b.copy("status") },
		func() { b.copy("stat") },
		func() { b.copyVia(procfs.Maps, "maps") },
		func() { b.link(procfs.Cwd, "cwd") },
		func() { b.link(procfs.Exe, "exe") },
		b.hashExe,
		b.fdsAndSockets,
	}
	for _, step := range steps {
		if err := ctx.Err(); err != nil {
			b.fail("collection cut short: %v", err)
			break
		}
		step()
	}
	if err := b.writeManifest(); err != nil {
		return "", fmt.Errorf("collect evidence for pid %d: %w", pid, err)
	}
	return dir, nil
}

type bundle struct {
	ctx     context.Context
	dir     string
	proc    int // descriptor of /proc/PID
	procDir string
	pid     int32
	fs      procfs.ProcFS
	m       Manifest
}

// alive checks that the process is still the one b.proc was opened on:
// data read by pid through b.fs is kept only then, since a process that is
// still there never gave its pid away.
func (b *bundle) alive() error {
	var st unix.Stat_t
	if err := unix.Fstatat(b.proc, "stat", &st, 0); err != nil {
		return fmt.Errorf("the process is gone, its pid may name another one now: %w", err)
	}
	return nil
}

func (b *bundle) fail(format string, args ...any) {
	b.m.Errors = append(b.m.Errors, fmt.Sprintf(format, args...))
}

// read returns a /proc/PID file, cut at MaxFileBytes (then with an error
// that says so, next to the data).
func (b *bundle) read(name string) ([]byte, error) {
	fd, err := unix.Openat(b.proc, name, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s/%s: %w", b.procDir, name, err)
	}
	f := os.NewFile(uintptr(fd), b.procDir+"/"+name)
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", b.procDir, name, err)
	}
	if len(data) > MaxFileBytes {
		return data[:MaxFileBytes], fmt.Errorf("%s/%s: %w", b.procDir, name, errTruncated)
	}
	return data, nil
}

var errTruncated = fmt.Errorf("truncated at %d bytes", MaxFileBytes)

// copy copies a /proc/PID file into the bundle under the same name.
func (b *bundle) copy(name string) {
	data, err := b.read(name)
	if err != nil {
		b.fail("%s: %v", name, err)
		if !errors.Is(err, errTruncated) {
			return
		}
	}
	b.write(name, data)
}

// readVia reads a /proc/PID file through b.fs, cut at MaxFileBytes (then
// with an error that says so, next to the data).
func (b *bundle) readVia(it procfs.Item, name string) ([]byte, error) {
	f, err := b.fs.Open(b.ctx, procfs.Ref{PID: b.pid, Item: it})
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read %s/%s: %w", b.procDir, name, err)
	}
	if err := b.alive(); err != nil {
		return nil, err
	}
	if len(data) > MaxFileBytes {
		return data[:MaxFileBytes], fmt.Errorf("%s/%s: %w", b.procDir, name, errTruncated)
	}
	return data, nil
}

// copyVia is copy for the files read through b.fs.
func (b *bundle) copyVia(it procfs.Item, name string) {
	data, err := b.readVia(it, name)
	if err != nil {
		b.fail("%s: %v", name, err)
		if !errors.Is(err, errTruncated) {
			return
		}
	}
	b.write(name, data)
}

// link records the target of a /proc/PID link.
func (b *bundle) link(it procfs.Item, name string) {
	target, err := b.fs.Readlink(b.ctx, procfs.Ref{PID: b.pid, Item: it})
	if err == nil {
		err = b.alive()
	}
	if err != nil {
		b.fail("%s: %v", name, err)
		return
	}
	b.write(name, []byte(target+"\n"))
}

// hashExe hashes the executable through /proc/PID/exe, which reaches the
// file even when it was deleted or replaced on disk after the exec.
func (b *bundle) hashExe() {
	f, err := b.fs.Open(b.ctx, procfs.Ref{PID: b.pid, Item: procfs.Exe})
	if err != nil {
		b.fail("exe.sha256: %v", err)
		return
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		b.fail("exe.sha256: %s/exe is not a regular file", b.procDir)
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(f, maxExeBytes+1))
	if err != nil {
		b.fail("exe.sha256: read %s/exe: %v", b.procDir, err)
		return
	}
	if n > maxExeBytes {
		b.fail("exe.sha256: %s/exe larger than %d bytes, not hashed", b.procDir, maxExeBytes)
		return
	}
	if err := b.alive(); err != nil {
		b.fail("exe.sha256: %v", err)
		return
	}
	b.m.ExeSHA256 = hex.EncodeToString(h.Sum(nil))
	b.write("exe.sha256", []byte(b.m.ExeSHA256+"\n"))
}

// fdsAndSockets writes fds.json and sockets.json.
func (b *bundle) fdsAndSockets() {
	fds, err := b.listFDs()
	if err != nil {
		b.fail("fds.json: %v", err)
		if fds == nil {
			return
		}
	}
	b.writeJSON("fds.json", fds)

	var socks []Socket
	for _, fd := range fds {
		if ino, ok := socketInode(fd.Target); ok {
			socks = append(socks, Socket{FD: fd.FD, Inode: ino})
		}
	}
	if socks == nil {
		socks = []Socket{}
	}
	if len(socks) > 0 {
		b.joinSockets(socks)
	}
	b.writeJSON("sockets.json", socks)
}

// listFDs reads the targets of /proc/PID/fd/*. It returns what it listed
// with an error when the listing was cut short.
func (b *bundle) listFDs() ([]FD, error) {
	links, err := b.fs.FDs(b.ctx, b.pid)
	if err == nil {
		err = b.alive()
	}
	if err != nil {
		return nil, err
	}
	fds := []FD{}
	unreadable, firstErr := 0, error(nil)
	for _, l := range links {
		if l.Err != nil {
			if unreadable++; firstErr == nil {
				firstErr = l.Err
			}
			continue
		}
		fds = append(fds, FD{FD: l.FD, Target: l.Target})
	}
	if len(links) >= maxFDs { // the listing stops there
		err = fmt.Errorf("%d descriptors or more, list cut", maxFDs)
	}
	if unreadable > 0 {
		err = errors.Join(err, fmt.Errorf("%d descriptors unreadable: %w", unreadable, firstErr))
	}
	return fds, err
}

// joinSockets fills in the sockets from the tables of the process's
// network namespace.
func (b *bundle) joinSockets(socks []Socket) {
	byInode := map[uint64][]int{}
	for i, s := range socks {
		byInode[s.Inode] = append(byInode[s.Inode], i)
	}
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6", "unix"} {
		data, err := b.read("net/" + table)
		if err != nil {
			b.fail("sockets.json: %v", err)
			if !errors.Is(err, errTruncated) {
				continue
			}
		}
		for _, e := range parseTable(table, data) {
			for _, i := range byInode[e.Inode] {
				fd := socks[i].FD
				socks[i] = e
				socks[i].FD = fd
			}
		}
	}
}

func (b *bundle) write(name string, data []byte) {
	path := filepath.Join(b.dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		b.fail("%s: %v", name, err)
		return
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr); err != nil {
		b.fail("%s: write %s: %v", name, path, err)
		return
	}
	sum := sha256.Sum256(data)
	b.m.Files = append(b.m.Files, FileEntry{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
}

func (b *bundle) writeJSON(name string, v any) {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		b.fail("%s: %v", name, err)
		return
	}
	b.write(name, append(data, '\n'))
}

func (b *bundle) writeManifest() error {
	data, err := json.MarshalIndent(b.m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	path := filepath.Join(b.dir, "manifest.json")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	_, werr := f.Write(append(data, '\n'))
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("write manifest %s: %w", path, err)
	}
	return nil
}
