package netblock

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Set elements are read and written here with raw netlink rather than
// through google/nftables: the library cannot send NLM_F_EXCL with
// NEWSETELEM (and on kernels >= 6.10 a plain re-add silently rewrites the
// timeout, even turning a permanent block into an expiring one), has no
// single-element GET, and dumps large sets in 4 KiB messages (see
// dumpElems). Table, sets, chains and rules go through the library.

// maxElemsPerMsg bounds the elements of one NEWSETELEM message. The element
// list is one netlink attribute whose length is a u16: past ~64 KiB it wraps
// and the kernel silently stores only part of the batch (KERNEL.md: 10 000
// timed IPv4 elements -> 637 stored). 1000 elements of at most 40 bytes
// (an IPv6 key with a timeout) stay below 40 KiB.
const maxElemsPerMsg = 1000

// nlElem is one kernel set element: a key, whether it closes an interval,
// and its timeout (0 = none).
type nlElem struct {
	key     []byte
	end     bool
	timeout time.Duration
}

// elemOp is one NEWSETELEM or DELSETELEM message.
type elemOp struct {
	set   string
	del   bool
	excl  bool // NEWSETELEM only: fail with EEXIST instead of updating
	elems []nlElem
}

const nftMsg = unix.NFNL_SUBSYS_NFTABLES << 8

// nfgen is the nfgenmsg header every nftables message starts with.
func nfgen(family uint8, resID uint16) []byte {
	b := []byte{family, unix.NFNETLINK_V0, 0, 0}
	binary.BigEndian.PutUint16(b[2:], resID)
	return b
}

// encodeElemList encodes the attributes naming a set and listing elements.
// Timeouts are only sent with adds.
func encodeElemList(table, set string, elems []nlElem, withTimeouts bool) ([]byte, error) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, table)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	if len(elems) > 0 {
		ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(list *netlink.AttributeEncoder) error {
			for _, e := range elems {
				list.Nested(unix.NFTA_LIST_ELEM, func(el *netlink.AttributeEncoder) error {
					el.Nested(unix.NFTA_SET_ELEM_KEY, func(k *netlink.AttributeEncoder) error {
						k.Bytes(unix.NFTA_DATA_VALUE, e.key)
						return nil
					})
					if e.end {
						el.Uint32(unix.NFTA_SET_ELEM_FLAGS, unix.NFT_SET_ELEM_INTERVAL_END)
					}
					if e.timeout > 0 && withTimeouts {
						el.Uint64(unix.NFTA_SET_ELEM_TIMEOUT, uint64(e.timeout.Milliseconds()))
					}
					return nil
				})
			}
			return nil
		})
	}
	data, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("encode elements of set %s: %w", set, err)
	}
	return append(nfgen(unix.NFPROTO_INET, 0), data...), nil
}

func encodeElemOp(table string, op elemOp) (netlink.Message, error) {
	data, err := encodeElemList(table, op.set, op.elems, !op.del)
	if err != nil {
		return netlink.Message{}, err
	}
	typ, flags := unix.NFT_MSG_NEWSETELEM, netlink.Request|netlink.Acknowledge|netlink.Create
	if op.del {
		typ, flags = unix.NFT_MSG_DELSETELEM, netlink.Request|netlink.Acknowledge
	} else if op.excl {
		flags |= netlink.Excl
	}
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftMsg | typ), Flags: flags},
		Data:   data,
	}, nil
}

// desyncError marks a failure after which the socket may hold unread
// replies (or is broken): the connection must be redialled, not reused.
type desyncError struct{ err error }

func (e desyncError) Error() string { return e.err.Error() }
func (e desyncError) Unwrap() error { return e.err }

// desync marks an error as leaving the conversation out of step. Every
// failed library call gets it too: the library may stop reading replies
// early, so its lasting socket is never trusted after an error.
func desync(format string, args ...any) error {
	return desyncError{fmt.Errorf(format, args...)}
}

func isDesync(err error) bool {
	var d desyncError
	return errors.As(err, &d)
}

// sendBatch sends ops as one nftables transaction (all or nothing) and
// returns the first error the kernel reported (a syscall.Errno). A
// desyncError means the socket must not be reused.
func sendBatch(c *netlink.Conn, table string, ops []elemOp) error {
	msgs := make([]netlink.Message, 0, len(ops)+2)
	msgs = append(msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
		Data:   nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	for _, op := range ops {
		m, err := encodeElemOp(table, op)
		if err != nil {
			return err
		}
		msgs = append(msgs, m)
	}
	msgs = append(msgs, netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
		Data:   nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
	})
	if _, err := c.SendMessages(msgs); err != nil {
		return desync("send nftables batch: %w", err)
	}
	// nfnetlink answers every message of the batch that asked for an ack,
	// errors included, one datagram each, after the whole batch ran.
	var first error
	for got := 0; got < len(ops); {
		replies, err := c.Receive()
		if err != nil {
			if errno, ok := kernelErrno(err); ok {
				got++
				if first == nil {
					first = errno
				}
				continue
			}
			return desync("receive nftables acks: %w", err)
		}
		got += len(replies)
	}
	return first
}

