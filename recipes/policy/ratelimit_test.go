package policy

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a manually advanced clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func allowN(l *Limiter, n int) int {
	ok := 0
	for range n {
		if l.Allow() {
			ok++
		}
	}
	return ok
}

func TestLimiter(t *testing.T) {
	c := newFakeClock()
	l := NewLimiter(Rate{N: 3, Per: time.Second}, c)

	steps := []struct {
		advance time.Duration
		calls   int
		allowed int
		why     string
	}{
		{0, 5, 3, "first window allows N"},
		{999 * time.Millisecond, 1, 0, "still the first window"},
		{time.Millisecond, 4, 3, "window rolled over at exactly Per"},
		{500 * time.Millisecond, 1, 0, "second window exhausted"},
		{10 * time.Second, 2, 2, "long idle: new window"},
		{900 * time.Millisecond, 2, 1, "new window began at the first call after idling"},
		{100 * time.Millisecond, 3, 3, "next window"},
	}
	for i, s := range steps {
		c.Advance(s.advance)
		if got := allowN(l, s.calls); got != s.allowed {
			t.Fatalf("step %d (%s): %d of %d allowed, want %d", i, s.why, got, s.calls, s.allowed)
		}
	}

	// A clock stepping backwards does not open a new window early.
	c.Advance(-time.Hour)
	if l.Allow() {
		t.Error("backwards clock reset the window")
	}

	per := NewLimiter(Rate{N: 2, Per: time.Hour}, c)
	if got := allowN(per, 3); got != 2 {
		t.Errorf("2/h: %d allowed", got)
	}
	c.Advance(59 * time.Minute)
	if per.Allow() {
		t.Error("2/h allowed a third call within the hour")
	}
	c.Advance(time.Minute)
	if !per.Allow() {
		t.Error("2/h refused after the hour")
	}
}

func TestLimiterUnlimited(t *testing.T) {
	l := NewLimiter(Rate{}, newFakeClock())
	if got := allowN(l, 10000); got != 10000 {
		t.Errorf("unlimited limiter allowed %d of 10000", got)
	}
	if NewLimiter(Rate{N: 1, Per: time.Second}, nil).Allow() != true {
		t.Error("limiter on the system clock refused its first call")
	}
}

func TestLimiterConcurrent(t *testing.T) {
	l := NewLimiter(Rate{N: 100, Per: time.Hour}, newFakeClock())
	var ok atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if l.Allow() {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 100 {
		t.Errorf("%d calls allowed concurrently, want exactly 100", ok.Load())
	}
}

func TestBreaker(t *testing.T) {
	c := newFakeClock()
	b := NewBreaker(Disarm{MaxTargets: 3, Per: time.Minute}, c)

	for _, target := range []string{"pid:1", "pid:2", "ip:198.18.0.1", "pid:1", "ip:198.18.0.1"} {
		if !b.Allow(target) {
			t.Fatalf("%s refused within max_targets", target)
		}
	}
	if b.Tripped() {
		t.Fatal("tripped at exactly max_targets")
	}

	c.Advance(10 * time.Second)
	allowed, tripped := b.Check("pid:4")
	if allowed || !tripped || !b.Tripped() {
		t.Fatalf("fourth distinct target: allowed=%v justTripped=%v Tripped=%v", allowed, tripped, b.Tripped())
	}
	allowed, tripped = b.Check("pid:5")
	if allowed || tripped {
		t.Errorf("new target while tripped: allowed=%v justTripped=%v (one trip, one alert)", allowed, tripped)
	}
	if !b.Allow("pid:2") {
		t.Error("a target seen in the window was refused while tripped")
	}

	// The first targets leave the window at 60s, but the breaker stays open
	// until a full window has passed since the trip (at 10s).
	c.Advance(55 * time.Second) // t = 65s
	if !b.Tripped() || b.Allow("pid:6") {
		t.Error("breaker closed before the window since the trip passed")
	}
	if b.Allow("pid:1") {
		t.Error("pid:1 counted as seen after leaving the window")
	}

	c.Advance(5 * time.Second) // t = 70s
	if b.Tripped() {
		t.Fatal("breaker still tripped a window after the trip")
	}
	for _, target := range []string{"pid:4", "pid:5", "pid:6"} {
		if !b.Allow(target) {
			t.Errorf("%s refused after recovery", target)
		}
	}
	if b.Allow("pid:7") {
		t.Error("fourth distinct target after recovery allowed")
	}
}

func TestBreakerSlidingWindow(t *testing.T) {
	c := newFakeClock()
	b := NewBreaker(Disarm{MaxTargets: 2, Per: time.Minute}, c)
	if !b.Allow("a") {
		t.Fatal("a refused")
	}
	c.Advance(40 * time.Second)
	if !b.Allow("b") {
		t.Fatal("b refused")
	}
	c.Advance(20 * time.Second) // a is exactly one window old: gone
	if !b.Allow("c") {
		t.Fatal("c refused although a left the window")
	}
	if b.Tripped() {
		t.Fatal("tripped")
	}
	c.Advance(10 * time.Second) // b (40s) and c (60s) still in the window
	if b.Allow("d") || !b.Tripped() {
		t.Error("third distinct target within the window allowed")
	}
}

func TestBreakerOff(t *testing.T) {
	b := NewBreaker(Disarm{}, newFakeClock())
	for i := range 1000 {
		if !b.Allow(fmt.Sprintf("pid:%d", i)) {
			t.Fatalf("off breaker refused target %d", i)
		}
	}
	if b.Tripped() {
		t.Error("off breaker tripped")
	}
}

func TestBreakerConcurrent(t *testing.T) {
	b := NewBreaker(Disarm{MaxTargets: 10, Per: time.Hour}, newFakeClock())
	var ok, trips atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				allowed, tripped := b.Check(fmt.Sprintf("pid:%d", g*100+i))
				if allowed {
					ok.Add(1)
				}
				if tripped {
					trips.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 || trips.Load() != 1 {
		t.Errorf("allowed %d distinct targets and tripped %d times, want 10 and 1", ok.Load(), trips.Load())
	}
}

// A held target that was not acted on after all is forgotten; one counted earlier, or one
// another holder acted on, is not.
func TestBreakerHoldSettle(t *testing.T) {
	b := NewBreaker(Disarm{MaxTargets: 2, Per: time.Minute}, newFakeClock())
	if !b.Allow("pid:700") {
		t.Fatal("first target refused")
	}
	for _, target := range []string{"pid:1", "pid:2", "pid:3", "pid:700"} {
		ok, _, settle := b.Hold(target)
		if !ok {
			t.Fatalf("%s refused: targets not acted on must not count", target)
		}
		settle(false)
	}
	// Two reactions on one target: one kills it, the other finds it gone. It counts.
	_, _, first := b.Hold("pid:701")
	_, _, second := b.Hold("pid:701")
	second(true)
	first(false)
	if ok, tripped := b.Check("pid:702"); ok || !tripped {
		t.Fatalf("third target after pid:700 and pid:701 were acted on: allowed=%v justTripped=%v", ok, tripped)
	}
}
