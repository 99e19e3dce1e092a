package dnscache

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/jibril-rt/jibril/bpf"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// rr is one answer record for a test message.
type rr struct {
	name  string
	typ   dnsmessage.Type
	ttl   uint32
	value string // address or CNAME target
}

// buildMsg builds a real DNS response with the library.
func buildMsg(t *testing.T, qname string, rcode dnsmessage.RCode, answers ...rr) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x1234, Response: true, RCode: rcode})
	b.EnableCompression()
	must(t, b.StartQuestions())
	must(t, b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(qname), Type: dnsmessage.TypeA,
		Class: dnsmessage.ClassINET}))
	must(t, b.StartAnswers())
	for _, a := range answers {
		h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(a.name), Class: dnsmessage.ClassINET, TTL: a.ttl}
		switch a.typ {
		case dnsmessage.TypeA:
			must(t, b.AResource(h, dnsmessage.AResource{A: netip.MustParseAddr(a.value).As4()}))
		case dnsmessage.TypeAAAA:
			must(t, b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(a.value).As16()}))
		case dnsmessage.TypeCNAME:
			must(t, b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(a.value)}))
		case dnsmessage.TypeTXT:
			must(t, b.TXTResource(h, dnsmessage.TXTResource{TXT: []string{a.value}}))
		}
	}
	msg, err := b.Finish()
	must(t, err)
	return msg
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

type seen struct {
	name string
	ips  []netip.Addr
	ttl  time.Duration
}

func newCache(t *testing.T, o Options) (*Cache, *fakeClock, *[]seen) {
	t.Helper()
	clk := &fakeClock{t: time.Unix(1_000_000, 0)}
	o.Now = clk.Now
	c := New(o)
	var got []seen
	c.OnAnswer(func(name string, ips []netip.Addr, ttl time.Duration) {
		got = append(got, seen{name, ips, ttl})
	})
	return c, clk, &got
}

func TestCNAMEChain(t *testing.T) {
	c, _, obs := newCache(t, Options{})
	msg := buildMsg(t, "WWW.Example.com.", dnsmessage.RCodeSuccess,
		rr{"www.example.com.", dnsmessage.TypeCNAME, 300, "edge.cdn.example.net."},
		rr{"edge.cdn.example.net.", dnsmessage.TypeCNAME, 120, "e1.cdn.example.net."},
		rr{"e1.cdn.example.net.", dnsmessage.TypeA, 600, "198.18.0.10"},
		rr{"e1.cdn.example.net.", dnsmessage.TypeAAAA, 600, "2001:db8::10"},
		rr{"e1.cdn.example.net.", dnsmessage.TypeTXT, 600, "ignored"},
		// Not on the chain: must not be attributed to anything.
		rr{"evil.example.org.", dnsmessage.TypeA, 600, "198.18.0.66"},
	)
	if err := c.RecordMessage(msg); err != nil {
		t.Fatal(err)
	}
	wantNames := []string{"www.example.com", "edge.cdn.example.net", "e1.cdn.example.net"}
	for _, ip := range addrs("198.18.0.10", "2001:db8::10", "::ffff:198.18.0.10") {
		if got := c.Names(ip); !slices.Equal(got, wantNames) {
			t.Errorf("Names(%s) = %q, want %q", ip, got, wantNames)
		}
	}
	if got := c.Names(netip.MustParseAddr("198.18.0.66")); got != nil {
		t.Errorf("off-chain record attributed: %q", got)
	}
	for _, n := range append(wantNames, "WWW.EXAMPLE.COM.") {
		if got := c.IPs(n); !slices.Equal(got, addrs("198.18.0.10", "2001:db8::10")) {
			t.Errorf("IPs(%s) = %v", n, got)
		}
	}
	if got := c.IPs("evil.example.org"); got != nil {
		t.Errorf("IPs of an off-chain name: %v", got)
	}
	if len(*obs) != 3 {
		t.Fatalf("observer calls: %+v", *obs)
	}
	for i, s := range *obs {
		if s.name != wantNames[i] || s.ttl != 120*time.Second || len(s.ips) != 2 {
			t.Errorf("observer call %d: %+v", i, s)
		}
	}
}

