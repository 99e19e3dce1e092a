package store

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// seedOld writes data that a database at the given version can hold,
// through raw SQL as an older jibril would have.
func seedOld(t *testing.T, db *sql.DB, version int) {
	t.Helper()
	if version >= 1 {
		mustExec(t, db, `INSERT INTO kv (ns, key, value) VALUES ('r', 'b', '1'), ('r', 'a', '2')`)
		mustExec(t, db, `INSERT INTO list_items (ns, list, value) VALUES ('r', '', 'old item')`)
	}
	if version >= 2 {
		mustExec(t, db, `INSERT INTO blocks VALUES ('ip', '198.18.0.7', 'r', 1, 0)`)
	}
	if version >= 3 {
		e := sampleEntry(1)
		e.Seq = 1
		e.Hash = AuditHash(e)
		mustExec(t, db, `INSERT INTO audit (`+auditColumns+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			e.Seq, e.Time.UnixNano(), e.Recipe, e.Reaction, e.EventUUID, e.Helper, e.Args,
			e.Result, e.Errno, e.Outcome, e.Mode, e.Prev, e.Hash)
		mustExec(t, db, `INSERT INTO audit_head VALUES (1, 1, ?)`, e.Hash)
	}
}

func TestMigrateFromOlderVersions(t *testing.T) {
	ctx := context.Background()
	for from := 0; from < latestVersion(); from++ {
		t.Run(fmt.Sprintf("from v%d", from), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "old.db")
			if err := prepareFile(path); err != nil {
				t.Fatal(err)
			}
			db := rawDB(t, path)
			if err := migrate(ctx, db, from); err != nil {
				t.Fatalf("build version %d: %v", from, err)
			}
			seedOld(t, db, from)
			if v, err := schemaVersion(ctx, db); err != nil || v != from {
				t.Fatalf("old version = %d, %v; want %d", v, err, from)
			}
			db.Close()

			s, err := Open(ctx, path)
			if err != nil {
				t.Fatalf("Open old version %d: %v", from, err)
			}
			defer s.Close()
			if v, err := schemaVersion(ctx, s.r); err != nil || v != latestVersion() {
				t.Fatalf("migrated version = %d, %v; want %d", v, err, latestVersion())
			}
			checkMigratedData(t, s, from)
			exerciseAll(t, s)
		})
	}
}

func checkMigratedData(t *testing.T, s *Store, from int) {
	t.Helper()
	ctx := context.Background()
	if from >= 1 {
		checkNS(t, s, wantNS{"r", []string{"b", "a"}, []string{"1", "2"}})
		runOps(t, s, []op{{do: "pop", ns: "r", k: "", wantOK: true, wantV: "old item"}})
	}
	if from >= 2 {
		bs, err := s.ActiveBlocks(ctx, time.Now())
		if err != nil || len(bs) != 1 || bs[0].Value != "198.18.0.7" {
			t.Errorf("old blocks = %+v, %v", bs, err)
		}
	}
	wantRows := int64(0)
	if from >= 3 {
		wantRows = 1
	}
	rep, err := s.VerifyAudit(ctx)
	if err != nil || rep != (AuditReport{Rows: wantRows, OK: true}) {
		t.Errorf("VerifyAudit after migration = %+v, %v", rep, err)
	}
}

// exerciseAll uses every table once, proving the migrated schema is whole.
func exerciseAll(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	if err := s.Set(ctx, "new", "k", "v"); err != nil {
		t.Errorf("Set: %v", err)
	}
	if err := s.Push(ctx, "new", "l", "v"); err != nil {
		t.Errorf("Push: %v", err)
	}
	if err := s.PutBlock(ctx, Block{Kind: "domain", Value: "example.net"}); err != nil {
		t.Errorf("PutBlock: %v", err)
	}
	if _, err := s.AppendAudit(ctx, sampleEntry(2)); err != nil {
		t.Errorf("AppendAudit: %v", err)
	}
	if _, err := s.AddIncident(ctx, Incident{Recipe: "new", Summary: "s"}); err != nil {
		t.Errorf("AddIncident: %v", err)
	}
	if rep, err := s.VerifyAudit(ctx); err != nil || !rep.OK {
		t.Errorf("VerifyAudit = %+v, %v", rep, err)
	}
}

func TestMigrationsOrdered(t *testing.T) {
	for i, m := range migrations() {
		if m.version != i+1 || m.name == "" || len(m.stmts) == 0 {
			t.Errorf("migration %d = version %d %q with %d statements", i, m.version, m.name, len(m.stmts))
		}
	}
}

func TestOpenIsIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "x.db")
	for i := 0; i < 3; i++ {
		s, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("Open #%d: %v", i, err)
		}
		if err := s.Set(ctx, "r", "k", "v"); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	path := s.Path()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	mustExec(t, rawDB(t, path), `PRAGMA user_version = 99`)
	s2, err := Open(ctx, path)
	if err == nil {
		s2.Close()
		t.Fatal("Open accepted a database from a newer jibril")
	}
	if !strings.Contains(err.Error(), "schema version 99 is newer") {
		t.Errorf("error = %v", err)
	}
}
