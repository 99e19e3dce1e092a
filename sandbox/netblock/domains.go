package netblock

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Domains blocks domains by their IP addresses: the addresses a domain
// resolves to when it is registered, and those later seen in DNS answers for
// it or any of its subdomains (ObserveDNS). It remembers which addresses it
// blocked for which domains, so that unregistering a domain unblocks only
// addresses no other registered domain still needs and that it blocked
// itself (an address blocked by someone else before stays blocked).
//
// The registry lives in memory; the caller persists registrations and
// replays them with Register at start.
type Domains struct {
	b   *Blocker
	now func() time.Time

	mu      sync.Mutex
	domains map[string]*domainEntry
	// owners of each address this registry blocked itself.
	owners map[netip.Addr]map[string]struct{}
}

type domainEntry struct {
	expires time.Time // zero = never
	addrs   map[netip.Addr]struct{}
}

// NewDomains returns an empty registry blocking through b.
func NewDomains(b *Blocker) *Domains {
	return &Domains{
		b:       b,
		now:     time.Now,
		domains: map[string]*domainEntry{},
		owners:  map[netip.Addr]map[string]struct{}{},
	}
}

// NormalizeDomain lower-cases a domain name, drops one trailing dot and
// checks the hostname syntax: ASCII letters, digits, '-' and '_' (SRV and
// DKIM style labels), labels of 1-63 bytes not starting or ending with '-',
// at most 253 bytes, at least two labels (a bare TLD would block too much).
// Internationalized names must be given in their xn-- form.
func NormalizeDomain(name string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(name, "."))
	if d == "" {
		return "", fmt.Errorf("domain %q: empty: %w", name, ErrInvalid)
	}
	if len(d) > 253 {
		return "", fmt.Errorf("domain %q: longer than 253 bytes: %w", name, ErrInvalid)
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return "", fmt.Errorf("domain %q: a single label is not blockable: %w", name, ErrInvalid)
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return "", fmt.Errorf("domain %q: label %q must be 1-63 bytes: %w", name, l, ErrInvalid)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("domain %q: label %q starts or ends with '-': %w", name, l, ErrInvalid)
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("domain %q: invalid character %q: %w", name, c, ErrInvalid)
			}
		}
	}
	return d, nil
}

// Register blocks ips for domain and remembers the domain, so that addresses
// later seen in DNS answers for it (or its subdomains) are blocked too. A
// ttl > 0 makes the registration and every block made for it expire after
// ttl; 0 keeps them until Unregister. It returns 0 when the domain is new, or
// something new was blocked or extended, 1 when nothing changed. Protected
// addresses (a sinkhole answering 127.0.0.1, for instance) are skipped;
// other failures are reported after blocking all it could.
func (d *Domains) Register(ctx context.Context, domain string, ips []netip.Addr, ttl time.Duration) (int, error) {
	name, err := NormalizeDomain(domain)
	if err != nil {
		return -1, fmt.Errorf("register domain: %w", err)
	}
	if ttl < 0 {
		return -1, fmt.Errorf("register domain %s: ttl %s: %w", name, ttl, ErrInvalid)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.purge()
	ret := 1
	e := d.domains[name]
	expires := expiryFor(d.now(), ttl)
	if e == nil {
		e = &domainEntry{expires: expires, addrs: map[netip.Addr]struct{}{}}
		d.domains[name] = e
		ret = 0
	} else if !atLeast(e.expires, expires) {
		e.expires = expires
		ret = 0
	}
	changed, err := d.blockFor(ctx, name, e, ips)
	if changed {
		ret = 0
	}
	if err != nil {
		return -1, fmt.Errorf("register domain %s: %w", name, err)
	}
	return ret, nil
}

// blockFor blocks ips on behalf of the registered domain name until the
// registration expires. It reports whether any block was added or extended.
func (d *Domains) blockFor(ctx context.Context, name string, e *domainEntry, ips []netip.Addr) (bool, error) {
	var ttl time.Duration
	if !e.expires.IsZero() {
		ttl = e.expires.Sub(d.now())
		if ttl <= 0 {
			return false, nil
		}
	}
	changed := false
	var errs []error
	for _, ip := range ips {
		a := ip.WithZone("").Unmap()
		p, err := a.Prefix(a.BitLen())
		if err != nil {
			errs = append(errs, fmt.Errorf("address %q: %w", ip, ErrInvalid))
			continue
		}
		ret, err := d.b.Block(ctx, p, ttl)
		switch {
		case errors.Is(err, ErrProtected):
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		case ret == 0:
			changed = true
		}
		owners, ours := d.owners[a]
		if ret == 1 && !ours {
			continue // blocked by someone else: not ours to unblock
		}
		if !ours {
			owners = map[string]struct{}{}
			d.owners[a] = owners
		}
		owners[name] = struct{}{}
		if _, ok := e.addrs[a]; !ok {
			e.addrs[a] = struct{}{}
			changed = true
		}
	}
	return changed, errors.Join(errs...)
}

// Unregister forgets domain and unblocks the addresses blocked for it that
// no other registered domain shares. It returns 0 when the domain was
// registered, 1 when it was not.
func (d *Domains) Unregister(ctx context.Context, domain string) (int, error) {
	name, err := NormalizeDomain(domain)
	if err != nil {
		return -1, fmt.Errorf("unregister domain: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.purge()
	e := d.domains[name]
	if e == nil {
		return 1, nil
	}
	var errs []error
	for a := range e.addrs {
		owners := d.owners[a]
		delete(owners, name)
		if len(owners) > 0 {
			delete(e.addrs, a) // still needed by another domain
			continue
		}
		if _, err := d.b.Unblock(ctx, netip.PrefixFrom(a, a.BitLen())); err != nil {
			// Keep what failed, so that a retry can finish the job.
			d.owners[a] = map[string]struct{}{name: {}}
			errs = append(errs, err)
			continue
		}
		delete(d.owners, a)
		delete(e.addrs, a)
	}
	if len(errs) > 0 {
		return -1, fmt.Errorf("unregister domain %s: %w", name, errors.Join(errs...))
	}
	delete(d.domains, name)
	return 0, nil
}

// ObserveDNS is called with each DNS answer: when name or one of its parent
// domains is registered, the answer's addresses are blocked for it. Names
// that are not valid hostnames match nothing.
func (d *Domains) ObserveDNS(ctx context.Context, name string, ips []netip.Addr) error {
	if len(ips) == 0 {
		return nil
	}
	n, err := NormalizeDomain(name)
	if err != nil {
		return nil // a registered domain is always valid: no match
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.purge()
	var errs []error
	for {
		if e := d.domains[n]; e != nil {
			if _, err := d.blockFor(ctx, n, e, ips); err != nil {
				errs = append(errs, fmt.Errorf("block answer for %s (registered %s): %w", name, n, err))
			}
		}
		i := strings.IndexByte(n, '.')
		if i < 0 {
			break
		}
		n = n[i+1:]
	}
	return errors.Join(errs...)
}

// Registered returns the registered domains, sorted.
func (d *Domains) Registered() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.purge()
	out := make([]string, 0, len(d.domains))
	for n := range d.domains {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// purge forgets expired registrations. Their blocks expire in the kernel at
// the same time (no block made for a domain outlives its registration), so
// nothing is unblocked here.
func (d *Domains) purge() {
	now := d.now()
	for name, e := range d.domains {
		if e.expires.IsZero() || e.expires.After(now) {
			continue
		}
		for a := range e.addrs {
			delete(d.owners[a], name)
			if len(d.owners[a]) == 0 {
				delete(d.owners, a)
			}
		}
		delete(d.domains, name)
	}
}
