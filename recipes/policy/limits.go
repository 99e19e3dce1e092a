package policy

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
	"time"
)

// parseDuration accepts Go duration syntax ("200ms", "1m30s"); the unit is
// mandatory so that "200" is not silently read as nanoseconds.
func parseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (want a number with a unit: ms, s, m, h)", s)
	}
	return d, nil
}

// formatDuration prints d without Go's trailing zero units ("1m", not "1m0s").
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

type sizeUnit struct {
	suffix string
	shift  uint
}

// sizeUnits lists the accepted binary units, largest first.
func sizeUnits() []sizeUnit { return []sizeUnit{{"GiB", 30}, {"MiB", 20}, {"KiB", 10}} }

// parseSize accepts plain bytes ("33554432") or a whole number of KiB, MiB or GiB.
func parseSize(s string) (uint64, error) {
	bad := fmt.Errorf("bad size %q (want bytes, or a whole number of KiB, MiB or GiB)", s)
	num, shift := s, uint(0)
	for _, u := range sizeUnits() {
		if strings.HasSuffix(s, u.suffix) {
			num, shift = strings.TrimSuffix(s, u.suffix), u.shift
			break
		}
	}
	if num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, bad
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil || n > (^uint64(0))>>shift {
		return 0, bad
	}
	return n << shift, nil
}

// formatSize prints n in the largest binary unit that divides it exactly.
func formatSize(n uint64) string {
	for _, u := range sizeUnits() {
		if n != 0 && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d%s", n>>u.shift, u.suffix)
		}
	}
	return strconv.FormatUint(n, 10)
}

// parseRate accepts "N/s", "N/m" or "N/h" with N > 0.
func parseRate(s string) (Rate, error) {
	bad := fmt.Errorf("bad rate %q (want N/s, N/m or N/h with N > 0)", s)
	num, unit, ok := strings.Cut(s, "/")
	if !ok || num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return Rate{}, bad
	}
	n, err := strconv.Atoi(num)
	if err != nil || n <= 0 {
		return Rate{}, bad
	}
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	if per == 0 {
		return Rate{}, bad
	}
	return Rate{N: n, Per: per}, nil
}

// fracGreater reports whether a/b > c/d for non-negative a, c and positive b, d,
// exactly (128-bit cross products, no overflow).
func fracGreater(a, b, c, d uint64) bool {
	hi1, lo1 := bits.Mul64(a, d)
	hi2, lo2 := bits.Mul64(c, b)
	return hi1 > hi2 || (hi1 == hi2 && lo1 > lo2)
}

// rateWider reports whether r allows more invocations on average than the
// ceiling. An unlimited ceiling is never exceeded; an unlimited r exceeds
// any finite ceiling.
func rateWider(r, ceiling Rate) bool {
	if ceiling.Unlimited() {
		return false
	}
	if r.Unlimited() {
		return true
	}
	return fracGreater(uint64(r.N), uint64(r.Per), uint64(ceiling.N), uint64(ceiling.Per))
}

// disarmWider reports whether d lets more targets through than the ceiling:
// a bigger burst (MaxTargets) or a higher sustained ratio. An off ceiling is
// never exceeded; an off d exceeds any active ceiling.
func disarmWider(d, ceiling Disarm) bool {
	if ceiling.Off() {
		return false
	}
	if d.Off() {
		return true
	}
	return d.MaxTargets > ceiling.MaxTargets ||
		fracGreater(uint64(d.MaxTargets), uint64(d.Per), uint64(ceiling.MaxTargets), uint64(ceiling.Per))
}
