package store

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestCanonicalBlock(t *testing.T) {
	cases := []struct {
		kind, in, want string
		bad            bool
	}{
		{"ip", "198.18.0.1", "198.18.0.1", false},
		{"ip", "2001:DB8:0:0::1", "2001:db8::1", false},
		{"ip", "::ffff:198.18.0.1", "::ffff:198.18.0.1", false},
		{"ip", "198.18.0.1/32", "", true},
		{"ip", "fe80::1%eth0", "", true},
		{"ip", "198.18.0.256", "", true},
		{"ip", "", "", true},
		{"cidr", "198.18.0.0/15", "198.18.0.0/15", false},
		{"cidr", "198.18.7.9/15", "198.18.0.0/15", false},
		{"cidr", "2001:DB8::/32", "2001:db8::/32", false},
		{"cidr", "198.18.0.0/33", "", true},
		{"cidr", "198.18.0.0", "", true},
		{"domain", "Example.COM.", "example.com", false},
		{"domain", "_dmarc.a-b.example", "_dmarc.a-b.example", false},
		{"domain", "x", "x", false},
		{"domain", "", "", true},
		{"domain", ".", "", true},
		{"domain", "a..b", "", true},
		{"domain", "-a.b", "", true},
		{"domain", "a-.b", "", true},
		{"domain", "a b.c", "", true},
		{"domain", "*.example.com", "", true},
		{"domain", "exa\x00mple.com", "", true},
		{"domain", strings.Repeat("a", 64) + ".com", "", true},
		{"domain", strings.Repeat("abcdefghi.", 26) + "com", "", true}, // 263 bytes
		{"url", "example.com", "", true},
		{"", "198.18.0.1", "", true},
	}
	for _, c := range cases {
		got, err := CanonicalBlock(c.kind, c.in)
		if c.bad {
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("CanonicalBlock(%s, %q) = %q, %v; want ErrInvalid", c.kind, c.in, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("CanonicalBlock(%s, %q) = %q, %v; want %q", c.kind, c.in, got, err, c.want)
		}
	}
}

func TestBlocks(t *testing.T) {
	ctx := context.Background()
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	s := openTest(t)
	puts := []Block{
		{Kind: "ip", Value: "198.18.0.9", Recipe: "r1", Created: t0, Expires: at(time.Hour)},
		{Kind: "domain", Value: "Evil.Example.", Recipe: "r1", Created: t0},
		{Kind: "cidr", Value: "198.19.1.1/16", Recipe: "r2", Created: t0, Expires: at(time.Minute)},
		{Kind: "ip", Value: "198.18.0.1", Recipe: "r2", Created: t0, Expires: at(2 * time.Minute)},
		// Upsert: same (kind, canonical value) replaces recipe and expiry.
		{Kind: "ip", Value: "198.18.0.9", Recipe: "r3", Created: at(time.Second), Expires: at(3 * time.Hour)},
	}
	for _, b := range puts {
		if err := s.PutBlock(ctx, b); err != nil {
			t.Fatalf("PutBlock(%+v): %v", b, err)
		}
	}
	all := []Block{
		{Kind: "cidr", Value: "198.19.0.0/16", Recipe: "r2", Created: t0, Expires: at(time.Minute)},
		{Kind: "domain", Value: "evil.example", Recipe: "r1", Created: t0},
		{Kind: "ip", Value: "198.18.0.1", Recipe: "r2", Created: t0, Expires: at(2 * time.Minute)},
		{Kind: "ip", Value: "198.18.0.9", Recipe: "r3", Created: at(time.Second), Expires: at(3 * time.Hour)},
	}
	active := []struct {
		name string
		now  time.Time
		want []Block
	}{
		{"before any expiry", at(0), all},
		{"expiry is exclusive", at(time.Minute), all[1:]},
		{"after two expiries", at(2*time.Minute + 1), []Block{all[1], all[3]}},
		{"only the permanent block left", at(4 * time.Hour), all[1:2]},
	}
	for _, c := range active {
		got, err := s.ActiveBlocks(ctx, c.now)
		if err != nil {
			t.Fatalf("%s: ActiveBlocks: %v", c.name, err)
		}
		checkBlocks(t, c.name, got, c.want)
	}

	// Purge removes exactly the expired ones and is repeatable.
	purges := []struct {
		now  time.Time
		want int
	}{{at(0), 0}, {at(time.Minute), 1}, {at(time.Minute), 0}, {at(5 * time.Hour), 2}}
	for _, p := range purges {
		n, err := s.PurgeExpiredBlocks(ctx, p.now)
		if err != nil || n != p.want {
			t.Errorf("PurgeExpiredBlocks(%v) = %d, %v; want %d", p.now, n, err, p.want)
		}
	}
	got, err := s.ActiveBlocks(ctx, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	checkBlocks(t, "after purge", got, all[1:2])

	deletes := []struct {
		kind, value string
		want        bool
	}{{"domain", "EVIL.example.", true}, {"domain", "evil.example", false}, {"ip", "198.18.0.1", false}}
	for _, d := range deletes {
		ok, err := s.DeleteBlock(ctx, d.kind, d.value)
		if err != nil || ok != d.want {
			t.Errorf("DeleteBlock(%s, %s) = %v, %v; want %v", d.kind, d.value, ok, err, d.want)
		}
	}
}

func checkBlocks(t *testing.T, name string, got, want []Block) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: got %d blocks %+v, want %d %+v", name, len(got), got, len(want), want)
		return
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Kind != w.Kind || g.Value != w.Value || g.Recipe != w.Recipe ||
			!g.Created.Equal(w.Created) || !g.Expires.Equal(w.Expires) || g.Expires.IsZero() != w.Expires.IsZero() {
			t.Errorf("%s: block %d = %+v, want %+v", name, i, g, w)
		}
	}
}

func TestPutBlockDefaultsAndRejects(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	before := time.Now()
	if err := s.PutBlock(ctx, Block{Kind: "ip", Value: "198.18.0.5", Recipe: "r"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.ActiveBlocks(ctx, time.Now())
	if err != nil || len(got) != 1 {
		t.Fatalf("ActiveBlocks = %+v, %v", got, err)
	}
	if got[0].Created.Before(before.Truncate(time.Nanosecond)) || !got[0].Expires.IsZero() {
		t.Errorf("defaults: %+v (Created should be ~now, Expires zero)", got[0])
	}
	bad := []Block{
		{Kind: "ip", Value: "not-an-ip"},
		{Kind: "host", Value: "example.com"},
		{Kind: "ip", Value: "198.18.0.5", Expires: time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Kind: "ip", Value: "198.18.0.5", Created: time.Date(1000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Kind: "ip", Value: "198.18.0.5", Recipe: strings.Repeat("r", MaxNameLen+1)},
	}
	for _, b := range bad {
		if err := s.PutBlock(ctx, b); !errors.Is(err, ErrInvalid) {
			t.Errorf("PutBlock(%+v) = %v, want ErrInvalid", b, err)
		}
	}
}