func TestTTLClampsAndExpiry(t *testing.T) {
	cases := []struct {
		name    string
		ttl     uint32
		aliveAt time.Duration
		deadAt  time.Duration
	}{
		{"zero ttl kept for MinTTL", 0, 59 * time.Second, 61 * time.Second},
		{"ttl honoured", 300, 299 * time.Second, 301 * time.Second},
		{"huge ttl clamped", 1 << 31, 59 * time.Minute, 61 * time.Minute},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, clk, obs := newCache(t, Options{MinTTL: time.Minute, MaxTTL: time.Hour})
			must(t, c.RecordMessage(buildMsg(t, "a.example.", dnsmessage.RCodeSuccess,
				rr{"a.example.", dnsmessage.TypeA, tc.ttl, "198.18.1.1"})))
			ip := netip.MustParseAddr("198.18.1.1")
			if (*obs)[0].ttl != time.Duration(tc.ttl)*time.Second {
				t.Errorf("observer got ttl %s, want the unclamped %ds", (*obs)[0].ttl, tc.ttl)
			}
			clk.Add(tc.aliveAt)
			if c.Names(ip) == nil || c.IPs("a.example") == nil {
				t.Errorf("expired before %s", tc.aliveAt)
			}
			clk.Add(tc.deadAt - tc.aliveAt)
			if c.Names(ip) != nil || c.IPs("a.example") != nil {
				t.Errorf("still alive at %s", tc.deadAt)
			}
		})
	}
}

func TestNamesOrderAndBounds(t *testing.T) {
	c, _, _ := newCache(t, Options{MaxNamesPerIP: 3, MaxIPsPerName: 2})
	ip := netip.MustParseAddr("198.18.2.2")
	for i := 0; i < 5; i++ {
		c.Record(bpf.DNSEvent{Name: fmt.Sprintf("n%d.example", i), Addrs: []netip.Addr{ip}, TTL: 300})
	}
	if got := c.Names(ip); !slices.Equal(got, []string{"n4.example", "n3.example", "n2.example"}) {
		t.Errorf("names = %q, want the three most recent, newest first", got)
	}
	if c.IPs("n0.example") != nil {
		t.Error("name dropped from the address still maps to it")
	}
	c.Record(bpf.DNSEvent{Name: "multi.example", Addrs: addrs("198.18.3.1", "198.18.3.2", "198.18.3.3"), TTL: 300})
	if got := c.IPs("multi.example"); len(got) != 2 {
		t.Errorf("addresses per name not bounded: %v", got)
	}
}

