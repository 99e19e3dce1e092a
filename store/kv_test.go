package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

// op is one step of a scripted key-value scenario; want* are checked after.
type op struct {
	do       string // set | delete | clear | push | pop
	ns, k, v string
	wantOK   bool   // delete/pop: existed
	wantV    string // pop: value
	wantN    int    // clear: keys removed
}

func runOps(t *testing.T, s *Store, ops []op) {
	t.Helper()
	ctx := context.Background()
	for i, o := range ops {
		switch o.do {
		case "set":
			if err := s.Set(ctx, o.ns, o.k, o.v); err != nil {
				t.Fatalf("op %d Set: %v", i, err)
			}
		case "delete":
			ok, err := s.Delete(ctx, o.ns, o.k)
			if err != nil || ok != o.wantOK {
				t.Fatalf("op %d Delete(%s,%s) = %v, %v; want %v", i, o.ns, o.k, ok, err, o.wantOK)
			}
		case "clear":
			n, err := s.Clear(ctx, o.ns)
			if err != nil || n != o.wantN {
				t.Fatalf("op %d Clear(%s) = %d, %v; want %d", i, o.ns, n, err, o.wantN)
			}
		case "push":
			if err := s.Push(ctx, o.ns, o.k, o.v); err != nil {
				t.Fatalf("op %d Push: %v", i, err)
			}
		case "pop":
			v, ok, err := s.Pop(ctx, o.ns, o.k)
			if err != nil || ok != o.wantOK || v != o.wantV {
				t.Fatalf("op %d Pop(%s,%q) = %q, %v, %v; want %q, %v", i, o.ns, o.k, v, ok, err, o.wantV, o.wantOK)
			}
		default:
			t.Fatalf("op %d: unknown %q", i, o.do)
		}
	}
}

// wantNS is the expected final state of one namespace.
type wantNS struct {
	ns   string
	keys []string
	vals []string
}

func checkNS(t *testing.T, s *Store, w wantNS) {
	t.Helper()
	ctx := context.Background()
	keys, err := s.Keys(ctx, w.ns)
	if err != nil || !slices.Equal(keys, w.keys) {
		t.Errorf("Keys(%s) = %q, %v; want %q", w.ns, keys, err, w.keys)
	}
	vals, err := s.Values(ctx, w.ns)
	if err != nil || !slices.Equal(vals, w.vals) {
		t.Errorf("Values(%s) = %q, %v; want %q", w.ns, vals, err, w.vals)
	}
	n, err := s.Size(ctx, w.ns)
	if err != nil || n != len(w.keys) {
		t.Errorf("Size(%s) = %d, %v; want %d", w.ns, n, err, len(w.keys))
	}
	for i, k := range w.keys {
		v, ok, err := s.Get(ctx, w.ns, k)
		if err != nil || !ok || v != w.vals[i] {
			t.Errorf("Get(%s,%q) = %q, %v, %v; want %q", w.ns, k, v, ok, err, w.vals[i])
		}
		has, err := s.HasValue(ctx, w.ns, w.vals[i])
		if err != nil || !has {
			t.Errorf("HasValue(%s,%q) = %v, %v; want true", w.ns, w.vals[i], has, err)
		}
	}
}

