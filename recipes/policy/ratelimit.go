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
	seen      map[string]*held // targets counted within the window
	tripped   bool
	trippedAt time.Time
}

// held is a counted target: when it was first allowed, how many actions on it are still
// undecided (Hold), and whether one of them acted. A target nobody acted on is forgotten
// when its last holder settles.
type held struct {
	at      time.Time
	holders int
	acted   bool
}

// NewBreaker returns a breaker for d; an off d allows everything. A nil
// clock means SystemClock.
func NewBreaker(d Disarm, c Clock) *Breaker {
	if c == nil {
		c = SystemClock{}
	}
	return &Breaker{disarm: d, clock: c, seen: map[string]*held{}}
}

// Allow records target and reports whether it may be acted on.
func (b *Breaker) Allow(target string) bool {
	ok, _ := b.Check(target)
	return ok
}

// Check is Allow that also reports whether this very call tripped the
// breaker, so the caller raises one alert per trip rather than one per refusal.
func (b *Breaker) Check(target string) (allowed, justTripped bool) {
	allowed, justTripped, settle := b.Hold(target)
	settle(true)
	return allowed, justTripped
}

// Hold is Check for an action that may not happen after all (the safety floor refuses
// its target, or the target has already exited). settle reports the outcome: acted, the
// target counts for the window like any other; not acted, and no other holder of the same
// target acted or is still deciding, the target is forgotten, so that only targets acted
// on count and a stream of refused ones cannot disarm a recipe. settle must be called
// once; it does nothing when the call was refused.
func (b *Breaker) Hold(target string) (allowed, justTripped bool, settle func(acted bool)) {
	settle = func(bool) {}
	if b.disarm.Off() {
		return true, false, settle
	}
	now := b.clock.Now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.expire(now)
	h, ok := b.seen[target]
	if !ok {
		if b.tripped {
			return false, false, settle
		}
		if len(b.seen) >= b.disarm.MaxTargets {
			b.tripped, b.trippedAt = true, now
			return false, true, settle
		}
		h = &held{at: now}
		b.seen[target] = h
	}
	h.holders++
	return true, false, func(acted bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		h.holders--
		h.acted = h.acted || acted
		if h.holders == 0 && !h.acted && b.seen[target] == h {
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
	for t, h := range b.seen {
		if now.Sub(h.at) >= b.disarm.Per {
			delete(b.seen, t)
		}
	}
	if b.tripped && now.Sub(b.trippedAt) >= b.disarm.Per {
		b.tripped = false
	}
}
