// Package livenet is the live network actuator: it implements sandbox.Network
// with nftables (package netblock) and keeps every block in the store, so that
// blocks survive a restart or a crash of the daemon and timed blocks still
// expire on time (Restore re-applies them with their remaining lifetime).
//
// The store is the source of truth. Explicit blocks are rows of kind ip or
// cidr; a blocked domain is a row of kind domain plus the set of addresses
// blocked for it, kept in the key-value namespace AddrNamespace (key: the
// domain, value: a JSON array of addresses). Restore makes the kernel match
// the store: it adds what is missing and removes elements nothing backs.
//
// Several processes may share one store and one namespace (the daemon, the
// CLI's `net unblock`, `sandbox exec --live`): each operation reads what it
// needs from the store, so a change made by one is honoured by the others,
// except that a domain registered by another process is only learnt at the
// next Restore or Sync.
package livenet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/store"
)

// AddrNamespace holds, per blocked domain, the addresses blocked for it. Its
// name cannot be a recipe's (recipe names start with a letter or a digit),
// so no reaction's Data* helpers can reach it.
const AddrNamespace = "@jibril/net.domain-addrs"

// Limits on what DNS observations may make us remember.
const (
	// MaxAddrsPerDomain bounds the addresses blocked for one domain (a CDN
	// answers with ever new ones); past it new addresses are refused and
	// reported, never silently dropped.
	MaxAddrsPerDomain = 4096
	// MaxCacheEntries bounds the DNS observation cache (name, address).
	MaxCacheEntries = 1 << 16
	// MinCacheTTL keeps an observed address known at least this long,
	// whatever the answer's TTL: connections outlive short DNS TTLs, and the
	// reaction that blocks the domain runs after the answer.
	MinCacheTTL = 5 * time.Minute
	// MaxCacheTTL caps how long an observation is believed.
	MaxCacheTTL = 24 * time.Hour
)

// ErrProtected is wrapped when a block would hit loopback, an unspecified
// address, everything, or a protected network.
// It is netblock's sentinel, so that callers (the sandbox's audit of refusals) test one.
var ErrProtected = netblock.ErrProtected

// Store is the part of the jibril store the actuator needs.
type Store interface {
	PutBlock(ctx context.Context, b store.Block) error
	DeleteBlock(ctx context.Context, kind, value string) (bool, error)
	ActiveBlocks(ctx context.Context, now time.Time) ([]store.Block, error)
	PurgeExpiredBlocks(ctx context.Context, now time.Time) (int, error)
	Get(ctx context.Context, ns, key string) (string, bool, error)
	Set(ctx context.Context, ns, key, value string) error
	Delete(ctx context.Context, ns, key string) (bool, error)
	Keys(ctx context.Context, ns string) ([]string, error)
}

// Resolver looks a domain up; *net.Resolver satisfies it.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Options configure a Net.
type Options struct {
	// Netblock says which network namespace to act in (NetNSFd, -1 for the
	// current one) and which prefixes nftables must never block.
	Netblock netblock.Options
	// Protect lists prefixes never blocked, checked here as well as in
	// netblock (fail closed if either is misconfigured). Loopback,
	// link-local and unspecified addresses always are.
	Protect []netip.Prefix
	// Resolver, when set, is asked for a domain's addresses when it is
	// blocked, in addition to the DNS observations. Nil: observations only
	// (no query leaves the machine).
	Resolver Resolver
	// ResolveTimeout bounds one lookup; 0 means 2s.
	ResolveTimeout time.Duration
	// Log receives what cannot be returned (a failed restore element).
	Log *slog.Logger
}

// Net blocks traffic in nftables and persists every block. It is safe for
// concurrent use.
type Net struct {
	st       Store
	b        *netblock.Blocker
	protect  []netip.Prefix
	resolver Resolver
	rtimeout time.Duration
	log      *slog.Logger

	mu sync.Mutex
	// domains registered, as last read from the store, with their addresses.
	domains map[string]map[netip.Addr]struct{}
	// cache of DNS observations: name -> address -> expiry.
	cache      map[string]map[netip.Addr]time.Time
	cacheCount int
	closed     bool
}

