package sandbox

import (
	"bytes"
	"strings"
)

// sections is an event split into its top-level members without decoding them. The reaction
// gets `data` as an object whose members are parsed on first use (JSON.parse of one member
// costs what its keys cost, and most reactions read two or three of the ten), and `base`,
// Jibril's alias of `background`, is the very same object instead of a second copy.
type sections struct {
	shape string   // member names joined by 0x1f (never in a name: control characters are refused); an alias of background is written "\x01base"
	spans [][2]int // byte range of each member's value in the event
}

// splitSections scans the top level of a JSON object. ok is false when the event must be
// handed over whole instead: not an object, a member name with an escape, a control character, a non-ASCII byte
// or the name __proto__, a repeated name, or anything malformed at the top level. The values
// themselves are not validated here (the caller knows the event is valid JSON).
func splitSections(b []byte) (s sections, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return s, false
	}
	i = skipSpace(b, i+1)
	var names []string
	if i < len(b) && b[i] == '}' {
		return s, skipSpace(b, i+1) == len(b)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return s, false
		}
		end := i + 1
		for end < len(b) && b[end] != '"' {
			if b[end] == '\\' || b[end] < 0x20 || b[end] >= 0x80 {
				return s, false
			}
			end++
		}
		if end >= len(b) {
			return s, false
		}
		name := string(b[i+1 : end])
		if name == "" || name == "__proto__" {
			return s, false
		}
		for _, n := range names {
			if n == name {
				return s, false
			}
		}
		i = skipSpace(b, end+1)
		if i >= len(b) || b[i] != ':' {
			return s, false
		}
		start := skipSpace(b, i+1)
		stop, good := skipValue(b, start)
		if !good {
			return s, false
		}
		names = append(names, name)
		s.spans = append(s.spans, [2]int{start, stop})
		i = skipSpace(b, stop)
		if i >= len(b) {
			return s, false
		}
		if b[i] == '}' {
			if skipSpace(b, i+1) != len(b) {
				return s, false
			}
			break
		}
		if b[i] != ',' {
			return s, false
		}
		i = skipSpace(b, i+1)
	}
	bg, base := -1, -1
	for k, n := range names {
		switch n {
		case "background":
			bg = k
		case "base":
			base = k
		}
	}
	if bg >= 0 && base >= 0 {
		v := b[s.spans[base][0]:s.spans[base][1]]
		want := b[s.spans[bg][0]:s.spans[bg][1]]
		if bytes.HasPrefix(v, []byte(`{"background":`)) && bytes.HasSuffix(v, []byte("}")) &&
			bytes.Equal(v[len(`{"background":`):len(v)-1], want) {
			names[base] = "\x01base"
		}
	}
	s.shape = strings.Join(names, "\x1f")
	return s, true
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index of the quote that closes the string whose contents start at i:
// the first quote preceded by an even number of backslashes (IndexByte jumps over the text).
func stringEnd(b []byte, i int) (int, bool) {
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b), false
		}
		q, n := i+j, 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q, true
		}
		i = q + 1
	}
}

// skipValue returns the end of the JSON value starting at i: balanced brackets, strings with
// their escapes, and scalars up to the next delimiter.
func skipValue(b []byte, i int) (int, bool) {
	if i >= len(b) {
		return i, false
	}
	depth := 0
	for i < len(b) {
		switch c := b[i]; c {
		case '"':
			end, ok := stringEnd(b, i+1)
			if !ok {
				return len(b), false
			}
			i = end + 1
		case '{', '[':
			depth++
			i++
		case '}', ']':
			if depth == 0 {
				return i, i > 0
			}
			depth--
			i++
		case ',':
			if depth == 0 {
				return i, true
			}
			i++
		default:
			if depth == 0 && (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
				return i, true
			}
			i++
		}
		if depth == 0 && i > 0 && (b[i-1] == '"' || b[i-1] == '}' || b[i-1] == ']') {
			return i, true
		}
	}
	return i, depth == 0
}
