// Package dnscache maps IP addresses to the DNS names they were resolved from, so that
// network events carry remote names (flow.remote.name/names) and domain recipes can match.
// It is filled from DNS answers (bpf.DNSEvent, or a raw DNS message), honours the answers'
// TTLs within clamps, and is bounded. Observers (the network blocker) are told about every
// answer.
//
// Only what is reachable from the question is trusted: the CNAME chain that starts at the
// question name and the A/AAAA records of the names on it. Every name of the chain (the
// question and each alias) is attached to the final addresses.
package dnscache

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/jibril-rt/jibril/bpf"
)

// Defaults applied to zero Options fields.
const (
	DefaultMinTTL        = time.Minute
	DefaultMaxTTL        = 6 * time.Hour
	DefaultMaxIPs        = 1 << 16
	DefaultMaxNamesPerIP = 16
	DefaultMaxIPsPerName = 64
)

// Limits on what one answer may contribute.
const (
	maxChain   = 16  // CNAME hops followed
	maxNameLen = 253 // presentation form without the final dot
	maxAnswers = 256 // answer records read from one message
)

// Observer is told about every accepted answer: once per name of the chain (the question and
// each alias) with the final addresses and the answer's smallest TTL, not clamped. It runs
// synchronously on the recording goroutine and must not block.
type Observer func(name string, ips []netip.Addr, ttl time.Duration)

// Options configures a Cache.
type Options struct {
	MinTTL        time.Duration    // shortest time an entry is kept (0 = DefaultMinTTL)
	MaxTTL        time.Duration    // longest time an entry is kept (0 = DefaultMaxTTL)
	MaxIPs        int              // addresses remembered (0 = DefaultMaxIPs)
	MaxNamesPerIP int              // names kept per address (0 = DefaultMaxNamesPerIP)
	MaxIPsPerName int              // addresses kept per name (0 = DefaultMaxIPsPerName)
	Now           func() time.Time // nil = time.Now
	Observers     []Observer
}

// Cache is the IP ↔ name cache. It is safe for concurrent use.
type Cache struct {
	minTTL, maxTTL time.Duration
	maxIPs         int
	maxNamesPerIP  int
	maxIPsPerName  int
	now            func() time.Time

	mu        sync.RWMutex
	byIP      map[netip.Addr]*ipEntry
	byName    map[string]map[netip.Addr]time.Time // name -> ip -> expiry
	observers []Observer
	seq       uint64
}

type ipEntry struct {
	names map[string]nameRef
	// expires is the latest expiry of its names, for eviction.
	expires time.Time
}

type nameRef struct {
	expires time.Time
	seq     uint64 // answer that last carried it: newer first
	rank    int    // position in its chain: the question (0) before its aliases
}

