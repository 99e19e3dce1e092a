// Package lexpath cleans absolute paths lexically, without a copy when they are clean already:
// the sensors' paths nearly always are, and every file event is cleaned on its way in.
package lexpath

import "path"

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
// element and no trailing slash.
func IsClean(p string) bool {
	if p == "/" {
		return true
	}
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	for i := 0; i < len(p); { // p[i] is a slash
		j := i + 1
		for j < len(p) && p[j] != '/' {
			j++
		}
		switch p[i+1 : j] {
		case "", ".", "..":
			return false
		}
		i = j
	}
	return true
}
