package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func sampleEntry(i int) AuditEntry {
	return AuditEntry{
		Time:      time.Date(2026, 3, 4, 5, 6, 7, 123456789+i, time.UTC),
		Recipe:    fmt.Sprintf("recipe-%d", i%3),
		Reaction:  i % 2,
		EventUUID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i),
		Helper:    "KillCurrent",
		Args:      fmt.Sprintf(`[%d, "x"]`, i),
		Result:    `{"ok":true}`,
		Errno:     "",
		Outcome:   "done",
		Mode:      "enforce",
	}
}

// appendN appends n sample entries and returns them as stored.
func appendN(t *testing.T, s *Store, n int) []AuditEntry {
	t.Helper()
	out := make([]AuditEntry, 0, n)
	for i := 1; i <= n; i++ {
		e, err := s.AppendAudit(context.Background(), sampleEntry(i))
		if err != nil {
			t.Fatalf("AppendAudit %d: %v", i, err)
		}
		out = append(out, e)
	}
	return out
}

func sameEntry(a, b AuditEntry) bool {
	ta, tb := a.Time, b.Time
	a.Time, b.Time = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb) && ta.Location() == time.UTC && tb.Location() == time.UTC
}

func TestAppendAuditChains(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	rep, err := s.VerifyAudit(ctx)
	if err != nil || rep != (AuditReport{OK: true}) {
		t.Fatalf("VerifyAudit on empty chain = %+v, %v", rep, err)
	}
	got := appendN(t, s, 5)
	for i, e := range got {
		want := sampleEntry(i + 1)
		if e.Seq != int64(i+1) {
			t.Errorf("entry %d Seq = %d", i, e.Seq)
		}
		wantPrev := ""
		if i > 0 {
			wantPrev = got[i-1].Hash
		}
		if e.Prev != wantPrev || len(e.Hash) != 64 || e.Hash != AuditHash(e) {
			t.Errorf("entry %d link: prev %q hash %q", i, e.Prev, e.Hash)
		}
		want.Seq, want.Prev, want.Hash = e.Seq, e.Prev, e.Hash
		if !sameEntry(e, want) {
			t.Errorf("entry %d = %+v, want %+v", i, e, want)
		}
	}
	listed, err := s.ListAudit(ctx, AuditFilter{})
	if err != nil || len(listed) != len(got) {
		t.Fatalf("ListAudit = %d entries, %v", len(listed), err)
	}
	for i := range got {
		if !sameEntry(listed[i], got[i]) {
			t.Errorf("listed %d = %+v, want %+v", i, listed[i], got[i])
		}
	}
	rep, err = s.VerifyAudit(ctx)
	if err != nil || rep != (AuditReport{Rows: 5, OK: true}) {
		t.Errorf("VerifyAudit = %+v, %v", rep, err)
	}
}

