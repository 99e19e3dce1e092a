package netblock

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Element is one block: a single address (/32, /128) or a CIDR range, with
// its remaining lifetime, 0 for a permanent block.
type Element struct {
	Prefix netip.Prefix
	TTL    time.Duration
}

// checkInput normalizes a block request and refuses what must never be
// blocked. A positive ttl is rounded up to the millisecond: the kernel
// counts in milliseconds and 0 would mean "forever".
func (b *Blocker) checkInput(p netip.Prefix, ttl time.Duration) (netip.Prefix, time.Duration, error) {
	if ttl < 0 {
		return netip.Prefix{}, 0, fmt.Errorf("ttl %s: %w", ttl, ErrInvalid)
	}
	np, err := normalizePrefix(p)
	if err != nil {
		return netip.Prefix{}, 0, err
	}
	if err := checkProtected(np, b.protect); err != nil {
		return netip.Prefix{}, 0, err
	}
	if r := ttl % time.Millisecond; r != 0 {
		ttl += time.Millisecond - r
	}
	return np, ttl, nil
}

// Block drops traffic from and to p: a single address goes into an address
// set, a wider prefix into an interval set. ttl 0 blocks until Unblock;
// otherwise the kernel removes the block by itself. It returns 0 when it
// blocked, or extended an existing block of p (or swallowed smaller ranges
// inside p) to last ttl; 1 when p was already blocked at least that long,
// within a second, by its own element or (CIDR) a wider range (a block is
// never shortened); -1 with an error otherwise: ErrProtected, ErrInvalid,
// ErrOverlap (a CIDR range that would have to split or shorten another) or
// a kernel failure. A single address inside a blocked range still gets its
// own element, so that unblocking the range does not free it.
func (b *Blocker) Block(ctx context.Context, p netip.Prefix, ttl time.Duration) (int, error) {
	np, ttl, err := b.checkInput(p, ttl)
	if err != nil {
		return -1, fmt.Errorf("block %s: %w", p, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var ret int
	err = b.do(ctx, func() error {
		var err error
		ret, err = b.blockOne(np, ttl)
		return err
	})
	if err != nil {
		return -1, fmt.Errorf("block %s: %w", np, err)
	}
	return ret, nil
}

// blockOne adds one normalized block. It looks before it adds: a
// transaction the kernel refuses (an exclusive add of an existing key) costs
// an RCU grace period, 10-20 ms, where a look costs tens of microseconds.
func (b *Blocker) blockOne(p netip.Prefix, ttl time.Duration) (int, error) {
	set := setFor(p)
	interval := isIntervalSet(set)
	for range 3 {
		now := time.Now()
		want := prefixSpan(p, expiryFor(now, ttl))
		var del []span
		if interval {
			existing, err := b.dumpSpans(set)
			if err != nil {
				return -1, err
			}
			var add bool
			if del, add, err = planInterval(existing, want); err != nil {
				return -1, err
			} else if !add {
				return 1, nil
			}
		} else {
			e, found, err := b.lookup(set, p.Addr(), now)
			if err != nil {
				return -1, err
			}
			if found {
				if atLeast(e.expires, want.expires) {
					return 1, nil
				}
				del = []span{e}
			}
		}
		// Exclusive add, after the deletes it replaces in the same
		// transaction: there is no instant without a block.
		ops := []elemOp{{set: set, excl: true, elems: want.elems(interval, ttl)}}
		if len(del) > 0 {
			ops = append([]elemOp{{set: set, del: true, elems: spansElems(del, interval)}}, ops...)
		}
		err := sendBatch(b.raw, TableName, ops)
		if err == nil {
			return 0, nil
		}
		if !isExists(err) && !errors.Is(err, unix.ENOENT) {
			return -1, fmt.Errorf("add to set %s: %w", set, err)
		}
		// An element expired or appeared between our look and our
		// change: look again.
	}
	return -1, fmt.Errorf("set %s keeps changing under us", set)
}

// lookup reads one element of an address set.
func (b *Blocker) lookup(set string, a netip.Addr, now time.Time) (span, bool, error) {
	e, found, err := getElem(b.raw, TableName, set, a.AsSlice())
	if err != nil || !found {
		return span{}, false, err
	}
	cur := span{lo: a, hi: a}
	if e.timeout > 0 {
		// An element on the verge of expiring must not read as permanent.
		cur.expires = now.Add(max(e.expires, time.Millisecond))
	}
	return cur, true, nil
}

func isExists(err error) bool {
	return errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY)
}

func spansElems(spans []span, interval bool) []nlElem {
	var out []nlElem
	for _, s := range spans {
		out = append(out, s.elems(interval, 0)...)
	}
	return out
}

// dumpSpans reads a whole set as ranges sorted by start.
func (b *Blocker) dumpSpans(set string) ([]span, error) {
	els, err := dumpElems(b.raw, TableName, set)
	if err != nil {
		return nil, fmt.Errorf("list set %s: %w", set, err)
	}
	now := time.Now()
	type key struct {
		a       netip.Addr
		end     bool
		expires time.Time
	}
	keys := make([]key, 0, len(els))
	for _, e := range els {
		a, ok := netip.AddrFromSlice(e.key)
		if !ok {
			return nil, fmt.Errorf("list set %s: key of %d bytes", set, len(e.key))
		}
		k := key{a: a, end: e.end}
		if e.timeout > 0 {
			// An element on the verge of expiring must not read as
			// permanent.
			k.expires = now.Add(max(e.expires, time.Millisecond))
		}
		keys = append(keys, k)
	}
	// An end key equals the start of the next range when ranges touch:
	// put ends first so that each start is followed by its own end.
	slices.SortFunc(keys, func(x, y key) int {
		if c := x.a.Compare(y.a); c != 0 {
			return c
		}
		switch {
		case x.end == y.end:
			return 0
		case x.end:
			return -1
		default:
			return 1
		}
	})
	out := make([]span, 0, len(keys))
	for i := 0; i < len(keys); i++ {
		k := keys[i]
		if k.end {
			continue // an end with no start, like the one nft adds at 0.0.0.0
		}
		s := span{lo: k.a, hi: k.a, expires: k.expires}
		if isIntervalSet(set) {
			s.hi = maxAddr(k.a)
			if i+1 < len(keys) {
				s.hi = keys[i+1].a.Prev()
				if keys[i+1].end {
					i++
				}
			}
		}
		out = append(out, s)
	}
	return out, nil
}

func maxAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var b [16]byte
	for i := range b {
		b[i] = 0xff
	}
	return netip.AddrFrom16(b)
}

