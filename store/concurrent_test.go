package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestConcurrentWriters hammers one file from two Stores (standing in for
// the daemon and the CLI) with many goroutines each, mixing every kind of
// write with reads. No call may fail with "database is locked", and the
// audit chain must come out whole.
func TestConcurrentWriters(t *testing.T) {
	const (
		stores     = 2
		goroutines = 8
		iterations = 25
	)
	ctx := context.Background()
	first := openTest(t)
	second, err := Open(ctx, first.Path())
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	all := []*Store{first, second}

	var wg sync.WaitGroup
	errs := make(chan error, stores*goroutines*iterations*6)
	for si, s := range all {
		for g := 0; g < goroutines; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ns := fmt.Sprintf("s%d-g%d", si, g)
				for i := 0; i < iterations; i++ {
					if err := writeMix(ctx, s, ns, i); err != nil {
						errs <- err
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkConcurrentResult(t, first, stores*goroutines, iterations)
}

func writeMix(ctx context.Context, s *Store, ns string, i int) error {
	if err := s.Set(ctx, ns, fmt.Sprintf("k%03d", i), fmt.Sprint(i)); err != nil {
		return err
	}
	if err := s.Push(ctx, ns, "", fmt.Sprint(i)); err != nil {
		return err
	}
	if i%2 == 1 {
		if v, ok, err := s.Pop(ctx, ns, ""); err != nil || !ok || v != fmt.Sprint(i) {
			return fmt.Errorf("pop %s = %q, %v, %v; want %d", ns, v, ok, err, i)
		}
	}
	e := sampleEntry(i)
	e.Recipe = ns
	if _, err := s.AppendAudit(ctx, e); err != nil {
		return err
	}
	if err := s.PutBlock(ctx, Block{Kind: "domain", Value: ns + ".example", Recipe: ns}); err != nil {
		return err
	}
	if _, err := s.Keys(ctx, ns); err != nil {
		return err
	}
	if i%10 == 0 {
		if _, err := s.VerifyAudit(ctx); err != nil {
			return err
		}
	}
	return nil
}

func checkConcurrentResult(t *testing.T, s *Store, writers, iterations int) {
	t.Helper()
	ctx := context.Background()
	nss, err := s.Namespaces(ctx)
	if err != nil || len(nss) != writers {
		t.Fatalf("Namespaces = %d, %v; want %d", len(nss), err, writers)
	}
	for _, ns := range nss {
		n, err := s.Size(ctx, ns)
		if err != nil || n != iterations {
			t.Errorf("Size(%s) = %d, %v; want %d", ns, n, err, iterations)
		}
		popped := 0
		for {
			_, ok, err := s.Pop(ctx, ns, "")
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			popped++
		}
		if want := iterations - iterations/2; popped != want {
			t.Errorf("list %s held %d items, want %d", ns, popped, want)
		}
		entries, err := s.ListAudit(ctx, AuditFilter{Recipe: ns})
		if err != nil || len(entries) != iterations {
			t.Errorf("audit rows for %s = %d, %v; want %d", ns, len(entries), err, iterations)
		}
	}
	rep, err := s.VerifyAudit(ctx)
	if want := (AuditReport{Rows: int64(writers * iterations), OK: true}); err != nil || rep != want {
		t.Errorf("VerifyAudit = %+v, %v; want %+v", rep, err, want)
	}
	blocks, err := s.ActiveBlocks(ctx, time.Now())
	if err != nil || len(blocks) != writers {
		t.Errorf("ActiveBlocks = %d, %v; want %d", len(blocks), err, writers)
	}
}
