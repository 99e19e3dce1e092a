package quickjswasm

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

const osPage = 4096

// Snapshot is the memory image of an initialised instance taken between calls. A new instance
// restored from it skips runtime, context and script set-up.
//
// The image lives in a memfd (its zero pages are holes) and each restored instance maps it
// copy-on-write over its linear memory: restoring is one mmap instead of copying the image and
// faulting in every page, and the pages an instance never writes stay shared between all the
// instances of a reaction. Where memfd is unavailable the non-zero pages are kept and copied.
type Snapshot struct {
	maxPages uint32
	size     uint32 // memory size in bytes
	npages   int    // non-zero pages in the image
	fd       int    // memfd holding the image, -1 when pages is used instead
	pages    map[uint32][]byte
	tmpl     Instance // the Go-side state that matches the image
	once     sync.Once
}

// Snapshot captures the instance. It must not be running JS.
func (in *Instance) Snapshot() (*Snapshot, error) {
	if in.broken != nil {
		return nil, in.broken
	}
	if in.depth != 0 {
		return nil, fmt.Errorf("snapshot while running")
	}
	m := in.mem()
	s := &Snapshot{maxPages: pagesOf(in.opts.MaxMemory), size: uint32(len(m)), fd: -1}
	var zero [osPage]byte
	fd, err := unix.MemfdCreate("jibril-snapshot", unix.MFD_CLOEXEC)
	if err == nil {
		if err = unix.Ftruncate(fd, int64(len(m))); err != nil {
			_ = unix.Close(fd)
		}
	}
	if err == nil {
		s.fd = fd
		runtime.SetFinalizer(s, (*Snapshot).Close)
	} else {
		s.pages = map[uint32][]byte{}
	}
	for off := 0; off+osPage <= len(m); off += osPage {
		pg := m[off : off+osPage]
		if string(pg) == string(zero[:]) {
			continue
		}
		s.npages++
		if s.fd < 0 {
			s.pages[uint32(off)] = append([]byte(nil), pg...)
			continue
		}
		if _, err := unix.Pwrite(s.fd, pg, int64(off)); err != nil {
			s.Close()
			return nil, fmt.Errorf("snapshot: write image: %w", err)
		}
	}
	s.tmpl = Instance{
		opts: in.opts, rt: in.rt, jsctx: in.jsctx, valSize: in.valSize, undefined: in.undefined,
		null: in.null, scratchArg: in.scratchArg, funcs: in.funcs,
	}
	return s, nil
}

// Bytes is the size of the image the snapshot keeps.
func (s *Snapshot) Bytes() int { return s.npages * osPage }

// Close releases the image. Instances restored from it keep their mappings.
func (s *Snapshot) Close() {
	s.once.Do(func() {
		if s.fd >= 0 {
			_ = unix.Close(s.fd)
		}
	})
}

// FromSnapshot makes a new instance whose memory is the snapshot's image. Host functions are
// shared with the snapshot's instance (they must not keep per-instance state of their own).
func (e *Engine) FromSnapshot(ctx context.Context, s *Snapshot) (*Instance, error) {
	in := &Instance{}
	*in = s.tmpl
	in.eng = e
	in.funcs = append([]HostFunc(nil), s.tmpl.funcs...)
	if err := e.instantiate(ctx, s.maxPages, in, s); err != nil {
		return nil, err
	}
	return in, nil
}

func (in *Instance) restore(s *Snapshot) error {
	mem := in.mod.Memory()
	if cur := mem.Size(); cur < s.size {
		if _, ok := mem.Grow((s.size - cur) / PageSize); !ok {
			return fmt.Errorf("restore snapshot: cannot grow memory to %d bytes", s.size)
		}
	}
	m := in.mem()
	if s.fd >= 0 && len(m) > 0 {
		// Replace the memory by a private mapping of the image: what instantiation wrote
		// (the initial data segments) is discarded with the anonymous pages it covered.
		_, err := unix.MmapPtr(s.fd, 0, unsafe.Pointer(&m[0]), uintptr(s.size),
			unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED)
		runtime.KeepAlive(s)
		if err != nil {
			return fmt.Errorf("restore snapshot: map image: %w", err)
		}
		return nil
	}
	// Instantiation wrote the initial data segments; the image decides what they hold now.
	for _, seg := range in.lay.segments {
		end := uint64(seg.offset) + uint64(seg.size)
		if end > uint64(len(m)) {
			return fmt.Errorf("restore snapshot: data segment beyond memory")
		}
		clear(m[seg.offset:end])
	}
	for off, pg := range s.pages {
		copy(m[off:], pg)
	}
	return nil
}
