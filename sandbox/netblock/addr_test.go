package netblock

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNormalizePrefix(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      error
	}{
		{in: "198.18.1.2/32", want: "198.18.1.2/32"},
		{in: "198.18.1.2/24", want: "198.18.1.0/24"},
		{in: "::ffff:198.18.1.2/128", want: "198.18.1.2/32"},
		{in: "::ffff:198.18.0.0/112", want: "198.18.0.0/16"},
		{in: "2001:2::1/48", want: "2001:2::/48"},
		{in: "0.0.0.0/32", err: ErrInvalid},
		{in: "::/128", err: ErrInvalid},
		{in: "0.0.0.0/0", want: "0.0.0.0/0"},
	} {
		got, err := normalizePrefix(netip.MustParsePrefix(tc.in))
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", tc.in, err, tc.err)
			continue
		}
		if tc.err == nil && got.String() != tc.want {
			t.Errorf("%s: got %s, want %s", tc.in, got, tc.want)
		}
	}
	if _, err := normalizePrefix(netip.Prefix{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero prefix: error %v, want ErrInvalid", err)
	}
}

func TestCheckProtected(t *testing.T) {
	protect := append(builtinProtected(), protectedPrefix{netip.MustParsePrefix("198.18.200.0/24"), "protected 198.18.200.0/24"})
	for _, tc := range []struct {
		in      string
		refused bool
		reason  string
	}{
		{"198.18.1.1/32", false, ""},
		{"127.0.0.1/32", true, "loopback"},
		{"127.0.0.0/8", true, "loopback"},
		{"0.0.0.0/0", true, "overlaps 127.0.0.0/8"},
		{"::1/128", true, "loopback"},
		{"::/0", true, "overlaps ::1/128"},
		{"169.254.9.9/32", true, "link-local"},
		{"fe80::1/128", true, "link-local"},
		{"198.18.200.7/32", true, "protected 198.18.200.0/24"},
		{"198.18.0.0/16", true, "overlaps 198.18.200.0/24"},
		{"198.18.201.0/24", false, ""},
	} {
		err := checkProtected(netip.MustParsePrefix(tc.in), protect)
		if tc.refused != errors.Is(err, ErrProtected) {
			t.Errorf("%s: error %v, refused want %v", tc.in, err, tc.refused)
			continue
		}
		if tc.refused && !strings.Contains(err.Error(), tc.reason) {
			t.Errorf("%s: error %q does not say %q", tc.in, err, tc.reason)
		}
	}
}

func TestSpanPrefixes(t *testing.T) {
	a := netip.MustParseAddr
	for _, tc := range []struct {
		lo, hi string
		want   []string
	}{
		{"198.18.0.0", "198.18.0.255", []string{"198.18.0.0/24"}},
		{"198.18.0.5", "198.18.0.5", []string{"198.18.0.5/32"}},
		{"198.18.0.1", "198.18.0.6", []string{"198.18.0.1/32", "198.18.0.2/31", "198.18.0.4/31", "198.18.0.6/32"}},
		{"0.0.0.0", "255.255.255.255", []string{"0.0.0.0/0"}},
		{"255.0.0.0", "255.255.255.255", []string{"255.0.0.0/8"}},
		{"2001:2::", "2001:2::ffff", []string{"2001:2::/112"}},
	} {
		var got []string
		for _, p := range (span{lo: a(tc.lo), hi: a(tc.hi)}).prefixes() {
			got = append(got, p.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s-%s: got %v, want %v", tc.lo, tc.hi, got, tc.want)
		}
	}
}

func TestSpanElems(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		prefix   string
		interval bool
		keys     []string
	}{
		{"198.18.0.7/32", false, []string{"198.18.0.7"}},
		{"198.18.0.0/24", true, []string{"198.18.0.0", "end 198.18.1.0"}},
		{"255.0.0.0/8", true, []string{"255.0.0.0"}}, // no end past the last address
		{"2001:2::/48", true, []string{"2001:2::", "end 2001:2:1::"}},
	} {
		var got []string
		for _, e := range prefixSpan(p(tc.prefix), time.Time{}).elems(tc.interval, time.Minute) {
			a, _ := netip.AddrFromSlice(e.key)
			s := a.String()
			if e.end {
				s = "end " + s
			}
			if want := time.Minute; e.end && e.timeout != 0 || !e.end && e.timeout != want {
				t.Errorf("%s: %s timeout %s", tc.prefix, s, e.timeout)
			}
			got = append(got, s)
		}
		if !slices.Equal(got, tc.keys) {
			t.Errorf("%s: got %v, want %v", tc.prefix, got, tc.keys)
		}
	}
}

