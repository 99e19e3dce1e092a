package testrun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/proc"
)

// TempRoot is where CreateTempDir makes directories in the test world.
const TempRoot = "/tmp/jibril"

// EvidenceRoot is where CollectEvidence "writes" bundles in the test world.
const EvidenceRoot = "/var/lib/jibril/evidence"

// World is the hermetic, deterministic world a test case runs in. Nothing in it touches the
// machine: processes, network and power effects are recorded, files live in a map seeded
// from the case's fixture files, the store is a map. One World serves one case.
//
// Safety floor: Check is a pure function of the pid (<= 0 invalid, 1 refused, below
// MinPID refused). There is no daemon pid, no kernel thread and no protected name in a
// test world, so those parts of the live floor never trigger here.
type World struct {
	MinPID int
	clock  time.Time

	effects []string
	notes   []string
	killed  map[int]bool
	frozen  map[int]bool
	blocked map[netip.Prefix]bool
	domains map[string]bool

	files   map[string]string // every readable file: fixtures, then what the reaction wrote
	dirs    map[string]bool   // directories made by CreateTempDir
	written map[string]string // what the reaction wrote, final content per path
	temps   int

	store *memStore
}

// NewWorld returns a world whose readable files are exactly files and whose store holds
// store (keys in the given order) and lists.
func NewWorld(clock time.Time, files map[string]string, store []KV, lists map[string][]string) *World {
	w := &World{
		MinPID: proc.DefaultMinPID, clock: clock,
		killed: map[int]bool{}, frozen: map[int]bool{}, blocked: map[netip.Prefix]bool{}, domains: map[string]bool{},
		files: map[string]string{}, dirs: map[string]bool{}, written: map[string]string{},
		store: newMemStore(),
	}
	for p, c := range files {
		w.files[p] = c
	}
	for _, kv := range store {
		w.store.set(kv.Key, kv.Value)
	}
	for l, vs := range lists {
		w.store.lists[l] = slices.Clone(vs)
	}
	return w
}

// Sandbox returns the sandbox world backed by w.
func (w *World) Sandbox() sandbox.World {
	return sandbox.World{Proc: w, Net: w, Files: w, Store: w.store, Evidence: w, Power: w, TempRoot: TempRoot}
}

// Effects lists what the reaction did to processes, network, files and power, in order.
func (w *World) Effects() []string { return slices.Clone(w.effects) }

// Notes lists what the test author should know (reads outside the fixture files).
func (w *World) Notes() []string { return slices.Clone(w.notes) }

// Written returns the final content of every file the reaction wrote.
func (w *World) Written() map[string]string {
	out := make(map[string]string, len(w.written))
	for k, v := range w.written {
		out[k] = v
	}
	return out
}

// Store returns the recipe's keys and values after the run.
func (w *World) Store() map[string]string { return w.store.snapshot() }

// Lists returns the recipe's non-empty lists after the run.
func (w *World) Lists() map[string][]string {
	out := map[string][]string{}
	for k, v := range w.store.lists {
		if len(v) > 0 {
			out[k] = slices.Clone(v)
		}
	}
	return out
}

func (w *World) effect(format string, a ...any) {
	w.effects = append(w.effects, fmt.Sprintf(format, a...))
}

func (w *World) note(format string, a ...any) {
	n := fmt.Sprintf(format, a...)
	if !slices.Contains(w.notes, n) {
		w.notes = append(w.notes, n)
	}
}

// --- processes ---

// Check applies the pid part of the safety floor.
func (w *World) Check(t proc.Target) error {
	switch {
	case t.PID <= 0:
		return fmt.Errorf("pid %d: invalid pid", t.PID)
	case t.PID == 1:
		return fmt.Errorf("%w: pid 1", proc.ErrRefused)
	case t.PID < w.MinPID:
		return fmt.Errorf("%w: pid %d below protect.min_pid %d", proc.ErrRefused, t.PID, w.MinPID)
	}
	return nil
}

func (w *World) kill(op string, t proc.Target) (int, error) {
	if err := w.Check(t); err != nil {
		return -1, err // as the live actuator, which applies the floor itself
	}
	w.effect("%s %d", op, t.PID)
	if w.killed[t.PID] {
		return 1, nil // already dead
	}
	w.killed[t.PID] = true
	return 0, nil
}

// Kill records a SIGKILL; a second kill of the same pid answers 1 (already dead).
func (w *World) Kill(_ context.Context, t proc.Target) (int, error) { return w.kill("Kill", t) }

