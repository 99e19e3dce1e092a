package netblock

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	mp = netip.MustParsePrefix
	ma = netip.MustParseAddr
)

// single turns an address into its /32 or /128.
func single(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func TestOpenCreatesTableWithRules(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	openIn(t, ns)
	out := ns.nft(t, "list", "table", "inet", TableName)
	for _, want := range []string{
		"hook input priority filter - 10; policy accept;",
		"hook output priority filter - 10; policy accept;",
		"hook forward priority filter - 10; policy accept;",
		"ip saddr @block4", "ip saddr @cidr4", "ip6 saddr @block6", "ip6 saddr @cidr6",
		"ip daddr @block4", "ip daddr @cidr4", "ip6 daddr @block6", "ip6 daddr @cidr6",
		"flags interval,timeout", "type ipv6_addr",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, " drop"); n != 16 {
		t.Errorf("%d drop rules, want 16:\n%s", n, out)
	}
}

func TestOpenRefusesZeroFd(t *testing.T) {
	if _, err := Open(testCtx(t), Options{}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Open with NetNSFd 0: error %v, want ErrInvalid", err)
	}
}

func TestBlockPlainAndList(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	b := openIn(t, ns)
	ctx := testCtx(t)
	for _, tc := range []struct {
		prefix string
		ttl    time.Duration
		set    string
		elem   string
	}{
		{"198.19.1.1/32", 0, SetBlock4, "198.19.1.1"},
		{"198.19.1.2/32", time.Hour, SetBlock4, "198.19.1.2"},
		{"::ffff:198.19.1.3/128", 0, SetBlock4, "198.19.1.3"},
		{"198.19.2.0/24", 0, SetCIDR4, "198.19.2.0/24"},
		{"198.19.3.77/24", time.Hour, SetCIDR4, "198.19.3.0/24"},
		{"2001:2::1/128", 0, SetBlock6, "2001:2::1"},
		{"2001:2:0:1::/64", time.Hour, SetCIDR6, "2001:2:0:1::/64"},
		{"ffff::/16", 0, SetCIDR6, "ffff::/16"}, // no end key past the last address
	} {
		ret, err := b.Block(ctx, mp(tc.prefix), tc.ttl)
		if err != nil || ret != 0 {
			t.Fatalf("Block(%s): %d, %v", tc.prefix, ret, err)
		}
		e, ok := ns.elems(t, tc.set)[tc.elem]
		if !ok {
			t.Fatalf("Block(%s): %s not in set %s", tc.prefix, tc.elem, tc.set)
		}
		if want := int(tc.ttl.Seconds()); e.timeout != want {
			t.Errorf("Block(%s): timeout %ds, want %ds", tc.prefix, e.timeout, want)
		}
	}
	list, err := b.List(ctx)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	var got []string
	for _, e := range list {
		s := e.Prefix.String()
		if e.TTL > 0 {
			if e.TTL > time.Hour || e.TTL < 59*time.Minute {
				t.Errorf("List: %s ttl %s, want about 1h", s, e.TTL)
			}
			s += " timed"
		}
		got = append(got, s)
	}
	want := "198.19.1.1/32 198.19.1.2/32 timed 198.19.1.3/32 198.19.2.0/24 198.19.3.0/24 timed 2001:2::1/128 2001:2:0:1::/64 timed ffff::/16"
	if strings.Join(got, " ") != want {
		t.Errorf("List:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestBlockTimerExpires(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	b := openIn(t, ns)
	ctx := testCtx(t)
	for _, p := range []string{"198.19.1.9/32", "198.19.9.0/24"} {
		if ret, err := b.Block(ctx, mp(p), 2*time.Second); err != nil || ret != 0 {
			t.Fatalf("Block(%s, 2s): %d, %v", p, ret, err)
		}
	}
	if _, ok := ns.elems(t, SetBlock4)["198.19.1.9"]; !ok {
		t.Fatal("timed block not in the set")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, addr := ns.elems(t, SetBlock4)["198.19.1.9"]
		_, cidr := ns.elems(t, SetCIDR4)["198.19.9.0/24"]
		if !addr && !cidr {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("blocks with a 2s timeout still there after 10s (addr %v, cidr %v)", addr, cidr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Expired means gone for the API too (no dangling interval end):
	// blocking again is new.
	for _, p := range []string{"198.19.1.9/32", "198.19.9.0/24"} {
		if ret, err := b.Block(ctx, mp(p), 0); err != nil || ret != 0 {
			t.Fatalf("Block(%s) after expiry: %d, %v", p, ret, err)
		}
	}
	if list, err := b.List(ctx); err != nil || len(list) != 2 {
		t.Fatalf("List after expiry and re-block: %v, %v", list, err)
	}
}

func TestBlockIdempotentAndExtends(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	b := openIn(t, ns)
	ctx := testCtx(t)
	// Each step: block, expected return, expected timeout seen by nft
	// (-1: absent).
	steps := []struct {
		prefix  string
		ttl     time.Duration
		ret     int
		set     string
		elem    string
		timeout int
	}{
		{"198.19.4.1/32", 0, 0, SetBlock4, "198.19.4.1", 0},
		{"198.19.4.1/32", 0, 1, SetBlock4, "198.19.4.1", 0},
		{"198.19.4.1/32", time.Minute, 1, SetBlock4, "198.19.4.1", 0}, // never shortened
		{"198.19.4.2/32", time.Minute, 0, SetBlock4, "198.19.4.2", 60},
		{"198.19.4.2/32", time.Minute, 1, SetBlock4, "198.19.4.2", 60},
		{"198.19.4.2/32", time.Hour, 0, SetBlock4, "198.19.4.2", 3600}, // extended
		{"198.19.4.2/32", 0, 0, SetBlock4, "198.19.4.2", 0},            // made permanent
		{"198.19.5.0/24", time.Minute, 0, SetCIDR4, "198.19.5.0/24", 60},
		{"198.19.5.0/24", time.Minute, 1, SetCIDR4, "198.19.5.0/24", 60},
		{"198.19.5.0/24", time.Hour, 0, SetCIDR4, "198.19.5.0/24", 3600},
		{"198.19.5.128/25", time.Minute, 1, SetCIDR4, "198.19.5.0/24", 3600}, // covered
		{"198.19.4.0/23", 0, 0, SetCIDR4, "198.19.4.0/23", 0},                // swallows the /24
		{"198.19.5.0/24", 0, 1, SetCIDR4, "198.19.5.0/24", -1},
		{"2001:2::9/128", 0, 0, SetBlock6, "2001:2::9", 0},
		{"2001:2::9/128", 0, 1, SetBlock6, "2001:2::9", 0},
	}
	for i, s := range steps {
		ret, err := b.Block(ctx, mp(s.prefix), s.ttl)
		if err != nil || ret != s.ret {
			t.Fatalf("step %d Block(%s, %s): %d, %v; want %d", i, s.prefix, s.ttl, ret, err, s.ret)
		}
		e, ok := ns.elems(t, s.set)[s.elem]
		switch {
		case s.timeout < 0 && ok:
			t.Errorf("step %d: %s still in %s", i, s.elem, s.set)
		case s.timeout >= 0 && !ok:
			t.Errorf("step %d: %s not in %s", i, s.elem, s.set)
		case ok && e.timeout != s.timeout:
			t.Errorf("step %d: %s timeout %ds, want %ds", i, s.elem, e.timeout, s.timeout)
		}
	}
	// A longer-lived range inside a shorter one cannot be expressed in
	// an interval set: refused, the existing block unchanged.
	if _, err := b.Block(ctx, mp("198.19.7.0/24"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if ret, err := b.Block(ctx, mp("198.19.7.0/25"), 0); !errors.Is(err, ErrOverlap) || ret != -1 {
		t.Errorf("longer block inside shorter range: %d, %v; want -1, ErrOverlap", ret, err)
	}
}

func TestBlockRefusesProtected(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	b := openIn(t, ns, mp("198.18.200.0/24"))
	ctx := testCtx(t)
	for _, tc := range []struct {
		prefix string
		ttl    time.Duration
		err    error
	}{
		{"127.0.0.1/32", 0, ErrProtected},
		{"127.0.0.0/8", 0, ErrProtected},
		{"::1/128", 0, ErrProtected},
		{"::ffff:127.0.0.1/128", 0, ErrProtected},
		{"169.254.169.254/32", 0, ErrProtected},
		{"fe80::1/128", 0, ErrProtected},
		{"0.0.0.0/0", time.Minute, ErrProtected},
		{"::/0", 0, ErrProtected},
		{"198.18.200.9/32", 0, ErrProtected},
		{"198.18.0.0/16", 0, ErrProtected},
		{"0.0.0.0/32", 0, ErrInvalid},
		{"198.19.0.1/32", -time.Second, ErrInvalid},
	} {
		ret, err := b.Block(ctx, mp(tc.prefix), tc.ttl)
		if ret != -1 || !errors.Is(err, tc.err) {
			t.Errorf("Block(%s): %d, %v; want -1, %v", tc.prefix, ret, err, tc.err)
		}
	}
	for _, set := range []string{SetBlock4, SetBlock6, SetCIDR4, SetCIDR6} {
		if got := ns.elems(t, set); len(got) != 0 {
			t.Errorf("set %s holds %v after refused blocks", set, got)
		}
	}
	if err := b.BlockMany(ctx, []Element{{Prefix: mp("127.0.0.1/32")}, {Prefix: mp("198.19.0.1/32")}}); !errors.Is(err, ErrProtected) {
		t.Errorf("BlockMany with loopback: error %v, want ErrProtected", err)
	}
	if _, ok := ns.elems(t, SetBlock4)["198.19.0.1"]; !ok {
		t.Error("BlockMany dropped the valid element next to a protected one")
	}
}

func TestUnblock(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	b := openIn(t, ns)
	ctx := testCtx(t)
	for _, tc := range []struct {
		prefix string
		set    string
		elem   string
	}{
		{"198.19.6.1/32", SetBlock4, "198.19.6.1"},
		{"198.19.6.0/24", SetCIDR4, "198.19.6.0/24"},
		{"2001:2::6/128", SetBlock6, "2001:2::6"},
		{"2001:2:6::/48", SetCIDR6, "2001:2:6::/48"},
	} {
		if _, err := b.Block(ctx, mp(tc.prefix), time.Hour); err != nil {
			t.Fatalf("Block(%s): %v", tc.prefix, err)
		}
		// A range that only shares the start of the block is not it.
		if tc.set == SetCIDR4 {
			if ret, err := b.Unblock(ctx, mp("198.19.6.0/25")); err != nil || ret != 1 {
				t.Errorf("Unblock of a sub-range: %d, %v; want 1", ret, err)
			}
		}
		if ret, err := b.Unblock(ctx, mp(tc.prefix)); err != nil || ret != 0 {
			t.Errorf("Unblock(%s): %d, %v; want 0", tc.prefix, ret, err)
		}
		if _, ok := ns.elems(t, tc.set)[tc.elem]; ok {
			t.Errorf("Unblock(%s): still in %s", tc.prefix, tc.set)
		}
		if ret, err := b.Unblock(ctx, mp(tc.prefix)); err != nil || ret != 1 {
			t.Errorf("second Unblock(%s): %d, %v; want 1", tc.prefix, ret, err)
		}
	}
}

func TestBlockMany(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	b := openIn(t, ns)
	ctx := testCtx(t)
	// Already there: a permanent block that must stay permanent, a
	// short one to extend.
	if _, err := b.Block(ctx, mp("198.18.0.5/32"), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Block(ctx, mp("198.18.0.6/32"), time.Minute); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	var els []Element
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		els = append(els, Element{Prefix: single(a), TTL: time.Hour})
	}
	for i := range 600 { // more than one batch of intervals
		els = append(els, Element{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 2), byte(i&3) << 6}), 26), TTL: time.Hour})
		els = append(els, Element{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0, byte(i >> 8), byte(i)}), 64)})
	}
	els = append(els,
		Element{Prefix: mp("2001:2::1/128"), TTL: time.Hour},
		Element{Prefix: mp("198.18.0.7/32"), TTL: time.Minute}, // duplicate: the longer wins
		Element{Prefix: mp("198.19.0.0/27"), TTL: time.Minute}, // inside a longer /26: covered
	)
	if err := b.BlockMany(ctx, els); err != nil {
		t.Fatalf("BlockMany: %v", err)
	}
	got4 := ns.elems(t, SetBlock4)
	if len(got4) != n {
		t.Errorf("block4 holds %d elements, want %d", len(got4), n)
	}
	for i := range n {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}).String()
		e, ok := got4[a]
		want := 3600
		if a == "198.18.0.5" {
			want = 0
		}
		if !ok || e.timeout != want {
			t.Fatalf("%s: present %v timeout %d, want %d", a, ok, e.timeout, want)
		}
	}
	if got := ns.elems(t, SetCIDR4); len(got) != 600 {
		t.Errorf("cidr4 holds %d elements, want 600", len(got))
	}
	if got := ns.elems(t, SetCIDR6); len(got) != 600 {
		t.Errorf("cidr6 holds %d elements, want 600", len(got))
	}
	if got := ns.elems(t, SetBlock6); len(got) != 1 {
		t.Errorf("block6 holds %v, want 2001:2::1", got)
	}
	list, err := b.List(ctx)
	if err != nil || len(list) != n+1201 {
		t.Errorf("List: %d elements, %v; want %d", len(list), err, n+1201)
	}
	// Replaying the same list (a restart) changes nothing.
	if err := b.BlockMany(ctx, els); err != nil {
		t.Fatalf("second BlockMany: %v", err)
	}
	if got := ns.elems(t, SetBlock4); len(got) != n || got["198.18.0.5"].timeout != 0 {
		t.Errorf("after replay: %d elements, 198.18.0.5 %+v", len(got), got["198.18.0.5"])
	}
}

