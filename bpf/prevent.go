package bpf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// FileIDOf stats path (following symbolic links, as exec does).
func FileIDOf(path string) (FileID, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return FileID{}, fmt.Errorf("stat %s: %w", path, err)
	}
	return FileID{Dev: st.Dev, Ino: st.Ino}, nil
}

// killKey mirrors struct file_key of c/proc.bpf.c.
type killKey struct {
	Ino uint64
	Dev uint32 // kernel dev_t
	Pad uint32
}

func killKeyOf(id FileID) (killKey, error) {
	kdev, err := userDevToKernel(id.Dev)
	if err != nil {
		return killKey{}, err
	}
	return killKey{Ino: id.Ino, Dev: kdev}, nil
}

// KillOnExec makes every later exec of the file at path (its inode: hard
// links included, copies not) die of SIGKILL before its first instruction.
// The exec event is still reported, with Prevented set. It refuses
// non-regular files, #! scripts and this daemon's own executable. The key
// is {st_dev, inode}: on file systems whose st_dev is not the super
// block's device (btrfs subvolumes, overlayfs) it does not match.
func (s *Sensors) KillOnExec(path string) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return fmt.Errorf("kill on exec: stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("kill on exec: %s is not a regular file", path)
	}
	if err := refuseScript(path); err != nil {
		return err
	}
	if err := s.KillOnExecID(FileID{Dev: st.Dev, Ino: st.Ino}); err != nil {
		return fmt.Errorf("kill on exec %s: %w", path, err)
	}
	return nil
}

// refuseScript fails for "#!" scripts: the exec hook sees the image the
// kernel loaded, which for a script is its interpreter, so a kill keyed on
// the script's inode would silently never fire. Scripts need Denier.
func refuseScript(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("kill on exec: open %s: %w", path, err)
	}
	defer f.Close()
	var magic [2]byte
	if n, _ := io.ReadFull(f, magic[:]); n == 2 && string(magic[:]) == "#!" {
		return fmt.Errorf("kill on exec: %s is a #! script: the kernel runs its interpreter, deny it with fanotify instead", path)
	}
	return nil
}

