package livenet

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/store"
)

var (
	mp = netip.MustParsePrefix
	ma = netip.MustParseAddr
)

var _ sandbox.Network = (*Net)(nil)

// rows returns the active persisted blocks keyed by "kind value".
func rows(t *testing.T, st *store.Store) map[string]store.Block {
	t.Helper()
	bs, err := st.ActiveBlocks(testCtx(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]store.Block{}
	for _, b := range bs {
		out[b.Kind+" "+b.Value] = b
	}
	return out
}

func TestBlockAndUnblock(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	st := newStore(t)
	n := openNet(t, ns, st)
	ctx := testCtx(t)
	cases := []struct {
		name   string
		prefix netip.Prefix
		set    string
		elem   string
		kind   string
		value  string
	}{
		{"plain IPv4", mp("198.19.1.9/32"), netblock.SetBlock4, "198.19.1.9", store.BlockIP, "198.19.1.9"},
		{"IPv4-mapped IPv6 is IPv4", mp("::ffff:198.19.1.10/128"), netblock.SetBlock4, "198.19.1.10", store.BlockIP, "198.19.1.10"},
		{"CIDR", mp("198.19.2.0/24"), netblock.SetCIDR4, "198.19.2.0/24", store.BlockCIDR, "198.19.2.0/24"},
		{"IPv6", mp("2001:2::9/128"), netblock.SetBlock6, "2001:2::9", store.BlockIP, "2001:2::9"},
		{"IPv6 CIDR", mp("2001:2:0:7::/64"), netblock.SetCIDR6, "2001:2:0:7::/64", store.BlockCIDR, "2001:2:0:7::/64"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if ret, err := n.BlockPrefix(ctx, c.prefix, 0, "r1"); ret != 0 || err != nil {
				t.Fatalf("BlockPrefix: %d, %v", ret, err)
			}
			if e, ok := ns.elems(t, c.set)[c.elem]; !ok || e.timeout != 0 {
				t.Fatalf("set %s: %s missing or timed (%+v)", c.set, c.elem, ns.elems(t, c.set))
			}
			r, ok := rows(t, st)[c.kind+" "+c.value]
			if !ok || r.Recipe != "r1" || !r.Expires.IsZero() {
				t.Fatalf("persisted row %+v (found %v)", r, ok)
			}
			if ret, err := n.BlockPrefix(ctx, c.prefix, time.Minute, "r2"); ret != 1 || err != nil {
				t.Fatalf("shorter block over a permanent one: %d, %v (want 1)", ret, err)
			}
			if r := rows(t, st)[c.kind+" "+c.value]; !r.Expires.IsZero() || r.Recipe != "r1" {
				t.Fatalf("a shorter block changed the row: %+v", r)
			}
			if ret, err := n.UnblockPrefix(ctx, c.prefix); ret != 0 || err != nil {
				t.Fatalf("UnblockPrefix: %d, %v", ret, err)
			}
			if _, ok := ns.elems(t, c.set)[c.elem]; ok {
				t.Fatalf("%s still in set %s after unblock", c.elem, c.set)
			}
			if _, ok := rows(t, st)[c.kind+" "+c.value]; ok {
				t.Fatal("row still persisted after unblock")
			}
			if ret, err := n.UnblockPrefix(ctx, c.prefix); ret != 1 || err != nil {
				t.Fatalf("second UnblockPrefix: %d, %v (want 1)", ret, err)
			}
		})
	}
}

