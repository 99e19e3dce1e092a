// Package store is jibril's SQLite persistence: per-recipe key-value data and
// LIFO lists, network blocks with expiry, a tamper-evident audit chain and
// incidents.
//
// Concurrency: one writer, many readers. All writes go through a *sql.DB
// limited to one connection whose transactions start with BEGIN IMMEDIATE, so
// writers inside this process queue in Go and writers in other processes
// (the CLI) wait on busy_timeout instead of failing with "database is
// locked". Reads use a separate pool of query_only connections; WAL lets
// them run while a write is in progress.
//
// Durability: WAL with synchronous=NORMAL. A transaction is appended to the
// WAL file with write(2) before COMMIT returns, so once a method returns nil
// the data lives in the kernel's page cache and survives kill -9 of the
// daemon. Only a power loss or kernel crash can roll back the newest
// transactions (never corrupt the database, and never break the audit chain,
// whose head is committed with each row). FULL would add an fsync per write
// on the reaction path for protection against power loss only; the daemon's
// threat is its own crash, so NORMAL is the chosen trade-off.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	_ "github.com/mattn/go-sqlite3" // registers the "sqlite3" driver
)

// busyTimeoutMS bounds how long a statement waits for another process's
// lock before failing.
const busyTimeoutMS = 10000

// readPoolSize caps concurrent read connections.
const readPoolSize = 4

// ErrInvalid marks a rejected argument (bad name, oversized value, bad JSON).
var ErrInvalid = errors.New("invalid argument")

// Store is an open jibril database. It is safe for concurrent use.
type Store struct {
	path string
	w    *sql.DB // exactly one connection: serializes every write
	r    *sql.DB // query_only read pool
}

// Open opens (creating if needed) the database at path, migrates its schema
// and returns a Store. The parent directory is created 0700, the file 0600.
func Open(ctx context.Context, path string) (*Store, error) {
	abs, err := checkPath(path)
	if err != nil {
		return nil, fmt.Errorf("store: open %q: %w", path, err)
	}
	if err := prepareFile(abs); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	s, err := openPools(ctx, abs)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	if err := migrate(ctx, s.w, latestVersion()); err != nil {
		s.Close()
		return nil, fmt.Errorf("store: open %s: %w", abs, err)
	}
	return s, nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// Close closes both pools. SQLite checkpoints the WAL when the last
// connection closes.
func (s *Store) Close() error {
	rerr := s.r.Close()
	werr := s.w.Close()
	if err := errors.Join(rerr, werr); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

func checkPath(path string) (string, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return "", fmt.Errorf("%w: path must name a file", ErrInvalid)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("resolve path: %w", err)
	}
	return abs, nil
}

// prepareFile creates the parent directory and the file with owner-only
// permissions before SQLite sees them (SQLite gives -wal and -shm the main
// file's mode). A symlink or non-regular file is refused.
func prepareFile(abs string) error {
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%w: not a regular file", ErrInvalid)
	}
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("chmod file: %w", err)
	}
	return nil
}

// dsn builds a file: URI so that any byte in the path is escaped and the
// driver's parameters are not mistaken for part of the name.
func dsn(abs string, params url.Values) string {
	u := url.URL{Scheme: "file", Path: abs, RawQuery: params.Encode()}
	return u.String()
}

func writerDSN(abs string) string {
	return dsn(abs, url.Values{
		"_journal_mode": {"WAL"},
		"_synchronous":  {"NORMAL"},
		"_busy_timeout": {fmt.Sprint(busyTimeoutMS)},
		"_txlock":       {"immediate"},
		"_foreign_keys": {"1"},
	})
}

func readerDSN(abs string) string {
	return dsn(abs, url.Values{
		"_query_only":   {"1"},
		"_busy_timeout": {fmt.Sprint(busyTimeoutMS)},
		"_txlock":       {"deferred"},
	})
}

func openPools(ctx context.Context, abs string) (*Store, error) {
	w, err := sql.Open("sqlite3", writerDSN(abs))
	if err != nil {
		return nil, fmt.Errorf("open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	if err := checkWAL(ctx, w); err != nil {
		w.Close()
		return nil, err
	}
	r, err := sql.Open("sqlite3", readerDSN(abs))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open readers: %w", err)
	}
	r.SetMaxOpenConns(readPoolSize)
	r.SetMaxIdleConns(readPoolSize)
	return &Store{path: abs, w: w, r: r}, nil
}

// checkWAL fails closed when the file system cannot do WAL (SQLite silently
// keeps the old journal mode there, which would break the reader model).
func checkWAL(ctx context.Context, w *sql.DB) error {
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %q, want wal", mode)
	}
	return nil
}

// writeTx runs fn in one BEGIN IMMEDIATE transaction on the writer.
func (s *Store) writeTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// readTx runs fn in one read transaction, giving it a consistent snapshot.
func (s *Store) readTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin read: %w", err)
	}
	defer tx.Rollback()
	return fn(tx)
}

// queryStrings runs a query returning one text column.
func queryStrings(ctx context.Context, db *sql.DB, query string, args ...any) ([]string, error) {
	rows, err := db.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
