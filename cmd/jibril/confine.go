package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/confine"
	"github.com/jibril-rt/jibril/engine/watchdog"
)

// confineConfig is the `confine:` section: what the daemon gives up once started.
type confineConfig struct {
	// Enabled drops every capability but engine/confine.DaemonCaps from all sets (the
	// bounding set included) and sets no_new_privs, after start-up. Shell reactions
	// inherit both.
	Enabled bool `koanf:"enabled"`
	// Landlock also confines the file system (on by default): read everything, write only
	// the state directory (and ReadWrite), execute only from the system directories.
	// Landlock refuses /proc/PID/{exe,cwd,root,fd,environ,maps} of every process outside
	// the daemon's domain, whatever the capabilities: the daemon reads them through its
	// /proc broker (engine/procfs), a helper started before Landlock. Shell reactions
	// inherit the domain: they write only under the state directory, where their private
	// working directory (<state>/tmp) and the evidence bundles (<state>/evidence) are.
	Landlock bool `koanf:"landlock"`
	// ReadWrite are more writable paths under Landlock (the file printer's directory is
	// added by itself).
	ReadWrite []string `koanf:"read_write"`
}

func (c confineConfig) validate() error {
	for i, p := range c.ReadWrite {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("confine.read_write[%d]: %q is not an absolute path", i, p)
		}
	}
	return nil
}

// confine drops the daemon's privileges (engine/confine). It runs once everything that
// needs them is in place: BPF programs loaded and attached, the nftables sockets open,
// the fanotify group created, the metrics listener bound, the notify socket connected.
// An error must end the daemon: it may be half-confined.
func (d *daemon) confine(cfg daemonConfig) error {
	if !cfg.Confine.Enabled {
		d.log.Warn("DEGRADED: confinement disabled by configuration (confine.enabled: false): the daemon keeps every capability")
		d.met.SetDegraded("confine", true)
		return nil
	}
	d.met.SetDegraded("confine", false)
	// The state directory is writable under Landlock, and with it everything reactions write:
	// the shell reactions' private temp root (liveworld.TempRoot) and the evidence bundles
	// (liveworld.EvidenceDir), both inside it.
	rw := append([]string(nil), cfg.Confine.ReadWrite...)
	if p := cfg.Printers.File.Path; p != "" {
		rw = append(rw, filepath.Dir(p)) // rotation renames and creates files there
	}
	mode := confine.LandlockOff
	if cfg.Confine.Landlock {
		mode = confine.LandlockAuto
		if _, err := os.Stat(cfg.StateDir); err != nil {
			// Degraded start (no usable state directory): nothing to grant writes to.
			d.log.Warn("landlock skipped: the state directory is unusable", "err", err)
			mode = confine.LandlockOff
		}
	}
	rep, err := confine.Apply(confine.Options{Keep: confine.DaemonKeep(), StateDir: cfg.StateDir, ReadWrite: rw, Landlock: mode})
	if err != nil {
		return fmt.Errorf("drop privileges: %w", err)
	}
	d.confined = rep
	d.log.Info("privileges dropped", "capabilities", strings.Join(rep.Kept.Names(), ","), "cap_eff", rep.Kept.String(),
		"cap_bnd", rep.Bounding.String(), "no_new_privs", rep.NoNewPrivs, "threads", rep.Threads,
		"landlock", rep.Landlock.Applied, "landlock_abi", rep.Landlock.ABI)
	if rep.Missing != 0 {
		d.log.Warn("capabilities the daemon keeps were not held at start: the features that use them fail",
			"missing", strings.Join(rep.Missing.Names(), ","))
	}
	d.met.SetDegraded("landlock", !rep.Landlock.Applied)
	if !rep.Landlock.Applied {
		d.log.Warn("landlock: file system not confined", "reason", rep.Landlock.Reason)
	}
	return nil
}

// confineSummary is the ready line's account of the confinement.
func (d *daemon) confineSummary() string {
	if d.confined.Threads == 0 {
		return "off"
	}
	s := "caps=" + strings.Join(d.confined.Kept.Names(), ",") + " no_new_privs"
	if d.confined.Landlock.Applied {
		s += fmt.Sprintf(" landlock(abi %d)", d.confined.Landlock.ABI)
	}
	if d.broker != nil {
		s += fmt.Sprintf(" proc_broker(pid %d)", d.broker.Pid())
	}
	return s
}

// startGuards starts the watchdog that repairs the nftables table and the BPF links when
// someone undoes them, and the systemd watchdog pings, which are sent only while its
// rounds complete.
func (d *daemon) startGuards(ctx context.Context, wg *sync.WaitGroup, notify *sdNotifier) {
	var lastRound atomic.Int64
	lastRound.Store(time.Now().UnixNano())
	cfg := watchdog.Config{Observer: d.met, Log: d.log,
		Tick: func() { lastRound.Store(time.Now().UnixNano()) }}
	if d.live != nil {
		cfg.Table = watchdog.NetTable(d.live.Net)
	}
	if d.sensors != nil {
		cfg.Links = d.sensors
	}
	wd := watchdog.New(cfg)
	wg.Add(1)
	go func() { defer wg.Done(); wd.Run(ctx) }()
	if notify.WatchdogInterval() > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			notify.KeepAlive(ctx, func() bool {
				// Alive while the watchdog's rounds complete (each is bounded).
				return time.Since(time.Unix(0, lastRound.Load())) < 15*watchdog.DefaultInterval
			})
		}()
	}
}

// featureSummary lists the kernel mechanisms in use and the fallbacks taken.
func featureSummary(f bpf.Features) (inUse, fallbacks []string) {
	for _, s := range f.List() {
		if s.Available {
			inUse = append(inUse, s.Name)
			continue
		}
		fb := s.Fallback
		if fb == "" {
			fb = "none"
		}
		fallbacks = append(fallbacks, s.Name+" -> "+fb)
	}
	return inUse, fallbacks
}
