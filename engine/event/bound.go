package event

import (
	"path"
	"slices"
	"strconv"
	"unicode/utf8"
)

// Events are bounded on the wire. Much of an event is the observed processes' own choosing:
// /proc allows 32 KiB of command line and 4096 arguments per process, paths run to 4 KiB (and
// a deep one makes a file tree of many directories, each with its full path), the ancestry
// holds up to 64 processes, DNS answers name peers, and background is written twice (its base
// alias). Left whole, a padded process chain or a deep directory makes every event about it
// hundreds of kilobytes: a burst of them rotates the file printer's older detections away, and
// a shell reaction cannot even start (an environment string is at most 128 KiB).
//
// So encoding cuts in levels. The first bounds command lines, which is all a real event ever
// needs. While the result is over MaxEventBytes, the next levels cut harder: command lines and
// other strings, the file tree flattened below "/", the nearest ancestors only, and lists that
// only a decoded event makes long. Paths are cut by the last three levels only, because
// reactions act on them (hash, stat, correlate) and a cut path names no file: first the copies
// in background, then the other paths, and last the executable and the file themselves. Sizes
// are counted as encoding/json writes them, escapes included, and each cut string ends with
// how many bytes it lost.
//
// Matching and rate limits read the event before encoding, so they see every byte; only what
// is printed and handed to reactions is cut. The last level fits MaxEventBytes for any event
// the engine builds; a decoded event (a test fixture) may still exceed it with strings the
// engine never takes from the observed system, such as metadata.
const (
	// MaxCmdBytes bounds the triggering process's cmd, args, prev_args and envs, each, and
	// its argv in total.
	MaxCmdBytes = 4096
	// MaxAncestorCmdBytes bounds each ancestor's cmd and args.
	MaxAncestorCmdBytes = 1024
	// MaxEventBytes is what an encoded event is cut to fit: well under the 128 KiB the kernel
	// allows one environment string (REACTION_DATA).
	MaxEventBytes = 64 << 10
	// MaxTreeDirs is how many directories background.files nests below "/": the outermost
	// ones; the file's own directory hangs from the last of them (each has its full abs_path).
	MaxTreeDirs = 16
)

// cuts are the bounds of one encoding level, in encoded bytes or entries; 0 leaves whole.
// Every level is at least as tight as the one before it in every field, so that an event
// decoded from an encoding encodes to the same bytes again.
type cuts struct {
	cmd       int // the process's cmd, args, prev_args, envs, and argv in total
	argc      int // entries of argv, a closing marker included
	ancestor  int // each ancestor's cmd and args
	str       int // other strings the observed system names: comm, cgroup, peer names
	bgPath    int // paths in background (repeated by its base alias): ancestors' exe, the tree
	path      int // the other paths: prev_exe, loader, file.dir, file.basename, the note
	subject   int // the paths reactions act on first: process.exe and file.file
	treeDirs  int // directories nested below "/" in background.files before it is flattened
	ancestors int // nearest ancestors kept, the triggering process included
	names     int // names kept per peer
	width     int // entries of lists only a decoded event makes long (tree, pairs, ports, ...)
}

// levels returns the encoding levels, mildest first. Paths are cut last, and the paths
// reactions act on last of all: the background's copies, then the other paths, then the
// executable and the file.
func levels() [6]cuts {
	l3 := cuts{cmd: 256, argc: 16, ancestor: 64, str: 128, bgPath: 256, treeDirs: 1, ancestors: 8, names: 2, width: 1}
	l4 := l3
	l4.path = 512
	l5 := l4
	l5.subject = 1024
	return [6]cuts{
		{cmd: MaxCmdBytes, ancestor: MaxAncestorCmdBytes, treeDirs: MaxTreeDirs},
		{cmd: 1024, argc: 256, ancestor: 128, str: 1024, treeDirs: 1, names: 4},
		{cmd: 256, argc: 32, ancestor: 64, str: 256, treeDirs: 1, ancestors: 16, names: 4, width: 16},
		l3, l4, l5,
	}
}

// cutMarker ends a cut string: how many bytes of the original are missing.
func cutMarker(dropped int) string { return "…[" + strconv.Itoa(dropped) + " bytes cut]" }