// BlockMany adds many blocks with few kernel round trips, e.g. to restore
// persisted blocks at start. Each element behaves as with Block (an existing
// longer block is kept, a shorter one extended); the elements that cannot
// be blocked are reported together in the returned error while all the
// others are blocked.
func (b *Blocker) BlockMany(ctx context.Context, els []Element) error {
	var errs []error
	// The longest lifetime wins among duplicates.
	type wantT struct {
		ttl     time.Duration
		expires time.Time
	}
	now := time.Now()
	wants := map[netip.Prefix]wantT{}
	for i, e := range els {
		np, ttl, err := b.checkInput(e.Prefix, e.TTL)
		if err != nil {
			errs = append(errs, fmt.Errorf("element %d (%s): %w", i, e.Prefix, err))
			continue
		}
		w := wantT{ttl, expiryFor(now, ttl)}
		if old, ok := wants[np]; !ok || !atLeast(old.expires, w.expires) {
			wants[np] = w
		}
	}
	bySet := map[string][]netip.Prefix{}
	for p := range wants {
		bySet[setFor(p)] = append(bySet[setFor(p)], p)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.do(ctx, func() error {
		// A unit is one add, plus the deletes it replaces, that must
		// land in the same transaction.
		type unit struct {
			set  string
			p    netip.Prefix
			ttl  time.Duration
			del  []span
			elem []nlElem
		}
		var units []unit
		for _, set := range setNames() {
			ps := bySet[set]
			if len(ps) == 0 {
				continue
			}
			interval := isIntervalSet(set)
			existing, err := b.dumpSpans(set)
			if err != nil {
				return err
			}
			spans := make([]span, len(ps))
			for i, p := range ps {
				spans[i] = prefixSpan(p, wants[p].expires)
			}
			if interval {
				var errs2 []error
				spans, errs2 = resolveNested(spans)
				errs = append(errs, errs2...)
			}
			byLo := map[netip.Addr]span{}
			if !interval {
				for _, e := range existing {
					byLo[e.lo] = e
				}
			}
			for _, s := range spans {
				p := s.prefixes()[0]
				u := unit{set: set, p: p, ttl: wants[p].ttl}
				if interval {
					del, ok, err := planInterval(existing, s)
					if err != nil {
						errs = append(errs, fmt.Errorf("block %s: %w", p, err))
						continue
					}
					if !ok {
						continue
					}
					u.del = del
				} else if e, ok := byLo[s.lo]; ok {
					if atLeast(e.expires, s.expires) {
						continue
					}
					u.del = []span{e}
				}
				u.elem = s.elems(interval, u.ttl)
				units = append(units, u)
			}
		}
		// Batches of at most maxElemsPerMsg elements (KERNEL.md: bigger
		// ones silently lose elements), each its own transaction.
		for start := 0; start < len(units); {
			n, end := 0, start
			for end < len(units) {
				k := len(units[end].elem) + 2*len(units[end].del)
				if n+k > maxElemsPerMsg && end > start {
					break
				}
				n += k
				end++
			}
			var ops []elemOp
			for _, del := range []bool{true, false} {
				for _, set := range setNames() {
					op := elemOp{set: set, del: del, excl: !del}
					for _, u := range units[start:end] {
						if u.set != set {
							continue
						}
						if del {
							op.elems = append(op.elems, spansElems(u.del, isIntervalSet(set))...)
						} else {
							op.elems = append(op.elems, u.elem...)
						}
					}
					if len(op.elems) > 0 {
						ops = append(ops, op)
					}
				}
			}
			err := sendBatch(b.raw, TableName, ops)
			if isDesync(err) {
				return err
			}
			if err != nil {
				// One bad element fails its whole transaction:
				// redo this batch one block at a time.
				for _, u := range units[start:end] {
					if _, err := b.blockOne(u.p, u.ttl); err != nil {
						if isDesync(err) {
							return err
						}
						errs = append(errs, fmt.Errorf("block %s: %w", u.p, err))
					}
				}
			}
			start = end
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return fmt.Errorf("block %d elements: %w", len(els), errors.Join(errs...))
	}
	return nil
}

// resolveNested drops, among prefix ranges about to be added together, those
// inside another one lasting at least as long, and refuses those inside one
// expiring sooner (the same outcome as adding the wider one first).
func resolveNested(spans []span) ([]span, []error) {
	slices.SortFunc(spans, func(x, y span) int {
		if c := x.lo.Compare(y.lo); c != 0 {
			return c
		}
		return y.hi.Compare(x.hi) // wider first
	})
	var kept []span
	var errs []error
	for _, s := range spans {
		if n := len(kept); n > 0 && !kept[n-1].hi.Less(s.lo) {
			// Prefixes are nested or disjoint: the last kept contains s.
			if !atLeast(kept[n-1].expires, s.expires) {
				errs = append(errs, fmt.Errorf("block %s: inside %s which expires sooner: %w", spanString(s), spanString(kept[n-1]), ErrOverlap))
			}
			continue
		}
		kept = append(kept, s)
	}
	return kept, errs
}

// Unblock removes the block of exactly p. It returns 0 when it removed it,
// 1 when there was none (a block of a wider range containing p stays).
func (b *Blocker) Unblock(ctx context.Context, p netip.Prefix) (int, error) {
	np, err := normalizePrefix(p)
	if err != nil {
		return -1, fmt.Errorf("unblock %s: %w", p, err)
	}
	set := setFor(np)
	b.mu.Lock()
	defer b.mu.Unlock()
	ret := 1
	err = b.do(ctx, func() error {
		// Look first: deleting a missing element fails its transaction,
		// which costs an RCU grace period.
		target := prefixSpan(np, time.Time{})
		if isIntervalSet(set) {
			existing, err := b.dumpSpans(set)
			if err != nil {
				return err
			}
			if !slices.ContainsFunc(existing, func(e span) bool { return e.lo == target.lo && e.hi == target.hi }) {
				return nil
			}
		} else if _, found, err := b.lookup(set, np.Addr(), time.Now()); err != nil || !found {
			return err
		}
		err := sendBatch(b.raw, TableName, []elemOp{{set: set, del: true, elems: target.elems(isIntervalSet(set), 0)}})
		switch {
		case err == nil:
			ret = 0
		case errors.Is(err, unix.ENOENT):
		default:
			return fmt.Errorf("delete from set %s: %w", set, err)
		}
		return nil
	})
	if err != nil {
		return -1, fmt.Errorf("unblock %s: %w", np, err)
	}
	return ret, nil
}

// List returns every block in the table with its remaining lifetime, sorted
// by prefix. Ranges put into an interval set by hand that are not a CIDR
// prefix are listed as the prefixes that cover them.
func (b *Blocker) List(ctx context.Context) ([]Element, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Element
	err := b.do(ctx, func() error {
		now := time.Now()
		for _, set := range setNames() {
			spans, err := b.dumpSpans(set)
			if err != nil {
				return err
			}
			for _, s := range spans {
				var ttl time.Duration
				if !s.expires.IsZero() {
					ttl = max(s.expires.Sub(now), time.Millisecond)
				}
				for _, p := range s.prefixes() {
					out = append(out, Element{Prefix: p, TTL: ttl})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list blocks: %w", err)
	}
	slices.SortFunc(out, func(x, y Element) int {
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(x.Prefix.Bits(), y.Prefix.Bits())
	})
	return out, nil
}