func TestOpenAgainKeepsElementsAndEnsureRepairs(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	b := openIn(t, ns)
	ctx := testCtx(t)
	if _, err := b.Block(ctx, mp("198.19.8.1/32"), 0); err != nil {
		t.Fatal(err)
	}
	b2 := openIn(t, ns) // a restarted daemon adopts the table
	if _, ok := ns.elems(t, SetBlock4)["198.19.8.1"]; !ok {
		t.Error("second Open lost the elements")
	}
	if n := strings.Count(ns.nft(t, "list", "table", "inet", TableName), " drop"); n != 16 {
		t.Errorf("%d drop rules after a second Open, want 16", n)
	}
	if ok, err := b2.Present(ctx); err != nil || !ok {
		t.Fatalf("Present: %v, %v", ok, err)
	}

	for _, tc := range []struct {
		name   string
		damage []string
		kept   bool // elements survive the repair
	}{
		{"chain flushed", []string{"flush", "chain", "inet", TableName, "input"}, true},
		{"chain deleted", []string{"delete", "chain", "inet", TableName, "forward"}, true},
		{"table deleted", []string{"delete", "table", "inet", TableName}, false},
	} {
		ns.nft(t, tc.damage...)
		if ok, err := b.Present(ctx); err != nil || ok {
			t.Fatalf("%s: Present: %v, %v; want false", tc.name, ok, err)
		}
		if err := b.Ensure(ctx); err != nil {
			t.Fatalf("%s: Ensure: %v", tc.name, err)
		}
		if ok, err := b.Present(ctx); err != nil || !ok {
			t.Fatalf("%s: Present after Ensure: %v, %v", tc.name, ok, err)
		}
		if _, ok := ns.elems(t, SetBlock4)["198.19.8.1"]; ok != tc.kept {
			t.Errorf("%s: element kept %v, want %v", tc.name, ok, tc.kept)
		}
	}
	if ret, err := b.Block(ctx, mp("198.19.8.2/32"), 0); err != nil || ret != 0 {
		t.Fatalf("Block after Ensure: %d, %v", ret, err)
	}
	// A set replaced by one of another type cannot be adopted: Ensure
	// rebuilds the table.
	ns.nft(t, "delete", "table", "inet", TableName)
	ns.nft(t, "add", "table", "inet", TableName)
	ns.nft(t, "add", "set", "inet", TableName, SetBlock4, "{ type ipv4_addr; }")
	if err := b.Ensure(ctx); err != nil {
		t.Fatalf("Ensure over a foreign set: %v", err)
	}
	if ok, err := b.Present(ctx); err != nil || !ok {
		t.Fatalf("Present after rebuilding: %v, %v", ok, err)
	}
	if err := b.Destroy(ctx); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	if out := ns.nft(t, "list", "tables"); strings.Contains(out, TableName) {
		t.Errorf("table still there after Destroy: %s", out)
	}
	if err := b.Destroy(ctx); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := b.Block(ctx, mp("198.19.8.3/32"), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("Block after Close: %v, want ErrClosed", err)
	}
}