// alwaysProtected are never blocked whatever the configuration says.
func alwaysProtected() []netip.Prefix {
	return []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"),
		netip.MustParsePrefix("::1/128"),
		netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("fe80::/10"),
		netip.MustParsePrefix("0.0.0.0/32"),
		netip.MustParsePrefix("::/128"),
	}
}

// Open opens the nftables table in the configured namespace (creating it
// when missing) and returns an actuator over st. It does not touch the
// blocks: the daemon calls Restore once at start, one-shot tools need not.
func Open(ctx context.Context, st Store, o Options) (*Net, error) {
	if st == nil {
		return nil, errors.New("livenet: open: no store")
	}
	protect := alwaysProtected()
	for i, p := range append(slices.Clone(o.Netblock.Protect), o.Protect...) {
		if !p.IsValid() {
			return nil, fmt.Errorf("livenet: open: protect[%d]: invalid prefix", i)
		}
		protect = append(protect, unmapPrefix(p))
	}
	nbo := o.Netblock
	nbo.Protect = slices.Clone(protect[len(alwaysProtected()):])
	b, err := netblock.Open(ctx, nbo)
	if err != nil {
		return nil, fmt.Errorf("livenet: open: %w", err)
	}
	n := &Net{
		st: st, b: b, protect: protect, resolver: o.Resolver, rtimeout: o.ResolveTimeout,
		log:     o.Log,
		domains: map[string]map[netip.Addr]struct{}{},
		cache:   map[string]map[netip.Addr]time.Time{},
	}
	if n.rtimeout <= 0 {
		n.rtimeout = 2 * time.Second
	}
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	if err := n.loadDomains(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("livenet: open: %w", err)
	}
	return n, nil
}

// Close releases the nftables sockets. Blocks stay in the kernel and in the
// store.
func (n *Net) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	return n.b.Close()
}

// Blocker exposes the nftables blocker (for listings and tests).
func (n *Net) Blocker() *netblock.Blocker { return n.b }

// unmapPrefix masks p and turns IPv4-mapped IPv6 into IPv4, as the kernel
// sees those packets.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() && bits >= 96 {
		a, bits = a.Unmap(), bits-96
	}
	return netip.PrefixFrom(a, bits).Masked()
}

// check normalizes p and refuses what must never be blocked.
func (n *Net) check(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %q", p.String())
	}
	q := unmapPrefix(p)
	if q.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%s is everything: %w", q, ErrProtected)
	}
	for _, pp := range n.protect {
		if q.Overlaps(pp) {
			return netip.Prefix{}, fmt.Errorf("%s overlaps protected %s: %w", q, pp, ErrProtected)
		}
	}
	return q, nil
}

func kindOf(p netip.Prefix) (kind, value string) {
	if p.IsSingleIP() {
		return store.BlockIP, p.Addr().String()
	}
	return store.BlockCIDR, p.String()
}

func (n *Net) usable() error {
	if n.closed {
		return netblock.ErrClosed
	}
	return nil
}

