package testrun

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/recipes/policy"
)

// Source is a tree of recipes, policies and tests.
type Source struct {
	FS   fs.FS  // the tree
	Name string // how the tree is shown in messages ("" = paths inside FS as they are)
	Dir  string // the tree on disk; "" when it is not (embedded): --update cannot write there
	File string // when set, the only test file to run (a path inside FS)
}

// DirSource returns the source for a path given on the command line: a directory (every
// *.test.yaml below it) or one test file (its directory is the tree).
func DirSource(p string) (Source, error) {
	st, err := os.Stat(p)
	if err != nil {
		return Source{}, fmt.Errorf("%s: %w", p, unwrapOS(err))
	}
	if st.IsDir() {
		return Source{FS: os.DirFS(p), Name: p, Dir: p}, nil
	}
	if !strings.HasSuffix(p, Suffix) {
		return Source{}, fmt.Errorf("%s: not a directory or a %s file", p, Suffix)
	}
	dir := filepath.Dir(p)
	return Source{FS: os.DirFS(dir), Name: dir, Dir: dir, File: filepath.Base(p)}, nil
}

func unwrapOS(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// shown is how a path inside the source appears in messages.
func (s Source) shown(p string) string {
	if s.Name == "" || s.Name == "." {
		return p
	}
	return filepath.Join(s.Name, filepath.FromSlash(p))
}

// Suite is one test file with its recipe and the recipe's policy.
type Suite struct {
	File   string // as shown in messages
	Recipe *recipes.Recipe
	Policy *policy.Policy
	Cases  []*Case

	src  Source
	path string // inside src.FS
}

// Load finds every test file of the sources, parses it strictly and pairs it with its recipe
// (by name: first among the recipe files of the test file's directory, then anywhere in the
// tree) and the recipe's policy (<name>.policy.yaml next to the recipe file, else the default
// policy defaultPolicy: strict or jibril). Every problem is returned, each naming a file and
// a line; suites with problems are left out.
func Load(srcs []Source, defaultPolicy string) ([]*Suite, []error) {
	if _, err := policy.Default(defaultPolicy, "x"); err != nil {
		return nil, []error{err}
	}
	var out []*Suite
	var errs []error
	for _, src := range srcs {
		files, err := testFiles(src)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		idx := &recipeIndex{src: src, parsed: map[string]parsedFile{}}
		for _, f := range files {
			s, ferrs := loadSuite(src, idx, f, defaultPolicy)
			errs = append(errs, ferrs...)
			if s != nil {
				out = append(out, s)
			}
		}
	}
	return out, errs
}

func testFiles(src Source) ([]string, error) {
	if src.File != "" {
		return []string{src.File}, nil
	}
	var out []string
	err := fs.WalkDir(src.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("walk %s: %w", src.shown(p), unwrapOS(err))
		}
		if strings.HasPrefix(d.Name(), ".") && p != "." {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if !d.IsDir() && strings.HasSuffix(d.Name(), Suffix) {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}

func loadSuite(src Source, idx *recipeIndex, file, defaultPolicy string) (*Suite, []error) {
	shown := src.shown(file)
	name, line, cases, errs := parseFile(src.FS, file, shown)
	if name == "" {
		return nil, errs
	}
	r, rerr := idx.find(path.Dir(file), name)
	if rerr != "" {
		errs = append(errs, &Error{File: shown, Line: line, Field: "recipe", Msg: rerr})
		return nil, errs
	}
	for _, c := range cases {
		if c.Reaction >= len(r.Recipe.Reactions) {
			errs = append(errs, &Error{File: shown, Line: c.reactionLine, Field: "reaction",
				Msg: fmt.Sprintf("case %q: recipe %s has %d reaction(s), no reaction %d", c.Name, name, len(r.Recipe.Reactions), c.Reaction)})
		}
	}
	if len(cases) > 0 && len(r.Recipe.Reactions) == 0 {
		errs = append(errs, &Error{File: shown, Line: line, Field: "recipe", Msg: fmt.Sprintf("recipe %s has no reactions to test", name)})
	}
	pol, perr := idx.policy(r.path, name, defaultPolicy)
	if perr != nil {
		errs = append(errs, perr)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return &Suite{File: shown, Recipe: r.Recipe, Policy: pol, Cases: cases, src: src, path: file}, nil
}

// recipeIndex parses recipe files of one source on demand.
type recipeIndex struct {
	src    Source
	parsed map[string]parsedFile
	all    []string // every recipe file of the tree, once listed
}

type parsedFile struct {
	recipes []*recipes.Recipe
	errs    []error
}

type foundRecipe struct {
	Recipe *recipes.Recipe
	path   string // recipe file inside the source
}

func (x *recipeIndex) parse(p string) parsedFile {
	if pf, ok := x.parsed[p]; ok {
		return pf
	}
	var pf parsedFile
	data, err := readLimited(x.src.FS, p)
	if err != nil {
		pf.errs = []error{fmt.Errorf("%s:1: %v", x.src.shown(p), err)}
	} else {
		pf.recipes, pf.errs = recipes.Parse(x.src.shown(p), data)
	}
	x.parsed[p] = pf
	return pf
}

// find looks for the recipe named name, in dir first, then in the whole tree. It returns a
// message when the recipe is missing, invalid or ambiguous.
func (x *recipeIndex) find(dir, name string) (foundRecipe, string) {
	entries, err := fs.ReadDir(x.src.FS, dir)
	if err != nil {
		return foundRecipe{}, fmt.Sprintf("read %s: %v", x.src.shown(dir), unwrapOS(err))
	}
	var local []string
	for _, e := range entries {
		if !e.IsDir() && recipes.IsRecipeFile(e.Name()) {
			local = append(local, path.Join(dir, e.Name()))
		}
	}
	if r, msg, ok := x.search(local, name); ok {
		return r, msg
	}
	if x.all == nil {
		x.all = []string{}
		_ = fs.WalkDir(x.src.FS, ".", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if strings.HasPrefix(d.Name(), ".") && p != "." {
				if d.IsDir() {
					return fs.SkipDir
				}
				return nil
			}
			if !d.IsDir() && recipes.IsRecipeFile(d.Name()) {
				x.all = append(x.all, p)
			}
			return nil
		})
	}
	if r, msg, ok := x.search(x.all, name); ok {
		return r, msg
	}
	return foundRecipe{}, fmt.Sprintf("no recipe named %q in the recipe files of %s", name, x.src.shown("."))
}

// search reports (found, message, true) when name is defined or rejected in files.
func (x *recipeIndex) search(files []string, name string) (foundRecipe, string, bool) {
	var hits []foundRecipe
	var bad []string
	for _, f := range files {
		pf := x.parse(f)
		for _, r := range pf.recipes {
			if r.Name == name {
				hits = append(hits, foundRecipe{Recipe: r, path: f})
			}
		}
		for _, e := range pf.errs {
			var re *recipes.Error
			if errors.As(e, &re) && re.Recipe == name {
				bad = append(bad, e.Error())
			}
		}
	}
	switch {
	case len(hits) > 1:
		return foundRecipe{}, fmt.Sprintf("recipe %q is defined in %s and %s", name, hits[0].Recipe.Where(), hits[1].Recipe.Where()), true
	case len(hits) == 1:
		return hits[0], "", true
	case len(bad) > 0:
		return foundRecipe{}, fmt.Sprintf("recipe %q does not load: %s", name, strings.Join(bad, "; ")), true
	}
	return foundRecipe{}, "", false
}

// policy loads <name>.policy.yaml next to the recipe file, else the default policy.
func (x *recipeIndex) policy(recipeFile, name, defaultPolicy string) (*policy.Policy, error) {
	p := path.Join(path.Dir(recipeFile), name+policy.FileSuffix)
	data, err := readLimited(x.src.FS, p)
	if errors.Is(err, fs.ErrNotExist) {
		return policy.Default(defaultPolicy, name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s:1: read policy: %v", x.src.shown(p), unwrapOS(err))
	}
	return policy.Parse(x.src.shown(p), data, policy.DefaultLimits())
}
