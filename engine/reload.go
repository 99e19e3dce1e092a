package engine

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Watch reloads the recipes when a directory source changes (a file added, removed, resized
// or rewritten) and on every value received from reload (SIGHUP). It polls: the directories
// are few and small, and polling also sees changes made through bind mounts and ConfigMap
// symlink swaps that inotify misses. onLoad is told about every new generation. Watch
// returns when ctx ends.
func (e *Engine) Watch(ctx context.Context, srcs []Source, opt LoadOptions, every time.Duration, reload <-chan struct{}, onLoad func(*Set)) {
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-reload:
		case <-t.C:
			if fingerprint(srcs) == e.Current().fp {
				continue
			}
		}
		set := e.Load(ctx, srcs, opt)
		if onLoad != nil {
			onLoad(set)
		}
	}
}

// fingerprint summarises the directory sources: names, sizes, modification times, and the
// targets of symlinks (so that an atomic symlink swap is seen).
func fingerprint(srcs []Source) [32]byte {
	h := sha256.New()
	var buf [8]byte
	for _, s := range srcs {
		if s.FS != nil {
			continue
		}
		h.Write([]byte(s.Dir))
		entries, err := os.ReadDir(s.Dir)
		if err != nil {
			h.Write([]byte("unreadable: " + err.Error()))
			continue
		}
		names := make([]string, 0, len(entries))
		for _, en := range entries {
			names = append(names, en.Name())
		}
		sort.Strings(names)
		for _, n := range names {
			p := filepath.Join(s.Dir, n)
			h.Write([]byte(n))
			h.Write([]byte{0})
			if t, err := os.Readlink(p); err == nil {
				h.Write([]byte(t))
			}
			st, err := os.Stat(p)
			if err != nil {
				continue
			}
			binary.LittleEndian.PutUint64(buf[:], uint64(st.Size()))
			h.Write(buf[:])
			binary.LittleEndian.PutUint64(buf[:], uint64(st.ModTime().UnixNano()))
			h.Write(buf[:])
		}
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
