package printer

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitFor polls cond until it holds or a generous deadline passes. It never
// asserts on time; the deadline only keeps a broken test from hanging.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func closeSet(t *testing.T, s *Set) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.Close(ctx); err != nil {
		t.Fatalf("close set: %v", err)
	}
}

func event(seq int) []byte {
	return fmt.Appendf(nil, `{"uuid":"u-%04d","seq":%d,"note":"line \"%d\"\nescaped"}`, seq, seq, seq)
}

func stats(t *testing.T, s *Set, name string) Stats {
	t.Helper()
	for _, st := range s.Stats() {
		if st.Printer == name {
			return st
		}
	}
	t.Fatalf("no printer %q in %+v", name, s.Stats())
	return Stats{}
}

// seqs parses JSON lines and returns their seq fields, failing on any line
// that is not a JSON object.
func seqs(t *testing.T, data []byte) []int {
	t.Helper()
	var out []int
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			Seq *int `json:"seq"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Seq == nil {
			t.Fatalf("line %q is not an event: %v", sc.Text(), err)
		}
		out = append(out, *ev.Seq)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Fatalf("output does not end with a newline: %q", data[max(0, len(data)-40):])
	}
	return out
}

func wantSeq(t *testing.T, got []int, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("got %d events, want %d (%d..%d): %v", len(got), to-from, from, to-1, got)
	}
	for i, s := range got {
		if s != from+i {
			t.Fatalf("event %d has seq %d, want %d (order or duplicate problem): %v", i, s, from+i, got)
		}
	}
}

func TestStdoutJSONLinesInOrder(t *testing.T) {
	var buf bytes.Buffer
	s, err := NewSet(nil, Entry{NewStdout(&buf), QueueOptions{Size: 1000, Batch: 7}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	for i := range n {
		ev := event(i)
		if i == 250 {
			// Pretty-printed JSON must still come out as one line.
			ev, _ = json.MarshalIndent(map[string]any{"seq": i, "nested": map[string]int{"a": 1}}, "", "  ")
		}
		s.Print(ev)
		if i == 100 {
			s.Print([]byte("{\n\"seq\": 1,")) // not JSON and multi-line: refused
			s.Print(nil)                      // empty: refused
		}
	}
	closeSet(t, s)
	wantSeq(t, seqs(t, buf.Bytes()), 0, n)
	if st := stats(t, s, "stdout"); st.Printed != n || st.Failed != 2 || st.Dropped != 0 {
		t.Fatalf("stats = %+v, want printed %d failed 2 dropped 0", st, n)
	}
}

// failingWriter fails every write, as a closed stdout would.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestStdoutWriteErrorCountsFailed(t *testing.T) {
	s, err := NewSet(nil, Entry{NewStdout(failingWriter{}), QueueOptions{Size: 10, Batch: 10}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s.Print(event(i))
	}
	closeSet(t, s)
	if st := stats(t, s, "stdout"); st.Failed != 3 || st.Printed != 0 {
		t.Fatalf("stats = %+v, want 3 failed", st)
	}
}

func TestPrintAfterCloseIsDropped(t *testing.T) {
	var buf bytes.Buffer
	s, err := NewSet(nil, Entry{NewStdout(&buf), QueueOptions{Size: 10, Batch: 1}})
	if err != nil {
		t.Fatal(err)
	}
	s.Print(event(0))
	closeSet(t, s)
	s.Print(event(1))
	closeSet(t, s) // idempotent
	if st := stats(t, s, "stdout"); st.Printed != 1 || st.Dropped != 1 {
		t.Fatalf("stats = %+v, want printed 1 dropped 1", st)
	}
	wantSeq(t, seqs(t, buf.Bytes()), 0, 1)
}

func TestNewSetRejectsBadEntries(t *testing.T) {
	var buf bytes.Buffer
	tests := []struct {
		name    string
		entries []Entry
		want    string
	}{
		{"nil printer", []Entry{{nil, QueueOptions{Size: 1, Batch: 1}}}, "nil printer"},
		{"zero queue", []Entry{{NewStdout(&buf), QueueOptions{Size: 0, Batch: 1}}}, "queue size"},
		{"zero batch", []Entry{{NewStdout(&buf), QueueOptions{Size: 1, Batch: 0}}}, "queue size"},
		{"duplicate", []Entry{{NewStdout(&buf), QueueOptions{Size: 1, Batch: 1}}, {NewStdout(&buf), QueueOptions{Size: 1, Batch: 1}}}, "duplicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSet(nil, tt.entries...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestConcurrentPrintAndClose(t *testing.T) {
	var buf bytes.Buffer
	s, err := NewSet(nil, Entry{NewStdout(&buf), QueueOptions{Size: 64, Batch: 8}})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 200
	done := make(chan struct{})
	for w := range writers {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range each {
				s.Print(event(w*each + i))
			}
		}()
	}
	<-done // close while the others may still be printing
	closeSet(t, s)
	for range writers - 1 {
		<-done
	}
	st := stats(t, s, "stdout")
	if st.Printed+st.Dropped != writers*each || st.Failed != 0 {
		t.Fatalf("stats = %+v: printed+dropped must be %d", st, writers*each)
	}
	if got := len(seqs(t, buf.Bytes())); uint64(got) != st.Printed {
		t.Fatalf("%d lines written, printed counter says %d", got, st.Printed)
	}
}

func readRotated(t *testing.T, path string, keep int) (all []int, files int) {
	t.Helper()
	for i := keep; i >= 0; i-- {
		name := path
		if i > 0 {
			name = fmt.Sprintf("%s.%d", path, i)
		}
		data, err := os.ReadFile(name)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		files++
		all = append(all, seqs(t, data)...)
	}
	return all, files
}

func TestFileRotation(t *testing.T) {
	const n, maxSize = 100, 300
	lineLen := len(event(0)) + 1
	perFile := maxSize / lineLen
	filesNeeded := (n + perFile - 1) / perFile
	tests := []struct {
		name      string
		keep      int
		wantFiles int
		wantFrom  int // first seq still present
	}{
		{"keep all", filesNeeded + 3, filesNeeded, 0},
		{"keep two", 2, 3, n - (perFile*2 + (n-1)%perFile + 1)},
		{"keep none", 0, 1, n - ((n-1)%perFile + 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "events.jsonl")
			p, err := NewFile(path, maxSize, tt.keep)
			if err != nil {
				t.Fatal(err)
			}
			s, err := NewSet(nil, Entry{p, QueueOptions{Size: n, Batch: 4}})
			if err != nil {
				t.Fatal(err)
			}
			for i := range n {
				s.Print(event(i))
			}
			closeSet(t, s)
			if st := stats(t, s, "file"); st.Printed != n || st.Failed+st.Dropped != 0 {
				t.Fatalf("stats = %+v", st)
			}
			all, files := readRotated(t, path, tt.keep+5)
			if files != tt.wantFiles {
				t.Fatalf("found %d files, want %d", files, tt.wantFiles)
			}
			wantSeq(t, all, tt.wantFrom, n)
			entries, _ := os.ReadDir(filepath.Dir(path))
			for _, e := range entries {
				fi, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > maxSize {
					t.Errorf("%s is %d bytes, over the %d limit", e.Name(), fi.Size(), maxSize)
				}
				if fi.Mode().Perm() != 0o600 || !fi.Mode().IsRegular() {
					t.Errorf("%s mode %v, want regular 0600", e.Name(), fi.Mode())
				}
			}
			if len(entries) != tt.wantFiles {
				t.Errorf("directory holds %d entries, want %d", len(entries), tt.wantFiles)
			}
		})
	}
}

func TestFileAppendsAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	for round := range 3 {
		p, err := NewFile(path, 1<<20, 1)
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSet(nil, Entry{p, QueueOptions{Size: 10, Batch: 10}})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			s.Print(event(round*10 + i))
		}
		closeSet(t, s)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	wantSeq(t, seqs(t, data), 0, 30)
}

func TestFileRefusesHostilePaths(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir, path string)
		want  string
	}{
		{"symlink to a file", func(t *testing.T, dir, path string) {
			target := filepath.Join(dir, "target")
			if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
		{"dangling symlink", func(t *testing.T, dir, path string) {
			if err := os.Symlink(filepath.Join(dir, "created-by-us?"), path); err != nil {
				t.Fatal(err)
			}
		}, "symlink"},
		{"fifo", func(t *testing.T, dir, path string) {
			if err := mkfifo(path); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}, "not a regular file|no such device or address"}, // ENXIO: no reader; never blocks
		{"hard link", func(t *testing.T, dir, path string) {
			other := filepath.Join(dir, "other")
			if err := os.WriteFile(other, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Link(other, path); err != nil {
				t.Fatal(err)
			}
		}, "hard links"},
		{"directory", func(t *testing.T, dir, path string) {
			if err := os.Mkdir(path, 0o700); err != nil {
				t.Fatal(err)
			}
		}, "is a directory"},
		{"missing parent", func(t *testing.T, dir, path string) {}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "events.jsonl")
			if tt.name == "missing parent" {
				path = filepath.Join(dir, "nope", "events.jsonl")
			}
			tt.setup(t, dir, path)
			p, err := NewFile(path, 1000, 1)
			if err == nil {
				p.Close(context.Background())
				t.Fatalf("NewFile(%s) accepted a hostile path", path)
			}
			matched := false
			for _, w := range strings.Split(tt.want, "|") {
				matched = matched || strings.Contains(err.Error(), w)
			}
			if !matched || !strings.Contains(err.Error(), path) {
				t.Fatalf("err = %v, want it to name %s and say %q", err, path, tt.want)
			}
			if data, err := os.ReadFile(filepath.Join(dir, "target")); err == nil && string(data) != "precious\n" {
				t.Fatalf("symlink target was modified: %q", data)
			}
			if _, err := os.Stat(filepath.Join(dir, "created-by-us?")); err == nil {
				t.Fatal("dangling symlink target was created")
			}
		})
	}
}

// A symlink planted at a rotated name is replaced, never followed.
func TestFileRotationDoesNotFollowPlantedLinks(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "events.jsonl")
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, path+".2"); err != nil {
		t.Fatal(err)
	}
	p, err := NewFile(path, 100, 2)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSet(nil, Entry{p, QueueOptions{Size: 20, Batch: 1}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		s.Print(event(i))
	}
	closeSet(t, s)
	if data, _ := os.ReadFile(target); string(data) != "precious\n" {
		t.Fatalf("target modified: %q", data)
	}
	for _, name := range []string{path, path + ".1", path + ".2"} {
		fi, err := os.Lstat(name)
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("%s: %v, mode %v: want a regular file", name, err, fi.Mode())
		}
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  string
	}{
		{"512", 512, ""},
		{"64KiB", 64 << 10, ""},
		{"10 MiB", 10 << 20, ""},
		{"1GiB", 1 << 30, ""},
		{"10MB", 10_000_000, ""},
		{"2k", 2048, ""},
		{"", 0, "must start with a number"},
		{"-5", 0, "must start with a number"},
		{"10XB", 0, "unknown unit"},
		{"99999999999999GiB", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseByteSize(%q) err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
}
