// Package netblock blocks network traffic to and from IP addresses and CIDR
// ranges with nftables: a table `inet jibril` holding four sets (single
// addresses and intervals, IPv4 and IPv6, all with per-element timeouts) and
// three base chains that drop packets whose source or destination is in a set.
// Timed blocks expire in the kernel by themselves; persistence across
// restarts belongs to the caller (it replays its blocks with BlockMany).
package netblock

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Names of the nftables objects this package owns.
const (
	TableName = "jibril"
	SetBlock4 = "block4"
	SetBlock6 = "block6"
	SetCIDR4  = "cidr4"
	SetCIDR6  = "cidr6"
)

// chainPriority puts our drops before the usual filter chains (priority 0)
// so that an accept there cannot bypass a block.
const chainPriority = -10

// opTimeout bounds a kernel conversation when the context has no deadline.
const opTimeout = 10 * time.Second

var (
	// ErrProtected refuses a block of loopback, link-local or a protected
	// prefix, or of a range overlapping one.
	ErrProtected = errors.New("protected address")
	// ErrInvalid refuses malformed input (invalid prefix, unspecified
	// address, negative ttl, bad domain name).
	ErrInvalid = errors.New("invalid argument")
	// ErrOverlap refuses a CIDR block that would partly override another
	// range in the same set (the kernel keeps interval sets disjoint).
	ErrOverlap = errors.New("overlaps an existing block")
	// ErrClosed is returned by every method after Close.
	ErrClosed = errors.New("netblock: blocker closed")
)

// Options configure a Blocker.
type Options struct {
	// NetNSFd is an open file descriptor of the network namespace to act
	// in (duplicated: the caller may close it after Open), or -1 for the
	// namespace of the thread calling Open. 0 is refused so that a zero
	// Options never silently means "the host".
	NetNSFd int
	// Protect lists prefixes that are never blocked, besides loopback and
	// link-local which always are.
	Protect []netip.Prefix
}

// Blocker owns the `inet jibril` table of one network namespace. It is safe
// for concurrent use; kernel conversations are serialized.
type Blocker struct {
	mu      sync.Mutex
	nsfd    int // our own descriptor of the namespace; -1 once closed
	protect []protectedPrefix
	table   *nftables.Table

	// Lazily (re)dialled; nil after a failure that may have left unread
	// replies on a socket.
	nft     *nftables.Conn
	nftSock *netlink.Conn // the socket under nft, for deadlines
	raw     *netlink.Conn
	closed  bool
}

type protectedPrefix struct {
	prefix netip.Prefix
	why    string
}

// builtinProtected are never blocked whatever the configuration says.
func builtinProtected() []protectedPrefix {
	return []protectedPrefix{
		{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
		{netip.MustParsePrefix("::1/128"), "loopback"},
		{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
		{netip.MustParsePrefix("fe80::/10"), "link-local"},
	}
}

// Open creates the table, sets and chains in the namespace, or adopts them
// when they exist: elements already present are kept and the chains' rules
// are rewritten (in the same transaction, so no packet passes unfiltered).
func Open(ctx context.Context, o Options) (*Blocker, error) {
	b := &Blocker{
		nsfd:    -1,
		protect: builtinProtected(),
		table:   &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet},
	}
	for i, p := range o.Protect {
		np, err := normalizePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("netblock options: protect[%d] %v: %w", i, p, err)
		}
		b.protect = append(b.protect, protectedPrefix{np, "protected " + np.String()})
	}
	// We hold our own descriptor of the namespace: the caller may close
	// theirs, and every redial must land in the same namespace, whatever
	// thread it runs on.
	switch {
	case o.NetNSFd == 0:
		return nil, fmt.Errorf("netblock options: NetNSFd 0 is not a namespace; use -1 for the current namespace: %w", ErrInvalid)
	case o.NetNSFd > 0:
		fd, err := unix.FcntlInt(uintptr(o.NetNSFd), unix.F_DUPFD_CLOEXEC, 3)
		if err != nil {
			return nil, fmt.Errorf("netblock options: duplicate NetNSFd %d: %w", o.NetNSFd, err)
		}
		b.nsfd = fd
	case o.NetNSFd == -1:
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("netblock options: open current network namespace: %w", err)
		}
		b.nsfd = fd
	default:
		return nil, fmt.Errorf("netblock options: NetNSFd %d: %w", o.NetNSFd, ErrInvalid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.do(ctx, b.setup); err != nil {
		b.closeLocked()
		return nil, fmt.Errorf("open nftables table inet %s: %w", TableName, err)
	}
	return b, nil
}

// Close releases the sockets and the namespace descriptor. The table and
// its blocks stay in the kernel.
func (b *Blocker) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closeLocked()
}

