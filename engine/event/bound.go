package event

import (
	"strconv"
	"unicode/utf8"
)

// Command lines are bounded on the wire. /proc allows 32 KiB of cmdline per process and the
// ancestry holds up to 64 processes, each written twice (background and its base alias): left
// whole, a chain of padded command lines makes every event megabytes long, and a burst of them
// rotates the file printer's older detections away. Matching and rate limits read the event
// before encoding, so they still see every byte; only what is printed and handed to reactions is
// cut, and a cut says how much it dropped.
const (
	// MaxCmdBytes bounds the triggering process's cmd, args, prev_args and envs, each, and
	// its argv in total.
	MaxCmdBytes = 4096
	// MaxAncestorCmdBytes bounds each ancestor's cmd and args.
	MaxAncestorCmdBytes = 1024
)

// cutMarker ends a cut string: how many bytes of the original are missing.
func cutMarker(dropped int) string { return "…[" + strconv.Itoa(dropped) + " bytes cut]" }

// bound returns s when it fits in n bytes, else its longest prefix ending on a character
// boundary that fits together with the marker saying how much was cut.
func bound(s string, n int) string {
	if len(s) <= n {
		return s
	}
	k := n - len(cutMarker(len(s)))
	if k < 0 {
		k = 0
	}
	for k > 0 && !utf8.RuneStart(s[k]) {
		k--
	}
	return s[:k] + cutMarker(len(s)-k)
}

// boundArgv keeps argv's leading arguments while they fit in n bytes in total; the first one
// that does not is cut and carries the marker for everything dropped, the rest are left out.
func boundArgv(argv []string, n int) []string {
	total := 0
	for _, a := range argv {
		total += len(a)
	}
	if total <= n {
		return argv
	}
	out := make([]string, 0, len(argv))
	used := 0
	for _, a := range argv {
		if used+len(a) <= n {
			out = append(out, a)
			used += len(a)
			continue
		}
		rest := total - used // bytes of a and of every later argument
		room := n - used
		k := room - len(cutMarker(rest))
		if k < 0 {
			k = 0
		}
		if k > len(a) {
			k = len(a)
		}
		for k > 0 && k < len(a) && !utf8.RuneStart(a[k]) {
			k--
		}
		return append(out, a[:k]+cutMarker(rest-k))
	}
	return out
}