// KillOnExecID is KillOnExec for a file already identified.
func (s *Sensors) KillOnExecID(id FileID) error {
	if id == s.selfExe {
		return errors.New("refusing to kill the daemon's own executable")
	}
	key, err := killKeyOf(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.killMap == nil {
		return errors.New("the proc sensor is not loaded")
	}
	if err := s.killMap.Update(key, uint32(1), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("update kill_on_exec: %w", err)
	}
	return nil
}

// ForgetKillOnExec removes the file at path from the kill-on-exec set.
func (s *Sensors) ForgetKillOnExec(path string) error {
	id, err := FileIDOf(path)
	if err != nil {
		return fmt.Errorf("forget kill on exec: %w", err)
	}
	return s.ForgetKillOnExecID(id)
}

// ForgetKillOnExecID removes a file from the kill-on-exec set; removing an
// absent file is not an error.
func (s *Sensors) ForgetKillOnExecID(id FileID) error {
	key, err := killKeyOf(id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.killMap == nil {
		return errors.New("the proc sensor is not loaded")
	}
	if err := s.killMap.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete from kill_on_exec: %w", err)
	}
	return nil
}

// KillOnExecSet lists the files of the kill-on-exec set.
func (s *Sensors) KillOnExecSet() ([]FileID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.killMap == nil {
		return nil, errors.New("the proc sensor is not loaded")
	}
	var (
		out []FileID
		k   killKey
		v   uint32
	)
	it := s.killMap.Iterate()
	for it.Next(&k, &v) {
		out = append(out, FileID{Dev: kernelDevToUser(k.Dev), Ino: k.Ino})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate kill_on_exec: %w", err)
	}
	return out, nil
}

// prefixKey mirrors struct prefix_key of c/file.bpf.c (an LPM trie key).
type prefixKey struct {
	Bits uint32
	Data [pathCap]byte
}

// FilePrefix is one entry of the in-kernel file filter: the operations
// wanted for the paths that start with Prefix.
type FilePrefix struct {
	// Prefix is a byte prefix of absolute paths: "/etc" also matches
	// "/etcetera"; use "/etc/" for a directory.
	Prefix string
	Ops    OpMask // 0 wants nothing under Prefix (the entry is inert)
}

// SetFilePrefixes is SetFileFilter with every operation wanted under each
// prefix.
func (s *Sensors) SetFilePrefixes(prefixes []string) error {
	f := make([]FilePrefix, len(prefixes))
	for i, p := range prefixes {
		f[i] = FilePrefix{Prefix: p, Ops: AllOps}
	}
	return s.SetFileFilter(f)
}

// SetFileFilter replaces the in-kernel file filter. With at least one
// entry, a file event is dropped in the kernel unless one of its absolute
// paths starts with a prefix whose Ops share an operation with the event's
// (FileEvent.Ops: an open is "open" plus create/write/truncate from its
// flags). Relative, unreadable, truncated, non-canonical and fd-only events
// always pass (the kernel cannot prove them irrelevant). Equal prefixes
// are merged (union of their Ops). An empty filter turns it off.
func (s *Sensors) SetFileFilter(filter []FilePrefix) error {
	want := make(map[string]OpMask, len(filter))
	for i, f := range filter {
		p := f.Prefix
		switch {
		case len(p) == 0 || p[0] != '/':
			return fmt.Errorf("file prefix %d (%q): not an absolute path", i, p)
		case len(p) >= pathCap:
			return fmt.Errorf("file prefix %d (%.40q...): longer than %d bytes", i, p, pathCap-1)
		case strings.IndexByte(p, 0) >= 0:
			return fmt.Errorf("file prefix %d (%q): contains a NUL byte", i, p)
		case f.Ops&^AllOps != 0:
			return fmt.Errorf("file prefix %d (%q): unknown operation bits %#x", i, p, uint32(f.Ops&^AllOps))
		}
		want[p] |= f.Ops
	}
	// The trie answers with the longest matching prefix only: each entry
	// stores its own ops and those of every shorter entry it extends.
	eff := make(map[string]OpMask, len(want))
	for p := range want {
		eff[p] = unionUpTo(want, p)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if s.prefixMap == nil {
		return errors.New("the file sensor is not loaded")
	}
	// During the switch the filter lets through at least what the new one
	// does: first every new entry with the union of its new ops and what
	// the old filter let through there, then the removals, then the exact
	// values.
	for p, m := range eff {
		if err := s.storePrefix(p, m|longestMatch(s.prefixes, p)); err != nil {
			return err
		}
	}
	on := uint32(0)
	if len(want) > 0 {
		on = 1
	}
	if err := s.setFilter(on); err != nil {
		return err
	}
	for p := range s.prefixes {
		if _, ok := want[p]; ok {
			continue
		}
		k := prefixKey{Bits: uint32(len(p)) * 8}
		copy(k.Data[:], p)
		if err := s.prefixMap.Delete(&k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("remove file prefix %q: %w", p, err)
		}
		delete(s.prefixes, p)
	}
	for p, m := range eff {
		if err := s.storePrefix(p, m); err != nil {
			return err
		}
	}
	return nil
}

// storePrefix writes one trie entry unless it already holds m.
func (s *Sensors) storePrefix(p string, m OpMask) error {
	if cur, ok := s.prefixes[p]; ok && cur == m {
		return nil
	}
	k := prefixKey{Bits: uint32(len(p)) * 8}
	copy(k.Data[:], p)
	if err := s.prefixMap.Update(&k, uint32(m), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set file prefix %q to %v: %w", p, m, err)
	}
	s.prefixes[p] = m
	return nil
}

// unionUpTo returns the union of the ops of every entry of set that is a
// prefix of p (p included).
func unionUpTo(set map[string]OpMask, p string) OpMask {
	var m OpMask
	for i := 1; i <= len(p); i++ {
		m |= set[p[:i]]
	}
	return m
}

// longestMatch returns what the trie holding set answers for path p.
func longestMatch(set map[string]OpMask, p string) OpMask {
	for i := len(p); i > 0; i-- {
		if m, ok := set[p[:i]]; ok {
			return m
		}
	}
	return 0
}

func (s *Sensors) setFilter(on uint32) error {
	var c jcfg
	if err := s.fileCfg.Lookup(uint32(0), &c); err != nil {
		return fmt.Errorf("read file cfg: %w", err)
	}
	c.FilterOn = on
	if err := s.fileCfg.Update(uint32(0), c, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("write file cfg: %w", err)
	}
	return nil
}