// New returns an empty cache.
func New(o Options) *Cache {
	c := &Cache{minTTL: o.MinTTL, maxTTL: o.MaxTTL, maxIPs: o.MaxIPs,
		maxNamesPerIP: o.MaxNamesPerIP, maxIPsPerName: o.MaxIPsPerName, now: o.Now,
		byIP: map[netip.Addr]*ipEntry{}, byName: map[string]map[netip.Addr]time.Time{},
		observers: slices.Clone(o.Observers)}
	if c.minTTL <= 0 {
		c.minTTL = DefaultMinTTL
	}
	if c.maxTTL <= 0 {
		c.maxTTL = DefaultMaxTTL
	}
	if c.maxTTL < c.minTTL {
		c.maxTTL = c.minTTL
	}
	if c.maxIPs <= 0 {
		c.maxIPs = DefaultMaxIPs
	}
	if c.maxNamesPerIP <= 0 {
		c.maxNamesPerIP = DefaultMaxNamesPerIP
	}
	if c.maxIPsPerName <= 0 {
		c.maxIPsPerName = DefaultMaxIPsPerName
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// OnAnswer registers an observer.
func (c *Cache) OnAnswer(fn Observer) {
	if fn == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.observers = append(c.observers, fn)
}

// Answer is one resolved chain: the question name, its aliases in order, the final addresses.
type Answer struct {
	Name    string
	Aliases []string
	Addrs   []netip.Addr
	TTL     time.Duration // smallest TTL along the chain and the addresses
}

// Record adds a DNS answer seen by the sensors. Answers that are not successful, carry no
// valid name or no address are ignored; it reports whether the answer was used.
func (c *Cache) Record(ev bpf.DNSEvent) bool {
	if ev.RCode != uint16(dnsmessage.RCodeSuccess) {
		return false
	}
	a := Answer{Name: ev.Name, Aliases: ev.CNAMEs, Addrs: ev.Addrs,
		TTL: time.Duration(ev.TTL) * time.Second}
	return c.Add(a)
}

// RecordMessage parses a raw DNS response and adds its answer. A message truncated in the
// answer section contributes what was parsed before the cut.
func (c *Cache) RecordMessage(msg []byte) error {
	a, err := ParseAnswer(msg)
	if err != nil {
		return err
	}
	c.Add(a)
	return nil
}

// Add records a resolved chain; it reports whether anything was stored.
func (c *Cache) Add(a Answer) bool {
	names, ok := chainNames(a)
	if !ok {
		return false
	}
	ips := make([]netip.Addr, 0, len(a.Addrs))
	for _, ip := range a.Addrs {
		ip = ip.Unmap()
		if ip.IsValid() && !ip.IsUnspecified() && !slices.Contains(ips, ip) {
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 {
		return false
	}
	ttl := min(max(a.TTL, c.minTTL), c.maxTTL)
	now := c.now()
	exp := now.Add(ttl)

	c.mu.Lock()
	c.seq++
	for _, ip := range ips {
		c.addLocked(ip, names, exp, now)
	}
	obs := slices.Clone(c.observers)
	c.mu.Unlock()

	for _, fn := range obs {
		for _, n := range names {
			fn(n, slices.Clone(ips), max(a.TTL, 0))
		}
	}
	return true
}

// chainNames normalises the question and aliases, dropping invalid and repeated names.
func chainNames(a Answer) ([]string, bool) {
	q, ok := normName(a.Name)
	if !ok {
		return nil, false
	}
	names := []string{q}
	for _, al := range a.Aliases {
		if len(names) > maxChain {
			break
		}
		if n, ok := normName(al); ok && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names, true
}

func (c *Cache) addLocked(ip netip.Addr, names []string, exp, now time.Time) {
	e := c.byIP[ip]
	if e == nil {
		if len(c.byIP) >= c.maxIPs {
			c.evictLocked(now)
		}
		e = &ipEntry{names: map[string]nameRef{}}
		c.byIP[ip] = e
	}
	for rank, n := range names {
		ref := e.names[n]
		if ref.expires.Before(exp) {
			ref.expires = exp
		}
		ref.seq, ref.rank = c.seq, rank
		e.names[n] = ref
		if exp.After(e.expires) {
			e.expires = exp
		}
		ips := c.byName[n]
		if ips == nil {
			ips = map[netip.Addr]time.Time{}
			c.byName[n] = ips
		}
		if len(ips) >= c.maxIPsPerName {
			if _, have := ips[ip]; !have {
				dropOldest(ips, now)
			}
		}
		if ips[ip].Before(exp) {
			ips[ip] = exp
		}
	}
	if len(e.names) > c.maxNamesPerIP {
		refs := sortedRefs(e.names)
		for _, r := range refs[c.maxNamesPerIP:] {
			delete(e.names, r.name)
			c.unlinkLocked(r.name, ip)
		}
	}
}

// dropOldest removes expired addresses of a name, or the one expiring first.
func dropOldest(ips map[netip.Addr]time.Time, now time.Time) {
	var oldest netip.Addr
	var first time.Time
	for ip, exp := range ips {
		if !exp.After(now) {
			delete(ips, ip)
			continue
		}
		if !oldest.IsValid() || exp.Before(first) {
			oldest, first = ip, exp
		}
	}
	if len(ips) > 0 && oldest.IsValid() {
		delete(ips, oldest)
	}
}

func (c *Cache) unlinkLocked(name string, ip netip.Addr) {
	if ips := c.byName[name]; ips != nil {
		delete(ips, ip)
		if len(ips) == 0 {
			delete(c.byName, name)
		}
	}
}

// evictLocked frees room: every expired address, and at least 1/16 of the table (those
// expiring first) so that a full cache is not scanned on every answer.
func (c *Cache) evictLocked(now time.Time) {
	type cand struct {
		ip  netip.Addr
		exp time.Time
	}
	live := make([]cand, 0, len(c.byIP))
	for ip, e := range c.byIP {
		if !e.expires.After(now) {
			c.dropIPLocked(ip, e)
			continue
		}
		live = append(live, cand{ip, e.expires})
	}
	want := c.maxIPs - c.maxIPs/16
	if want >= c.maxIPs {
		want = c.maxIPs - 1
	}
	if len(live) <= want {
		return
	}
	sort.Slice(live, func(i, j int) bool { return live[i].exp.Before(live[j].exp) })
	for _, cd := range live[:len(live)-want] {
		c.dropIPLocked(cd.ip, c.byIP[cd.ip])
	}
}

func (c *Cache) dropIPLocked(ip netip.Addr, e *ipEntry) {
	for n := range e.names {
		c.unlinkLocked(n, ip)
	}
	delete(c.byIP, ip)
}

type namedRef struct {
	name string
	nameRef
}

// sortedRefs orders names: most recent answer first, then the question before its aliases,
// then alphabetically.
func sortedRefs(m map[string]nameRef) []namedRef {
	out := make([]namedRef, 0, len(m))
	for n, r := range m {
		out = append(out, namedRef{n, r})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.seq != b.seq {
			return a.seq > b.seq
		}
		if a.rank != b.rank {
			return a.rank < b.rank
		}
		return a.name < b.name
	})
	return out
}

// Names returns the live names of an address, the best first (the name most recently asked
// for); nil when none is known.
func (c *Cache) Names(ip netip.Addr) []string {
	ip = ip.Unmap()
	now := c.now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	e := c.byIP[ip]
	if e == nil {
		return nil
	}
	var out []string
	for _, r := range sortedRefs(e.names) {
		if r.expires.After(now) {
			out = append(out, r.name)
		}
	}
	return out
}

// IPs returns the live addresses of a name (any case, with or without the final dot),
// sorted; nil when none is known.
func (c *Cache) IPs(name string) []netip.Addr {
	n, ok := normName(name)
	if !ok {
		return nil
	}
	now := c.now()
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []netip.Addr
	for ip, exp := range c.byName[n] {
		if exp.After(now) {
			out = append(out, ip)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

// Len returns the number of addresses held (live or not yet evicted).
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.byIP)
}

// normName lower-cases a name and drops the final dot. Names that are empty, too long, or
// hold anything but letters, digits, '-', '_' and dots between non-empty labels are refused.
func normName(s string) (string, bool) {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > maxNameLen {
		return "", false
	}
	b := []byte(s)
	label := 0
	for i, ch := range b {
		switch {
		case ch >= 'A' && ch <= 'Z':
			b[i] = ch + 'a' - 'A'
		case ch >= 'a' && ch <= 'z', ch >= '0' && ch <= '9', ch == '-', ch == '_':
		case ch == '.':
			if label == 0 {
				return "", false
			}
			label = 0
			continue
		default:
			return "", false
		}
		label++
		if label > 63 {
			return "", false
		}
	}
	return string(b), true
}

// ErrNotAnswer is returned for a message that is not a usable response.
var ErrNotAnswer = errors.New("not a DNS answer")

// ParseAnswer reads a DNS response: the question, the CNAME chain that starts at it and the
// A/AAAA records of the chain's last name (or any name of the chain). Records about other
// names are ignored. A message cut inside the answer section yields what came before the cut.
func ParseAnswer(msg []byte) (Answer, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return Answer{}, fmt.Errorf("dns message header: %w", err)
	}
	if !h.Response {
		return Answer{}, fmt.Errorf("dns message id %d: %w: query, not a response", h.ID, ErrNotAnswer)
	}
	if h.RCode != dnsmessage.RCodeSuccess {
		return Answer{}, fmt.Errorf("dns message id %d: %w: rcode %s", h.ID, ErrNotAnswer, h.RCode)
	}
	q, err := p.Question()
	if err != nil {
		return Answer{}, fmt.Errorf("dns message id %d: question: %w", h.ID, err)
	}
	qname, ok := normName(q.Name.String())
	if !ok {
		return Answer{}, fmt.Errorf("dns message id %d: %w: bad question name %q", h.ID, ErrNotAnswer, q.Name.String())
	}
	if err := p.SkipAllQuestions(); err != nil {
		return Answer{}, fmt.Errorf("dns message id %d: questions: %w", h.ID, err)
	}

	type addr struct {
		owner string
		ip    netip.Addr
		ttl   uint32
	}
	cnames := map[string]string{}
	cnameTTL := map[string]uint32{}
	var addrs []addr
answers:
	for i := 0; i < maxAnswers; i++ {
		ah, err := p.AnswerHeader()
		if err != nil {
			break // section done, or cut inside the answers: keep what was read
		}
		owner, ok := normName(ah.Name.String())
		if !ok || ah.Class != dnsmessage.ClassINET {
			if p.SkipAnswer() != nil {
				break
			}
			continue
		}
		switch ah.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				break answers
			}
			addrs = append(addrs, addr{owner, netip.AddrFrom4(r.A), ah.TTL})
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				break answers
			}
			addrs = append(addrs, addr{owner, netip.AddrFrom16(r.AAAA).Unmap(), ah.TTL})
		case dnsmessage.TypeCNAME:
			r, err := p.CNAMEResource()
			if err != nil {
				break answers
			}
			target, ok := normName(r.CNAME.String())
			if _, dup := cnames[owner]; ok && !dup {
				cnames[owner], cnameTTL[owner] = target, ah.TTL
			}
		default:
			if p.SkipAnswer() != nil {
				break answers
			}
		}
	}

	a := Answer{Name: qname}
	ttl := uint32(1<<32 - 1)
	chain := map[string]bool{qname: true}
	for cur := qname; len(a.Aliases) < maxChain; {
		next, ok := cnames[cur]
		if !ok || chain[next] {
			break
		}
		ttl = min(ttl, cnameTTL[cur])
		a.Aliases = append(a.Aliases, next)
		chain[next] = true
		cur = next
	}
	addrTTL := uint32(1<<32 - 1)
	for _, ad := range addrs {
		if chain[ad.owner] && !slices.Contains(a.Addrs, ad.ip) {
			a.Addrs = append(a.Addrs, ad.ip)
			addrTTL = min(addrTTL, ad.ttl)
		}
	}
	if len(a.Addrs) == 0 {
		return a, nil
	}
	a.TTL = time.Duration(min(ttl, addrTTL)) * time.Second
	return a, nil
}