func TestDomains(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	b := openIn(t, ns)
	ctx := testCtx(t)
	d := NewDomains(b)
	blocked := func(ip string) bool {
		_, ok := ns.elems(t, SetBlock4)[ip]
		return ok
	}
	if _, err := b.Block(ctx, mp("198.19.3.9/32"), 0); err != nil { // someone else's block
		t.Fatal(err)
	}
	steps := []struct {
		name string
		do   func() (int, error)
		ret  int
	}{
		{"register", func() (int, error) {
			return d.Register(ctx, "Evil.Example.COM.", []netip.Addr{ma("198.19.3.1"), ma("127.0.0.1"), ma("198.19.3.9")}, 0)
		}, 0},
		{"register again", func() (int, error) {
			return d.Register(ctx, "evil.example.com", []netip.Addr{ma("198.19.3.1")}, 0)
		}, 1},
		{"second domain shares an address", func() (int, error) {
			return d.Register(ctx, "bad.example.org", []netip.Addr{ma("198.19.3.1"), ma("2001:2::31")}, 0)
		}, 0},
		{"observe subdomain", func() (int, error) {
			return 0, d.ObserveDNS(ctx, "cdn.EVIL.example.com.", []netip.Addr{ma("198.19.3.2"), ma("::ffff:198.19.3.4")})
		}, 0},
		{"observe unrelated", func() (int, error) {
			return 0, d.ObserveDNS(ctx, "notevil.example.com", []netip.Addr{ma("198.19.3.3")})
		}, 0},
		{"observe parent only", func() (int, error) {
			return 0, d.ObserveDNS(ctx, "example.com", []netip.Addr{ma("198.19.3.5")})
		}, 0},
		{"observe garbage", func() (int, error) {
			return 0, d.ObserveDNS(ctx, "bad name!.com", []netip.Addr{ma("198.19.3.6")})
		}, 0},
	}
	for _, s := range steps {
		if ret, err := s.do(); err != nil || ret != s.ret {
			t.Fatalf("%s: %d, %v; want %d", s.name, ret, err, s.ret)
		}
	}
	for ip, want := range map[string]bool{"198.19.3.1": true, "198.19.3.2": true, "198.19.3.4": true, "198.19.3.9": true, "198.19.3.3": false, "198.19.3.5": false, "198.19.3.6": false, "127.0.0.1": false} {
		if got := blocked(ip); got != want {
			t.Errorf("%s blocked %v, want %v", ip, got, want)
		}
	}
	if got := strings.Join(d.Registered(), " "); got != "bad.example.org evil.example.com" {
		t.Errorf("Registered: %s", got)
	}
	if ret, err := d.Unregister(ctx, "EVIL.example.com"); err != nil || ret != 0 {
		t.Fatalf("Unregister: %d, %v", ret, err)
	}
	for ip, want := range map[string]bool{"198.19.3.1": true /* bad.example.org */, "198.19.3.2": false, "198.19.3.4": false, "198.19.3.9": true /* not ours */} {
		if got := blocked(ip); got != want {
			t.Errorf("after Unregister: %s blocked %v, want %v", ip, got, want)
		}
	}
	if ret, err := d.Unregister(ctx, "evil.example.com"); err != nil || ret != 1 {
		t.Errorf("second Unregister: %d, %v; want 1", ret, err)
	}
	if ret, err := d.Unregister(ctx, "bad.example.org"); err != nil || ret != 0 {
		t.Fatalf("Unregister bad.example.org: %d, %v", ret, err)
	}
	if blocked("198.19.3.1") || len(ns.elems(t, SetBlock6)) != 0 {
		t.Error("addresses of the last unregistered domain still blocked")
	}
	for _, bad := range []string{"", "com", "bad name.com", "*.example.com"} {
		if ret, err := d.Register(ctx, bad, nil, 0); ret != -1 || !errors.Is(err, ErrInvalid) {
			t.Errorf("Register(%q): %d, %v; want -1, ErrInvalid", bad, ret, err)
		}
	}

	// A timed registration blocks with its remaining lifetime and is
	// forgotten once expired.
	now := time.Now()
	d.now = func() time.Time { return now }
	if ret, err := d.Register(ctx, "timed.example.net", []netip.Addr{ma("198.19.3.20")}, time.Hour); err != nil || ret != 0 {
		t.Fatalf("timed Register: %d, %v", ret, err)
	}
	now = now.Add(30 * time.Minute)
	if err := d.ObserveDNS(ctx, "timed.example.net", []netip.Addr{ma("198.19.3.21")}); err != nil {
		t.Fatal(err)
	}
	if e := ns.elems(t, SetBlock4)["198.19.3.21"]; e.timeout < 1790 || e.timeout > 1800 {
		t.Errorf("address seen after 30 min of a 1h registration: timeout %ds, want about 1800", e.timeout)
	}
	now = now.Add(time.Hour)
	if got := d.Registered(); len(got) != 0 {
		t.Errorf("expired registration still listed: %v", got)
	}
	if err := d.ObserveDNS(ctx, "timed.example.net", []netip.Addr{ma("198.19.3.22")}); err != nil || blocked("198.19.3.22") {
		t.Errorf("expired registration still blocks: %v", err)
	}
}

