package lexpath

import (
	"path"
	"testing"
)

func TestClean(t *testing.T) {
	for _, p := range []string{"/", "/a", "/a/b", "//", "/a//b", "/a/./b", "/a/../b", "/a/", "/a/.", "/a/..",
		"/..", "/.", "/...", "/a/.b", "/a/..b/c", "/a/b./c", "rel", "rel/../x", "", "./x", "/a/b/"} {
		got := Clean(p)
		want := p
		if len(p) > 0 && p[0] == '/' {
			want = path.Clean(p)
		}
		if got != want {
			t.Errorf("Clean(%q) = %q, want %q", p, got, want)
		}
		if len(p) > 0 && p[0] == '/' && IsClean(p) != (path.Clean(p) == p) {
			t.Errorf("IsClean(%q) = %v, path.Clean gives %q", p, IsClean(p), path.Clean(p))
		}
	}
}

func FuzzClean(f *testing.F) {
	for _, s := range []string{"/", "/a/../b", "//x/./y/", "/.../..", "rel"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if len(p) > 0 && p[0] == '/' {
			if got, want := Clean(p), path.Clean(p); got != want {
				t.Fatalf("Clean(%q) = %q, path.Clean gives %q", p, got, want)
			}
			// Clean would hide a wrong "unclean": path.Clean then gives the same string.
			if IsClean(p) != (path.Clean(p) == p) {
				t.Fatalf("IsClean(%q) = %v, path.Clean gives %q", p, IsClean(p), path.Clean(p))
			}
		} else if got := Clean(p); got != p {
			t.Fatalf("Clean(%q) = %q: a relative path must be left alone", p, got)
		}
	})
}
