// Package builtin is jibril's built-in recipe library: recipe files grouped by theme, one
// capability policy and one deterministic test file per recipe, and the test fixtures, all
// embedded in the binary.
//
// Layout (the root of FS):
//
//	<theme>.yaml              recipe files (recipes.Parse)
//	<recipe>.policy.yaml      capability policy of one recipe (policy.Parse)
//	<recipe>.test.yaml        reaction tests of one recipe (SPEC §8, run by `jibril test`)
//	fixtures/*.json           events the tests refer to (SPEC §3 shape)
//
// Default modes: recipes that can only match mining software (crypto_miner_binary) run in
// enforce; every other recipe ships in dry-run, so that installing jibril never kills or blocks
// anything on a host by surprise. Each policy grants exactly what its reactions call (checked
// by this package's tests, kill scopes and IP-block lifetimes included).
//
// Correlation: the data store is one namespace per recipe and no helper reads another
// recipe's, so events are correlated inside one recipe that receives both kinds:
// dropper_write_then_exec (mechanism file_access_and_execution) records writes in /tmp,
// /var/tmp and /dev/shm and kills an exec of a recorded path within ten minutes.
package builtin

import (
	"embed"
	"io/fs"
)

//go:embed *.yaml fixtures/*.json
var files embed.FS

// FS returns the library: recipe, policy and test files at the root, fixtures under fixtures/.
// The embedded file system is read-only, so handing it out shares no mutable state.
func FS() fs.FS { return files }
