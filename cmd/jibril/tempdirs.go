package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/jibril-rt/jibril/engine"
	"github.com/jibril-rt/jibril/recipes/policy"
)

// makeRecipeTempRoots creates <temp root>/<recipe>, 0700, for every loaded recipe whose policy
// grants tempdir: CreateTempDir makes its directories there and the live file system guard
// creates no missing parent on the real root, so without it every CreateTempDir of the daemon
// failed. Recipe names are validated by the loader (letters, digits, '_', '-', '.', never a
// leading dot), so each is one path component.
func makeRecipeTempRoots(log *slog.Logger, tempRoot string, s *engine.Set) {
	for _, l := range s.Recipes {
		if !l.Recipe.Enabled || !l.Policy.Granted(policy.CapTempdir) {
			continue
		}
		dir := filepath.Join(tempRoot, l.Recipe.Name)
		if filepath.Dir(dir) != filepath.Clean(tempRoot) {
			continue
		}
		if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			log.Warn("recipe temp directory: CreateTempDir will fail", "recipe", l.Recipe.Name, "dir", dir, "err", err)
		}
	}
}
