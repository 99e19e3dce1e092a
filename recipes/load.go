package recipes

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// IsRecipeFile reports whether a directory entry name is a recipe file: *.yaml or *.yml, not
// hidden, not a policy (*.policy.yaml) and not a test (*.test.yaml).
func IsRecipeFile(name string) bool {
	if strings.HasPrefix(name, ".") {
		return false // editor leftovers, and Kubernetes' ..data links
	}
	ext := filepath.Ext(name)
	if ext != ".yaml" && ext != ".yml" {
		return false
	}
	stem := strings.TrimSuffix(name, ext)
	return !strings.HasSuffix(stem, ".policy") && !strings.HasSuffix(stem, ".test")
}

// LoadDir parses every recipe file directly inside dir (not in sub-directories), in name
// order. Names must be unique across the directory: a later duplicate is rejected. Each
// Recipe knows its File and Line.
func LoadDir(dir string) ([]*Recipe, []error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, []error{fmt.Errorf("read recipe directory %s: %w", dir, err)}
	}
	var names []string
	for _, e := range entries {
		if IsRecipeFile(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)

	var out []*Recipe
	var errs []error
	seen := map[string]*Recipe{}
	for _, n := range names {
		file := filepath.Join(dir, n)
		data, skip, err := readRecipeFile(file)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if skip {
			continue
		}
		rs, ferrs := Parse(file, data)
		errs = append(errs, ferrs...)
		for _, r := range rs {
			if first, dup := seen[r.Name]; dup {
				errs = append(errs, &Error{File: r.File, Line: r.nameLine, Recipe: r.Name, Field: "name",
					Msg: fmt.Sprintf("duplicate name (first defined at %s)", first.Where())})
				continue
			}
			seen[r.Name] = r
			out = append(out, r)
		}
	}
	return out, errs
}

// readRecipeFile reads a regular file (symlinks followed) of at most MaxFileSize bytes. It
// opens without blocking so that a FIFO planted in the directory cannot hang the loader, and
// checks the type on the open descriptor so that a swap after listing does not matter.
// Directories are skipped silently.
func readRecipeFile(file string) ([]byte, bool, error) {
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, fmt.Errorf("%s:1: open recipe file: %w", file, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, false, fmt.Errorf("%s:1: stat recipe file: %w", file, err)
	}
	if st.IsDir() {
		return nil, true, nil
	}
	if !st.Mode().IsRegular() {
		return nil, false, fmt.Errorf("%s:1: not a regular file (%s)", file, st.Mode().Type())
	}
	if st.Size() > MaxFileSize {
		return nil, false, fmt.Errorf("%s:1: file is %d bytes, over the %d byte limit", file, st.Size(), MaxFileSize)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, false, fmt.Errorf("%s:1: read recipe file: %w", file, err)
	}
	if len(data) > MaxFileSize {
		return nil, false, fmt.Errorf("%s:1: file grew over the %d byte limit while read", file, MaxFileSize)
	}
	return data, false, nil
}