// KillTree records a tree kill.
func (w *World) KillTree(_ context.Context, t proc.Target) (int, error) { return w.kill("KillTree", t) }

// Freeze records a freeze; freezing a frozen process answers 1.
func (w *World) Freeze(_ context.Context, t proc.Target) (int, error) {
	w.effect("Freeze %d", t.PID)
	if w.frozen[t.PID] {
		return 1, nil
	}
	w.frozen[t.PID] = true
	return 0, nil
}

// Thaw records a thaw; thawing a process that is not frozen answers 1.
func (w *World) Thaw(_ context.Context, t proc.Target) (int, error) {
	w.effect("Thaw %d", t.PID)
	if !w.frozen[t.PID] {
		return 1, nil
	}
	delete(w.frozen, t.PID)
	return 0, nil
}

// --- network ---

// BlockPrefix records a block; blocking a blocked prefix answers 1.
func (w *World) BlockPrefix(_ context.Context, p netip.Prefix, ttl time.Duration, _ string) (int, error) {
	w.effect("BlockPrefix %s ttl=%s", p, ttl)
	if w.blocked[p] {
		return 1, nil
	}
	w.blocked[p] = true
	return 0, nil
}

// UnblockPrefix records an unblock; unblocking what is not blocked answers 1.
func (w *World) UnblockPrefix(_ context.Context, p netip.Prefix) (int, error) {
	w.effect("UnblockPrefix %s", p)
	if !w.blocked[p] {
		return 1, nil
	}
	delete(w.blocked, p)
	return 0, nil
}

// BlockDomain records a domain block.
func (w *World) BlockDomain(_ context.Context, d, _ string) (int, error) {
	w.effect("BlockDomain %s", d)
	if w.domains[d] {
		return 1, nil
	}
	w.domains[d] = true
	return 0, nil
}

// UnblockDomain records a domain unblock.
func (w *World) UnblockDomain(_ context.Context, d string) (int, error) {
	w.effect("UnblockDomain %s", d)
	if !w.domains[d] {
		return 1, nil
	}
	delete(w.domains, d)
	return 0, nil
}

// --- power: recorded, never executed ---

// PowerOff records the request.
func (w *World) PowerOff(context.Context) error { w.effect("PowerOff"); return nil }

// Panic records the request.
func (w *World) Panic(context.Context) error { w.effect("Panic"); return nil }

// --- evidence ---

// Collect records the request and answers a deterministic bundle path.
func (w *World) Collect(_ context.Context, pid int) (string, error) {
	if pid <= 0 {
		return "", fmt.Errorf("collect evidence: invalid pid %d", pid)
	}
	p := fmt.Sprintf("%s/%d-%d", EvidenceRoot, pid, w.clock.UnixNano())
	w.effect("CollectEvidence %d -> %s", pid, p)
	return p, nil
}

// --- files: only fixture files and what the reaction wrote exist ---

func errNotInFixture(op, p string) error {
	return &fs.PathError{Op: op, Path: p, Err: errors.New("no such file or directory (not in the test's files)")}
}

// isDir reports whether p is a directory of the test world: a parent of some file, or one
// made by CreateTempDir.
func (w *World) isDir(p string) bool {
	if w.dirs[p] || p == "/" {
		return true
	}
	prefix := strings.TrimSuffix(p, "/") + "/"
	for f := range w.files {
		if strings.HasPrefix(f, prefix) {
			return true
		}
	}
	for d := range w.dirs {
		if strings.HasPrefix(d, prefix) {
			return true
		}
	}
	return false
}

// ReadFile answers a fixture file (or one written during the run); anything else does not
// exist, and the case output says so.
func (w *World) ReadFile(p string, max int64) ([]byte, error) {
	c, ok := w.files[p]
	if !ok {
		w.note("read of %s not in fixture files", p)
		return nil, errNotInFixture("open", p)
	}
	if int64(len(c)) > max {
		c = c[:max]
	}
	return []byte(c), nil
}

// WriteFile records the write; later reads see it.
func (w *World) WriteFile(p string, data []byte) error {
	if w.isDir(p) {
		return &fs.PathError{Op: "open", Path: p, Err: errors.New("is a directory")}
	}
	w.files[p] = string(data)
	w.written[p] = string(data)
	w.effect("WriteFile %s (%d bytes)", p, len(data))
	return nil
}

