package match

import (
	"fmt"
	"sync"
	"testing"

	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/recipes"
)

// allowed runs events through a limiter and returns which were allowed.
func allowed(l *Limiter, events []*event.Event) []bool {
	out := make([]bool, len(events))
	for i, e := range events {
		out[i] = l.Allow(e)
	}
	return out
}

func eq(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func withProc(pid int32, start string) *event.Event {
	e := event.Sample(event.TypeExecution)
	e.Process.PID, e.Process.Start = pid, start
	e.Background.Ancestry[len(e.Background.Ancestry)-1].PID = pid
	return e
}

func TestLimiterKinds(t *testing.T) {
	s := event.Sample
	otherExe := func() *event.Event { e := s(event.TypeExecution); e.Process.Exe = "/usr/bin/curl"; return e }
	otherCmd := func() *event.Event { e := s(event.TypeExecution); e.Process.Cmd = "xmrig --other"; return e }
	otherParent := func() *event.Event {
		e := s(event.TypeExecution)
		e.Process.PPID = 4100 // bash becomes the parent
		return e
	}
	otherParentExe := func() *event.Event {
		e := s(event.TypeExecution)
		e.Background.Ancestry[2].Exe = "/usr/bin/zsh"
		return e
	}
	parentRestarted := func() *event.Event {
		e := s(event.TypeExecution)
		e.Background.Ancestry[2].Start = "2026-01-01T12:30:00.000000000Z" // same pid, new process
		return e
	}
	otherChain := func() *event.Event {
		e := s(event.TypeExecution)
		e.Background.Ancestry[0].Exe = "/usr/sbin/cron"
		return e
	}
	sameChainOtherPids := func() *event.Event {
		e := withProc(5000, "2026-01-01T13:00:00.000000000Z")
		e.Process.PPID = 4999
		e.Background.Ancestry[2].PID = 4999
		return e
	}
	cases := []struct {
		kind   recipes.TimesKind
		max    int
		events []*event.Event
		want   []bool
	}{
		{recipes.TimesPerProc, 2,
			[]*event.Event{s(event.TypeExecution), s(event.TypeExecution), s(event.TypeExecution),
				withProc(4242, "2026-01-01T13:00:00.000000000Z"), withProc(777, "")},
			// a recycled pid with a new start time is a new process
			[]bool{true, true, false, true, true}},
		{recipes.TimesPerExe, 1,
			[]*event.Event{s(event.TypeExecution), withProc(1, ""), otherExe()},
			[]bool{true, false, true}},
		{recipes.TimesPerParentProc, 1,
			[]*event.Event{s(event.TypeExecution), withProc(9, ""), otherParent(), parentRestarted()},
			[]bool{true, false, true, true}},
		{recipes.TimesPerParentExe, 1,
			[]*event.Event{s(event.TypeExecution), parentRestarted(), otherParentExe()},
			[]bool{true, false, true}},
		{recipes.TimesPerCmd, 2,
			[]*event.Event{s(event.TypeExecution), s(event.TypeExecution), s(event.TypeExecution), otherCmd()},
			[]bool{true, true, false, true}},
		{recipes.TimesPerFullAncestry, 1,
			[]*event.Event{s(event.TypeExecution), sameChainOtherPids(), otherChain()},
			[]bool{true, false, true}},
		{recipes.TimesInTotal, 3,
			[]*event.Event{s(event.TypeExecution), otherExe(), s(event.TypeFileAccess), s(event.TypeNetworkPeer)},
			[]bool{true, true, true, false}},
	}
	for _, tc := range cases {
		t.Run(string(tc.kind), func(t *testing.T) {
			l := NewLimiter([]recipes.Times{{Kind: tc.kind, Max: tc.max}})
			if got := allowed(l, tc.events); !eq(got, tc.want) {
				t.Errorf("allowed %v, want %v", got, tc.want)
			}
			l.Reset()
			if !l.Allow(tc.events[0]) {
				t.Error("refused after Reset")
			}
		})
	}
}

func TestLimiterCombined(t *testing.T) {
	// Jibril's usual trio: a refused event consumes no budget of the other kinds.
	l := NewLimiter([]recipes.Times{
		{Kind: recipes.TimesPerExe, Max: 2},
		{Kind: recipes.TimesInTotal, Max: 3},
	})
	miner := event.Sample(event.TypeExecution)
	curl := event.Sample(event.TypeExecution)
	curl.Process.Exe = "/usr/bin/curl"
	got := allowed(l, []*event.Event{miner, miner, miner, curl, curl})
	// miner x2 allowed, the third refused by per_exe without counting in total; curl is the
	// third in total, and the next curl is over the total.
	if want := []bool{true, true, false, true, false}; !eq(got, want) {
		t.Errorf("allowed %v, want %v", got, want)
	}
}

func TestLimiterNoLimits(t *testing.T) {
	var nilLimiter *Limiter
	if !nilLimiter.Allow(event.Sample(event.TypeExecution)) {
		t.Error("nil limiter refused")
	}
	nilLimiter.Reset()
	nilLimiter.SetMaxKeys(3)
	l := NewLimiter(nil)
	for range 100 {
		if !l.Allow(event.Sample(event.TypeExecution)) {
			t.Fatal("limiter without limits refused")
		}
	}
	// Nonsense entries from a hand-built recipe are ignored rather than refusing everything.
	l = NewLimiter([]recipes.Times{{Kind: "times_per_moon", Max: 1}, {Kind: recipes.TimesPerExe, Max: 0}})
	if !l.Allow(nil) || !l.Allow(nil) {
		t.Error("ignored limits refused")
	}
}

func TestLimiterKeyBound(t *testing.T) {
	l := NewLimiter([]recipes.Times{{Kind: recipes.TimesPerCmd, Max: 1}})
	l.SetMaxKeys(4)
	first := event.Sample(event.TypeExecution)
	if !l.Allow(first) || l.Allow(first) {
		t.Fatal("first command")
	}
	// Four more distinct commands overflow the bound: the table is forgotten, memory stays
	// bounded, and the first command is reported again.
	for i := range 4 {
		e := event.Sample(event.TypeExecution)
		e.Process.Cmd = fmt.Sprintf("cmd-%d", i)
		if !l.Allow(e) {
			t.Fatalf("cmd-%d refused", i)
		}
	}
	if got := len(l.limits[0].counts); got > 4 {
		t.Errorf("%d keys kept, bound is 4", got)
	}
	if !l.Allow(first) {
		t.Error("first command still refused after the table was forgotten")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter([]recipes.Times{{Kind: recipes.TimesInTotal, Max: 50}})
	var wg sync.WaitGroup
	var mu sync.Mutex
	n := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e := event.Sample(event.TypeExecution)
			for range 100 {
				if l.Allow(e) {
					mu.Lock()
					n++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if n != 50 {
		t.Errorf("%d events allowed, want exactly 50", n)
	}
}

func TestLimiterManyKinds(t *testing.T) {
	// More entries than the stack buffer (a hand-built recipe may repeat kinds).
	var times []recipes.Times
	for range 10 {
		times = append(times, recipes.Times{Kind: recipes.TimesInTotal, Max: 2})
	}
	l := NewLimiter(times)
	got := allowed(l, []*event.Event{nil, nil, nil})
	if want := []bool{true, true, false}; !eq(got, want) {
		t.Errorf("allowed %v, want %v", got, want)
	}
}