func (b *Blocker) closeLocked() error {
	if b.closed {
		return nil
	}
	b.closed = true
	b.resetConns()
	if b.nsfd >= 0 {
		if err := unix.Close(b.nsfd); err != nil {
			return fmt.Errorf("close namespace descriptor: %w", err)
		}
		b.nsfd = -1
	}
	return nil
}

func (b *Blocker) resetConns() {
	if b.nft != nil {
		_ = b.nft.CloseLasting()
	}
	if b.raw != nil {
		_ = b.raw.Close()
	}
	b.nft, b.nftSock, b.raw = nil, nil, nil
}

func (b *Blocker) dial() error {
	opts := []nftables.ConnOption{
		nftables.AsLasting(),
		nftables.WithSockOptions(func(c *netlink.Conn) error {
			b.nftSock = c
			return nil
		}),
	}
	ns := dialNS(b.nsfd)
	if ns != 0 {
		opts = append(opts, nftables.WithNetNSFd(ns))
	}
	nft, err := nftables.New(opts...)
	if err != nil {
		return fmt.Errorf("dial nftables netlink: %w", err)
	}
	raw, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: ns})
	if err != nil {
		_ = nft.CloseLasting()
		return fmt.Errorf("dial nftables netlink: %w", err)
	}
	b.nft, b.raw = nft, raw
	return nil
}

// do runs fn with dialled sockets whose deadline follows ctx, under b.mu.
// A desyncError, or a cancellation mid-conversation, drops the sockets so
// that no stale reply is ever read as the answer to a later request.
func (b *Blocker) do(ctx context.Context, fn func() error) error {
	if b.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if b.nft == nil {
		if err := b.dial(); err != nil {
			return err
		}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(opTimeout)
	}
	socks := []*netlink.Conn{b.raw, b.nftSock}
	for _, s := range socks {
		if s != nil {
			_ = s.SetDeadline(deadline)
		}
	}
	stop := context.AfterFunc(ctx, func() {
		for _, s := range socks {
			if s != nil {
				_ = s.SetDeadline(time.Now())
			}
		}
	})
	err := fn()
	if !stop() || isDesync(err) {
		b.resetConns()
	}
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	}
	return err
}

// setNames lists our sets in a fixed order; their index + 1 is the
// transaction-local set ID rules use to refer to a set created in the same
// batch. (Left at 0, the library would draw IDs from an unsynchronized
// package counter: a data race between Blockers.)
func setNames() []string { return []string{SetBlock4, SetCIDR4, SetBlock6, SetCIDR6} }

func (b *Blocker) setDef(name string) *nftables.Set {
	s := &nftables.Set{
		Table:        b.table,
		Name:         name,
		ID:           uint32(slices.Index(setNames(), name) + 1),
		KeyType:      nftables.TypeIPAddr,
		HasTimeout:   true,
		Interval:     isIntervalSet(name),
		KeyByteOrder: binaryutil.BigEndian,
	}
	if name == SetBlock6 || name == SetCIDR6 {
		s.KeyType = nftables.TypeIP6Addr
	}
	return s
}

type chainDef struct {
	name string
	hook *nftables.ChainHook
	// match the packet's source, its destination, or both
	src, dst bool
}

func chainDefs() []chainDef {
	return []chainDef{
		{"input", nftables.ChainHookInput, true, false},
		{"output", nftables.ChainHookOutput, false, true},
		{"forward", nftables.ChainHookForward, true, true},
	}
}

// rulesPerChain is how many drop rules each chain must hold.
func rulesPerChain(c chainDef) int {
	n := 0
	if c.src {
		n += 4
	}
	if c.dst {
		n += 4
	}
	return n
}

// dropRule builds `meta nfproto ipvX ip[6] saddr|daddr @set counter drop`.
func dropRule(t *nftables.Table, ch *nftables.Chain, set *nftables.Set, v6, src bool) *nftables.Rule {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if src {
		off = 12
	}
	if v6 {
		proto, off, n = unix.NFPROTO_IPV6, 24, 16
		if src {
			off = 8
		}
	}
	return &nftables.Rule{
		Table: t,
		Chain: ch,
		Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
			&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		},
	}
}