// Stat describes a fixture file or directory; times are the case's clock.
func (w *World) Stat(p string) (sandbox.FileInfo, error) {
	if c, ok := w.files[p]; ok {
		return sandbox.FileInfo{Size: int64(len(c)), Mode: 0o644, ModTime: w.clock}, nil
	}
	if w.isDir(p) {
		return sandbox.FileInfo{Mode: fs.ModeDir | 0o755, ModTime: w.clock, IsDir: true}, nil
	}
	w.note("stat of %s not in fixture files", p)
	return sandbox.FileInfo{}, errNotInFixture("stat", p)
}

// HashFile answers the sha256 of a fixture file.
func (w *World) HashFile(p string) (string, error) {
	c, ok := w.files[p]
	if !ok {
		w.note("hash of %s not in fixture files", p)
		return "", errNotInFixture("open", p)
	}
	sum := sha256.Sum256([]byte(c))
	return hex.EncodeToString(sum[:]), nil
}

// MkdirTemp makes a directory named after pattern with its "*" replaced by a counter, so
// names are the same on every run.
func (w *World) MkdirTemp(dir, pattern string) (string, error) {
	for {
		w.temps++
		name := pattern
		if i := strings.LastIndex(pattern, "*"); i >= 0 {
			name = pattern[:i] + strconv.Itoa(w.temps) + pattern[i+1:]
		} else {
			name += strconv.Itoa(w.temps)
		}
		p := path.Join(dir, name)
		if !w.isDir(p) {
			w.dirs[p] = true
			w.effect("CreateTempDir %s", p)
			return p, nil
		}
	}
}

// RemoveAll removes a directory with everything in it.
func (w *World) RemoveAll(p string) error {
	w.effect("RemoveDir %s", p)
	prefix := p + "/"
	for f := range w.files {
		if f == p || strings.HasPrefix(f, prefix) {
			delete(w.files, f)
		}
	}
	for d := range w.dirs {
		if d == p || strings.HasPrefix(d, prefix) {
			delete(w.dirs, d)
		}
	}
	return nil
}

// --- store ---

// memStore is the recipe's data store in memory. Keys keep the order they were first set
// (a deleted key set again moves to the end), as the SQLite store does. A test runs one
// recipe, so the namespace is not needed to keep recipes apart.
type memStore struct {
	keys  []string
	vals  map[string]string
	lists map[string][]string
}

func newMemStore() *memStore {
	return &memStore{vals: map[string]string{}, lists: map[string][]string{}}
}

func (s *memStore) set(k, v string) {
	if _, ok := s.vals[k]; !ok {
		s.keys = append(s.keys, k)
	}
	s.vals[k] = v
}

func (s *memStore) snapshot() map[string]string {
	out := make(map[string]string, len(s.vals))
	for k, v := range s.vals {
		out[k] = v
	}
	return out
}

func (s *memStore) Get(_ context.Context, _, key string) (string, bool, error) {
	v, ok := s.vals[key]
	return v, ok, nil
}

func (s *memStore) Set(_ context.Context, _, key, value string) error {
	s.set(key, value)
	return nil
}

func (s *memStore) Delete(_ context.Context, _, key string) (bool, error) {
	if _, ok := s.vals[key]; !ok {
		return false, nil
	}
	delete(s.vals, key)
	s.keys = slices.DeleteFunc(s.keys, func(k string) bool { return k == key })
	return true, nil
}

func (s *memStore) Keys(context.Context, string) ([]string, error) { return slices.Clone(s.keys), nil }

func (s *memStore) Values(context.Context, string) ([]string, error) {
	out := make([]string, 0, len(s.keys))
	for _, k := range s.keys {
		out = append(out, s.vals[k])
	}
	return out, nil
}

func (s *memStore) Clear(context.Context, string) (int, error) {
	n := len(s.keys)
	s.keys, s.vals, s.lists = nil, map[string]string{}, map[string][]string{}
	return n, nil
}

func (s *memStore) Size(context.Context, string) (int, error) { return len(s.keys), nil }

func (s *memStore) HasValue(_ context.Context, _, value string) (bool, error) {
	for _, v := range s.vals {
		if v == value {
			return true, nil
		}
	}
	return false, nil
}

func (s *memStore) Push(_ context.Context, _, list, value string) error {
	s.lists[list] = append(s.lists[list], value)
	return nil
}

func (s *memStore) Pop(_ context.Context, _, list string) (string, bool, error) {
	l := s.lists[list]
	if len(l) == 0 {
		return "", false, nil
	}
	v := l[len(l)-1]
	s.lists[list] = l[:len(l)-1]
	return v, true, nil
}

// sortedKeys returns m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
