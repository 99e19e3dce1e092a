package policy

import (
	"sync"
	"time"
)

// Clock is the time source of Limiter and Breaker, injected so tests and
// replays are deterministic.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns time.Now().
func (SystemClock) Now() time.Time { return time.Now() }

// Limiter allows at most Rate.N calls per fixed window of Rate.Per, the
// window starting at the first call after the previous one ended. It is safe
// for concurrent use (a recipe's reactions run in parallel).
type Limiter struct {
	rate  Rate
	clock Clock

	mu    sync.Mutex
	start time.Time
	count int
}

// NewLimiter returns a limiter for r; an unlimited r allows everything. A
// nil clock means SystemClock.
func NewLimiter(r Rate, c Clock) *Limiter {
	if c == nil {
		c = SystemClock{}
	}
	return &Limiter{rate: r, clock: c}
}

// Allow records one call and reports whether it is within the rate.
func (l *Limiter) Allow() bool {
	if l.rate.Unlimited() {
		return true
	}
	now := l.clock.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	// A clock that steps backwards keeps the current window: never reset early.
	if l.count == 0 || now.Sub(l.start) >= l.rate.Per {
		l.start, l.count = now, 0
	}
	if l.count >= l.rate.N {
		return false
	}
	l.count++
	return true
}

// Breaker is the disarm circuit breaker: it counts distinct targets (such as
// "pid:4242" or "ip:1.2.3.4") over a sliding window of Disarm.Per. A target
// seen within the window is always allowed again; a new target beyond
// MaxTargets is refused and trips the breaker, which then refuses every new
// target until Per has passed since the trip. Safe for concurrent use.
type Breaker struct {
	disarm Disarm
	clock  Clock

	mu        sync.Mutex
	seen      map[string]time.Time // target -> first allowed, within the window
	tripped   bool
	trippedAt time.Time
}

// NewBreaker returns a breaker for d; an off d allows everything. A nil
// clock means SystemClock.
func NewBreaker(d Disarm, c Clock) *Breaker {
	if c == nil {
		c = SystemClock{}
	}
	return &Breaker{disarm: d, clock: c, seen: map[string]time.Time{}}
}

// Allow records target and reports whether it may be acted on.
func (b *Breaker) Allow(target string) bool {
	ok, _ := b.Check(target)
	return ok
}

// Check is Allow that also reports whether this very call tripped the
// breaker, so the caller raises one alert per trip rather than one per refusal.
func (b *Breaker) Check(target string) (allowed, justTripped bool) {
	allowed, justTripped, _ = b.Hold(target)
	return allowed, justTripped
}

// Hold is Check that can be taken back: when the action does not happen after all (the
// safety floor refused the target, or it had already exited), release forgets the target
// again if this call counted it, so that only targets acted on count towards the breaker
// and a stream of refused targets cannot disarm a recipe.
func (b *Breaker) Hold(target string) (allowed, justTripped bool, release func()) {
	release = func() {}
	if b.disarm.Off() {
		return true, false, release
	}
	now := b.clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expire(now)
	if _, ok := b.seen[target]; ok {
		return true, false, release
	}
	if b.tripped {
		return false, false, release
	}
	if len(b.seen) >= b.disarm.MaxTargets {
		b.tripped, b.trippedAt = true, now
		return false, true, release
	}
	b.seen[target] = now
	return true, false, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if at, ok := b.seen[target]; ok && at.Equal(now) {
			delete(b.seen, target)
		}
	}
}

// Tripped reports whether the breaker is refusing new targets.
func (b *Breaker) Tripped() bool {
	if b.disarm.Off() {
		return false
	}
	now := b.clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expire(now)
	return b.tripped
}

// expire drops targets older than the window and closes the breaker once
// the window since the trip has passed. Called with mu held.
func (b *Breaker) expire(now time.Time) {
	for t, at := range b.seen {
		if now.Sub(at) >= b.disarm.Per {
			delete(b.seen, t)
		}
	}
	if b.tripped && now.Sub(b.trippedAt) >= b.disarm.Per {
		b.tripped = false
	}
}
