// Package liveworld assembles the live sandbox.World, the one that acts on
// this machine: processes through pidfds (proc.Live, with its safety floor),
// files through fsguard rooted at /, evidence bundles under the state
// directory, and network blocks through nftables persisted in the store
// (livenet). The daemon and `jibril sandbox exec --live` both build their
// world here, so that a reaction tried by hand does exactly what it would
// do in the daemon.
package liveworld

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/jibril-rt/jibril/engine/procfs"
	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/evidence"
	"github.com/jibril-rt/jibril/sandbox/fsguard"
	"github.com/jibril-rt/jibril/sandbox/livenet"
	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/sandbox/proc"
	"github.com/jibril-rt/jibril/store"
)

// DBFile is the name of the live database inside the state directory.
const DBFile = "jibril.db"

// DBPath is where the daemon and the state commands (store, audit, net)
// keep the live database: <state-dir>/jibril.db.
func DBPath(stateDir string) string { return filepath.Join(stateDir, DBFile) }

// EvidenceDir is where CollectEvidence writes bundles.
func EvidenceDir(stateDir string) string { return filepath.Join(stateDir, "evidence") }

// files is the reactions' file access: the guarded root, with /proc/PID/{environ,maps}
// read through proc when the daemon has one (its /proc broker under Landlock).
func files(root *fsguard.FS, proc procfs.ProcFS) sandbox.Files {
	if proc == nil {
		return sandbox.GuardedFiles{FS: root}
	}
	return procFiles{GuardedFiles: sandbox.GuardedFiles{FS: root}, proc: proc}
}

// TempRoot is where CreateTempDir makes directories.
func TempRoot(stateDir string) string { return filepath.Join(stateDir, "tmp") }

// Config says how to build the live world.
type Config struct {
	StateDir string       // evidence and temp root live here
	Store    *store.Store // the live database (DBPath); the caller owns it
	// NetNSFd is the network namespace blocks apply in: -1 for the
	// namespace of the calling thread (the host, for the daemon), or an
	// open descriptor (tests). 0 is refused.
	NetNSFd int
	// Protect lists networks never blocked (protect.cidrs), besides
	// loopback and link-local.
	Protect []netip.Prefix
	Floor   proc.Floor // the process safety floor
	// Restore re-applies the persisted blocks and purges the expired ones
	// (the daemon at start). One-shot tools leave it false.
	Restore bool
	// ResolveDomains lets BlockDomain look the domain up with the system
	// resolver, besides the DNS answers observed. A process that has no DNS
	// sensor (sandbox exec --live) needs it to block anything at once.
	ResolveDomains bool
	// Proc reads for CollectEvidence what Landlock hides from a confined
	// daemon (the /proc broker); nil reads /proc directly.
	Proc procfs.ProcFS
	Log  *slog.Logger
}

// Live is an assembled live world and what must be closed with it.
type Live struct {
	World sandbox.World
	Net   *livenet.Net // also the DNS sensor's ObserveDNS hook
	// Restored is Restore's report when Config.Restore was set.
	Restored livenet.RestoreReport
	root     *fsguard.FS
}

// Open builds the live world. With Config.Restore, a block that could not
// be re-applied is logged and reported in the returned error while the
// world is still returned (the daemon runs on, degraded, rather than with
// no blocks at all).
func Open(ctx context.Context, c Config) (*Live, error) {
	if c.Store == nil {
		return nil, errors.New("live world: no store")
	}
	if c.StateDir == "" {
		return nil, errors.New("live world: no state directory")
	}
	log := c.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root, err := fsguard.New("/")
	if err != nil {
		return nil, fmt.Errorf("live world: file system guard: %w", err)
	}
	o := livenet.Options{
		Netblock: netblock.Options{NetNSFd: c.NetNSFd},
		Protect:  c.Protect,
		Log:      log,
	}
	if c.ResolveDomains {
		o.Resolver = net.DefaultResolver
	}
	nw, err := livenet.Open(ctx, c.Store, o)
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("live world: %w", err)
	}
	l := &Live{
		Net:  nw,
		root: root,
		World: sandbox.World{
			Proc:     proc.NewLive(c.Floor),
			Net:      nw,
			Files:    files(root, c.Proc),
			Store:    c.Store,
			Evidence: &evidence.Collector{Dir: EvidenceDir(c.StateDir), Proc: c.Proc},
			TempRoot: TempRoot(c.StateDir),
		},
	}
	if c.Restore {
		rep, err := nw.Restore(ctx)
		l.Restored = rep
		if err != nil {
			return l, fmt.Errorf("live world: %w", err)
		}
	}
	return l, nil
}

// Close releases the nftables sockets and the file system guard; blocks
// stay in place and the store stays open (the caller owns it).
func (l *Live) Close() error {
	return errors.Join(l.Net.Close(), l.root.Close())
}
