package dnscache

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzParseAnswer feeds arbitrary DNS messages to ParseAnswer and RecordMessage. Seeds: a plain
// answer, CNAME chains, loops, truncations and compression tricks (testdata/fuzz/FuzzParseAnswer).
//
// Properties: no panic; a refused message leaves the cache empty and tells no observer; an
// accepted answer is normalised (question and aliases are valid lower-case names without the
// final dot, distinct, the chain bounded; addresses valid, unmapped, distinct; no TTL without
// an address); recording it makes exactly its usable addresses resolve from the question, and
// each of them name the question first and every alias.
func FuzzParseAnswer(f *testing.F) {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{Response: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName("f.example."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	_ = b.StartAnswers()
	_ = b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName("f.example."), Class: dnsmessage.ClassINET, TTL: 5},
		dnsmessage.AResource{A: [4]byte{198, 18, 0, 1}})
	msg, _ := b.Finish()
	f.Add(msg)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte) {
		type seen struct {
			name string
			ips  []netip.Addr
		}
		var observed []seen
		c := New(Options{MaxIPs: 1 << 10, MaxIPsPerName: 1 << 10, MaxNamesPerIP: 64, Now: func() time.Time { return now },
			Observers: []Observer{func(n string, ips []netip.Addr, _ time.Duration) { observed = append(observed, seen{n, ips}) }}})
		recErr := c.RecordMessage(data)
		a, err := ParseAnswer(data)
		if (err == nil) != (recErr == nil) {
			t.Fatalf("ParseAnswer error %v, RecordMessage error %v", err, recErr)
		}
		if err != nil {
			if c.Len() != 0 || len(observed) != 0 {
				t.Fatalf("refused message changed the cache")
			}
			return
		}
		again, _ := ParseAnswer(data)
		if !reflect.DeepEqual(a, again) {
			t.Fatalf("not deterministic: %+v then %+v", a, again)
		}
		chain := append([]string{a.Name}, a.Aliases...)
		if len(a.Aliases) > maxChain {
			t.Fatalf("chain of %d", len(a.Aliases))
		}
		for i, n := range chain {
			if nn, ok := normName(n); !ok || nn != n || slices.Index(chain, n) != i {
				t.Fatalf("name %d %q of chain %q: not normalised or repeated", i, n, chain)
			}
		}
		var usable []netip.Addr
		for i, ip := range a.Addrs {
			if !ip.IsValid() || ip.Is4In6() || ip.Zone() != "" || slices.Index(a.Addrs, ip) != i {
				t.Fatalf("address %v of %v", ip, a.Addrs)
			}
			if !ip.IsUnspecified() {
				usable = append(usable, ip)
			}
		}
		if a.TTL < 0 || a.TTL > time.Duration(1<<32-1)*time.Second || (len(a.Addrs) == 0 && a.TTL != 0) {
			t.Fatalf("ttl %s with %d addresses", a.TTL, len(a.Addrs))
		}

		slices.SortFunc(usable, func(x, y netip.Addr) int { return x.Compare(y) })
		if got := c.IPs(a.Name); !slices.Equal(got, usable) {
			t.Fatalf("IPs(%q) = %v, want %v", a.Name, got, usable)
		}
		if len(usable) == 0 {
			if c.Len() != 0 || len(observed) != 0 {
				t.Fatalf("an answer without addresses changed the cache")
			}
			return
		}
		for _, ip := range usable {
			names := c.Names(ip)
			if len(names) != len(chain) || names[0] != a.Name {
				t.Fatalf("Names(%v) = %q, want the question first and every alias of %q", ip, names, chain)
			}
			for _, n := range chain {
				if !slices.Contains(names, n) {
					t.Fatalf("Names(%v) = %q lacks %q", ip, names, n)
				}
			}
		}
		if len(observed) != len(chain) {
			t.Fatalf("observers told %d times for a chain of %d", len(observed), len(chain))
		}
		for i, o := range observed {
			got := slices.Clone(o.ips)
			slices.SortFunc(got, func(x, y netip.Addr) int { return x.Compare(y) })
			if o.name != chain[i] || !slices.Equal(got, usable) {
				t.Fatalf("observer told %q %v, want %q %v", o.name, o.ips, chain[i], usable)
			}
		}
	})
}