// BlockPrefix blocks p (a single address or a CIDR range) for ttl, 0 for
// ever, and persists it. It returns 0 when it blocked or extended, 1 when p
// was already blocked at least that long, -1 with an error otherwise.
func (n *Net) BlockPrefix(ctx context.Context, p netip.Prefix, ttl time.Duration, recipe string) (int, error) {
	q, err := n.check(p)
	if err != nil {
		return -1, fmt.Errorf("block %s: %w", p, err)
	}
	if ttl < 0 {
		return -1, fmt.Errorf("block %s: negative ttl %s", q, ttl)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return -1, err
	}
	now := time.Now()
	// The kernel first: it decides whether anything changed, and a block
	// that could not be applied must not be persisted.
	ret, err := n.b.Block(ctx, q, ttl)
	if err != nil {
		return -1, err
	}
	kind, value := kindOf(q)
	row := store.Block{Kind: kind, Value: value, Recipe: recipe, Created: now}
	if ttl > 0 {
		row.Expires = now.Add(ttl)
	}
	if ret == 1 {
		// Already blocked in the kernel (by us earlier, or for a domain):
		// never shorten what the store already promises.
		old, found, err := n.findBlock(ctx, kind, value, now)
		if err != nil {
			return -1, fmt.Errorf("block %s: blocked but not persisted: %w", q, err)
		}
		if found && (old.Expires.IsZero() || !row.Expires.IsZero() && !old.Expires.Before(row.Expires)) {
			return 1, nil
		}
	}
	if err := n.st.PutBlock(ctx, row); err != nil {
		return -1, fmt.Errorf("block %s: blocked but not persisted: %w", q, err)
	}
	return ret, nil
}

// findBlock reads one active row.
func (n *Net) findBlock(ctx context.Context, kind, value string, now time.Time) (store.Block, bool, error) {
	rows, err := n.st.ActiveBlocks(ctx, now)
	if err != nil {
		return store.Block{}, false, err
	}
	for _, r := range rows {
		if r.Kind == kind && r.Value == value {
			return r, true, nil
		}
	}
	return store.Block{}, false, nil
}

// UnblockPrefix removes the block of exactly p: its row, its nftables
// element, and the address from every blocked domain (a later DNS answer for
// such a domain blocks it again). It returns 0 when something was removed,
// 1 when p was not blocked.
func (n *Net) UnblockPrefix(ctx context.Context, p netip.Prefix) (int, error) {
	if !p.IsValid() {
		return -1, fmt.Errorf("unblock: invalid prefix %q", p.String())
	}
	q := unmapPrefix(p)
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return -1, err
	}
	kind, value := kindOf(q)
	// The store first: a crash in between leaves an element no row backs,
	// which Restore removes.
	removed, err := n.st.DeleteBlock(ctx, kind, value)
	if err != nil {
		return -1, fmt.Errorf("unblock %s: %w", q, err)
	}
	if q.IsSingleIP() {
		if err := n.loadDomains(ctx); err != nil {
			return -1, fmt.Errorf("unblock %s: %w", q, err)
		}
		for d, addrs := range n.domains {
			if _, ok := addrs[q.Addr()]; !ok {
				continue
			}
			next := maps(addrs)
			delete(next, q.Addr())
			if err := n.saveDomain(ctx, d, next); err != nil {
				return -1, fmt.Errorf("unblock %s: %w", q, err)
			}
			removed = true
		}
	}
	ret, err := n.b.Unblock(ctx, q)
	if err != nil {
		return -1, err
	}
	if removed {
		ret = 0
	}
	return ret, nil
}

func maps(m map[netip.Addr]struct{}) map[netip.Addr]struct{} {
	out := make(map[netip.Addr]struct{}, len(m)+1)
	for k := range m {
		out[k] = struct{}{}
	}
	return out
}

// loadDomains rereads the registered domains and their addresses from the
// store, which another process may have changed.
func (n *Net) loadDomains(ctx context.Context) error {
	rows, err := n.st.ActiveBlocks(ctx, time.Now())
	if err != nil {
		return fmt.Errorf("read domain blocks: %w", err)
	}
	next := map[string]map[netip.Addr]struct{}{}
	for _, r := range rows {
		if r.Kind != store.BlockDomain {
			continue
		}
		addrs, err := n.readAddrs(ctx, r.Value)
		if err != nil {
			// The registration still stands: keep blocking new answers
			// for it; `jibril store` can repair the value.
			n.log.Warn("unreadable addresses of a blocked domain", "domain", r.Value, "err", err)
			addrs = map[netip.Addr]struct{}{}
		}
		next[r.Value] = addrs
	}
	n.domains = next
	return nil
}

