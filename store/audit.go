package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// AuditEntry is one row of the audit chain: an effect a helper did, would
// have done, or was refused.
type AuditEntry struct {
	Seq       int64     // assigned by AppendAudit, 1..n
	Time      time.Time // UTC, nanoseconds kept
	Recipe    string
	Reaction  int
	EventUUID string
	Helper    string // e.g. "KillCurrent", "shell", "disarm"
	Args      string // JSON array text
	Result    string // JSON text
	Errno     string
	Outcome   string // "done" | "would" | "denied" | "refused" | "disarmed" | "failed"
	Mode      string // "enforce" | "dry-run" | ...
	Prev      string // hex sha256 of the previous entry ("" for the first)
	Hash      string // hex sha256 over Prev and a canonical, unambiguous encoding of every field above
}

// AuditFilter selects audit rows: Recipe "" means every recipe, Limit 0 or
// less means no limit. Rows come in ascending Seq.
type AuditFilter struct {
	Recipe   string
	AfterSeq int64
	Limit    int
}

// AuditReport is the result of VerifyAudit. FirstBad is 0 when OK.
type AuditReport struct {
	Rows     int64
	OK       bool
	FirstBad int64
	Reason   string
}

// auditDomain separates this hash from any other use of sha256 over
// similar bytes and versions the encoding.
const auditDomain = "jibril audit v1\x00"

// AuditHash computes an entry's hash from Prev and every field but Hash.
// Integers are 8-byte big-endian, strings are length-prefixed, so no two
// distinct entries encode to the same bytes.
func AuditHash(e AuditEntry) string {
	h := sha256.New()
	io.WriteString(h, auditDomain)
	putInt(h, e.Seq)
	putInt(h, e.Time.UnixNano())
	putStr(h, e.Recipe)
	putInt(h, int64(e.Reaction))
	for _, s := range []string{e.EventUUID, e.Helper, e.Args, e.Result, e.Errno, e.Outcome, e.Mode, e.Prev} {
		putStr(h, s)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func putInt(h hash.Hash, v int64) {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	h.Write(b[:])
}

func putStr(h hash.Hash, s string) {
	putInt(h, int64(len(s)))
	io.WriteString(h, s)
}

func validOutcome(o string) bool {
	switch o {
	case "done", "would", "denied", "refused", "disarmed", "failed":
		return true
	}
	return false
}

// normalizeAudit validates an entry before it is chained: a zero Time
// becomes now, empty Args "[]" and empty Result "null".
func normalizeAudit(e AuditEntry) (AuditEntry, error) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if _, err := toNanos("time", e.Time); err != nil {
		return e, err
	}
	e.Time = e.Time.Round(0).UTC() // drop the monotonic reading; it is not stored
	if !validOutcome(e.Outcome) {
		return e, fmt.Errorf("%w: outcome %q", ErrInvalid, e.Outcome)
	}
	if err := checkName("helper", e.Helper); err != nil {
		return e, err
	}
	for _, f := range []struct{ name, v string }{
		{"recipe", e.Recipe}, {"event uuid", e.EventUUID}, {"errno", e.Errno}, {"mode", e.Mode},
	} {
		if err := checkLen(f.name, f.v, MaxNameLen); err != nil {
			return e, err
		}
	}
	var err error
	if e.Args, err = checkJSON("args", e.Args, "[]", true); err != nil {
		return e, err
	}
	e.Result, err = checkJSON("result", e.Result, "null", false)
	return e, err
}

// AppendAudit chains e after the newest entry and stores it together with
// the new head in one transaction. It returns e with Seq, Prev and Hash set.
func (s *Store) AppendAudit(ctx context.Context, e AuditEntry) (AuditEntry, error) {
	e, err := normalizeAudit(e)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("store: append audit: %w", err)
	}
	err = s.writeTx(ctx, func(tx *sql.Tx) error {
		seq, prev, err := auditHeadForAppend(ctx, tx)
		if err != nil {
			return err
		}
		e.Seq, e.Prev = seq+1, prev
		e.Hash = AuditHash(e)
		return insertAudit(ctx, tx, e)
	})
	if err != nil {
		return AuditEntry{}, fmt.Errorf("store: append audit: %w", err)
	}
	return e, nil
}

// auditHeadForAppend returns the head, refusing to start a new chain over
// existing rows when the head record is gone.
func auditHeadForAppend(ctx context.Context, tx *sql.Tx) (int64, string, error) {
	seq, hash, ok, err := readHead(ctx, tx)
	if err != nil || ok {
		return seq, hash, err
	}
	var n int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM audit`).Scan(&n); err != nil {
		return 0, "", fmt.Errorf("count rows: %w", err)
	}
	if n > 0 {
		return 0, "", fmt.Errorf("audit head missing while %d rows exist (tampered)", n)
	}
	return 0, "", nil
}

func readHead(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (seq int64, hash string, ok bool, err error) {
	err = q.QueryRowContext(ctx, `SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", false, nil
	}
	if err != nil {
		return 0, "", false, fmt.Errorf("read head: %w", err)
	}
	return seq, hash, true, nil
}

func insertAudit(ctx context.Context, tx *sql.Tx, e AuditEntry) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO audit (seq, time_ns, recipe, reaction,
		event_uuid, helper, args, result, errno, outcome, mode, prev, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, e.Time.UnixNano(), e.Recipe, e.Reaction, e.EventUUID, e.Helper,
		e.Args, e.Result, e.Errno, e.Outcome, e.Mode, e.Prev, e.Hash)
	if err != nil {
		return fmt.Errorf("insert seq %d: %w", e.Seq, err)
	}
	_, err = tx.ExecContext(ctx, `INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?)
		ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`, e.Seq, e.Hash)
	if err != nil {
		return fmt.Errorf("update head: %w", err)
	}
	return nil
}

const auditColumns = `seq, time_ns, recipe, reaction, event_uuid, helper, args, result,
	errno, outcome, mode, prev, hash`

func scanAudit(rows *sql.Rows) (AuditEntry, error) {
	var e AuditEntry
	var ns int64
	err := rows.Scan(&e.Seq, &ns, &e.Recipe, &e.Reaction, &e.EventUUID, &e.Helper,
		&e.Args, &e.Result, &e.Errno, &e.Outcome, &e.Mode, &e.Prev, &e.Hash)
	e.Time = time.Unix(0, ns).UTC()
	return e, err
}

// ListAudit returns entries matching f in ascending Seq.
func (s *Store) ListAudit(ctx context.Context, f AuditFilter) ([]AuditEntry, error) {
	query := `SELECT ` + auditColumns + ` FROM audit WHERE seq > ? ORDER BY seq LIMIT ?`
	args := []any{f.AfterSeq, sqlLimit(f.Limit)}
	if f.Recipe != "" {
		query = `SELECT ` + auditColumns + ` FROM audit WHERE recipe = ? AND seq > ? ORDER BY seq LIMIT ?`
		args = append([]any{f.Recipe}, args...)
	}
	rows, err := s.r.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list audit: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list audit: %w", err)
	}
	return out, nil
}