// TestTrafficBlocked proves the rules drop real packets: a TCP connect from
// namespace A to a listener in namespace B works, fails once B's address
// (or a range holding it) is blocked in A, and works again after Unblock.
func TestTrafficBlocked(t *testing.T) {
	needRoot(t)
	t.Parallel()
	p := newPair(t)
	b := openIn(t, p.a)
	ctx := testCtx(t)
	for _, tc := range []struct {
		name  string
		to    netip.Addr
		block netip.Prefix
	}{
		{"ipv4 address", p.addrB, single(p.addrB)},
		{"ipv4 range", p.addrB, netip.PrefixFrom(p.addrB, 24).Masked()},
		{"ipv6 address", p.v6B, single(p.v6B)},
		{"ipv6 range", p.v6B, netip.PrefixFrom(p.v6B, 64).Masked()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			to := listen(t, p.b, tc.to)
			if err := reach(p.a, to); err != nil {
				t.Fatalf("connect before blocking: %v", err)
			}
			if ret, err := b.Block(ctx, tc.block, time.Minute); err != nil || ret != 0 {
				t.Fatalf("Block(%s): %d, %v", tc.block, ret, err)
			}
			if err := connect(p.a, to); err == nil {
				t.Fatalf("connect to %s succeeded while %s is blocked", to, tc.block)
			}
			if ret, err := b.Unblock(ctx, tc.block); err != nil || ret != 0 {
				t.Fatalf("Unblock(%s): %d, %v", tc.block, ret, err)
			}
			if err := reach(p.a, to); err != nil {
				t.Fatalf("connect after Unblock: %v", err)
			}
		})
	}
	// The drops were counted by our rules.
	if out := p.a.nft(t, "list", "chain", "inet", TableName, "output"); !strings.Contains(out, "counter packets") || strings.Count(out, "counter packets 0 ") == 8 {
		t.Errorf("no drop counted in the output chain:\n%s", out)
	}
}

