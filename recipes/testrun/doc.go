// Package testrun runs deterministic reaction tests (SPEC §8): `<recipe>.test.yaml` files
// next to recipes, each case running one reaction of the recipe once, under the recipe's
// policy, in a hermetic World (recorded effects, fixture-only files, in-memory store, fixed
// clock and seed), and comparing what happened with what the case expects. The file format
// and every decision it makes are described in docs/TESTING.md.
package testrun