func TestListAuditFilter(t *testing.T) {
	s := openTest(t)
	appendN(t, s, 10) // recipes cycle recipe-1, recipe-2, recipe-0
	cases := []struct {
		f    AuditFilter
		want []int64
	}{
		{AuditFilter{}, []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
		{AuditFilter{Limit: 3}, []int64{1, 2, 3}},
		{AuditFilter{AfterSeq: 8}, []int64{9, 10}},
		{AuditFilter{AfterSeq: 2, Limit: 2}, []int64{3, 4}},
		{AuditFilter{Recipe: "recipe-1"}, []int64{1, 4, 7, 10}},
		{AuditFilter{Recipe: "recipe-1", AfterSeq: 4, Limit: 1}, []int64{7}},
		{AuditFilter{Recipe: "nope"}, []int64{}},
		{AuditFilter{AfterSeq: 10}, []int64{}},
	}
	for _, c := range cases {
		got, err := s.ListAudit(context.Background(), c.f)
		if err != nil {
			t.Fatalf("ListAudit(%+v): %v", c.f, err)
		}
		seqs := []int64{}
		for _, e := range got {
			seqs = append(seqs, e.Seq)
		}
		if fmt.Sprint(seqs) != fmt.Sprint(c.want) {
			t.Errorf("ListAudit(%+v) seqs = %v, want %v", c.f, seqs, c.want)
		}
	}
}

func TestAuditHashCoversEveryField(t *testing.T) {
	base := sampleEntry(1)
	base.Seq, base.Prev = 7, strings.Repeat("ab", 32)
	h := AuditHash(base)
	mutations := map[string]func(*AuditEntry){
		"Seq":       func(e *AuditEntry) { e.Seq++ },
		"Time":      func(e *AuditEntry) { e.Time = e.Time.Add(time.Nanosecond) },
		"Recipe":    func(e *AuditEntry) { e.Recipe += "x" },
		"Reaction":  func(e *AuditEntry) { e.Reaction++ },
		"EventUUID": func(e *AuditEntry) { e.EventUUID += "x" },
		"Helper":    func(e *AuditEntry) { e.Helper += "x" },
		"Args":      func(e *AuditEntry) { e.Args += " " },
		"Result":    func(e *AuditEntry) { e.Result += " " },
		"Errno":     func(e *AuditEntry) { e.Errno = "EPERM" },
		"Outcome":   func(e *AuditEntry) { e.Outcome = "would" },
		"Mode":      func(e *AuditEntry) { e.Mode = "dry-run" },
		"Prev":      func(e *AuditEntry) { e.Prev = "" },
		// Moving bytes between neighbouring fields must change the hash.
		"boundary": func(e *AuditEntry) { e.Recipe, e.EventUUID = e.Recipe+e.EventUUID[:1], e.EventUUID[1:] },
	}
	for name, mutate := range mutations {
		e := base
		mutate(&e)
		if AuditHash(e) == h {
			t.Errorf("changing %s did not change the hash", name)
		}
	}
	e := base
	e.Hash = "anything"
	if AuditHash(e) != h {
		t.Error("Hash field must not feed its own hash")
	}
}

func TestAppendAuditNormalizesAndRejects(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	e, err := s.AppendAudit(ctx, AuditEntry{Helper: "disarm", Outcome: "disarmed",
		Time: time.Date(2026, 1, 1, 0, 0, 0, 1, time.FixedZone("X", 3600))})
	if err != nil {
		t.Fatal(err)
	}
	if e.Args != "[]" || e.Result != "null" || e.Time.Location() != time.UTC || e.Time.Nanosecond() != 1 {
		t.Errorf("normalized entry = %+v", e)
	}
	e, err = s.AppendAudit(ctx, AuditEntry{Helper: "shell", Outcome: "would"})
	if err != nil || time.Since(e.Time) > time.Hour || e.Time.IsZero() {
		t.Errorf("zero Time not filled: %+v, %v", e, err)
	}
	bad := map[string]AuditEntry{
		"unknown outcome":   {Helper: "x", Outcome: "ok"},
		"empty helper":      {Outcome: "done"},
		"args not JSON":     {Helper: "x", Outcome: "done", Args: "[1,"},
		"args not array":    {Helper: "x", Outcome: "done", Args: `{"a":1}`},
		"result not JSON":   {Helper: "x", Outcome: "done", Result: "ok"},
		"time out of range": {Helper: "x", Outcome: "done", Time: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)},
		"long recipe":       {Helper: "x", Outcome: "done", Recipe: strings.Repeat("r", MaxNameLen+1)},
		"huge args":         {Helper: "x", Outcome: "done", Args: `["` + strings.Repeat("a", MaxValueLen) + `"]`},
	}
	for name, b := range bad {
		if _, err := s.AppendAudit(ctx, b); !errors.Is(err, ErrInvalid) ||
			!strings.HasPrefix(err.Error(), "store: append audit: ") {
			t.Errorf("%s: AppendAudit error = %v, want ErrInvalid", name, err)
		}
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil || rep != (AuditReport{Rows: 2, OK: true}) {
		t.Errorf("VerifyAudit = %+v, %v (rejected entries must not be stored)", rep, err)
	}
}

// swapRows exchanges every column but seq between two rows.
func swapRows(t *testing.T, db *sql.DB, a, b int64) {
	t.Helper()
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	cols := "time_ns, recipe, reaction, event_uuid, helper, args, result, errno, outcome, mode, prev, hash"
	mustExec(t, tx, `CREATE TEMP TABLE swap AS SELECT * FROM audit WHERE seq IN (?, ?)`, a, b)
	mustExec(t, tx, `UPDATE audit SET (`+cols+`) = (SELECT `+cols+` FROM swap
		WHERE swap.seq = CASE audit.seq WHEN ? THEN ? ELSE ? END) WHERE seq IN (?, ?)`, a, b, a, a, b)
	mustExec(t, tx, `DROP TABLE swap`)
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
}

// editAndRehash edits a row and recomputes its own hash, as a careful
// attacker would; only the next row's prev link can expose it.
func editAndRehash(t *testing.T, db *sql.DB, entries []AuditEntry, seq int64) {
	t.Helper()
	e := entries[seq-1]
	e.Outcome = "would"
	e.Hash = AuditHash(e)
	mustExec(t, db, `UPDATE audit SET outcome = ?, hash = ? WHERE seq = ?`, e.Outcome, e.Hash, seq)
}

// appendForged adds a correctly chained row 11 behind the store's back,
// without moving the head.
func appendForged(t *testing.T, db *sql.DB, entries []AuditEntry) {
	t.Helper()
	e := sampleEntry(11)
	e.Seq, e.Prev = 11, entries[len(entries)-1].Hash
	e.Hash = AuditHash(e)
	mustExec(t, db, `INSERT INTO audit (`+auditColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
		e.Seq, e.Time.UnixNano(), e.Recipe, e.Reaction, e.EventUUID, e.Helper, e.Args,
		e.Result, e.Errno, e.Outcome, e.Mode, e.Prev, e.Hash)
}

func TestVerifyAuditDetectsTampering(t *testing.T) {
	cases := []struct {
		name     string
		tamper   func(t *testing.T, db *sql.DB, entries []AuditEntry)
		firstBad int64
		reason   string
	}{
		{"edit a field", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `UPDATE audit SET recipe = 'innocent' WHERE seq = 7`)
		}, 7, "seq 7: hash mismatch (row edited)"},
		{"edit the time", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `UPDATE audit SET time_ns = time_ns + 1 WHERE seq = 3`)
		}, 3, "seq 3: hash mismatch (row edited)"},
		{"edit the first row", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `UPDATE audit SET outcome = 'would' WHERE seq = 1`)
		}, 1, "seq 1: hash mismatch"},
		{"edit and rehash a row", func(t *testing.T, db *sql.DB, es []AuditEntry) {
			editAndRehash(t, db, es, 4)
		}, 5, "seq 5: prev mismatch"},
		{"delete a middle row", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `DELETE FROM audit WHERE seq = 5`)
		}, 5, "seq 5: missing (row deleted)"},
		{"delete the first row", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `DELETE FROM audit WHERE seq = 1`)
		}, 1, "seq 1: missing (row deleted)"},
		{"delete the last row", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `DELETE FROM audit WHERE seq = 10`)
		}, 10, "seq 10: missing (head records seq 10: newest rows deleted)"},
		{"delete the newest rows", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `DELETE FROM audit WHERE seq >= 8`)
		}, 8, "seq 8: missing (head records seq 10"},
		{"delete every row", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `DELETE FROM audit`)
		}, 1, "seq 1: missing"},
		{"swap two rows", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			swapRows(t, db, 3, 6)
		}, 3, "seq 3: prev mismatch (chain broken: row deleted, inserted or reordered)"},
		{"swap adjacent rows", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			swapRows(t, db, 8, 9)
		}, 8, "seq 8: prev mismatch"},
		{"renumber to close a gap", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `DELETE FROM audit WHERE seq = 6`)
			mustExec(t, db, `UPDATE audit SET seq = seq - 1 WHERE seq > 6`)
			mustExec(t, db, `UPDATE audit_head SET seq = 9`)
		}, 6, "seq 6: prev mismatch"},
		{"delete the head record", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `DELETE FROM audit_head`)
		}, 10, "seq 10: head record missing"},
		{"replace the newest row's hash in head", func(t *testing.T, db *sql.DB, _ []AuditEntry) {
			mustExec(t, db, `UPDATE audit_head SET hash = 'x'`)
		}, 10, "seq 10: head hash mismatch"},
		{"append a forged row", func(t *testing.T, db *sql.DB, es []AuditEntry) {
			appendForged(t, db, es)
		}, 11, "seq 11: beyond head seq 10 (row added outside the store)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := openTest(t)
			entries := appendN(t, s, 10)
			c.tamper(t, rawDB(t, s.Path()), entries)
			rep, err := s.VerifyAudit(context.Background())
			if err != nil {
				t.Fatalf("VerifyAudit: %v", err)
			}
			if rep.OK || rep.FirstBad != c.firstBad || !strings.HasPrefix(rep.Reason, c.reason) {
				t.Errorf("VerifyAudit = %+v, want FirstBad %d reason %q", rep, c.firstBad, c.reason)
			}
		})
	}
}

func TestAppendAuditRefusesWithoutHead(t *testing.T) {
	s := openTest(t)
	appendN(t, s, 3)
	mustExec(t, rawDB(t, s.Path()), `DELETE FROM audit_head`)
	_, err := s.AppendAudit(context.Background(), sampleEntry(4))
	if err == nil || !strings.Contains(err.Error(), "head missing") {
		t.Errorf("AppendAudit without head = %v, want a head-missing error", err)
	}
}

func TestAppendAfterTailDeletionKeepsEvidence(t *testing.T) {
	s := openTest(t)
	appendN(t, s, 5)
	mustExec(t, rawDB(t, s.Path()), `DELETE FROM audit WHERE seq = 5`)
	// New appends continue from the head, so the hole stays visible.
	e, err := s.AppendAudit(context.Background(), sampleEntry(6))
	if err != nil || e.Seq != 6 {
		t.Fatalf("AppendAudit = %+v, %v", e, err)
	}
	rep, err := s.VerifyAudit(context.Background())
	if err != nil || rep.OK || rep.FirstBad != 5 {
		t.Errorf("VerifyAudit = %+v, %v; want FirstBad 5", rep, err)
	}
}
