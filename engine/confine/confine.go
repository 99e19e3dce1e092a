// Package confine drops the daemon's privileges once it has started (SPEC §9): every
// capability it no longer uses leaves the effective, permitted, inheritable, ambient
// and bounding sets of every thread, no_new_privs is set, and Landlock confines the
// file system to reading (executing only from the system directories) and writing
// only the state directory. It is one-way: nothing here can be undone by the process.
//
// Apply fails closed: when a step fails it returns an error and the caller must exit,
// since the process may be left half-confined.
package confine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// LandlockMode says what to do with Landlock.
type LandlockMode string

const (
	// LandlockAuto confines the file system where the kernel has Landlock, and reports
	// (Report.Landlock) when it does not.
	LandlockAuto LandlockMode = "auto"
	// LandlockRequire fails when the kernel has no Landlock.
	LandlockRequire LandlockMode = "require"
	// LandlockOff leaves the file system alone (capabilities are still dropped).
	LandlockOff LandlockMode = "off"
)

// Options say what the process keeps.
type Options struct {
	// Keep are the capabilities kept in the effective and permitted sets (and the only
	// ones left in the bounding set). Those the process does not hold are reported in
	// Report.Missing, not added.
	Keep []Cap
	// StateDir is read-write (database, evidence, temp root, wasm cache). It must exist.
	StateDir string
	// ReadWrite are more read-write paths (directories or files), e.g. the file
	// printer's directory. Each must exist.
	ReadWrite []string
	// ReadOnly are readable (nil means "/": recipes, /proc, files reactions read).
	ReadOnly []string
	// Execute are the trees executables may be run from (shell reactions run /bin/sh
	// and what their scripts call); nil means DefaultExecute. Read-write paths are
	// never executable unless also listed here (W^X: a dropped file cannot be run).
	Execute []string
	// Landlock is auto (the default when empty), require or off.
	Landlock LandlockMode
}

// DefaultExecute are the system trees executables may be run from. Missing ones are
// skipped.
func DefaultExecute() []string {
	return []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/opt"}
}

// LandlockReport says what became of Landlock.
type LandlockReport struct {
	ABI     int    // the kernel's Landlock ABI version, 0 without Landlock
	Applied bool   // the ruleset is enforced on every thread
	Reason  string // why not, when not applied
}

// Report is the process's state after Apply, read back from /proc.
type Report struct {
	Kept       Mask // effective = permitted of every thread
	Missing    Mask // asked to keep, but not held when Apply ran
	Bounding   Mask // the bounding set of every thread
	NoNewPrivs bool
	Threads    int // threads checked
	Landlock   LandlockReport
}

func (o *Options) check() error {
	switch o.Landlock {
	case "":
		o.Landlock = LandlockAuto
	case LandlockAuto, LandlockRequire, LandlockOff:
	default:
		return fmt.Errorf("confine: landlock mode %q is not auto, require or off", o.Landlock)
	}
	for _, c := range o.Keep {
		if c < 0 || c > 63 {
			return fmt.Errorf("confine: capability %d out of range", c)
		}
	}
	if o.Landlock == LandlockOff {
		return nil
	}
	if o.StateDir == "" {
		return errors.New("confine: no state directory")
	}
	if o.ReadOnly == nil {
		o.ReadOnly = []string{"/"}
	}
	if o.Execute == nil {
		o.Execute = DefaultExecute()
	}
	for _, group := range []struct {
		name  string
		paths []string
	}{{"state directory", []string{o.StateDir}}, {"read-write path", o.ReadWrite}, {"read-only path", o.ReadOnly}, {"execute path", o.Execute}} {
		for _, p := range group.paths {
			if !filepath.IsAbs(p) || strings.ContainsRune(p, 0) {
				return fmt.Errorf("confine: %s %q is not an absolute path", group.name, p)
			}
		}
	}
	for _, p := range append([]string{o.StateDir}, o.ReadWrite...) {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("confine: read-write path: %w", err)
		}
	}
	return nil
}

// Apply confines the calling process, all of its threads. See the package comment.
// On error the process may be partly confined: exit.
func Apply(o Options) (Report, error) {
	var rep Report
	if err := o.check(); err != nil {
		return rep, err
	}
	last, err := lastCap()
	if err != nil {
		return rep, fmt.Errorf("confine: %w", err)
	}
	cur, err := capget()
	if err != nil {
		return rep, fmt.Errorf("confine: %w", err)
	}
	want := MaskOf(o.Keep...)
	rep.Missing = want &^ cur.prm
	keep := want & cur.prm

	// The bounding set first: dropping from it needs CAP_SETPCAP in the effective set,
	// which the capset below removes.
	for c := Cap(0); c <= last; c++ {
		if want.Has(c) {
			continue
		}
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			return rep, fmt.Errorf("confine: read bounding set (%s): %w", c, err)
		}
		if in == 0 {
			continue
		}
		if err := allThreadsPrctl(unix.PR_CAPBSET_DROP, uintptr(c), 0); err != nil {
			return rep, fmt.Errorf("confine: drop %s from the bounding set: %w", c, err)
		}
	}
	if err := allThreadsPrctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0); err != nil {
		return rep, fmt.Errorf("confine: clear the ambient set: %w", err)
	}
	if err := allThreadsCapset(capSets{eff: keep, prm: keep}); err != nil {
		return rep, fmt.Errorf("confine: %w", err)
	}
	if err := allThreadsPrctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0); err != nil {
		return rep, fmt.Errorf("confine: set no_new_privs: %w", err)
	}
	if o.Landlock != LandlockOff {
		if rep.Landlock, err = restrictFS(o); err != nil {
			return rep, err
		}
		if !rep.Landlock.Applied && o.Landlock == LandlockRequire {
			return rep, fmt.Errorf("confine: landlock required: %s", rep.Landlock.Reason)
		}
	} else {
		rep.Landlock.Reason = "disabled by configuration"
	}

	// Read every thread back: a thread the drop missed would keep its privileges.
	threads, err := Threads()
	if err != nil {
		return rep, fmt.Errorf("confine: verify: %w", err)
	}
	bnd := Mask(0)
	for i, t := range threads {
		if t.Eff != keep || t.Prm != keep || t.Inh != 0 || t.Amb != 0 || !t.NoNewPrivs || t.Bnd&^want != 0 {
			return rep, fmt.Errorf("confine: verify: thread %d kept CapEff=%s CapPrm=%s CapInh=%s CapAmb=%s CapBnd=%s NoNewPrivs=%v, want CapEff=CapPrm=%s, bounding within %s",
				t.TID, t.Eff, t.Prm, t.Inh, t.Amb, t.Bnd, t.NoNewPrivs, keep, want)
		}
		if i == 0 {
			bnd = t.Bnd
		} else if t.Bnd != bnd {
			return rep, fmt.Errorf("confine: verify: threads disagree on the bounding set (%s, %s)", bnd, t.Bnd)
		}
	}
	rep.Kept, rep.Bounding, rep.NoNewPrivs, rep.Threads = keep, bnd, true, len(threads)
	return rep, nil
}
