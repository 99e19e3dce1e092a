package engine

import (
	"path"
	"strings"

	"github.com/jibril-rt/jibril/engine/lexpath"
)

// fileIndex finds the recipes that may want a file event without asking each of them: their
// cheap filters (match.Prefilter) keyed by base name, full path and directory. A file storm
// asks it for every event, so a lookup costs a few map reads whatever the number of recipes.
type fileIndex struct {
	bases, paths, dirs keyed     // dirs: an event under the directory, or on it
	always             []*Loaded // no cheap filter (a bare regex): asked every time
}

// keyed maps keys to recipes and remembers the keys' lengths: most lookups of a path and its
// ancestors are for a length no key has, and are answered without hashing.
type keyed struct {
	m    map[string][]*Loaded
	lens [4]uint64 // bit n: a key of n bytes; bit 255: 255 bytes or more
}

func (k *keyed) add(key string, l *Loaded) {
	if k.m == nil {
		k.m = map[string][]*Loaded{}
	}
	k.m[key] = append(k.m[key], l)
	n := min(len(key), 255)
	k.lens[n/64] |= 1 << (n % 64)
}

func (k *keyed) get(key string) []*Loaded {
	n := min(len(key), 255)
	if k.lens[n/64]&(1<<(n%64)) == 0 {
		return nil
	}
	return k.m[key]
}

func newFileIndex(ls []*Loaded) fileIndex {
	var x fileIndex
	for _, l := range ls {
		if !l.Recipe.Mechanism.MatchesFiles() {
			continue
		}
		pf := l.prefilter
		if pf == nil {
			x.always = append(x.always, l)
			continue
		}
		for _, b := range pf.Bases {
			x.bases.add(b, l)
		}
		for _, p := range pf.Paths {
			x.paths.add(p, l)
		}
		for _, d := range pf.DirPrefixes {
			x.dirs.add(d, l)
		}
	}
	return x
}

// wants reports whether a recipe matches a file event on p with the actions of mask, leaving
// out its process conditions: the candidates the index finds decide with Matcher.WantsFile.
func (x *fileIndex) wants(p string, mask uint32) bool {
	if p == "" {
		return false
	}
	p = lexpath.Clean(p)
	ask := func(ls []*Loaded) bool {
		for _, l := range ls {
			if l.Recipe.Enabled && l.matcher.WantsFile(p, mask) {
				return true
			}
		}
		return false
	}
	// path.Base as the matchers take it: a relative path keeps a trailing slash ("dir/").
	if ask(x.always) || ask(x.paths.get(p)) || ask(x.bases.get(path.Base(p))) {
		return true
	}
	if !strings.HasPrefix(p, "/") {
		return false // directory entries are absolute
	}
	if ask(x.dirs.get(p)) {
		return true
	}
	for i := len(p) - 1; i > 0; i-- { // every ancestor, then the root
		if p[i] == '/' && ask(x.dirs.get(p[:i])) {
			return true
		}
	}
	return ask(x.dirs.get("/"))
}