func TestTimerExpires(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	st := newStore(t)
	n := openNet(t, ns, st)
	ctx := testCtx(t)
	before := time.Now()
	if ret, err := n.BlockPrefix(ctx, mp("198.19.4.4/32"), 2*time.Second, "timer"); ret != 0 || err != nil {
		t.Fatalf("BlockPrefix 2s: %d, %v", ret, err)
	}
	e, ok := ns.elems(t, netblock.SetBlock4)["198.19.4.4"]
	if !ok || e.timeout <= 0 || e.timeout > 2 {
		t.Fatalf("timed element %+v (present %v), want a timeout of 2s", e, ok)
	}
	r := rows(t, st)["ip 198.19.4.4"]
	if exp := r.Expires.Sub(before); exp < 2*time.Second || exp > 3*time.Second {
		t.Fatalf("persisted expiry %s after the call, want about 2s", exp)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := ns.elems(t, netblock.SetBlock4)["198.19.4.4"]; !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a 2s block still there after 10s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, ok := rows(t, st)["ip 198.19.4.4"]; ok {
		t.Fatal("an expired row is still listed as active")
	}
	rep, err := n.Restore(ctx)
	if err != nil || rep.Purged != 1 || rep.Applied != 0 {
		t.Fatalf("Restore after expiry: %+v, %v (want 1 purged, 0 applied)", rep, err)
	}
}

func TestProtectedNeverBlocked(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	st := newStore(t)
	n := openNet(t, ns, st, mp("198.19.100.0/24"))
	ctx := testCtx(t)
	for _, p := range []string{
		"127.0.0.1/32", "127.0.0.0/8", "::1/128", "::ffff:127.0.0.1/128", "0.0.0.0/0", "::/0",
		"0.0.0.0/32", "169.254.1.1/32", "fe80::1/128",
		"198.19.100.7/32", "198.19.0.0/16", // inside and around the protected range
	} {
		ret, err := n.BlockPrefix(ctx, mp(p), 0, "r")
		if ret != -1 || !errors.Is(err, ErrProtected) {
			t.Errorf("BlockPrefix(%s): %d, %v (want -1, ErrProtected)", p, ret, err)
		}
	}
	if len(rows(t, st)) != 0 {
		t.Fatalf("refused blocks were persisted: %v", rows(t, st))
	}
	for _, set := range []string{netblock.SetBlock4, netblock.SetCIDR4, netblock.SetBlock6, netblock.SetCIDR6} {
		if got := ns.elems(t, set); len(got) != 0 {
			t.Fatalf("set %s holds %v", set, got)
		}
	}
}

func TestDomain(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	st := newStore(t)
	n := openNet(t, ns, st)
	ctx := testCtx(t)
	// Seen before the block: found in the cache.
	if err := n.ObserveDNS(ctx, "Evil.Example.", []netip.Addr{ma("198.19.3.1")}, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := n.ObserveDNS(ctx, "www.evil.example", []netip.Addr{ma("2001:2::31")}, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := ns.elems(t, netblock.SetBlock4); len(got) != 0 {
		t.Fatalf("an observation alone blocked %v", got)
	}
	// An explicit block of an address the domain also resolves to.
	if ret, err := n.BlockPrefix(ctx, mp("198.19.3.1/32"), time.Hour, "explicit"); ret != 0 || err != nil {
		t.Fatalf("explicit block: %d, %v", ret, err)
	}
	if ret, err := n.BlockDomain(ctx, "evil.example", "dom"); ret != 0 || err != nil {
		t.Fatalf("BlockDomain: %d, %v", ret, err)
	}
	e, ok := ns.elems(t, netblock.SetBlock4)["198.19.3.1"]
	if !ok || e.timeout != 0 {
		t.Fatalf("known address of the domain: %+v present %v, want permanent", e, ok)
	}
	if _, ok := ns.elems(t, netblock.SetBlock6)["2001:2::31"]; !ok {
		t.Fatal("known address of a subdomain not blocked")
	}
	if ret, err := n.BlockDomain(ctx, "evil.example", "dom"); ret != 1 || err != nil {
		t.Fatalf("BlockDomain again: %d, %v (want 1)", ret, err)
	}
	// Later answers: for the domain, a subdomain (one address a sinkhole),
	// and an unrelated name.
	if err := n.ObserveDNS(ctx, "cdn.evil.example", []netip.Addr{ma("198.19.3.2"), ma("127.0.0.1")}, 0); err != nil {
		t.Fatal(err)
	}
	if err := n.ObserveDNS(ctx, "notevil.example", []netip.Addr{ma("198.19.3.3")}, 0); err != nil {
		t.Fatal(err)
	}
	if err := n.ObserveDNS(ctx, "evil.example.org", []netip.Addr{ma("198.19.3.4")}, 0); err != nil {
		t.Fatal(err)
	}
	got := ns.elems(t, netblock.SetBlock4)
	if _, ok := got["198.19.3.2"]; !ok {
		t.Fatalf("a later answer was not blocked: %v", got)
	}
	for _, a := range []string{"127.0.0.1", "198.19.3.3", "198.19.3.4"} {
		if _, ok := got[a]; ok {
			t.Fatalf("%s blocked: %v", a, got)
		}
	}
	// A second domain sharing an address.
	if err := n.ObserveDNS(ctx, "other.example", []netip.Addr{ma("198.19.3.2")}, 0); err != nil {
		t.Fatal(err)
	}
	if ret, err := n.BlockDomain(ctx, "other.example", "dom"); ret != 0 || err != nil {
		t.Fatalf("BlockDomain other: %d, %v", ret, err)
	}
	// Persisted: the registration and the addresses.
	if _, ok := rows(t, st)["domain evil.example"]; !ok {
		t.Fatal("domain row not persisted")
	}
	v, _, _ := st.Get(ctx, AddrNamespace, "evil.example")
	if v != `["198.19.3.1","198.19.3.2","2001:2::31"]` {
		t.Fatalf("persisted addresses %s", v)
	}
	l, err := n.List(ctx)
	if err != nil || !slices.Equal(l.DomainAddrs["other.example"], []netip.Addr{ma("198.19.3.2")}) {
		t.Fatalf("List: %+v, %v", l, err)
	}

	if ret, err := n.UnblockDomain(ctx, "evil.example"); ret != 0 || err != nil {
		t.Fatalf("UnblockDomain: %d, %v", ret, err)
	}
	got = ns.elems(t, netblock.SetBlock4)
	if e, ok := got["198.19.3.1"]; !ok || e.timeout == 0 {
		t.Fatalf("the explicit block must stay with its own expiry: %+v present %v", e, ok)
	}
	if _, ok := got["198.19.3.2"]; !ok {
		t.Fatal("an address another blocked domain needs was unblocked")
	}
	if _, ok := ns.elems(t, netblock.SetBlock6)["2001:2::31"]; ok {
		t.Fatal("an address only the unblocked domain had is still blocked")
	}
	if _, ok, _ := st.Get(ctx, AddrNamespace, "evil.example"); ok {
		t.Fatal("address set of the unblocked domain still persisted")
	}
	if err := n.ObserveDNS(ctx, "evil.example", []netip.Addr{ma("198.19.3.9")}, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := ns.elems(t, netblock.SetBlock4)["198.19.3.9"]; ok {
		t.Fatal("an unblocked domain's answer was blocked")
	}
	if ret, err := n.UnblockDomain(ctx, "evil.example"); ret != 1 || err != nil {
		t.Fatalf("UnblockDomain again: %d, %v (want 1)", ret, err)
	}
	if ret, err := n.BlockDomain(ctx, "localhost", "dom"); ret != -1 || err == nil {
		t.Fatalf("single-label domain: %d, %v", ret, err)
	}
}

// TestRestoreAfterReboot closes the actuator, deletes the table (what a
// reboot does), and restores from the store into a fresh one.
func TestRestoreAfterReboot(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	st := newStore(t)
	ctx := testCtx(t)
	n, err := Open(ctx, st, Options{Netblock: netblock.Options{NetNSFd: int(ns.f.Fd())}})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct {
		p   string
		ttl time.Duration
	}{
		{"198.19.5.1/32", 0},
		{"198.19.5.2/32", 30 * time.Second},
		{"198.19.6.0/24", 30 * time.Second},
		{"2001:2::51/128", 0},
		{"198.19.5.3/32", time.Second}, // expires while "down"
	} {
		if ret, err := n.BlockPrefix(ctx, mp(b.p), b.ttl, "r"); ret != 0 || err != nil {
			t.Fatalf("BlockPrefix(%s): %d, %v", b.p, ret, err)
		}
	}
	if err := n.ObserveDNS(ctx, "evil.example", []netip.Addr{ma("198.19.7.7")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ret, err := n.BlockDomain(ctx, "evil.example", "r"); ret != 0 || err != nil {
		t.Fatalf("BlockDomain: %d, %v", ret, err)
	}
	// Rows written by hand: one already expired, one a crashed unblock left.
	if err := st.PutBlock(ctx, store.Block{Kind: store.BlockIP, Value: "198.19.5.4", Recipe: "r", Expires: time.Now().Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	if err := st.Set(ctx, AddrNamespace, "gone.example", `["198.19.5.5"]`); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	if ret, err := n.BlockPrefix(ctx, mp("198.19.5.9/32"), 0, "r"); ret != -1 || !errors.Is(err, netblock.ErrClosed) {
		t.Fatalf("BlockPrefix after Close: %d, %v", ret, err)
	}
	time.Sleep(1100 * time.Millisecond) // let the 1s block expire

	// Reboot: the table is gone.
	b, err := netblock.Open(ctx, netblock.Options{NetNSFd: int(ns.f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	b.Close()

	n2 := openNet(t, ns, st)
	// A stray element nothing backs, left in the fresh table.
	if _, err := n2.Blocker().Block(ctx, mp("198.19.5.6/32"), 0); err != nil {
		t.Fatal(err)
	}
	rep, err := n2.Restore(ctx)
	if err != nil {
		t.Fatalf("Restore: %+v, %v", rep, err)
	}
	if rep.Purged != 2 || rep.Applied != 5 || rep.Domains != 1 || rep.Removed != 1 || rep.Orphaned != 1 {
		t.Fatalf("report %+v, want 2 purged, 5 applied, 1 domain, 1 removed, 1 orphan", rep)
	}
	v4 := ns.elems(t, netblock.SetBlock4)
	for a, timed := range map[string]bool{"198.19.5.1": false, "198.19.5.2": true, "198.19.7.7": false} {
		e, ok := v4[a]
		if !ok {
			t.Fatalf("%s not restored: %v", a, v4)
		}
		if timed && (e.timeout <= 0 || e.timeout > 30) || !timed && e.timeout != 0 {
			t.Fatalf("%s restored with timeout %vs", a, e.timeout)
		}
	}
	for _, a := range []string{"198.19.5.3", "198.19.5.4", "198.19.5.6"} {
		if _, ok := v4[a]; ok {
			t.Fatalf("%s (expired or unbacked) is blocked after restore", a)
		}
	}
	if e, ok := ns.elems(t, netblock.SetCIDR4)["198.19.6.0/24"]; !ok || e.timeout <= 0 || e.timeout > 30 {
		t.Fatalf("CIDR restored as %+v (present %v), want its remaining timeout", e, ok)
	}
	if _, ok := ns.elems(t, netblock.SetBlock6)["2001:2::51"]; !ok {
		t.Fatal("IPv6 block not restored")
	}
	if _, ok, _ := st.Get(ctx, AddrNamespace, "gone.example"); ok {
		t.Fatal("orphan address set not deleted")
	}
	// The domain keeps working after the restart.
	if err := n2.ObserveDNS(ctx, "evil.example", []netip.Addr{ma("198.19.7.8")}, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := ns.elems(t, netblock.SetBlock4)["198.19.7.8"]; !ok {
		t.Fatal("restored domain does not block new answers")
	}
	// The restored timer still expires on time: 30s from the first block,
	// not from the restore; the nftables expiry says so.
	e := ns.elems(t, netblock.SetBlock4)["198.19.5.2"]
	if e.expires <= 0 || e.expires > 29 {
		t.Fatalf("restored timer expires in %vs, want under 29s (time passed before restore)", e.expires)
	}
}

func TestOpenRefusesBadInput(t *testing.T) {
	st := newStore(t)
	if _, err := Open(testCtx(t), nil, Options{Netblock: netblock.Options{NetNSFd: -1}}); err == nil {
		t.Fatal("Open without a store succeeded")
	}
	if _, err := Open(testCtx(t), st, Options{}); !errors.Is(err, netblock.ErrInvalid) {
		t.Fatalf("Open with NetNSFd 0: %v, want netblock.ErrInvalid", err)
	}
	if _, err := Open(testCtx(t), st, Options{Netblock: netblock.Options{NetNSFd: -1}, Protect: []netip.Prefix{{}}}); err == nil {
		t.Fatal("Open with an invalid protect prefix succeeded")
	}
}

// TestCorruptDomainAddrs: an unreadable address set is reported, the domain stays blocked.
func TestCorruptDomainAddrs(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	st := newStore(t)
	ctx := testCtx(t)
	if err := st.PutBlock(ctx, store.Block{Kind: store.BlockDomain, Value: "bad.example", Recipe: "r"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Set(ctx, AddrNamespace, "bad.example", "not json"); err != nil {
		t.Fatal(err)
	}
	n := openNet(t, ns, st)
	rep, err := n.Restore(ctx)
	if err == nil || !strings.Contains(err.Error(), "bad.example") || rep.Domains != 1 || rep.Orphaned != 0 {
		t.Fatalf("Restore: %+v, %v; want an error naming bad.example and the domain kept", rep, err)
	}
	if err := n.ObserveDNS(ctx, "bad.example", []netip.Addr{ma("198.19.11.1")}, 0); err != nil {
		t.Fatal(err)
	}
	if _, ok := ns.elems(t, netblock.SetBlock4)["198.19.11.1"]; !ok {
		t.Fatal("a domain with an unreadable address set no longer blocks new answers")
	}
}
