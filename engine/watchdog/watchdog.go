// Package watchdog repairs what others may undo behind the daemon's back (SPEC §9,
// self-protection): the nftables table `inet jibril` (deleted or flushed: every block
// would be lifted) and the BPF links of the sensors (a detached cgroup link blinds the DNS
// sensor). It checks them every second, repairs what is missing, logs loudly and counts
// each repair.
package watchdog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/sandbox/livenet"
)

// DefaultInterval is how often the watchdog checks.
const DefaultInterval = time.Second

// Table is the nftables table watched.
type Table interface {
	// Present reports whether the table, its sets, chains and rules are all in place.
	Present(ctx context.Context) (bool, error)
	// Restore recreates the table and re-applies every persisted block.
	Restore(ctx context.Context) error
}

// Links are the BPF links watched (*bpf.Sensors).
type Links interface {
	CheckLinks() ([]bpf.LinkState, error)
	Reattach() ([]bpf.LinkState, error)
}

// Observer counts repairs (*metrics.Metrics).
type Observer interface {
	Tampered(what string)
}

// What a repair is counted as.
const (
	WhatNftables = "nftables"
	WhatBPFLink  = "bpf_link"
)

// Config says what to watch; a nil Table or Links is not watched.
type Config struct {
	Interval time.Duration // 0 means DefaultInterval
	Table    Table
	Links    Links
	Observer Observer
	Log      *slog.Logger
	// Tick, when set, is called after every round: the daemon's systemd watchdog pings
	// only while rounds complete.
	Tick func()
}

// Watchdog checks and repairs. It is used from one goroutine (Run).
type Watchdog struct {
	cfg Config
	log *slog.Logger
}

// New returns a watchdog for cfg.
func New(cfg Config) *Watchdog {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Watchdog{cfg: cfg, log: log}
}

// Result is what one round found and did.
type Result struct {
	TableRestored bool
	Reattached    []bpf.LinkState
	Err           error // checks or repairs that failed
}

// Run checks every Interval until ctx ends.
func (w *Watchdog) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Check(ctx)
			if w.cfg.Tick != nil {
				w.cfg.Tick()
			}
		}
	}
}

// Check runs one round: each check is bounded by the interval (at least a second), so a
// stuck netlink socket cannot stall the others for long.
func (w *Watchdog) Check(ctx context.Context) Result {
	var r Result
	var errs []error
	if w.cfg.Table != nil {
		restored, err := w.checkTable(ctx)
		r.TableRestored = restored
		if err != nil {
			errs = append(errs, err)
		}
	}
	if w.cfg.Links != nil {
		fixed, err := w.checkLinks()
		r.Reattached = fixed
		if err != nil {
			errs = append(errs, err)
		}
	}
	r.Err = errors.Join(errs...)
	return r
}

func (w *Watchdog) timeout() time.Duration {
	return max(w.cfg.Interval, time.Second)
}

func (w *Watchdog) checkTable(ctx context.Context) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, w.timeout())
	ok, err := w.cfg.Table.Present(cctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("watchdog: cannot check the nftables table", "err", err)
		}
		return false, fmt.Errorf("check nftables table: %w", err)
	}
	if ok {
		return false, nil
	}
	w.log.Error("TAMPERING: the nftables table inet jibril was deleted or altered behind the daemon's back: restoring it and every block")
	if w.cfg.Observer != nil {
		w.cfg.Observer.Tampered(WhatNftables)
	}
	// Restoring re-applies every block: give it more than one check's time.
	rctx, cancel := context.WithTimeout(ctx, 10*w.timeout())
	defer cancel()
	if err := w.cfg.Table.Restore(rctx); err != nil {
		w.log.Error("watchdog: restoring the nftables table failed: blocks are lifted", "err", err)
		return false, fmt.Errorf("restore nftables table: %w", err)
	}
	w.log.Warn("watchdog: nftables table restored")
	return true, nil
}

func (w *Watchdog) checkLinks() ([]bpf.LinkState, error) {
	states, err := w.cfg.Links.CheckLinks()
	if err != nil {
		return nil, fmt.Errorf("check bpf links: %w", err)
	}
	var broken []string
	for _, s := range states {
		if s.Err != nil || !s.Attached {
			broken = append(broken, s.String())
		}
	}
	if len(broken) == 0 {
		return nil, nil
	}
	w.log.Error("TAMPERING: BPF link(s) of the sensors detached behind the daemon's back: re-attaching", "links", broken)
	if w.cfg.Observer != nil {
		w.cfg.Observer.Tampered(WhatBPFLink)
	}
	fixed, err := w.cfg.Links.Reattach()
	for _, f := range fixed {
		w.log.Warn("watchdog: BPF link re-attached", "link", f.String())
	}
	if err != nil {
		w.log.Error("watchdog: re-attaching failed: a sensor is blind", "err", err)
		return fixed, fmt.Errorf("reattach bpf links: %w", err)
	}
	return fixed, nil
}

// NetTable watches the table of a live network actuator.
func NetTable(n *livenet.Net) Table { return netTable{n} }

type netTable struct{ n *livenet.Net }

func (t netTable) Present(ctx context.Context) (bool, error) { return t.n.Blocker().Present(ctx) }

func (t netTable) Restore(ctx context.Context) error {
	_, err := t.n.Restore(ctx)
	return err
}
