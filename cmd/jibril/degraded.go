package main

import (
	"context"
	"fmt"

	"github.com/jibril-rt/jibril/store"
)

// degradedNote says what the daemon does when its state directory or database cannot be used
// (read-only file system, full disk at start, a database it cannot open). Detection needs no
// state, effects do: an effect that cannot be audited must not happen, and a block that cannot
// be persisted would not survive a restart. So the daemon keeps detecting and printing, forces
// every reaction to dry-run (effects recorded, never performed; no kernel prevent either) and
// runs them against a store that refuses every call, so reactions that need their data fail
// visibly instead of silently.
const degradedNote = "state unavailable: detections continue, every reaction is forced to dry-run, " +
	"the data store, the audit trail and network block restore are disabled"

// unavailableStore is the data store and auditor of a daemon whose state is unusable: every
// call fails with the reason, so reactions see -1 and Errno() names it, and every audit row
// that could not be written is logged with its content by the sandbox.
type unavailableStore struct{ err error }

func (u unavailableStore) fail() error { return fmt.Errorf("state unavailable: %w", u.err) }

func (u unavailableStore) Get(context.Context, string, string) (string, bool, error) {
	return "", false, u.fail()
}
func (u unavailableStore) Set(context.Context, string, string, string) error { return u.fail() }
func (u unavailableStore) Delete(context.Context, string, string) (bool, error) {
	return false, u.fail()
}
func (u unavailableStore) Keys(context.Context, string) ([]string, error)   { return nil, u.fail() }
func (u unavailableStore) Values(context.Context, string) ([]string, error) { return nil, u.fail() }
func (u unavailableStore) Clear(context.Context, string) (int, error)       { return 0, u.fail() }
func (u unavailableStore) Size(context.Context, string) (int, error)        { return 0, u.fail() }
func (u unavailableStore) HasValue(context.Context, string, string) (bool, error) {
	return false, u.fail()
}
func (u unavailableStore) Push(context.Context, string, string, string) error { return u.fail() }
func (u unavailableStore) Pop(context.Context, string, string) (string, bool, error) {
	return "", false, u.fail()
}

// AppendAudit refuses the row; the caller logs it ("audit write failed") with the reason.
func (u unavailableStore) AppendAudit(_ context.Context, e store.AuditEntry) (store.AuditEntry, error) {
	return e, fmt.Errorf("%w: row not persisted: %s %s -> %s (%s)", u.fail(), e.Helper, e.Args, e.Result, e.Outcome)
}