func TestBoundedSize(t *testing.T) {
	c, clk, _ := newCache(t, Options{MaxIPs: 32})
	for i := 0; i < 1000; i++ {
		ip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		c.Record(bpf.DNSEvent{Name: fmt.Sprintf("h%d.example", i), Addrs: []netip.Addr{ip}, TTL: uint32(100 + i)})
		clk.Add(time.Millisecond)
		if c.Len() > 32 {
			t.Fatalf("cache grew to %d", c.Len())
		}
	}
	// The latest answers survive.
	if got := c.Names(netip.AddrFrom4([4]byte{198, 18, 3, 231})); !slices.Equal(got, []string{"h999.example"}) {
		t.Errorf("newest entry evicted: %q", got)
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	for n, ips := range c.byName {
		for ip := range ips {
			if e := c.byIP[ip]; e == nil {
				t.Fatalf("name %s points to evicted %s", n, ip)
			}
		}
	}
}

func TestBPFEvent(t *testing.T) {
	c, _, obs := newCache(t, Options{})
	ok := c.Record(bpf.DNSEvent{Name: "api.example.com", CNAMEs: []string{"api.lb.example.net", "API.example.com", "bad name!"},
		Addrs: addrs("198.18.4.4", "0.0.0.0", "198.18.4.4"), TTL: 30})
	if !ok {
		t.Fatal("answer refused")
	}
	if got := c.Names(netip.MustParseAddr("198.18.4.4")); !slices.Equal(got, []string{"api.example.com", "api.lb.example.net"}) {
		t.Errorf("names = %q", got)
	}
	if len(*obs) != 2 || len((*obs)[0].ips) != 1 || (*obs)[0].ttl != 30*time.Second {
		t.Errorf("observer: %+v", *obs)
	}
	refused := []bpf.DNSEvent{
		{Name: "x.example", RCode: uint16(dnsmessage.RCodeNameError), Addrs: addrs("198.18.5.5")},
		{Name: "", Addrs: addrs("198.18.5.5")},
		{Name: "x.example"},
		{Name: "bad\nname.example", Addrs: addrs("198.18.5.5")},
		{Name: strings.Repeat("a", 64) + ".example", Addrs: addrs("198.18.5.5")},
		{Name: "a..example", Addrs: addrs("198.18.5.5")},
		{Name: strings.Repeat("abcdefgh.", 40) + "example", Addrs: addrs("198.18.5.5")},
	}
	for _, ev := range refused {
		if c.Record(ev) {
			t.Errorf("accepted %q", ev.Name)
		}
	}
	if c.Names(netip.MustParseAddr("198.18.5.5")) != nil {
		t.Error("refused answer stored")
	}
}

func TestHostileMessages(t *testing.T) {
	good := buildMsg(t, "t.example.", dnsmessage.RCodeSuccess,
		rr{"t.example.", dnsmessage.TypeA, 60, "198.18.6.1"},
		rr{"t.example.", dnsmessage.TypeA, 60, "198.18.6.2"},
		rr{"t.example.", dnsmessage.TypeA, 60, "198.18.6.3"})
	query := slices.Clone(good)
	query[2] &^= 0x80 // QR bit off
	loop := buildMsg(t, "loop.example.", dnsmessage.RCodeSuccess,
		rr{"loop.example.", dnsmessage.TypeCNAME, 60, "b.example."},
		rr{"b.example.", dnsmessage.TypeCNAME, 60, "loop.example."},
		rr{"b.example.", dnsmessage.TypeA, 60, "198.18.6.9"})

	cases := []struct {
		name    string
		msg     []byte
		wantErr bool
		wantIPs int
	}{
		{"empty", nil, true, 0},
		{"header only", good[:12], true, 0},
		{"cut in question", good[:15], true, 0},
		{"query", query, true, 0},
		{"nxdomain", buildMsg(t, "nx.example.", dnsmessage.RCodeNameError), true, 0},
		{"garbage", []byte(strings.Repeat("\xff", 100)), true, 0},
		{"cut in third answer", good[:len(good)-10], false, 2},
		{"cut in second answer", good[:len(good)-20], false, 1},
		{"cut in first answer", good[:len(good)-40], false, 0},
		{"cname loop", loop, false, 1},
		{"good", good, false, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAnswer(tc.msg)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err == nil && len(a.Addrs) != tc.wantIPs {
				t.Errorf("addrs = %v, want %d", a.Addrs, tc.wantIPs)
			}
			c, _, _ := newCache(t, Options{})
			err2 := c.RecordMessage(tc.msg)
			if (err2 != nil) != tc.wantErr {
				t.Errorf("RecordMessage err = %v", err2)
			}
		})
	}
	if a, _ := ParseAnswer(buildMsg(t, "nx.example.", dnsmessage.RCodeNameError)); len(a.Addrs) != 0 {
		t.Error("nxdomain gave addresses")
	}
	if _, err := ParseAnswer(query); !errors.Is(err, ErrNotAnswer) {
		t.Errorf("query: %v", err)
	}
	a, _ := ParseAnswer(loop)
	if !slices.Equal(a.Aliases, []string{"b.example"}) {
		t.Errorf("cname loop aliases = %q", a.Aliases)
	}
}
