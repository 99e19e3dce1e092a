package sandbox

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jibril-rt/jibril/sandbox/fsguard"
	"github.com/jibril-rt/jibril/sandbox/proc"
)

// Recorder is the dry-run actuator: process, network and power effects are only remembered and
// answer success. The safety floor still applies, so a dry run shows what would be refused; a
// target that does not exist on this machine (an event from elsewhere) is not an error.
type Recorder struct {
	Floor *proc.Live

	mu      sync.Mutex
	Effects []string // "Kill 4242", "BlockPrefix 198.18.0.9/32 ttl=0s", ...
}

func (r *Recorder) note(s string) {
	r.mu.Lock()
	r.Effects = append(r.Effects, s)
	r.mu.Unlock()
}

// Recorded returns a copy of the effects recorded so far.
func (r *Recorder) Recorded() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.Effects...)
}

// Check applies the floor, tolerating targets that are not running here.
func (r *Recorder) Check(t proc.Target) error {
	if r.Floor == nil {
		return nil
	}
	if err := r.Floor.Check(t); err != nil && !errors.Is(err, proc.ErrGone) {
		return err
	}
	return nil
}

// Kill records a kill the floor allows.
func (r *Recorder) Kill(_ context.Context, t proc.Target) (int, error) {
	if err := r.Check(t); err != nil {
		return -1, err
	}
	r.note("Kill " + strconv.Itoa(t.PID))
	return 0, nil
}

// KillTree records a tree kill the floor allows.
func (r *Recorder) KillTree(_ context.Context, t proc.Target) (int, error) {
	if err := r.Check(t); err != nil {
		return -1, err
	}
	r.note("KillTree " + strconv.Itoa(t.PID))
	return 0, nil
}

// Freeze records a freeze.
func (r *Recorder) Freeze(_ context.Context, t proc.Target) (int, error) {
	r.note("Freeze " + strconv.Itoa(t.PID))
	return 0, nil
}

// Thaw records a thaw.
func (r *Recorder) Thaw(_ context.Context, t proc.Target) (int, error) {
	r.note("Thaw " + strconv.Itoa(t.PID))
	return 0, nil
}

// BlockPrefix records a block.
func (r *Recorder) BlockPrefix(_ context.Context, p netip.Prefix, ttl time.Duration, _ string) (int, error) {
	r.note("BlockPrefix " + p.String() + " ttl=" + ttl.String())
	return 0, nil
}

// UnblockPrefix records an unblock.
func (r *Recorder) UnblockPrefix(_ context.Context, p netip.Prefix) (int, error) {
	r.note("UnblockPrefix " + p.String())
	return 0, nil
}

// BlockDomain records a domain block.
func (r *Recorder) BlockDomain(_ context.Context, d, _ string) (int, error) {
	r.note("BlockDomain " + d)
	return 0, nil
}

// UnblockDomain records a domain unblock.
func (r *Recorder) UnblockDomain(_ context.Context, d string) (int, error) {
	r.note("UnblockDomain " + d)
	return 0, nil
}

// PowerOff records a power-off: nothing else ever happens in a dry run.
func (r *Recorder) PowerOff(context.Context) error { r.note("PowerOff"); return nil }

// Panic records a kernel panic request.
func (r *Recorder) Panic(context.Context) error { r.note("Panic"); return nil }

// GuardedFiles adapts fsguard (openat2 beneath a root, no symlinks) to Files.
type GuardedFiles struct{ FS *fsguard.FS }

// ReadFile reads at most max bytes.
func (g GuardedFiles) ReadFile(p string, max int64) ([]byte, error) { return g.FS.ReadFile(p, max) }

// WriteFile creates or truncates with mode 0600.
func (g GuardedFiles) WriteFile(p string, data []byte) error { return g.FS.WriteFile(p, data) }

// Stat describes a file.
func (g GuardedFiles) Stat(p string) (FileInfo, error) {
	i, err := g.FS.Stat(p)
	return FileInfo{Size: i.Size, Mode: i.Mode, ModTime: i.ModTime, IsDir: i.IsDir}, err
}

// HashFile returns the sha256 of a file.
func (g GuardedFiles) HashFile(p string) (string, error) { return g.FS.HashFile(p) }

// MkdirTemp makes a 0700 directory.
func (g GuardedFiles) MkdirTemp(dir, pattern string) (string, error) {
	return g.FS.MkdirTemp(dir, pattern)
}

// RemoveAll removes a tree without following links.
func (g GuardedFiles) RemoveAll(p string) error { return g.FS.RemoveAll(p) }

// Collect records an evidence collection.
func (r *Recorder) Collect(_ context.Context, pid int) (string, error) {
	r.note("CollectEvidence " + strconv.Itoa(pid))
	return "", nil
}

// ReadOnlyFiles reads through Files and records what would be written: the daemon's dry-run
// world, where a reaction may look at the system but changes nothing on it.
type ReadOnlyFiles struct {
	Files Files
	Rec   *Recorder
}

// ReadFile reads for real.
func (f ReadOnlyFiles) ReadFile(p string, max int64) ([]byte, error) { return f.Files.ReadFile(p, max) }

// Stat reads for real.
func (f ReadOnlyFiles) Stat(p string) (FileInfo, error) { return f.Files.Stat(p) }

// HashFile reads for real.
func (f ReadOnlyFiles) HashFile(p string) (string, error) { return f.Files.HashFile(p) }

// WriteFile records the write.
func (f ReadOnlyFiles) WriteFile(p string, data []byte) error {
	f.Rec.note("WriteFile " + p + " (" + strconv.Itoa(len(data)) + " bytes)")
	return nil
}

// MkdirTemp records the directory it would make and names it.
func (f ReadOnlyFiles) MkdirTemp(dir, pattern string) (string, error) {
	name := strings.Replace(pattern, "*", "dry-run", 1)
	if !strings.Contains(pattern, "*") {
		name = pattern + "dry-run"
	}
	p := filepath.Join(dir, name)
	f.Rec.note("MkdirTemp " + p)
	return p, nil
}

// RemoveAll records the removal.
func (f ReadOnlyFiles) RemoveAll(p string) error {
	f.Rec.note("RemoveAll " + p)
	return nil
}