// runeLen is how many bytes encoding/json writes for the rune r, read as size bytes of a
// string: escapes (HTML-safe ones included) and U+FFFD for an invalid byte.
func runeLen(r rune, size int) int {
	switch {
	case r == utf8.RuneError && size == 1, r < 0x20, r == '<', r == '>', r == '&', r == '\u2028', r == '\u2029':
		return 6 // \uXXXX (a few control characters get a two-byte escape: an upper bound)
	case r == '"', r == '\\':
		return 2
	}
	return size
}

// encLen is the length of s as encoding/json writes it, without the quotes.
func encLen(s string) int {
	n := 0
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		n += runeLen(r, size)
		i += size
	}
	return n
}

// prefix returns the length of the longest prefix of s, ending between characters, that
// encodes in room bytes.
func prefix(s string, room int) int {
	k, used := 0, 0
	for k < len(s) {
		r, size := utf8.DecodeRuneInString(s[k:])
		if used += runeLen(r, size); used > room {
			break
		}
		k += size
	}
	return k
}

// bound returns s when n is 0 or s encodes in n bytes, else its longest prefix that encodes in
// n bytes together with the marker saying how much was cut.
func bound(s string, n int) string {
	if n == 0 || len(s) <= n/6 || encLen(s) <= n {
		return s
	}
	k := prefix(s, n-len(cutMarker(len(s))))
	return s[:k] + cutMarker(len(s)-k)
}

// boundArgv returns argv when it encodes in n bytes (each argument counted with its quotes
// and comma) and has at most argc entries (0: any number). Otherwise it keeps the leading
// arguments that fit with room left for the marker; the next one is cut (possibly to
// nothing) and ends with the marker for everything dropped, and the rest are left out.
func boundArgv(argv []string, n, argc int) []string {
	if n == 0 {
		return argv
	}
	total, enc := 0, 0
	for _, a := range argv {
		total += len(a)
		enc += encLen(a) + 3
	}
	if enc <= n && (argc == 0 || len(argv) <= argc) {
		return argv
	}
	budget := n - 3 - len(cutMarker(total)) // what the arguments may use besides the marker
	used := 0
	for i, a := range argv {
		if (argc == 0 || i < argc-1) && used+encLen(a)+3 <= budget {
			used += encLen(a) + 3
			continue
		}
		rest := 0
		for _, b := range argv[i:] {
			rest += len(b)
		}
		k := prefix(a, budget-used)
		return append(argv[:i:i], a[:k]+cutMarker(rest-k)) // a copy: argv is the event's
	}
	return argv // not reached: the whole of argv fitted
}

// firstN returns the first n entries of s (all when n is 0).
func firstN[T any](s []T, n int) []T {
	if n > 0 && len(s) > n {
		return s[:n]
	}
	return s
}

// boundNames keeps the first c.names names, each bounded to c.str.
func boundNames(names []string, c cuts) []string {
	names = firstN(names, c.names)
	out := make([]string, len(names))
	for i, s := range names {
		out[i] = bound(s, c.str)
	}
	return out
}

// FileTree is background.files holding the one file at p. The directories are prefixes of p
// (no copies), and a path deeper than MaxTreeDirs keeps its outer levels and hangs the file's
// directory from the last of them, as encoding keeps them: a hostile path of thousands of
// directories costs no more than a short one.
func FileTree(p string, actions []string) Files {
	leaf := FSFile{AbsPath: p, BaseName: path.Base(p), Actions: slices.Clone(actions)}
	dir := path.Dir(p)
	cur := FSDir{AbsPath: dir, BaseName: path.Base(dir), Files: []FSFile{leaf}}
	if dir == "/" {
		return Files{Root: cur}
	}
	// The directories between "/" and dir, outermost first, at most MaxTreeDirs of them.
	var outer []string
	for i := 1; i < len(dir) && len(outer) < MaxTreeDirs; i++ {
		if dir[i] == '/' {
			outer = append(outer, dir[:i])
		}
	}
	for i := len(outer) - 1; i >= 0; i-- {
		cur = FSDir{AbsPath: outer[i], BaseName: path.Base(outer[i]), Dirs: []FSDir{cur}}
	}
	return Files{Root: FSDir{AbsPath: "/", BaseName: "/", Dirs: []FSDir{cur}}}
}
