package procfs

import (
	"encoding/binary"
	"fmt"
)

// The wire format between the daemon and the broker: one request or reply per SOCK_SEQPACKET
// message, little-endian, fixed layouts. Nothing on the wire is text the broker interprets: a
// request is an operation, an item and two numbers, and the broker builds the path itself.
//
//	request (requestSize bytes): id u32 | op u8 | item u8 | zero u16 | pid i32 | arg i32
//	reply:   id u32 | status u8 | zero [3] | code u32 | next i32 | payload
//
// status ok: readlink's payload is the target, stat's is statSize bytes (dev u64, ino u64,
// mode u32, zero u32, size i64), open's is empty with the descriptor in SCM_RIGHTS, list's is
// entries (fd i32 | errno u16 | len u16 | target) and next the first descriptor left for the
// next page (-1 when the list is complete). status errno: code is the errno /proc gave.
// status refused: the payload is the reason.
const (
	requestSize   = 16
	replyHeader   = 16
	statSize      = 32
	fdEntryHeader = 8
	// maxReply bounds every reply; a list page stops before it.
	maxReply = 64 << 10
	// maxReason bounds a refusal's text.
	maxReason = 256
)

// Reply statuses.
const (
	statusOK      = 0
	statusErrno   = 1
	statusRefused = 2
)

type request struct {
	id   uint32
	op   op
	ref  Ref
	zero uint16
}

func (q request) encode() []byte {
	b := make([]byte, requestSize)
	binary.LittleEndian.PutUint32(b[0:], q.id)
	b[4], b[5] = byte(q.op), byte(q.ref.Item)
	binary.LittleEndian.PutUint16(b[6:], q.zero)
	binary.LittleEndian.PutUint32(b[8:], uint32(q.ref.PID))
	binary.LittleEndian.PutUint32(b[12:], uint32(q.ref.Arg))
	return b
}

// decodeRequest reads a request; the id is returned even when the rest is refused, so that
// the refusal reaches the right caller.
func decodeRequest(b []byte) (request, error) {
	var q request
	if len(b) >= 4 {
		q.id = binary.LittleEndian.Uint32(b)
	}
	if len(b) != requestSize {
		return q, fmt.Errorf("%w: a request is %d bytes, got %d", ErrRefused, requestSize, len(b))
	}
	q.op, q.ref.Item = op(b[4]), Item(b[5])
	q.zero = binary.LittleEndian.Uint16(b[6:])
	q.ref.PID = int32(binary.LittleEndian.Uint32(b[8:]))
	q.ref.Arg = int32(binary.LittleEndian.Uint32(b[12:]))
	if q.zero != 0 {
		return q, fmt.Errorf("%w: reserved bytes are not zero", ErrRefused)
	}
	switch q.op {
	case opReadlink, opStat, opOpen, opFDs:
	default:
		return q, fmt.Errorf("%w: unknown operation %d", ErrRefused, q.op)
	}
	return q, q.ref.check(q.op)
}

type reply struct {
	id      uint32
	status  uint8
	code    uint32
	next    int32
	payload []byte
}

func (r reply) encode() []byte {
	b := make([]byte, replyHeader, replyHeader+len(r.payload))
	binary.LittleEndian.PutUint32(b[0:], r.id)
	b[4] = r.status
	binary.LittleEndian.PutUint32(b[8:], r.code)
	binary.LittleEndian.PutUint32(b[12:], uint32(r.next))
	return append(b, r.payload...)
}

func decodeReply(b []byte) (reply, error) {
	if len(b) < replyHeader {
		return reply{}, fmt.Errorf("reply of %d bytes, shorter than its header", len(b))
	}
	r := reply{id: binary.LittleEndian.Uint32(b), status: b[4], code: binary.LittleEndian.Uint32(b[8:]),
		next: int32(binary.LittleEndian.Uint32(b[12:])), payload: b[replyHeader:]}
	if b[5] != 0 || b[6] != 0 || b[7] != 0 || r.status > statusRefused {
		return reply{}, fmt.Errorf("malformed reply header % x", b[:replyHeader])
	}
	return r, nil
}

func encodeStat(fi FileInfo) []byte {
	b := make([]byte, statSize)
	binary.LittleEndian.PutUint64(b[0:], fi.Dev)
	binary.LittleEndian.PutUint64(b[8:], fi.Ino)
	binary.LittleEndian.PutUint32(b[16:], fi.Mode)
	binary.LittleEndian.PutUint64(b[24:], uint64(fi.Size))
	return b
}

func decodeStat(b []byte) (FileInfo, error) {
	if len(b) != statSize {
		return FileInfo{}, fmt.Errorf("stat reply of %d bytes, want %d", len(b), statSize)
	}
	return FileInfo{Dev: binary.LittleEndian.Uint64(b), Ino: binary.LittleEndian.Uint64(b[8:]),
		Mode: binary.LittleEndian.Uint32(b[16:]), Size: int64(binary.LittleEndian.Uint64(b[24:]))}, nil
}

// appendFDEntry adds one list entry; errno is 0 when the target was read.
func appendFDEntry(b []byte, fd int, errno uint16, target string) []byte {
	var h [fdEntryHeader]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(fd))
	binary.LittleEndian.PutUint16(h[4:], errno)
	binary.LittleEndian.PutUint16(h[6:], uint16(len(target)))
	return append(append(b, h[:]...), target...)
}

// fdEntry is one decoded list entry.
type fdEntry struct {
	fd     int
	errno  uint16
	target string
}

func decodeFDEntries(b []byte) ([]fdEntry, error) {
	var out []fdEntry
	for len(b) > 0 {
		if len(b) < fdEntryHeader {
			return nil, fmt.Errorf("list entry cut at %d bytes", len(b))
		}
		fd := int32(binary.LittleEndian.Uint32(b))
		errno := binary.LittleEndian.Uint16(b[4:])
		n := int(binary.LittleEndian.Uint16(b[6:]))
		if fd < 0 || fd >= MaxFD || n > MaxLink || len(b) < fdEntryHeader+n {
			return nil, fmt.Errorf("malformed list entry (fd %d, %d bytes)", fd, n)
		}
		out = append(out, fdEntry{fd: int(fd), errno: errno, target: string(b[fdEntryHeader : fdEntryHeader+n])})
		b = b[fdEntryHeader+n:]
	}
	return out, nil
}
