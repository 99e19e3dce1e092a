package quickjswasm

import (
	"context"
	"fmt"
)

const osPage = 4096

// Snapshot is the memory image of an initialised instance taken between calls: its non-zero
// pages. A new instance restored from it skips runtime, context and script set-up.
type Snapshot struct {
	maxPages uint32
	size     uint32 // memory size in bytes
	pages    map[uint32][]byte
	tmpl     Instance // the Go-side state that matches the image
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
	s := &Snapshot{maxPages: pagesOf(in.opts.MaxMemory), size: uint32(len(m)), pages: map[uint32][]byte{}}
	var zero [osPage]byte
	for off := 0; off+osPage <= len(m); off += osPage {
		pg := m[off : off+osPage]
		if string(pg) == string(zero[:]) {
			continue
		}
		s.pages[uint32(off)] = append([]byte(nil), pg...)
	}
	s.tmpl = Instance{
		opts: in.opts, rt: in.rt, jsctx: in.jsctx, valSize: in.valSize, undefined: in.undefined,
		null: in.null, scratchArg: in.scratchArg, funcs: in.funcs,
	}
	return s, nil
}

// Bytes is the size of the image the snapshot keeps.
func (s *Snapshot) Bytes() int { return len(s.pages) * osPage }

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