// readAddrs reads the addresses blocked for domain. A corrupt value is
// reported rather than read as "none" (which would unblock them).
func (n *Net) readAddrs(ctx context.Context, domain string) (map[netip.Addr]struct{}, error) {
	v, ok, err := n.st.Get(ctx, AddrNamespace, domain)
	if err != nil {
		return nil, fmt.Errorf("read addresses of domain %s: %w", domain, err)
	}
	out := map[netip.Addr]struct{}{}
	if !ok {
		return out, nil
	}
	var list []string
	if err := json.Unmarshal([]byte(v), &list); err != nil {
		return nil, fmt.Errorf("read addresses of domain %s: store %s/%s: %w", domain, AddrNamespace, domain, err)
	}
	for _, s := range list {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("read addresses of domain %s: store %s/%s: %w", domain, AddrNamespace, domain, err)
		}
		out[a.Unmap()] = struct{}{}
	}
	return out, nil
}

// saveDomain persists the address set of a registered domain.
func (n *Net) saveDomain(ctx context.Context, domain string, addrs map[netip.Addr]struct{}) error {
	list := make([]netip.Addr, 0, len(addrs))
	for a := range addrs {
		list = append(list, a)
	}
	slices.SortFunc(list, func(x, y netip.Addr) int { return x.Compare(y) })
	strs := make([]string, len(list))
	for i, a := range list {
		strs[i] = a.String()
	}
	b, err := json.Marshal(strs)
	if err != nil {
		return err
	}
	if err := n.st.Set(ctx, AddrNamespace, domain, string(b)); err != nil {
		return fmt.Errorf("persist addresses of domain %s: %w", domain, err)
	}
	n.domains[domain] = addrs
	return nil
}

// matches reports whether name is domain or one of its subdomains.
func matches(name, domain string) bool {
	return name == domain || strings.HasSuffix(name, "."+domain)
}

