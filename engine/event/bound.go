package event

import (
	"strconv"
	"unicode/utf8"
)

// Events are bounded on the wire. Much of an event is the observed processes' own choosing:
// /proc allows 32 KiB of command line per process, paths run to 4 KiB (and a deep one makes a
// file tree of thousands of directories), the ancestry holds up to 64 processes, and background
// is written twice (its base alias). Left whole, a padded process chain or a deep directory makes
// every event about it megabytes long: a burst of them rotates the file printer's older
// detections away, and a shell reaction cannot even start (an environment string is at most
// 128 KiB). So encoding cuts in levels: the first bounds command lines, which is all a normal
// event ever needs; when the result is still over MaxEventBytes, the next levels cut every
// string harder, flatten the file tree and keep only the nearest ancestors. Matching and rate
// limits read the event before encoding, so they still see every byte; only what is printed
// and handed to reactions is cut, and each cut string ends with how many bytes it lost.
const (
	// MaxCmdBytes bounds the triggering process's cmd, args, prev_args and envs, each, and
	// its argv in total.
	MaxCmdBytes = 4096
	// MaxAncestorCmdBytes bounds each ancestor's cmd and args.
	MaxAncestorCmdBytes = 1024
	// MaxEventBytes is what an encoded event is cut to fit: well under the 128 KiB the kernel
	// allows one environment string (REACTION_DATA).
	MaxEventBytes = 64 << 10
	// MaxTreeDirs is how many directories background.files nests below "/": the innermost
	// ones, where the file is; outer ones are left out (each kept one has its full abs_path).
	MaxTreeDirs = 16
)

// cuts are the bounds of one encoding level; 0 leaves a string or list whole.
type cuts struct {
	cmd       int // the process's command lines (cmd, args, prev_args, envs, argv in total)
	ancestor  int // each ancestor's cmd, args and exe
	str       int // every other string the observed system chose: paths, cgroup, note, names
	treeDirs  int // directories nested below "/" in background.files
	ancestors int // nearest ancestors kept, the triggering process included
	names     int // names kept per peer
}

// levels returns the encoding levels, mildest first; the last one fits MaxEventBytes whatever
// the event holds (64 ancestors and every path at its longest).
func levels() []cuts {
	return []cuts{
		{cmd: MaxCmdBytes, ancestor: MaxAncestorCmdBytes, treeDirs: MaxTreeDirs},
		{cmd: 1024, ancestor: 128, str: 1024, treeDirs: 4},
		{cmd: 256, ancestor: 64, str: 256, treeDirs: 1, ancestors: 8, names: 4},
	}
}

// cutMarker ends a cut string: how many bytes of the original are missing.
func cutMarker(dropped int) string { return "…[" + strconv.Itoa(dropped) + " bytes cut]" }

// bound returns s when n is 0 or s fits in n bytes, else its longest prefix ending on a
// character boundary that fits together with the marker saying how much was cut.
func bound(s string, n int) string {
	if n == 0 || len(s) <= n {
		return s
	}
	k := max(n-len(cutMarker(len(s))), 0)
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
	if n == 0 || total <= n {
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
		k := min(max(n-used-len(cutMarker(rest)), 0), len(a))
		for k > 0 && k < len(a) && !utf8.RuneStart(a[k]) {
			k--
		}
		return append(out, a[:k]+cutMarker(rest-k))
	}
	return out
}

// boundNames keeps the first n names (all when n is 0), each bounded to c.str.
func boundNames(names []string, c cuts) []string {
	if c.names > 0 && len(names) > c.names {
		names = names[:c.names]
	}
	if c.str == 0 {
		return orEmpty(names)
	}
	out := make([]string, len(names))
	for i, s := range names {
		out[i] = bound(s, c.str)
	}
	return out
}