// kernelErrno extracts the errno of an error message sent by the kernel, as
// opposed to a socket failure (timeout, closed socket).
func kernelErrno(err error) (syscall.Errno, bool) {
	var oe *netlink.OpError
	if !errors.As(err, &oe) {
		return 0, false
	}
	errno, ok := oe.Err.(syscall.Errno)
	return errno, ok
}

// getElem asks the kernel for one element of a (non-interval) set; found is
// false when the key is absent.
func getElem(c *netlink.Conn, table, set string, key []byte) (e rawElem, found bool, err error) {
	data, err := encodeElemList(table, set, []nlElem{{key: key}}, false)
	if err != nil {
		return rawElem{}, false, err
	}
	// No ack flag: the kernel answers with exactly one message, the element
	// or an error.
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftMsg | unix.NFT_MSG_GETSETELEM), Flags: netlink.Request},
		Data:   data,
	}
	if _, err := c.Send(req); err != nil {
		return rawElem{}, false, desync("send get of set %s: %w", set, err)
	}
	replies, err := c.Receive()
	if err != nil {
		if errno, ok := kernelErrno(err); ok {
			if errno == unix.ENOENT {
				return rawElem{}, false, nil
			}
			return rawElem{}, false, fmt.Errorf("get element of set %s: %w", set, errno)
		}
		return rawElem{}, false, desync("receive element of set %s: %w", set, err)
	}
	if len(replies) != 1 {
		return rawElem{}, false, desync("get element of set %s: %d replies", set, len(replies))
	}
	els, err := decodeElems(replies[0].Data)
	if err != nil || len(els) != 1 {
		return rawElem{}, false, fmt.Errorf("decode element of set %s: %d elements, %v", set, len(els), err)
	}
	return els[0], true, nil
}

// rawElem is one element as the kernel reports it. timeout is 0 for a
// permanent element; expires is what is left of the timeout.
type rawElem struct {
	key              []byte
	end              bool
	timeout, expires time.Duration
}

// dumpChunk is the largest dump message the kernel builds (it sizes them
// after the largest recvmsg buffer it has seen, up to 32 KiB).
const dumpChunk = 32 << 10

// dumpElems lists every element of a set.
//
// The kernel walks a hash set from its start again for every dump message,
// so a dump costs (elements x messages): with the 4 KiB reads the netlink
// package starts with, 100 000 elements took seconds. One 32 KiB peek
// right after the request makes the kernel fill 32 KiB messages.
func dumpElems(c *netlink.Conn, table, set string) ([]rawElem, error) {
	data, err := encodeElemList(table, set, nil, false)
	if err != nil {
		return nil, err
	}
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nftMsg | unix.NFT_MSG_GETSETELEM), Flags: netlink.Request | netlink.Dump},
		Data:   data,
	}
	if _, err := c.Send(req); err != nil {
		return nil, desync("send dump of set %s: %w", set, err)
	}
	if err := peekLarge(c); err != nil {
		return nil, desync("dump set %s: %w", set, err)
	}
	// Receive gathers the multi-part answer up to its end.
	replies, err := c.Receive()
	if err != nil {
		return nil, desync("dump set %s: %w", set, err)
	}
	var out []rawElem
	for _, m := range replies {
		els, err := decodeElems(m.Data)
		if err != nil {
			return nil, fmt.Errorf("decode dump of set %s: %w", set, err)
		}
		out = append(out, els...)
	}
	return out, nil
}

// peekLarge waits for the first reply and peeks at it with a dumpChunk
// buffer, which is what makes the kernel size later dump messages so.
func peekLarge(c *netlink.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	buf := make([]byte, dumpChunk)
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, rerr = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		return rerr != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	return rerr
}

// decodeElems decodes the elements of one NEWSETELEM message (after its
// nfgenmsg header).
func decodeElems(b []byte) ([]rawElem, error) {
	if len(b) < 4 {
		return nil, fmt.Errorf("message of %d bytes", len(b))
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return nil, err
	}
	ad.ByteOrder = binary.BigEndian
	var out []rawElem
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				var e rawElem
				list.Nested(func(el *netlink.AttributeDecoder) error {
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(k *netlink.AttributeDecoder) error {
								for k.Next() {
									if k.Type() == unix.NFTA_DATA_VALUE {
										e.key = k.Bytes()
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_FLAGS:
							e.end = el.Uint32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
						case unix.NFTA_SET_ELEM_TIMEOUT:
							e.timeout = time.Duration(el.Uint64()) * time.Millisecond
						case unix.NFTA_SET_ELEM_EXPIRATION:
							e.expires = time.Duration(el.Uint64()) * time.Millisecond
						}
					}
					return nil
				})
				out = append(out, e)
			}
			return nil
		})
	}
	return out, ad.Err()
}
