package netblock

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"time"
)

// normalizePrefix masks host bits, drops a zone and turns IPv4-mapped IPv6
// into IPv4 (the kernel sees those packets as IPv4, so an ip6 set would never
// match them).
func normalizePrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("prefix %q: %w", p.String(), ErrInvalid)
	}
	a := p.Addr().WithZone("")
	n := p.Bits()
	if a.Is4In6() && n >= 96 {
		a, n = a.Unmap(), n-96
	}
	q, err := a.Prefix(n)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("prefix %s: %w", p, ErrInvalid)
	}
	if q.IsSingleIP() && q.Addr().IsUnspecified() {
		return netip.Prefix{}, fmt.Errorf("prefix %s: unspecified address: %w", p, ErrInvalid)
	}
	return q, nil
}

// checkProtected refuses a prefix that overlaps a protected one.
func checkProtected(p netip.Prefix, protect []protectedPrefix) error {
	for _, pp := range protect {
		if p.Overlaps(pp.prefix) {
			if pp.prefix.Contains(p.Addr()) && pp.prefix.Bits() <= p.Bits() {
				return fmt.Errorf("%s is %s: %w", p, pp.why, ErrProtected)
			}
			return fmt.Errorf("%s overlaps %s (%s): %w", p, pp.prefix, pp.why, ErrProtected)
		}
	}
	return nil
}

// setFor names the set a normalized prefix belongs to.
func setFor(p netip.Prefix) string {
	switch {
	case p.Addr().Is4() && p.IsSingleIP():
		return SetBlock4
	case p.Addr().Is4():
		return SetCIDR4
	case p.IsSingleIP():
		return SetBlock6
	default:
		return SetCIDR6
	}
}

func isIntervalSet(set string) bool { return set == SetCIDR4 || set == SetCIDR6 }

// span is a block as the kernel stores it: an inclusive address range (lo ==
// hi in address sets) and its expiry, zero for a permanent block.
type span struct {
	lo, hi  netip.Addr
	expires time.Time
}

func prefixSpan(p netip.Prefix, expires time.Time) span {
	return span{lo: p.Addr(), hi: lastAddr(p), expires: expires}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// elems are the kernel elements of s: the start key, then (interval sets)
// the end key one past hi, omitted when hi is the last address of the
// family, as nft does. Only the start carries the timeout: the kernel
// refuses one on an end element and expires the pair together.
func (s span) elems(interval bool, ttl time.Duration) []nlElem {
	out := []nlElem{{key: s.lo.AsSlice(), timeout: ttl}}
	if interval {
		if next := s.hi.Next(); next.IsValid() {
			out = append(out, nlElem{key: next.AsSlice(), end: true})
		}
	}
	return out
}

// prefixes splits s into the CIDR prefixes covering it exactly (one, unless
// someone put a non-CIDR range into the set by hand).
func (s span) prefixes() []netip.Prefix {
	var out []netip.Prefix
	lo := s.lo
	for lo.IsValid() && !s.hi.Less(lo) {
		// Largest prefix starting at lo that stays within hi.
		n := lo.BitLen() - trailingZeros(lo)
		for ; n < lo.BitLen(); n++ {
			p := netip.PrefixFrom(lo, n)
			if !s.hi.Less(lastAddr(p)) {
				break
			}
		}
		p := netip.PrefixFrom(lo, n)
		out = append(out, p)
		lo = lastAddr(p).Next()
	}
	return out
}

func trailingZeros(a netip.Addr) int {
	b := a.AsSlice()
	n := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return n + bits.TrailingZeros8(b[i])
		}
		n += 8
	}
	return n
}

// expirySlack keeps a repeated timed block from counting as an extension
// (and so from returning 0 instead of 1) when it would only move the expiry
// by less than this.
const expirySlack = time.Second

// atLeast reports whether a block expiring at a lasts at least as long as
// one expiring at b (zero = never) within expirySlack.
func atLeast(a, b time.Time) bool {
	switch {
	case a.IsZero():
		return true
	case b.IsZero():
		return false
	default:
		return !a.Add(expirySlack).Before(b)
	}
}

// expiryFor converts a ttl into an absolute expiry, zero for none.
func expiryFor(now time.Time, ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return now.Add(ttl)
}

// planInterval decides how to add want to an interval set whose current,
// disjoint ranges are existing (sorted by lo). It returns add=false when
// want is already covered by a range lasting at least as long; otherwise the
// ranges to delete in the same transaction (those want swallows and
// outlasts, which the kernel would refuse as overlapping). Any other overlap
// is an ErrOverlap.
func planInterval(existing []span, want span) (del []span, add bool, err error) {
	i, _ := slices.BinarySearchFunc(existing, want.lo, func(s span, a netip.Addr) int { return s.lo.Compare(a) })
	if i > 0 && !existing[i-1].hi.Less(want.lo) {
		i-- // the previous range reaches into want
	}
	for ; i < len(existing) && !want.hi.Less(existing[i].lo); i++ {
		e := existing[i]
		switch {
		case e.lo == want.lo && e.hi == want.hi:
			if atLeast(e.expires, want.expires) {
				return nil, false, nil
			}
			del = append(del, e)
		case !want.lo.Less(e.lo) && !e.hi.Less(want.hi):
			// want lies inside e.
			if atLeast(e.expires, want.expires) {
				return nil, false, nil
			}
			return nil, false, fmt.Errorf("inside %s which expires sooner: %w", spanString(e), ErrOverlap)
		case !e.lo.Less(want.lo) && !want.hi.Less(e.hi):
			// e lies inside want.
			if !atLeast(want.expires, e.expires) {
				return nil, false, fmt.Errorf("contains %s which lasts longer: %w", spanString(e), ErrOverlap)
			}
			del = append(del, e)
		default:
			return nil, false, fmt.Errorf("partly overlaps %s: %w", spanString(e), ErrOverlap)
		}
	}
	return del, true, nil
}

func spanString(s span) string {
	ps := s.prefixes()
	txt := ps[0].String()
	if len(ps) > 1 {
		txt = s.lo.String() + "-" + s.hi.String()
	}
	if !s.expires.IsZero() {
		txt += fmt.Sprintf(" (expires in %s)", time.Until(s.expires).Round(time.Millisecond))
	}
	return txt
}
