package livenet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/store"
)

// RestoreReport says what Restore did.
type RestoreReport struct {
	Purged   int // expired rows deleted from the store
	Applied  int // elements asked of nftables (explicit blocks and domain addresses)
	Domains  int // blocked domains reloaded
	Removed  int // nftables elements no row backs, removed
	Orphaned int // address sets of domains no longer blocked, deleted
}

// Restore makes nftables match the store, as after a reboot or a crash:
// expired rows are purged, the table is recreated if it is missing, every
// active block is re-applied with its remaining lifetime, the addresses of
// blocked domains are blocked again, and elements that no row backs (an
// unblock interrupted by a crash) are removed. A block that cannot be
// applied (it became protected) is reported in the error; all the others
// are applied.
func (n *Net) Restore(ctx context.Context) (RestoreReport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var rep RestoreReport
	if err := n.usable(); err != nil {
		return rep, err
	}
	now := time.Now()
	purged, err := n.st.PurgeExpiredBlocks(ctx, now)
	if err != nil {
		return rep, fmt.Errorf("restore blocks: %w", err)
	}
	rep.Purged = purged
	rows, err := n.st.ActiveBlocks(ctx, now)
	if err != nil {
		return rep, fmt.Errorf("restore blocks: %w", err)
	}
	if err := n.b.Ensure(ctx); err != nil {
		return rep, fmt.Errorf("restore blocks: %w", err)
	}
	var errs []error
	want := map[netip.Prefix]time.Time{} // expiry, zero = never
	put := func(p netip.Prefix, exp time.Time) {
		if old, ok := want[p]; ok && (old.IsZero() || !exp.IsZero() && old.After(exp)) {
			return
		}
		want[p] = exp
	}
	domains := map[string]map[netip.Addr]struct{}{}
	for _, r := range rows {
		switch r.Kind {
		case store.BlockIP, store.BlockCIDR:
			p, err := rowPrefix(r)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			q, err := n.check(p)
			if err != nil {
				errs = append(errs, fmt.Errorf("restore %s %s (recipe %s): %w", r.Kind, r.Value, r.Recipe, err))
				continue
			}
			put(q, r.Expires)
		case store.BlockDomain:
			addrs, err := n.readAddrs(ctx, r.Value)
			if err != nil {
				// Still blocked: later answers for it are blocked again.
				errs = append(errs, err)
				addrs = map[netip.Addr]struct{}{}
			}
			domains[r.Value] = addrs
			for a := range addrs {
				if q, err := n.check(netip.PrefixFrom(a, a.BitLen())); err == nil {
					put(q, time.Time{})
				}
			}
		}
	}
	n.domains = domains
	rep.Domains = len(domains)
	// Address sets whose domain row is gone.
	keys, err := n.st.Keys(ctx, AddrNamespace)
	if err != nil {
		errs = append(errs, err)
	}
	for _, k := range keys {
		if _, ok := domains[k]; ok {
			continue
		}
		if _, err := n.st.Delete(ctx, AddrNamespace, k); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Orphaned++
	}

	now = time.Now()
	els := make([]netblock.Element, 0, len(want))
	for p, exp := range want {
		var ttl time.Duration
		if !exp.IsZero() {
			ttl = exp.Sub(now)
			if ttl <= 0 {
				continue // expired while we were reading
			}
		}
		els = append(els, netblock.Element{Prefix: p, TTL: ttl})
	}
	slices.SortFunc(els, func(x, y netblock.Element) int {
		if c := x.Prefix.Addr().Compare(y.Prefix.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(x.Prefix.Bits(), y.Prefix.Bits())
	})
	rep.Applied = len(els)
	if len(els) > 0 {
		if err := n.b.BlockMany(ctx, els); err != nil {
			errs = append(errs, err)
		}
	}
	// Remove what nothing backs.
	have, err := n.b.List(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, e := range have {
		if _, ok := want[e.Prefix]; ok {
			continue
		}
		if _, err := n.b.Unblock(ctx, e.Prefix); err != nil {
			errs = append(errs, err)
			continue
		}
		rep.Removed++
	}
	if err := errors.Join(errs...); err != nil {
		for _, e := range errs {
			n.log.Warn("restore network block", "err", e)
		}
		return rep, fmt.Errorf("restore blocks: %w", err)
	}
	return rep, nil
}

func rowPrefix(r store.Block) (netip.Prefix, error) {
	if r.Kind == store.BlockIP {
		a, err := netip.ParseAddr(r.Value)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("restore ip %q: %w", r.Value, err)
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(r.Value)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("restore cidr %q: %w", r.Value, err)
	}
	return p, nil
}

// Listing is the persisted view of the blocks next to what nftables holds.
type Listing struct {
	Blocks      []store.Block           // active rows: ip, cidr, domain
	DomainAddrs map[string][]netip.Addr // addresses blocked per domain
	Kernel      []netblock.Element      // nftables elements with remaining ttl
	KernelErr   error                   // why Kernel is empty, if it failed
}

// List reads the active persisted blocks, the addresses of blocked domains
// and the elements nftables holds.
func (n *Net) List(ctx context.Context) (Listing, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return Listing{}, err
	}
	l, err := ListStore(ctx, n.st)
	if err != nil {
		return l, err
	}
	l.Kernel, l.KernelErr = n.b.List(ctx)
	return l, nil
}

// ListStore reads the persisted part of a Listing without touching
// nftables (for a caller that cannot open it).
func ListStore(ctx context.Context, st Store) (Listing, error) {
	l := Listing{DomainAddrs: map[string][]netip.Addr{}}
	rows, err := st.ActiveBlocks(ctx, time.Now())
	if err != nil {
		return l, fmt.Errorf("list blocks: %w", err)
	}
	l.Blocks = rows
	tmp := &Net{st: st}
	for _, r := range rows {
		if r.Kind != store.BlockDomain {
			continue
		}
		addrs, err := tmp.readAddrs(ctx, r.Value)
		if err != nil {
			return l, fmt.Errorf("list blocks: %w", err)
		}
		list := make([]netip.Addr, 0, len(addrs))
		for a := range addrs {
			list = append(list, a)
		}
		slices.SortFunc(list, func(x, y netip.Addr) int { return x.Compare(y) })
		l.DomainAddrs[r.Value] = list
	}
	return l, nil
}
