package store

import (
	"context"
	"database/sql"
	"fmt"
)

// migration is one ordered schema step. The database's PRAGMA user_version
// is the number of the last step applied; steps are never edited once
// released, only appended.
type migration struct {
	version int
	name    string
	stmts   []string
}

func migrations() []migration {
	return []migration{
		{1, "key-value data and lists", []string{
			`CREATE TABLE kv (
				id    INTEGER PRIMARY KEY AUTOINCREMENT, -- insertion order
				ns    TEXT NOT NULL,
				key   TEXT NOT NULL,
				value TEXT NOT NULL,
				UNIQUE (ns, key)
			) STRICT`,
			`CREATE INDEX kv_ns_id ON kv (ns, id)`,
			`CREATE TABLE list_items (
				id    INTEGER PRIMARY KEY AUTOINCREMENT,
				ns    TEXT NOT NULL,
				list  TEXT NOT NULL,
				value TEXT NOT NULL
			) STRICT`,
			`CREATE INDEX list_items_ns_list_id ON list_items (ns, list, id)`,
		}},
		{2, "network blocks", []string{
			`CREATE TABLE blocks (
				kind       TEXT NOT NULL CHECK (kind IN ('ip', 'cidr', 'domain')),
				value      TEXT NOT NULL,
				recipe     TEXT NOT NULL,
				created_ns INTEGER NOT NULL,
				expires_ns INTEGER NOT NULL, -- 0 = never
				PRIMARY KEY (kind, value)
			) STRICT`,
			`CREATE INDEX blocks_expires ON blocks (expires_ns)`,
		}},
		{3, "audit chain", []string{
			`CREATE TABLE audit (
				seq        INTEGER PRIMARY KEY,
				time_ns    INTEGER NOT NULL,
				recipe     TEXT NOT NULL,
				reaction   INTEGER NOT NULL,
				event_uuid TEXT NOT NULL,
				helper     TEXT NOT NULL,
				args       TEXT NOT NULL,
				result     TEXT NOT NULL,
				errno      TEXT NOT NULL,
				outcome    TEXT NOT NULL,
				mode       TEXT NOT NULL,
				prev       TEXT NOT NULL,
				hash       TEXT NOT NULL
			) STRICT`,
			`CREATE INDEX audit_recipe_seq ON audit (recipe, seq)`,
			// The head survives deletion of the newest rows, which the
			// chain alone cannot reveal.
			`CREATE TABLE audit_head (
				id   INTEGER PRIMARY KEY CHECK (id = 1),
				seq  INTEGER NOT NULL,
				hash TEXT NOT NULL
			) STRICT`,
		}},
		{4, "incidents", []string{
			`CREATE TABLE incidents (
				id         INTEGER PRIMARY KEY AUTOINCREMENT,
				time_ns    INTEGER NOT NULL,
				recipe     TEXT NOT NULL,
				event_uuid TEXT NOT NULL,
				importance TEXT NOT NULL,
				summary    TEXT NOT NULL,
				event      TEXT NOT NULL
			) STRICT`,
		}},
	}
}

func latestVersion() int {
	m := migrations()
	return m[len(m)-1].version
}

// migrate applies every step after the database's version up to target.
// A database newer than this binary is refused: its schema is unknown.
func migrate(ctx context.Context, db *sql.DB, target int) error {
	v, err := schemaVersion(ctx, db)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if v > latestVersion() {
		return fmt.Errorf("migrate: database schema version %d is newer than supported %d", v, latestVersion())
	}
	for _, m := range migrations() {
		if m.version <= v || m.version > target {
			continue
		}
		if err := applyMigration(ctx, db, m); err != nil {
			return fmt.Errorf("migrate to version %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

func schemaVersion(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// applyMigration runs one step and bumps user_version in the same
// transaction. The version is re-read under the write lock so that two
// processes opening the same old database apply each step once.
func applyMigration(ctx context.Context, db *sql.DB, m migration) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	v, err := schemaVersion(ctx, tx)
	if err != nil {
		return err
	}
	if v >= m.version {
		return nil
	}
	for _, stmt := range m.stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", m.version)); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