func TestKeyValue(t *testing.T) {
	cases := []struct {
		name string
		ops  []op
		want []wantNS
	}{
		{"empty", nil, []wantNS{{"a", []string{}, []string{}}}},
		{"insertion order", []op{
			{do: "set", ns: "a", k: "z", v: "1"},
			{do: "set", ns: "a", k: "b", v: "2"},
			{do: "set", ns: "a", k: "m", v: "3"},
		}, []wantNS{{"a", []string{"z", "b", "m"}, []string{"1", "2", "3"}}}},
		{"overwrite keeps position", []op{
			{do: "set", ns: "a", k: "x", v: "1"},
			{do: "set", ns: "a", k: "y", v: "2"},
			{do: "set", ns: "a", k: "x", v: "3"},
		}, []wantNS{{"a", []string{"x", "y"}, []string{"3", "2"}}}},
		{"delete then set moves to end", []op{
			{do: "set", ns: "a", k: "x", v: "1"},
			{do: "set", ns: "a", k: "y", v: "2"},
			{do: "delete", ns: "a", k: "x", wantOK: true},
			{do: "delete", ns: "a", k: "x", wantOK: false},
			{do: "set", ns: "a", k: "x", v: "4"},
		}, []wantNS{{"a", []string{"y", "x"}, []string{"2", "4"}}}},
		{"namespaces isolated", []op{
			{do: "set", ns: "a", k: "k", v: "from a"},
			{do: "set", ns: "b", k: "k", v: "from b"},
			{do: "delete", ns: "c", k: "k", wantOK: false},
			{do: "clear", ns: "b", wantN: 1},
			{do: "set", ns: "b", k: "j", v: "again"},
		}, []wantNS{
			{"a", []string{"k"}, []string{"from a"}},
			{"b", []string{"j"}, []string{"again"}},
			{"c", []string{}, []string{}},
		}},
		{"odd bytes round-trip", []op{
			{do: "set", ns: "ns with space", k: "", v: "empty key"},
			{do: "set", ns: "ns with space", k: "nul\x00key", v: "nul\x00value"},
			{do: "set", ns: "ns with space", k: "bad utf8 \xff", v: "日本語 '; DROP TABLE kv; --"},
			{do: "set", ns: "ns with space", k: "empty value", v: ""},
		}, []wantNS{{"ns with space",
			[]string{"", "nul\x00key", "bad utf8 \xff", "empty value"},
			[]string{"empty key", "nul\x00value", "日本語 '; DROP TABLE kv; --", ""}}}},
		{"clear counts keys only", []op{
			{do: "set", ns: "a", k: "1", v: "x"},
			{do: "set", ns: "a", k: "2", v: "y"},
			{do: "push", ns: "a", k: "", v: "item"},
			{do: "clear", ns: "a", wantN: 2},
			{do: "pop", ns: "a", k: "", wantOK: false},
			{do: "clear", ns: "a", wantN: 0},
		}, []wantNS{{"a", []string{}, []string{}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openTest(t)
			runOps(t, s, c.ops)
			for _, w := range c.want {
				checkNS(t, s, w)
			}
		})
	}
}

func TestGetMissingAndHasValue(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	runOps(t, s, []op{{do: "set", ns: "a", k: "k", v: "v"}})
	cases := []struct {
		ns, k, v string
		wantOK   bool
		wantHas  bool
	}{
		{"a", "k", "v", true, true},
		{"a", "missing", "missing", false, false},
		{"b", "k", "v", false, false}, // other namespace
		{"a", "K", "V", false, false}, // case-sensitive
	}
	for _, c := range cases {
		_, ok, err := s.Get(ctx, c.ns, c.k)
		if err != nil || ok != c.wantOK {
			t.Errorf("Get(%s,%s) ok = %v, %v; want %v", c.ns, c.k, ok, err, c.wantOK)
		}
		has, err := s.HasValue(ctx, c.ns, c.v)
		if err != nil || has != c.wantHas {
			t.Errorf("HasValue(%s,%s) = %v, %v; want %v", c.ns, c.v, has, err, c.wantHas)
		}
	}
}

func TestLists(t *testing.T) {
	cases := []struct {
		name string
		ops  []op
	}{
		{"empty pop", []op{{do: "pop", ns: "a", k: "", wantOK: false}}},
		{"LIFO", []op{
			{do: "push", ns: "a", k: "", v: "1"},
			{do: "push", ns: "a", k: "", v: "2"},
			{do: "push", ns: "a", k: "", v: "3"},
			{do: "pop", ns: "a", k: "", wantOK: true, wantV: "3"},
			{do: "push", ns: "a", k: "", v: "4"},
			{do: "pop", ns: "a", k: "", wantOK: true, wantV: "4"},
			{do: "pop", ns: "a", k: "", wantOK: true, wantV: "2"},
			{do: "pop", ns: "a", k: "", wantOK: true, wantV: "1"},
			{do: "pop", ns: "a", k: "", wantOK: false},
		}},
		{"lists independent", []op{
			{do: "push", ns: "a", k: "", v: "default"},
			{do: "push", ns: "a", k: "pids", v: "42"},
			{do: "push", ns: "b", k: "pids", v: "other ns"},
			{do: "push", ns: "a", k: "pids", v: "43"},
			{do: "pop", ns: "a", k: "pids", wantOK: true, wantV: "43"},
			{do: "pop", ns: "a", k: "", wantOK: true, wantV: "default"},
			{do: "pop", ns: "a", k: "pids", wantOK: true, wantV: "42"},
			{do: "pop", ns: "a", k: "pids", wantOK: false},
			{do: "pop", ns: "b", k: "pids", wantOK: true, wantV: "other ns"},
		}},
		{"duplicates and empty values", []op{
			{do: "push", ns: "a", k: "l", v: ""},
			{do: "push", ns: "a", k: "l", v: "x"},
			{do: "push", ns: "a", k: "l", v: "x"},
			{do: "pop", ns: "a", k: "l", wantOK: true, wantV: "x"},
			{do: "pop", ns: "a", k: "l", wantOK: true, wantV: "x"},
			{do: "pop", ns: "a", k: "l", wantOK: true, wantV: ""},
			{do: "pop", ns: "a", k: "l", wantOK: false},
		}},
		{"lists do not touch keys", []op{
			{do: "set", ns: "a", k: "", v: "kv"},
			{do: "push", ns: "a", k: "", v: "list"},
			{do: "pop", ns: "a", k: "", wantOK: true, wantV: "list"},
			{do: "pop", ns: "a", k: "", wantOK: false},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runOps(t, openTest(t), c.ops)
		})
	}
}

func TestNamespaces(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	got, err := s.Namespaces(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("Namespaces on empty store = %q, %v", got, err)
	}
	runOps(t, s, []op{
		{do: "set", ns: "zeta", k: "k", v: "v"},
		{do: "push", ns: "alpha", k: "l", v: "v"},
		{do: "set", ns: "mid", k: "k", v: "v"},
		{do: "set", ns: "alpha", k: "k", v: "v"},
		{do: "clear", ns: "mid", wantN: 1},
	})
	got, err = s.Namespaces(ctx)
	if want := []string{"alpha", "zeta"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("Namespaces = %q, %v; want %q", got, err, want)
	}
}

func TestKeyValueRejects(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	long := func(n int) string { return strings.Repeat("x", n) }
	cases := []struct {
		name string
		call func() error
	}{
		{"set empty ns", func() error { return s.Set(ctx, "", "k", "v") }},
		{"set long ns", func() error { return s.Set(ctx, long(MaxNameLen+1), "k", "v") }},
		{"set long key", func() error { return s.Set(ctx, "a", long(MaxKeyLen+1), "v") }},
		{"set long value", func() error { return s.Set(ctx, "a", "k", long(MaxValueLen+1)) }},
		{"get empty ns", func() error { _, _, err := s.Get(ctx, "", "k"); return err }},
		{"keys empty ns", func() error { _, err := s.Keys(ctx, ""); return err }},
		{"clear empty ns", func() error { _, err := s.Clear(ctx, ""); return err }},
		{"push long list", func() error { return s.Push(ctx, "a", long(MaxNameLen+1), "v") }},
		{"push long value", func() error { return s.Push(ctx, "a", "", long(MaxValueLen+1)) }},
		{"pop empty ns", func() error { _, _, err := s.Pop(ctx, "", ""); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.call()
			if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "store: ") {
				t.Errorf("error = %v, want a store: ... ErrInvalid", err)
			}
		})
	}
	// Values at the limit are accepted.
	if err := s.Set(ctx, long(MaxNameLen), long(MaxKeyLen), long(MaxValueLen)); err != nil {
		t.Errorf("Set at limits: %v", err)
	}
}

func TestPersistsAcrossReopen(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	runOps(t, s, []op{
		{do: "set", ns: "a", k: "k1", v: "v1"},
		{do: "set", ns: "a", k: "k2", v: "v2"},
		{do: "push", ns: "a", k: "l", v: "p1"},
	})
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	checkNS(t, s2, wantNS{"a", []string{"k1", "k2"}, []string{"v1", "v2"}})
	runOps(t, s2, []op{{do: "pop", ns: "a", k: "l", wantOK: true, wantV: "p1"}})
}
