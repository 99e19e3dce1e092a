package match

import (
	"hash/maphash"
	"sync"

	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/recipes"
)

// DefaultMaxKeys bounds the distinct keys a Limiter remembers per times kind.
const DefaultMaxKeys = 1 << 16

// Limiter applies a recipe's times limits: at most max detections per key, for every kind
// given. Keys: times_per_proc pid and start time; times_per_exe process.exe;
// times_per_parent_proc the parent's pid and start time; times_per_parent_exe the parent's
// exe; times_per_cmd process.cmd; times_per_full_ancestry the chain of ancestry executables;
// times_in_total one counter. An event counts only when every limit allows it.
//
// Counters live for the Limiter's lifetime (Reset clears them). A kind that reaches MaxKeys
// distinct keys forgets them all, so a flood of unique values can cost memory only up to the
// bound, and errs toward reporting again rather than staying silent.
//
// A Limiter is safe for concurrent use. The zero of *Limiter (nil) allows everything.
type Limiter struct {
	mu      sync.Mutex
	seed    maphash.Seed
	maxKeys int
	limits  []limit
}

type limit struct {
	kind   recipes.TimesKind
	max    int
	counts map[uint64]int
}

// NewLimiter builds a limiter for a recipe's times. Unknown kinds are ignored (Parse rejects
// them); with no limits Allow always returns true.
func NewLimiter(times []recipes.Times) *Limiter {
	l := &Limiter{seed: maphash.MakeSeed(), maxKeys: DefaultMaxKeys}
	for _, t := range times {
		switch t.Kind {
		case recipes.TimesPerProc, recipes.TimesPerExe, recipes.TimesPerParentProc,
			recipes.TimesPerParentExe, recipes.TimesPerCmd, recipes.TimesPerFullAncestry,
			recipes.TimesInTotal:
		default:
			continue
		}
		if t.Max < 1 {
			continue
		}
		l.limits = append(l.limits, limit{kind: t.Kind, max: t.Max, counts: map[uint64]int{}})
	}
	return l
}

// SetMaxKeys changes the per-kind key bound (at least 1).
func (l *Limiter) SetMaxKeys(n int) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.maxKeys = max(n, 1)
}

// Allow counts the event and reports whether it is within every limit. A refused event is
// not counted.
func (l *Limiter) Allow(e *event.Event) bool {
	if l == nil || len(l.limits) == 0 {
		return true
	}
	var buf [8]uint64
	keys := buf[:0]
	for i := range l.limits {
		keys = append(keys, l.key(l.limits[i].kind, e))
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.limits {
		if l.limits[i].counts[keys[i]] >= l.limits[i].max {
			return false
		}
	}
	for i := range l.limits {
		lim := &l.limits[i]
		if _, ok := lim.counts[keys[i]]; !ok && len(lim.counts) >= l.maxKeys {
			clear(lim.counts)
		}
		lim.counts[keys[i]]++
	}
	return true
}

// Reset forgets every count.
func (l *Limiter) Reset() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range l.limits {
		clear(l.limits[i].counts)
	}
}

func (l *Limiter) key(kind recipes.TimesKind, e *event.Event) uint64 {
	if e == nil {
		return 0
	}
	var h maphash.Hash
	h.SetSeed(l.seed)
	sep := func() { h.WriteByte(0) }
	switch kind {
	case recipes.TimesPerProc:
		writeInt(&h, int64(e.Process.PID))
		sep()
		h.WriteString(e.Process.Start)
	case recipes.TimesPerExe:
		h.WriteString(e.Process.Exe)
	case recipes.TimesPerParentProc:
		if par := e.Parent(); par != nil {
			writeInt(&h, int64(par.PID))
			sep()
			h.WriteString(par.Start)
		} else {
			writeInt(&h, int64(e.Process.PPID))
		}
	case recipes.TimesPerParentExe:
		if par := e.Parent(); par != nil {
			h.WriteString(par.Exe)
		}
	case recipes.TimesPerCmd:
		h.WriteString(e.Process.Cmd)
	case recipes.TimesPerFullAncestry:
		for _, a := range e.Ancestors() {
			h.WriteString(a.Exe)
			sep()
		}
		h.WriteString(e.Process.Exe)
	case recipes.TimesInTotal:
		return 0
	}
	return h.Sum64()
}

func writeInt(h *maphash.Hash, v int64) {
	var b [8]byte
	for i := range b {
		b[i] = byte(v >> (8 * i))
	}
	h.Write(b[:])
}