// BlockDomain registers domain (persisted) and blocks the addresses known
// for it and its subdomains: DNS answers observed recently, and a lookup when
// a resolver is configured. Addresses later seen in DNS answers for it are
// blocked by ObserveDNS. It returns 0 when the domain is newly blocked or new
// addresses were blocked, 1 when nothing changed.
func (n *Net) BlockDomain(ctx context.Context, domain, recipe string) (int, error) {
	d, err := netblock.NormalizeDomain(domain)
	if err != nil {
		return -1, fmt.Errorf("block domain: %w", err)
	}
	var resolved []netip.Addr
	if n.resolver != nil {
		rctx, cancel := context.WithTimeout(ctx, n.rtimeout)
		resolved, err = n.resolver.LookupNetIP(rctx, "ip", d+".")
		cancel()
		if err != nil {
			n.log.Debug("resolve blocked domain", "domain", d, "err", err)
			resolved = nil
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return -1, err
	}
	if err := n.loadDomains(ctx); err != nil {
		return -1, fmt.Errorf("block domain %s: %w", d, err)
	}
	now := time.Now()
	ips := resolved
	for name, addrs := range n.cache {
		if !matches(name, d) {
			continue
		}
		for a, exp := range addrs {
			if exp.After(now) {
				ips = append(ips, a)
			}
		}
	}
	ret := 1
	addrs, registered := n.domains[d]
	if !registered {
		// The row first: the registration is what makes later DNS
		// answers block, and what Restore replays.
		if err := n.st.PutBlock(ctx, store.Block{Kind: store.BlockDomain, Value: d, Recipe: recipe, Created: now}); err != nil {
			return -1, fmt.Errorf("block domain %s: %w", d, err)
		}
		addrs = map[netip.Addr]struct{}{}
		if err := n.saveDomain(ctx, d, addrs); err != nil {
			return -1, fmt.Errorf("block domain %s: %w", d, err)
		}
		ret = 0
	}
	changed, err := n.blockForDomain(ctx, d, ips)
	if changed {
		ret = 0
	}
	if err != nil {
		return -1, fmt.Errorf("block domain %s: %w", d, err)
	}
	return ret, nil
}

// blockForDomain blocks ips for the registered domain d and records them.
// Protected addresses (a sinkhole answering 127.0.0.1) are skipped.
func (n *Net) blockForDomain(ctx context.Context, d string, ips []netip.Addr) (bool, error) {
	addrs := n.domains[d]
	next, copied := addrs, false
	changed := false
	var errs []error
	for _, ip := range ips {
		if !ip.IsValid() {
			continue
		}
		a := ip.WithZone("").Unmap()
		p, err := n.check(netip.PrefixFrom(a, a.BitLen()))
		if errors.Is(err, ErrProtected) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, known := next[a]
		if !known && len(next) >= MaxAddrsPerDomain {
			errs = append(errs, fmt.Errorf("address %s: domain already has %d addresses blocked", a, MaxAddrsPerDomain))
			continue
		}
		ret, err := n.b.Block(ctx, p, 0)
		if err != nil {
			if errors.Is(err, netblock.ErrProtected) {
				continue
			}
			errs = append(errs, err)
			continue
		}
		if ret == 0 {
			changed = true
		}
		if !known {
			if !copied {
				next, copied = maps(addrs), true
			}
			next[a] = struct{}{}
			changed = true
		}
	}
	if copied {
		if err := n.saveDomain(ctx, d, next); err != nil {
			errs = append(errs, err)
		}
	}
	return changed, errors.Join(errs...)
}

// UnblockDomain forgets domain and unblocks the addresses blocked for it
// that nothing else needs: another blocked domain, or an explicit block of
// the address (which then keeps its own expiry). It returns 0 when the
// domain was blocked, 1 when it was not.
func (n *Net) UnblockDomain(ctx context.Context, domain string) (int, error) {
	d, err := netblock.NormalizeDomain(domain)
	if err != nil {
		return -1, fmt.Errorf("unblock domain: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return -1, err
	}
	if err := n.loadDomains(ctx); err != nil {
		return -1, fmt.Errorf("unblock domain %s: %w", d, err)
	}
	addrs, registered := n.domains[d]
	if !registered {
		// A leftover address set without its row (a crash in between).
		if _, err := n.st.Delete(ctx, AddrNamespace, d); err != nil {
			return -1, fmt.Errorf("unblock domain %s: %w", d, err)
		}
		return 1, nil
	}
	now := time.Now()
	rows, err := n.st.ActiveBlocks(ctx, now)
	if err != nil {
		return -1, fmt.Errorf("unblock domain %s: %w", d, err)
	}
	explicit := map[netip.Addr]store.Block{}
	for _, r := range rows {
		if r.Kind == store.BlockIP {
			if a, err := netip.ParseAddr(r.Value); err == nil {
				explicit[a.Unmap()] = r
			}
		}
	}
	// The registration goes first, so that a crash half-way leaves
	// elements that Restore removes rather than a domain half blocked.
	if _, err := n.st.DeleteBlock(ctx, store.BlockDomain, d); err != nil {
		return -1, fmt.Errorf("unblock domain %s: %w", d, err)
	}
	if _, err := n.st.Delete(ctx, AddrNamespace, d); err != nil {
		return -1, fmt.Errorf("unblock domain %s: %w", d, err)
	}
	delete(n.domains, d)
	var errs []error
	for a := range addrs {
		if n.ownedByDomain(a) {
			continue
		}
		p := netip.PrefixFrom(a, a.BitLen())
		if r, ok := explicit[a]; ok {
			if r.Expires.IsZero() {
				continue
			}
			// Back to the explicit block's own expiry.
			if _, err := n.b.Unblock(ctx, p); err != nil {
				errs = append(errs, err)
				continue
			}
			if left := r.Expires.Sub(now); left > 0 {
				if _, err := n.b.Block(ctx, p, left); err != nil {
					errs = append(errs, err)
				}
			}
			continue
		}
		if _, err := n.b.Unblock(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return -1, fmt.Errorf("unblock domain %s: %w", d, err)
	}
	return 0, nil
}

func (n *Net) ownedByDomain(a netip.Addr) bool {
	for _, addrs := range n.domains {
		if _, ok := addrs[a]; ok {
			return true
		}
	}
	return false
}

// ObserveDNS is the DNS sensor's hook, called with each answer: name (the
// question), its A/AAAA addresses and the answer's TTL. The addresses are
// remembered (so that a later BlockDomain finds them), and blocked at once
// when name or one of its parents is a blocked domain.
func (n *Net) ObserveDNS(ctx context.Context, name string, ips []netip.Addr, ttl time.Duration) error {
	if len(ips) == 0 {
		return nil
	}
	d, err := netblock.NormalizeDomain(name)
	if err != nil {
		return nil // not a host name: nothing can be registered under it
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return err
	}
	n.remember(d, ips, ttl)
	var errs []error
	for reg := range n.domains {
		if !matches(d, reg) {
			continue
		}
		// Another process may have unblocked it: the store decides.
		if _, ok, err := n.st.Get(ctx, AddrNamespace, reg); err != nil {
			errs = append(errs, err)
			continue
		} else if !ok {
			delete(n.domains, reg)
			continue
		}
		if _, err := n.blockForDomain(ctx, reg, ips); err != nil {
			errs = append(errs, fmt.Errorf("block answer for %s (blocked domain %s): %w", d, reg, err))
		}
	}
	return errors.Join(errs...)
}

// remember caches observations, evicting expired ones, then the soonest to
// expire, past MaxCacheEntries.
func (n *Net) remember(name string, ips []netip.Addr, ttl time.Duration) {
	now := time.Now()
	ttl = min(max(ttl, MinCacheTTL), MaxCacheTTL)
	exp := now.Add(ttl)
	m := n.cache[name]
	if m == nil {
		m = map[netip.Addr]time.Time{}
		n.cache[name] = m
	}
	for _, ip := range ips {
		if !ip.IsValid() {
			continue
		}
		a := ip.WithZone("").Unmap()
		if _, ok := m[a]; !ok {
			n.cacheCount++
		}
		m[a] = exp
	}
	if n.cacheCount <= MaxCacheEntries {
		return
	}
	n.evict(now)
}

func (n *Net) evict(now time.Time) {
	type entry struct {
		name string
		a    netip.Addr
		exp  time.Time
	}
	var all []entry
	for name, m := range n.cache {
		for a, exp := range m {
			if !exp.After(now) {
				delete(m, a)
				n.cacheCount--
				continue
			}
			all = append(all, entry{name, a, exp})
		}
		if len(m) == 0 {
			delete(n.cache, name)
		}
	}
	if n.cacheCount <= MaxCacheEntries {
		return
	}
	// Down to 90 % so that eviction is not paid on every answer.
	slices.SortFunc(all, func(x, y entry) int { return x.exp.Compare(y.exp) })
	for _, e := range all[:n.cacheCount-MaxCacheEntries*9/10] {
		delete(n.cache[e.name], e.a)
		if len(n.cache[e.name]) == 0 {
			delete(n.cache, e.name)
		}
		n.cacheCount--
	}
}

// Sync rereads the blocked domains from the store (another process may
// have blocked or unblocked one) and blocks their recorded addresses.
func (n *Net) Sync(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.usable(); err != nil {
		return err
	}
	if err := n.loadDomains(ctx); err != nil {
		return fmt.Errorf("sync domains: %w", err)
	}
	var els []netblock.Element
	for _, addrs := range n.domains {
		for a := range addrs {
			els = append(els, netblock.Element{Prefix: netip.PrefixFrom(a, a.BitLen())})
		}
	}
	if len(els) == 0 {
		return nil
	}
	if err := n.b.BlockMany(ctx, els); err != nil {
		return fmt.Errorf("sync domains: %w", err)
	}
	return nil
}
