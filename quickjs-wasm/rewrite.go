package quickjswasm

import (
	"bytes"
	"errors"
	"fmt"
)

// The Emscripten build imports its linear memory, and wazero host modules cannot export one.
// We rewrite the binary so that the module defines its own memory with our page cap: each
// instance then owns a private memory and every instance shares one host module.

const (
	secImport = 2
	secTable  = 4
	secMemory = 5
	secData   = 11
)

type segment struct{ offset, size uint32 }

type layout struct {
	minPages uint32
	segments []segment // active data segments of memory 0
}

func readULEB(b []byte, i int) (uint32, int, error) {
	var v uint32
	var shift uint
	for {
		if i >= len(b) {
			return 0, 0, errors.New("truncated leb128")
		}
		c := b[i]
		i++
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, i, nil
		}
		shift += 7
		if shift > 28 {
			return 0, 0, errors.New("leb128 too long")
		}
	}
}

func readSLEB(b []byte, i int) (int32, int, error) {
	var v int64
	var shift uint
	for {
		if i >= len(b) {
			return 0, 0, errors.New("truncated sleb128")
		}
		c := b[i]
		i++
		v |= int64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 {
			if shift < 64 && c&0x40 != 0 {
				v |= -1 << shift
			}
			return int32(v), i, nil
		}
		if shift > 35 {
			return 0, 0, errors.New("sleb128 too long")
		}
	}
}

func appendULEB(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			b = append(b, c|0x80)
			continue
		}
		return append(b, c)
	}
}

func skipName(b []byte, i int) (string, int, error) {
	n, i, err := readULEB(b, i)
	if err != nil || i+int(n) > len(b) {
		return "", 0, errors.New("bad name")
	}
	return string(b[i : i+int(n)]), i + int(n), nil
}

func skipLimits(b []byte, i int) (min, max uint32, hasMax bool, next int, err error) {
	if i >= len(b) {
		return 0, 0, false, 0, errors.New("truncated limits")
	}
	flag := b[i]
	i++
	if min, i, err = readULEB(b, i); err != nil {
		return
	}
	if flag&1 != 0 {
		hasMax = true
		if max, i, err = readULEB(b, i); err != nil {
			return
		}
	}
	return min, max, hasMax, i, nil
}

// defineMemory returns a copy of wasm whose imported memory is replaced by a defined memory of
// maxPages pages at most, and the layout needed to restore snapshots.
func defineMemory(wasm []byte, maxPages uint32) ([]byte, layout, error) {
	var lay layout
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, lay, errors.New("not a wasm binary")
	}
	out := append([]byte(nil), wasm[:8]...)
	memInserted := false
	insertMemory := func() {
		payload := appendULEB(nil, 1)
		payload = append(payload, 1)
		payload = appendULEB(payload, lay.minPages)
		payload = appendULEB(payload, maxPages)
		out = append(out, secMemory)
		out = appendULEB(out, uint32(len(payload)))
		out = append(out, payload...)
		memInserted = true
	}
	for i := 8; i < len(wasm); {
		id := wasm[i]
		size, p, err := readULEB(wasm, i+1)
		if err != nil || p+int(size) > len(wasm) {
			return nil, lay, fmt.Errorf("section at %d: bad size", i)
		}
		body := wasm[p : p+int(size)]
		next := p + int(size)
		switch {
		case id == secImport:
			nb, min, err := dropMemoryImport(body)
			if err != nil {
				return nil, lay, fmt.Errorf("import section: %w", err)
			}
			lay.minPages = min
			out = append(out, secImport)
			out = appendULEB(out, uint32(len(nb)))
			out = append(out, nb...)
		case id == secMemory:
			return nil, lay, errors.New("module already defines a memory")
		case id != 0 && id != 12 && id > secTable && !memInserted:
			// Custom sections (0) and the data count section (12) sit out of numeric order.
			insertMemory()
			out = append(out, wasm[i:next]...)
		default:
			out = append(out, wasm[i:next]...)
		}
		if id == secData {
			segs, err := dataSegments(body)
			if err != nil {
				return nil, lay, fmt.Errorf("data section: %w", err)
			}
			lay.segments = segs
		}
		i = next
	}
	if lay.minPages == 0 {
		return nil, lay, errors.New("no memory import found")
	}
	if !memInserted {
		insertMemory()
	}
	if maxPages < lay.minPages {
		return nil, lay, fmt.Errorf("memory cap of %d pages is below the module's minimum of %d", maxPages, lay.minPages)
	}
	return out, lay, nil
}

func dropMemoryImport(b []byte) ([]byte, uint32, error) {
	n, i, err := readULEB(b, 0)
	if err != nil {
		return nil, 0, err
	}
	var kept [][]byte
	var min uint32
	for k := uint32(0); k < n; k++ {
		start := i
		if _, i, err = skipName(b, i); err != nil {
			return nil, 0, err
		}
		if _, i, err = skipName(b, i); err != nil {
			return nil, 0, err
		}
		if i >= len(b) {
			return nil, 0, errors.New("truncated import")
		}
		kind := b[i]
		i++
		switch kind {
		case 0: // func
			_, i, err = readULEB(b, i)
		case 1: // table
			i++
			_, _, _, i, err = skipLimits(b, i)
		case 2: // memory
			var m uint32
			m, _, _, i, err = skipLimits(b, i)
			if err == nil {
				if min != 0 {
					return nil, 0, errors.New("two memory imports")
				}
				min = m
				continue // dropped
			}
		case 3: // global
			i += 2
		default:
			return nil, 0, fmt.Errorf("unknown import kind %d", kind)
		}
		if err != nil {
			return nil, 0, err
		}
		kept = append(kept, b[start:i])
	}
	out := appendULEB(nil, uint32(len(kept)))
	for _, e := range kept {
		out = append(out, e...)
	}
	return out, min, nil
}

func dataSegments(b []byte) ([]segment, error) {
	n, i, err := readULEB(b, 0)
	if err != nil {
		return nil, err
	}
	var segs []segment
	for k := uint32(0); k < n; k++ {
		var flag uint32
		if flag, i, err = readULEB(b, i); err != nil {
			return nil, err
		}
		var off int32
		active := flag == 0 || flag == 2
		if flag == 2 {
			if _, i, err = readULEB(b, i); err != nil {
				return nil, err
			}
		}
		if active {
			if i >= len(b) || b[i] != 0x41 { // i32.const
				return nil, errors.New("data offset is not i32.const")
			}
			if off, i, err = readSLEB(b, i+1); err != nil {
				return nil, err
			}
			if i >= len(b) || b[i] != 0x0b {
				return nil, errors.New("data offset expression too long")
			}
			i++
		}
		var size uint32
		if size, i, err = readULEB(b, i); err != nil {
			return nil, err
		}
		if i+int(size) > len(b) {
			return nil, errors.New("truncated data segment")
		}
		i += int(size)
		if active {
			segs = append(segs, segment{offset: uint32(off), size: size})
		}
	}
	return segs, nil
}
