package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

func checkList(ns, list string) error {
	if err := checkName("namespace", ns); err != nil {
		return err
	}
	return checkLen("list", list, MaxNameLen)
}

// Push appends value to the namespace's list ("" is the default list).
func (s *Store) Push(ctx context.Context, ns, list, value string) error {
	if err := checkList(ns, list); err != nil {
		return fmt.Errorf("store: push: %w", err)
	}
	if err := checkLen("value", value, MaxValueLen); err != nil {
		return fmt.Errorf("store: push: %w", err)
	}
	_, err := s.w.ExecContext(ctx,
		`INSERT INTO list_items (ns, list, value) VALUES (?, ?, ?)`, ns, list, value)
	if err != nil {
		return fmt.Errorf("store: push %s/%q: %w", ns, list, err)
	}
	return nil
}

// Pop removes and returns the most recently pushed value of the list; false
// when the list is empty.
func (s *Store) Pop(ctx context.Context, ns, list string) (string, bool, error) {
	if err := checkList(ns, list); err != nil {
		return "", false, fmt.Errorf("store: pop: %w", err)
	}
	var v string
	var found bool
	err := s.writeTx(ctx, func(tx *sql.Tx) error {
		var err error
		v, found, err = popTx(ctx, tx, ns, list)
		return err
	})
	if err != nil {
		return "", false, fmt.Errorf("store: pop %s/%q: %w", ns, list, err)
	}
	return v, found, nil
}

func popTx(ctx context.Context, tx *sql.Tx, ns, list string) (string, bool, error) {
	var id int64
	var v string
	err := tx.QueryRowContext(ctx, `SELECT id, value FROM list_items
		WHERE ns = ? AND list = ? ORDER BY id DESC LIMIT 1`, ns, list).Scan(&id, &v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM list_items WHERE id = ?`, id); err != nil {
		return "", false, err
	}
	return v, true, nil
}