// TestCurrentNamespace opens with NetNSFd -1 from a thread inside a test
// namespace: the Blocker must keep acting there from any other thread.
func TestCurrentNamespace(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	ctx := testCtx(t)
	var b *Blocker
	err := inNS(ns, func() error {
		var err error
		b, err = Open(ctx, Options{NetNSFd: -1})
		return err
	})
	if err != nil {
		t.Fatalf("Open(-1) inside %s: %v", ns.name, err)
	}
	t.Cleanup(func() { b.Close() })
	if ret, err := b.Block(ctx, mp("198.19.10.1/32"), 0); err != nil || ret != 0 {
		t.Fatalf("Block: %d, %v", ret, err)
	}
	if _, ok := ns.elems(t, SetBlock4)["198.19.10.1"]; !ok {
		t.Fatal("block not in the namespace Open was called from")
	}
}

func TestCancelledContextAndConcurrency(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	b := openIn(t, ns)
	ctx := testCtx(t)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.Block(cancelled, mp("198.19.11.1/32"), 0); !errors.Is(err, context.Canceled) {
		t.Errorf("Block with a cancelled context: %v", err)
	}
	// Concurrent callers are serialized; every block lands once.
	const workers, each = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				p := single(netip.AddrFrom4([4]byte{198, 19, 12, byte(i)}))
				ret, err := b.Block(ctx, p, time.Duration(w+1)*time.Minute)
				if err != nil || ret < 0 {
					errs <- fmt.Errorf("worker %d Block(%s): %d, %w", w, p, ret, err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got := ns.elems(t, SetBlock4)
	if len(got) != each {
		t.Fatalf("%d elements, want %d", len(got), each)
	}
	for a, e := range got {
		if e.timeout != workers*60 {
			t.Errorf("%s: timeout %ds, want the longest %ds", a, e.timeout, workers*60)
		}
	}
}

// TestBatchAtomicAndInStep checks the raw netlink conversation: a failing
// message aborts its whole transaction, every message is answered, and the
// next request reads its own answer, not a leftover.
func TestBatchAtomicAndInStep(t *testing.T) {
	needRoot(t)
	t.Parallel()
	ns := newNS(t)
	b := openIn(t, ns)
	ctx := testCtx(t)
	key := func(s string) []byte { return ma(s).AsSlice() }
	b.mu.Lock()
	err := b.do(ctx, func() error {
		err := sendBatch(b.raw, TableName, []elemOp{
			{set: SetBlock4, excl: true, elems: []nlElem{{key: key("198.19.13.1")}}},
			{set: SetBlock4, del: true, elems: []nlElem{{key: key("198.19.13.2")}}}, // absent
			{set: SetBlock4, excl: true, elems: []nlElem{{key: key("198.19.13.3")}}},
		})
		if !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("batch with a missing delete: %v, want ENOENT", err)
		}
		if err := sendBatch(b.raw, TableName, []elemOp{{set: SetBlock4, excl: true, elems: []nlElem{{key: key("198.19.13.4"), timeout: time.Minute}}}}); err != nil {
			return fmt.Errorf("next batch: %w", err)
		}
		e, found, err := getElem(b.raw, TableName, SetBlock4, key("198.19.13.4"))
		if err != nil || !found || e.timeout != time.Minute || e.expires <= 0 || e.expires > time.Minute {
			return fmt.Errorf("get after batches: %v %+v %v", found, e, err)
		}
		return nil
	})
	b.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	got := ns.elems(t, SetBlock4)
	if _, ok := got["198.19.13.1"]; ok || len(got) != 1 {
		t.Errorf("set holds %v, want only 198.19.13.4 (the failed batch must leave nothing)", got)
	}
}
