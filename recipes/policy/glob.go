package policy

import (
	"errors"
	"strings"
	"unicode/utf8"
)

// MatchGlob reports whether path matches glob. Both must be absolute and
// clean (no "." or ".." segments, no doubled or trailing slash); anything
// else does not match. In glob, "*" matches any run of characters within one
// path segment, "?" exactly one character, and a segment that is exactly
// "**" matches zero or more whole segments. Every other character is literal.
func MatchGlob(glob, path string) bool {
	if !cleanAbs(path) || validateGlob(glob) != nil {
		return false
	}
	return matchSegments(splitPath(glob), splitPath(path))
}

// splitPath splits an absolute clean path into its segments; "/" has none.
func splitPath(p string) []string {
	p = strings.TrimPrefix(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// validateGlob checks what MatchGlob needs of a glob; the message is meant
// to follow a field name.
func validateGlob(g string) error {
	switch {
	case g == "":
		return errors.New("empty glob")
	case g[0] != '/':
		return errors.New("not absolute")
	case strings.IndexByte(g, 0) >= 0:
		return errors.New("contains a NUL byte")
	}
	for _, seg := range splitPath(g) {
		switch {
		case seg == "..":
			return errors.New(`contains ".."`)
		case seg == "." || seg == "":
			return errors.New(`not a clean path (no ".", "//" or trailing "/")`)
		case seg != "**" && strings.Contains(seg, "**"):
			return errors.New(`"**" must be a whole path segment`)
		}
	}
	return nil
}

// matchSegments matches path segments against glob segments where "**" is a
// wildcard over segments. It backtracks only to the last "**", which is
// enough because every other glob segment consumes exactly one path segment;
// that keeps hostile globs such as /**/**/**/x polynomial.
func matchSegments(glob, path []string) bool {
	gi, pi := 0, 0
	starG, starP := -1, 0
	for pi < len(path) {
		switch {
		case gi < len(glob) && glob[gi] == "**":
			starG, starP = gi, pi
			gi++
		case gi < len(glob) && matchSegment(glob[gi], path[pi]):
			gi++
			pi++
		case starG >= 0:
			starP++
			gi, pi = starG+1, starP
		default:
			return false
		}
	}
	for gi < len(glob) && glob[gi] == "**" {
		gi++
	}
	return gi == len(glob)
}

// matchSegment matches one segment against a pattern of literals, "*" and
// "?" with the same last-star backtracking, character by character (an
// invalid UTF-8 byte counts as one character).
func matchSegment(pat, s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(pat) {
			switch pat[pi] {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				_, w := utf8.DecodeRuneInString(s[si:])
				pi++
				si += w
				continue
			default:
				if pat[pi] == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		_, w := utf8.DecodeRuneInString(s[starS:])
		starS += w
		pi, si = starP+1, starS
	}
	for pi < len(pat) && pat[pi] == '*' {
		pi++
	}
	return pi == len(pat)
}