func TestPlanInterval(t *testing.T) {
	now := time.Now()
	soon, later := now.Add(time.Minute), now.Add(time.Hour)
	sp := func(p string, exp time.Time) span { return prefixSpan(netip.MustParsePrefix(p), exp) }
	existing := []span{
		sp("198.18.0.0/24", soon),
		sp("198.18.2.0/24", time.Time{}),
		sp("198.18.4.0/25", soon),
		sp("198.18.4.128/25", soon),
		sp("198.18.6.0/24", later),
	}
	for _, tc := range []struct {
		name string
		want span
		add  bool
		del  []string
		err  error
	}{
		{"disjoint", sp("198.18.8.0/24", soon), true, nil, nil},
		{"touching is not overlapping", sp("198.18.1.0/24", soon), true, nil, nil},
		{"same, not longer", sp("198.18.0.0/24", soon), false, nil, nil},
		{"same, longer", sp("198.18.0.0/24", later), true, []string{"198.18.0.0/24"}, nil},
		{"same, permanent over timed", sp("198.18.0.0/24", time.Time{}), true, []string{"198.18.0.0/24"}, nil},
		{"inside permanent", sp("198.18.2.64/26", later), false, nil, nil},
		{"inside shorter", sp("198.18.0.64/26", later), false, nil, ErrOverlap},
		{"swallows shorter ones", sp("198.18.4.0/23", later), true, []string{"198.18.4.0/25", "198.18.4.128/25"}, nil},
		{"swallows a longer one", sp("198.18.6.0/23", soon), false, nil, ErrOverlap},
		{"swallows permanent", sp("198.18.0.0/16", later), false, nil, ErrOverlap},
	} {
		del, add, err := planInterval(existing, tc.want)
		if !errors.Is(err, tc.err) {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.err)
			continue
		}
		var got []string
		for _, d := range del {
			got = append(got, d.prefixes()[0].String())
		}
		if add != tc.add || !slices.Equal(got, tc.del) {
			t.Errorf("%s: add %v del %v, want add %v del %v", tc.name, add, got, tc.add, tc.del)
		}
	}
}

func TestResolveNested(t *testing.T) {
	now := time.Now()
	soon, later := now.Add(time.Minute), now.Add(time.Hour)
	sp := func(p string, exp time.Time) span { return prefixSpan(netip.MustParsePrefix(p), exp) }
	kept, errs := resolveNested([]span{
		sp("198.18.0.128/25", soon),    // inside a longer /24: dropped
		sp("198.18.0.0/24", later),     // kept
		sp("198.18.9.0/25", later),     // inside a shorter /24: refused
		sp("198.18.9.0/24", soon),      // kept
		sp("198.18.20.0/24", soon),     // kept
		sp("198.18.20.0/26", soon),     // same lifetime inside: dropped
		sp("2001:2::/64", time.Time{}), // other family never collides here
	})
	var got []string
	for _, k := range kept {
		got = append(got, k.prefixes()[0].String())
	}
	want := []string{"198.18.0.0/24", "198.18.9.0/24", "198.18.20.0/24", "2001:2::/64"}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
	if len(errs) != 1 || !errors.Is(errs[0], ErrOverlap) || !strings.Contains(errs[0].Error(), "198.18.9.0/25") {
		t.Errorf("errors %v, want one ErrOverlap about 198.18.9.0/25", errs)
	}
}

func TestAtLeast(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name string
		a, b time.Time
		want bool
	}{
		{"permanent vs timed", time.Time{}, now, true},
		{"timed vs permanent", now, time.Time{}, false},
		{"both permanent", time.Time{}, time.Time{}, true},
		{"later", now.Add(time.Hour), now, true},
		{"within slack", now, now.Add(expirySlack / 2), true},
		{"beyond slack", now, now.Add(2 * expirySlack), false},
	} {
		if got := atLeast(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: got %v", tc.name, got)
		}
	}
}

func TestNormalizeDomain(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		err      bool
	}{
		{"Evil.Example.COM.", "evil.example.com", false},
		{"_dmarc.example.com", "_dmarc.example.com", false},
		{"xn--bcher-kva.example", "xn--bcher-kva.example", false},
		{"a-b.c1", "a-b.c1", false},
		{"", "", true},
		{".", "", true},
		{"com", "", true},
		{"a..b", "", true},
		{"-a.com", "", true},
		{"a-.com", "", true},
		{"*.example.com", "", true},
		{"ex ample.com", "", true},
		{"bücher.example", "", true},
		{"exa\x00mple.com", "", true},
		{strings.Repeat("a", 64) + ".com", "", true},
		{strings.Repeat("a.", 127) + "com", "", true},
	} {
		got, err := NormalizeDomain(tc.in)
		if (err != nil) != tc.err || err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("%q: error %v, want error %v", tc.in, err, tc.err)
			continue
		}
		if got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.in, got, tc.want)
		}
	}
}
