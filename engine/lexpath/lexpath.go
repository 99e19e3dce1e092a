// Package lexpath cleans absolute paths lexically, without a copy when they are clean already:
// the sensors' paths nearly always are, and every file event is cleaned on its way in.
package lexpath

import (
	"path"
	"strings"
)

// Clean resolves "//", "/./" and "/../" in an absolute path as path.Clean does, so that a path
// read from user memory cannot dodge an exact match by spelling. A relative path is returned as
// it is: only its process knows what it is relative to.
func Clean(p string) string {
	if len(p) == 0 || p[0] != '/' || IsClean(p) {
		return p
	}
	return path.Clean(p)
}

// IsClean reports whether an absolute path is as path.Clean leaves it: no empty, "." or ".."
// element and no trailing slash. It searches for "//" and "/." with the library's vectorised
// substring search rather than walking the path byte by byte: every file event passes here.
func IsClean(p string) bool {
	if p == "/" {
		return true
	}
	if len(p) == 0 || p[0] != '/' || p[len(p)-1] == '/' || strings.Contains(p, "//") {
		return false
	}
	// Every "." or ".." element starts with "/."; other names may too (".cache", "..x").
	for i := strings.Index(p, "/."); i >= 0; {
		rest := p[i+2:]
		if rest == "" || rest[0] == '/' || (rest[0] == '.' && (len(rest) == 1 || rest[1] == '/')) {
			return false
		}
		j := strings.Index(rest, "/.")
		if j < 0 {
			break
		}
		i += 2 + j
	}
	return true
}
