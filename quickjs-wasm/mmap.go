package quickjswasm

import (
	"fmt"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// mmapMemory backs a wasm linear memory with an anonymous mapping reserved at its maximum size:
// untouched pages cost nothing, growing never copies, and the base address never moves. When an
// image is given, its pages are copied in at allocation, which is how snapshots are restored.
type mmapMemory struct {
	buf []byte // the whole reservation
}

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size]
}

func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = unix.Munmap(m.buf)
		m.buf = nil
	}
}

// allocator hands out mmap-backed memories and remembers the last one so that the instance can
// reach its raw bytes (wazero keeps the slice it is given).
type allocator struct {
	last *mmapMemory
	err  error
}

func (a *allocator) Allocate(capacity, max uint64) experimental.LinearMemory {
	buf, err := unix.Mmap(-1, 0, int(max), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		a.err = fmt.Errorf("mmap %d bytes for wasm memory: %w", max, err)
		return nil
	}
	a.last = &mmapMemory{buf: buf}
	return a.last
}