// queueSetup queues, into one transaction, everything the table needs.
// Existing sets keep their elements; chains are flushed and refilled so
// that a second Open never duplicates rules and a tampered chain is fixed.
func (b *Blocker) queueSetup(c *nftables.Conn) error {
	t := c.AddTable(b.table)
	sets := map[string]*nftables.Set{}
	for _, name := range setNames() {
		s := b.setDef(name)
		if err := c.AddSet(s, nil); err != nil {
			return fmt.Errorf("queue set %s: %w", name, err)
		}
		sets[name] = s
	}
	policy := nftables.ChainPolicyAccept
	prio := nftables.ChainPriority(chainPriority)
	for _, d := range chainDefs() {
		ch := c.AddChain(&nftables.Chain{
			Name:     d.name,
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  d.hook,
			Priority: &prio,
			Policy:   &policy,
		})
		c.FlushChain(ch)
		for _, src := range []bool{true, false} {
			if src && !d.src || !src && !d.dst {
				continue
			}
			for _, name := range []string{SetBlock4, SetCIDR4} {
				c.AddRule(dropRule(t, ch, sets[name], false, src))
			}
			for _, name := range []string{SetBlock6, SetCIDR6} {
				c.AddRule(dropRule(t, ch, sets[name], true, src))
			}
		}
	}
	return nil
}

func (b *Blocker) setup() error {
	if err := b.queueSetup(b.nft); err != nil {
		return err
	}
	if err := b.nft.Flush(); err != nil {
		return desync("create table, sets and chains: %w", err)
	}
	return nil
}

// Present reports whether the table, its four sets, its three chains and
// all their rules are still in place (something may have flushed them).
func (b *Blocker) Present(ctx context.Context) (bool, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ok bool
	err := b.do(ctx, func() error {
		var err error
		ok, err = b.present()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("check nftables table inet %s: %w", TableName, err)
	}
	return ok, nil
}

func (b *Blocker) present() (bool, error) {
	tables, err := b.nft.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, desync("list tables: %w", err)
	}
	found := false
	for _, t := range tables {
		found = found || t.Name == TableName
	}
	if !found {
		return false, nil
	}
	sets, err := b.nft.GetSets(b.table)
	if err != nil {
		return false, desync("list sets: %w", err)
	}
	byName := map[string]*nftables.Set{}
	for _, s := range sets {
		byName[s.Name] = s
	}
	for _, name := range setNames() {
		s, d := byName[name], b.setDef(name)
		if s == nil || s.Interval != d.Interval || !s.HasTimeout || s.KeyType.Bytes != d.KeyType.Bytes {
			return false, nil
		}
	}
	chains, err := b.nft.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, desync("list chains: %w", err)
	}
	for _, d := range chainDefs() {
		var ch *nftables.Chain
		for _, c := range chains {
			if c.Table != nil && c.Table.Name == TableName && c.Name == d.name {
				ch = c
			}
		}
		if ch == nil || ch.Hooknum == nil || *ch.Hooknum != *d.hook {
			return false, nil
		}
		rules, err := b.nft.GetRules(b.table, ch)
		if err != nil {
			return false, desync("list rules of chain %s: %w", d.name, err)
		}
		if len(rules) != rulesPerChain(d) {
			return false, nil
		}
	}
	return true, nil
}

// Ensure recreates whatever is missing of the table, its sets, chains and
// rules, keeping the elements still there. If the objects in place cannot
// be adopted (a set recreated by someone with another type), the table is
// replaced in one transaction: its elements are then lost and the caller
// must replay its blocks.
func (b *Blocker) Ensure(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.do(ctx, b.setup)
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("ensure nftables table inet %s: %w", TableName, err)
	}
	err2 := b.do(ctx, func() error {
		c := b.nft
		c.AddTable(b.table)
		c.DelTable(b.table)
		if err := b.queueSetup(c); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return desync("replace table: %w", err)
		}
		return nil
	})
	if err2 != nil {
		return fmt.Errorf("ensure nftables table inet %s: adopt: %w; recreate: %w", TableName, err, err2)
	}
	return nil
}

// Destroy deletes the table and every block in it. A missing table is not
// an error.
func (b *Blocker) Destroy(ctx context.Context) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	err := b.do(ctx, func() error {
		// Adding first makes the delete succeed whether or not the
		// table exists, in one transaction.
		b.nft.AddTable(b.table)
		b.nft.DelTable(b.table)
		if err := b.nft.Flush(); err != nil {
			return desync("%w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete nftables table inet %s: %w", TableName, err)
	}
	return nil
}
