package store

import (
	"context"
	"database/sql"
	"fmt"
)

// VerifyAudit walks the whole chain in one snapshot and reports the first
// problem: a missing seq (row deleted), a prev link that does not match the
// previous row's hash (rows deleted, inserted or reordered), a hash that does
// not match the row's fields (row edited), or a head record that disagrees
// with the newest row (newest rows deleted or replaced). A tampered chain is
// a report, not an error; errors are failures to read.
func (s *Store) VerifyAudit(ctx context.Context) (AuditReport, error) {
	var rep AuditReport
	err := s.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		rep, err = verifyTx(ctx, tx)
		return err
	})
	if err != nil {
		return AuditReport{}, fmt.Errorf("store: verify audit: %w", err)
	}
	return rep, nil
}

func verifyTx(ctx context.Context, tx *sql.Tx) (AuditReport, error) {
	c := chainCheck{rep: AuditReport{OK: true}}
	rows, err := tx.QueryContext(ctx, `SELECT `+auditColumns+` FROM audit ORDER BY seq`)
	if err != nil {
		return AuditReport{}, err
	}
	defer rows.Close()
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return AuditReport{}, err
		}
		c.row(e)
	}
	if err := rows.Err(); err != nil {
		return AuditReport{}, err
	}
	seq, hash, ok, err := readHead(ctx, tx)
	if err != nil {
		return AuditReport{}, err
	}
	c.head(seq, hash, ok)
	return c.rep, nil
}

// chainCheck accumulates the verification state; only the first problem is
// reported, but every row is counted.
type chainCheck struct {
	rep  AuditReport
	last int64  // seq of the previous row
	prev string // hash of the previous row
}

func (c *chainCheck) fail(seq int64, format string, args ...any) {
	if !c.rep.OK {
		return
	}
	c.rep.OK, c.rep.FirstBad = false, seq
	c.rep.Reason = fmt.Sprintf("seq %d: ", seq) + fmt.Sprintf(format, args...)
}

func (c *chainCheck) row(e AuditEntry) {
	c.rep.Rows++
	want := c.last + 1
	switch {
	case e.Seq > want:
		c.fail(want, "missing (row deleted)")
	case e.Seq < want:
		c.fail(e.Seq, "out of sequence (row inserted)")
	case e.Prev != c.prev:
		c.fail(e.Seq, "prev mismatch (chain broken: row deleted, inserted or reordered)")
	case AuditHash(e) != e.Hash:
		c.fail(e.Seq, "hash mismatch (row edited)")
	}
	c.last, c.prev = e.Seq, e.Hash
}

func (c *chainCheck) head(seq int64, hash string, ok bool) {
	switch {
	case !ok && c.rep.Rows > 0:
		c.fail(c.last, "head record missing (newest rows cannot be vouched for)")
	case !ok:
	case seq > c.last:
		c.fail(c.last+1, "missing (head records seq %d: newest rows deleted)", seq)
	case seq < c.last:
		c.fail(seq+1, "beyond head seq %d (row added outside the store)", seq)
	case hash != c.prev:
		c.fail(seq, "head hash mismatch (newest row replaced)")
	}
}
