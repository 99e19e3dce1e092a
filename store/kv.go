package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

func checkKey(ns, key string) error {
	if err := checkName("namespace", ns); err != nil {
		return err
	}
	return checkLen("key", key, MaxKeyLen)
}

// Get returns the value of key in namespace ns and whether it exists.
func (s *Store) Get(ctx context.Context, ns, key string) (string, bool, error) {
	if err := checkKey(ns, key); err != nil {
		return "", false, fmt.Errorf("store: get: %w", err)
	}
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM kv WHERE ns = ? AND key = ?`, ns, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("store: get %s/%q: %w", ns, key, err)
	}
	return v, true, nil
}

// Set stores value under key. Overwriting keeps the key's original position
// in Keys order.
func (s *Store) Set(ctx context.Context, ns, key, value string) error {
	if err := checkKey(ns, key); err != nil {
		return fmt.Errorf("store: set: %w", err)
	}
	if err := checkLen("value", value, MaxValueLen); err != nil {
		return fmt.Errorf("store: set: %w", err)
	}
	_, err := s.w.ExecContext(ctx, `INSERT INTO kv (ns, key, value) VALUES (?, ?, ?)
		ON CONFLICT (ns, key) DO UPDATE SET value = excluded.value`, ns, key, value)
	if err != nil {
		return fmt.Errorf("store: set %s/%q: %w", ns, key, err)
	}
	return nil
}

// Delete removes key and reports whether it existed.
func (s *Store) Delete(ctx context.Context, ns, key string) (bool, error) {
	if err := checkKey(ns, key); err != nil {
		return false, fmt.Errorf("store: delete: %w", err)
	}
	n, err := execCount(ctx, s.w, `DELETE FROM kv WHERE ns = ? AND key = ?`, ns, key)
	if err != nil {
		return false, fmt.Errorf("store: delete %s/%q: %w", ns, key, err)
	}
	return n > 0, nil
}

// Keys returns the namespace's keys in the order they were first set
// (a key deleted and set again moves to the end).
func (s *Store) Keys(ctx context.Context, ns string) ([]string, error) {
	return s.column(ctx, "keys", ns, `SELECT key FROM kv WHERE ns = ? ORDER BY id`)
}

// Values returns the namespace's values in Keys order.
func (s *Store) Values(ctx context.Context, ns string) ([]string, error) {
	return s.column(ctx, "values", ns, `SELECT value FROM kv WHERE ns = ? ORDER BY id`)
}

func (s *Store) column(ctx context.Context, what, ns, query string) ([]string, error) {
	if err := checkName("namespace", ns); err != nil {
		return nil, fmt.Errorf("store: %s: %w", what, err)
	}
	out, err := queryStrings(ctx, s.r, query, ns)
	if err != nil {
		return nil, fmt.Errorf("store: %s %s: %w", what, ns, err)
	}
	return out, nil
}

// Clear removes every key and every list of the namespace and returns the
// number of keys removed.
func (s *Store) Clear(ctx context.Context, ns string) (int, error) {
	if err := checkName("namespace", ns); err != nil {
		return 0, fmt.Errorf("store: clear: %w", err)
	}
	var n int64
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		if n, err = execCount(ctx, tx, `DELETE FROM kv WHERE ns = ?`, ns); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `DELETE FROM list_items WHERE ns = ?`, ns)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: clear %s: %w", ns, err)
	}
	return int(n), nil
}

// Size returns the number of keys in the namespace.
func (s *Store) Size(ctx context.Context, ns string) (int, error) {
	if err := checkName("namespace", ns); err != nil {
		return 0, fmt.Errorf("store: size: %w", err)
	}
	var n int
	if err := s.r.QueryRowContext(ctx, `SELECT count(*) FROM kv WHERE ns = ?`, ns).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: size %s: %w", ns, err)
	}
	return n, nil
}

// HasValue reports whether some key of the namespace holds value.
func (s *Store) HasValue(ctx context.Context, ns, value string) (bool, error) {
	if err := checkName("namespace", ns); err != nil {
		return false, fmt.Errorf("store: has value: %w", err)
	}
	var ok bool
	err := s.r.QueryRowContext(ctx,
		`SELECT EXISTS (SELECT 1 FROM kv WHERE ns = ? AND value = ?)`, ns, value).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("store: has value %s: %w", ns, err)
	}
	return ok, nil
}

// Namespaces returns, sorted, every namespace holding a key or a list item.
func (s *Store) Namespaces(ctx context.Context) ([]string, error) {
	out, err := queryStrings(ctx, s.r,
		`SELECT ns FROM kv UNION SELECT ns FROM list_items ORDER BY ns`)
	if err != nil {
		return nil, fmt.Errorf("store: namespaces: %w", err)
	}
	return out, nil
}

type execer interface {
	ExecContext(context.Context, string, ...any) (sql.Result, error)
}

// execCount runs a statement and returns the number of rows it changed.
func execCount(ctx context.Context, db execer, query string, args ...any) (int64, error) {
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
