package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine"
	"github.com/jibril-rt/jibril/engine/confine"
	"github.com/jibril-rt/jibril/engine/dnscache"
	"github.com/jibril-rt/jibril/engine/enrich"
	"github.com/jibril-rt/jibril/engine/metrics"
	"github.com/jibril-rt/jibril/engine/printer"
	"github.com/jibril-rt/jibril/engine/procfs"
	"github.com/jibril-rt/jibril/engine/proctable"
	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/recipes/builtin"
	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/fsguard"
	"github.com/jibril-rt/jibril/sandbox/liveworld"
	"github.com/jibril-rt/jibril/sandbox/proc"
	"github.com/jibril-rt/jibril/store"
)

type runFlags struct {
	config        string
	recipes       []string
	defaultPolicy string
	dryRun        bool
	noBuiltin     bool
	metricsAddr   string
	noMetrics     bool
}

func newRunCmd(g *globals) *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run [--config FILE] [--recipes DIR]... [--default-policy strict|jibril] [--dry-run]",
		Short: "Run the daemon: sensors, recipes, printers and reactions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := daemonConfigFrom(cmd, g, f)
			if err != nil {
				return err
			}
			log, err := g.logger()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			if err := runDaemon(ctx, cfg, log, cmd.OutOrStdout(), hup); err != nil {
				var ee *exitError
				if errors.As(err, &ee) {
					return err
				}
				return &exitError{code: 1, msg: err.Error()}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.config, "config", "", "configuration file (default "+defaultConfigFile+" when it exists)")
	fl.StringArrayVar(&f.recipes, "recipes", nil, "recipe directory to load and watch (repeatable)")
	fl.StringVar(&f.defaultPolicy, "default-policy", "", "policy of recipes without a policy file: strict|jibril (default strict)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "record every reaction's effects instead of performing them")
	fl.BoolVar(&f.noBuiltin, "no-builtin", false, "do not load the built-in recipe library")
	fl.StringVar(&f.metricsAddr, "metrics-address", "", "metrics and health endpoint (default "+metrics.DefaultAddress+")")
	fl.BoolVar(&f.noMetrics, "no-metrics", false, "do not serve metrics")
	return cmd
}

// daemonConfigFrom layers the configuration: defaults, the file, JIBRIL_* and then flags.
func daemonConfigFrom(cmd *cobra.Command, g *globals, f *runFlags) (daemonConfig, error) {
	path, explicit := f.config, f.config != ""
	if !explicit {
		path = defaultConfigFile
	}
	cfg, err := loadDaemonConfig(path, explicit, os.Environ(), defaultDaemonConfig(g.stateDir))
	if err != nil {
		return cfg, badInput("%v", err)
	}
	fl := cmd.Flags()
	if cmd.Root().PersistentFlags().Changed("state-dir") {
		cfg.StateDir = g.stateDir
	}
	if fl.Changed("recipes") {
		cfg.Recipes = f.recipes
	}
	if fl.Changed("default-policy") {
		cfg.DefaultPolicy = f.defaultPolicy
	}
	if fl.Changed("dry-run") {
		cfg.DryRun = f.dryRun
	}
	if fl.Changed("no-builtin") {
		cfg.Builtin = !f.noBuiltin
	}
	if fl.Changed("metrics-address") {
		cfg.Metrics.Address = f.metricsAddr
	}
	if fl.Changed("no-metrics") {
		cfg.Metrics.Enabled = !f.noMetrics
	}
	cfg.Printers = cfg.Printers.WithDefaults()
	if err := cfg.validate(); err != nil {
		return cfg, badInput("config: %v", err)
	}
	return cfg, nil
}

// sources are the recipe sources of a configuration: the built-in library, then directories.
func (c *daemonConfig) sources() []engine.Source {
	var out []engine.Source
	if c.Builtin {
		out = append(out, engine.Source{Name: "builtin", FS: builtin.FS(), Dir: "."})
	}
	for _, d := range c.Recipes {
		out = append(out, engine.DirSource(d))
	}
	return out
}

func (c *daemonConfig) loadOptions() engine.LoadOptions {
	modes := map[string]policy.Mode{}
	for name, m := range c.RecipeModes {
		modes[name] = policy.Mode(m)
	}
	return engine.LoadOptions{DefaultPolicy: c.DefaultPolicy, PolicyDir: c.PolicyDir, Ceiling: c.ceiling(), DryRun: c.DryRun, Modes: modes}
}

// daemon is what runDaemon assembled, to be torn down in reverse order.
type daemon struct {
	log      *slog.Logger
	st       *store.Store
	host     *sandbox.Host
	live     *liveworld.Live
	printers *printer.Set
	eng      *engine.Engine
	sensors  *bpf.Sensors
	denier   *bpf.Denier
	met      *metrics.Metrics
	prevent  preventState
	confined confine.Report // what confine.Apply left the daemon with
	broker   *procfs.Client // the /proc broker when Landlock is planned, else nil
}

func runDaemon(ctx context.Context, cfg daemonConfig, log *slog.Logger, stdout io.Writer, hup <-chan os.Signal) (err error) {
	start := time.Now()
	var stateErr error // the state directory or its database is unusable: run degraded (degradedNote)
	for _, dir := range []string{cfg.StateDir, liveworld.TempRoot(cfg.StateDir), liveworld.EvidenceDir(cfg.StateDir)} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			stateErr = fmt.Errorf("state directory %s: %w", dir, err)
			break
		}
	}
	d := &daemon{log: log, met: metrics.New()}
	for _, v := range cfg.EnvIgnored {
		log.Warn("environment variable names no setting: ignored", "variable", v)
	}
	defer d.close(log)

	feats := bpf.Probe(ctx)
	for _, l := range feats.Lines() {
		log.Info("kernel feature", "status", l)
	}
	for _, fs := range feats.List() {
		d.met.SetDegraded(fs.Name, !fs.Available)
	}

	if stateErr == nil {
		if d.st, err = store.Open(ctx, liveworld.DBPath(cfg.StateDir)); err != nil {
			stateErr = err
		}
	}
	cacheDir := sandbox.CacheDir(cfg.StateDir)
	d.met.SetDegraded("state", stateErr != nil)
	if stateErr != nil {
		log.Error("DEGRADED: "+degradedNote, "state_dir", cfg.StateDir, "err", stateErr.Error())
		cfg.DryRun, cacheDir = true, ""
	}
	// Before anything reads /proc of other processes, and long before Landlock: the broker
	// must stay outside the daemon's Landlock domain.
	var pfs procfs.ProcFS = procfs.Direct{}
	if d.broker = d.startProcBroker(cfg); d.broker != nil {
		pfs = d.broker
	}
	if d.host, err = sandbox.NewHost(ctx, sandbox.HostConfig{CacheDir: cacheDir, Logger: log}); err != nil {
		return err
	}
	floor := proc.Floor{MinPID: cfg.Protect.MinPID, ProtectedNames: cfg.Protect.Names}
	var liveWorld sandbox.World
	var audit sandbox.Auditor = unavailableStore{stateErr}
	if stateErr != nil {
		liveWorld = sandbox.World{Store: unavailableStore{stateErr}, TempRoot: liveworld.TempRoot(cfg.StateDir)}
	} else {
		audit = d.st
		d.live, err = liveworld.Open(ctx, liveworld.Config{StateDir: cfg.StateDir, Store: d.st, NetNSFd: -1,
			Protect: cfg.protectCIDRs(), Floor: floor, Restore: true, Proc: pfs, Log: log})
		if err != nil {
			if d.live == nil {
				return err
			}
			log.Error("network blocks restored only in part", "err", err)
		} else {
			r := d.live.Restored
			log.Info("network blocks restored", "applied", r.Applied, "purged", r.Purged, "domains", r.Domains)
		}
		liveWorld = d.live.World
	}
	dry, err := dryRunWorld(liveWorld, floor)
	if err != nil {
		return err
	}
	if stateErr != nil {
		liveWorld = dry // never used (every recipe is dry-run), but never a world without a store
	}
	if d.printers, err = printer.New(cfg.Printers, stdout, log); err != nil {
		return fmt.Errorf("printers: %w", err)
	}
	d.eng = engine.New(engine.Config{Host: d.host, Printer: d.printers, Live: liveWorld, DryRun: dry,
		Audit: audit, Observer: d.met, Log: log, AllowPower: cfg.AllowPower, ShellTempDir: liveworld.TempRoot(cfg.StateDir),
		Workers: cfg.Engine.Workers, Queue: cfg.Engine.Queue, Instances: cfg.Engine.Instances, EnforceScope: cfg.EnforceScope})
	srcs, opt := cfg.sources(), cfg.loadOptions()
	set := d.eng.Load(ctx, srcs, opt)
	reportSet(log, set)
	if d.live != nil {
		makeRecipeTempRoots(log, liveworld.TempRoot(cfg.StateDir), set)
	}
	if stateErr != nil {
		d.eng.Notice("jibril_degraded", degradedNote+": "+stateErr.Error(), "high")
	}

	procs := proctable.New(proctable.Options{Proc: pfs})
	if err := procs.Scan(ctx); err != nil {
		log.Warn("process table scan", "err", err)
	}
	dns := dnscache.New(dnscache.Options{})
	dns.OnAnswer(func(name string, ips []netip.Addr, ttl time.Duration) {
		if d.live == nil {
			return // degraded: no domain blocks
		}
		if err := d.live.Net.ObserveDNS(ctx, name, ips, ttl); err != nil {
			log.Warn("domain block from a DNS answer", "name", name, "err", err)
		}
	})
	sensors := bpf.SensorProc
	if cfg.Sensors.File {
		sensors |= bpf.SensorFile
	}
	if cfg.Sensors.Net {
		sensors |= bpf.SensorNet
	}
	if cfg.Sensors.DNS && feats.CgroupSKB.Available {
		sensors |= bpf.SensorDNS
	} else if cfg.Sensors.DNS {
		log.Warn("DEGRADED: no DNS sensor (cgroup_skb unavailable): flows carry no names and domain blocks follow only names resolved at block time",
			"reason", feats.CgroupSKB.Err)
	}
	// With the broker, relative paths are resolved by the feed through it: the sensors' direct
	// reads of /proc/PID/{task/TID/cwd,fd/N} would be refused under Landlock.
	if d.sensors, err = bpf.Open(ctx, bpf.Config{Sensors: sensors, RealtimeExecReader: cfg.Sensors.RealtimeExec,
		ChannelSize: cfg.Sensors.ChannelSize, FileRingBytes: int(cfg.Sensors.FileRingBytes), NoResolvePaths: d.broker != nil}); err != nil {
		return fmt.Errorf("attach the kernel sensors: %w", err)
	}
	d.met.SetLossSource(func() map[string]uint64 {
		out := map[string]uint64{}
		for name, s := range d.sensors.Stats() {
			out[name] = s.Lost + s.Dropped
		}
		return out
	})
	if d.live != nil && d.live.Net != nil {
		d.met.SetNftSource(func() (int, error) {
			lctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			l, err := d.live.Net.List(lctx)
			if err != nil {
				return 0, err
			}
			if l.KernelErr != nil {
				return 0, l.KernelErr
			}
			return len(l.Kernel), nil
		})
	}
	d.met.SetPrinterSource(func() []metrics.PrinterStats {
		var out []metrics.PrinterStats
		for _, s := range d.printers.Stats() {
			out = append(out, metrics.PrinterStats{Printer: s.Printer, Printed: s.Printed, Dropped: s.Dropped, Failed: s.Failed})
		}
		return out
	})
	if cfg.Confine.Enabled && feats.FanotifyExecPerm.Available {
		// fanotify_init needs CAP_SYS_ADMIN, which confinement drops: the group is made now
		// so that a reload may still bring prevent: deny recipes (marks need no capability).
		if d.denier, err = bpf.NewDenier(bpf.DenierConfig{}); err != nil {
			log.Warn("prevent: deny unavailable", "err", err)
			d.denier = nil
		}
	}
	d.applyKernelFilters(set)

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	feed := &engine.Feed{Sensors: d.sensors, Procs: procs, DNS: dns, Engine: d.eng,
		Enrich: enrich.New(enrich.Options{Procs: procs, DNS: dns, Proc: pfs}), Received: d.met.EventReceived}
	if d.broker != nil {
		feed.Resolve = procfs.Links{FS: d.broker}
	}
	wg.Add(1)
	go func() { defer wg.Done(); feed.Run(ctx) }()

	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				d.syncKill()
			}
		}
	}()

	reload := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				log.Info("SIGHUP: reloading recipes")
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.eng.Watch(ctx, srcs, opt, cfg.ReloadEvery, reload, func(s *engine.Set) {
			reportSet(log, s)
			if d.live != nil {
				makeRecipeTempRoots(log, liveworld.TempRoot(cfg.StateDir), s)
			}
			d.applyKernelFilters(s)
		})
	}()

	if cfg.Metrics.Enabled {
		srv, err := metrics.NewServer(metrics.ServerConfig{Address: cfg.Metrics.Address, AllowNonLoopback: cfg.Metrics.AllowNonLoopback},
			d.met, func(context.Context) metrics.Health { return metrics.Health{OK: true} })
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Run(ctx); err != nil {
				log.Error("metrics server", "err", err)
			}
		}()
		log.Info("metrics", "address", srv.Addr().String())
	}

	notify, err := newSDNotifier(os.Getenv, os.Getpid())
	if err != nil {
		return err
	}
	defer notify.Close()
	for _, k := range notifyEnv() {
		_ = os.Unsetenv(k) // shell reactions must not speak for the daemon
	}
	if err := d.confine(cfg); err != nil {
		return err
	}
	d.startGuards(ctx, &wg, notify)

	lossErr := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := d.watchLoss(ctx, cfg.Loss); err != nil {
			lossErr <- err
			cancel()
		}
	}()

	inUse, fallbacks := featureSummary(feats)
	log.Info("ready", "recipes", len(set.Recipes), "rejected", len(set.Errors), "sensors", strings.Join(d.sensors.Attachments(), ","),
		"state_dir", cfg.StateDir, "dry_run", cfg.DryRun, "kernel_features", strings.Join(inUse, ","), "fallbacks", strings.Join(fallbacks, "; "),
		"confinement", d.confineSummary(), "startup_ms", time.Since(start).Milliseconds())
	if err := notify.Ready(fmt.Sprintf("%d recipes, confinement: %s", len(set.Recipes), d.confineSummary())); err != nil {
		log.Warn("systemd notification", "err", err)
	}
	<-ctx.Done()
	log.Info("stopping")
	_ = notify.Stopping()
	select {
	case err := <-lossErr:
		return err
	default:
	}
	return nil
}

// watchLoss checks event loss (kernel rings, sensor channels, reaction queues) every
// cfg.Every; any loss is logged, and past the threshold the configured action is taken.
func (d *daemon) watchLoss(ctx context.Context, cfg lossConfig) error {
	t := time.NewTicker(cfg.Every)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		var total uint64
		parts := []any{}
		for name, s := range d.sensors.Stats() {
			total += s.Lost + s.Dropped
			if s.Lost+s.Dropped > 0 {
				parts = append(parts, name, s.Lost+s.Dropped)
			}
		}
		es := d.eng.Stats()
		total += es.QueueDropped
		if es.QueueDropped > 0 {
			parts = append(parts, "reactions", es.QueueDropped)
		}
		delta := total - last
		last = total
		if delta == 0 {
			continue
		}
		d.log.Warn("events lost", append([]any{"since_last_check", delta, "total", total}, parts...)...)
		if delta < cfg.Threshold {
			continue
		}
		note := fmt.Sprintf("%d events lost in %s (total %d): detection is incomplete", delta, cfg.Every, total)
		switch cfg.Action {
		case "log":
			d.log.Error(note)
		case "alert":
			d.log.Error(note)
			d.eng.Notice("jibril_event_loss", note, "high")
		case "exit":
			return fmt.Errorf("loss threshold passed: %s", note)
		}
	}
}

// close tears the daemon down: sensors first (no new events), then the engine drains its
// queued reactions, the printers flush, and the store closes last.
func (d *daemon) close(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if d.denier != nil {
		_ = d.denier.Close()
	}
	if d.sensors != nil {
		if err := d.sensors.Close(); err != nil {
			log.Warn("close sensors", "err", err)
		}
	}
	if d.eng != nil {
		if err := d.eng.Close(ctx); err != nil {
			log.Warn("close engine", "err", err)
		}
	}
	if d.printers != nil {
		if err := d.printers.Close(ctx); err != nil {
			log.Warn("flush printers", "err", err)
		}
	}
	if d.broker != nil { // after the engine: draining reactions may still collect evidence
		if err := d.broker.Close(); err != nil {
			log.Warn("stop the proc broker", "err", err)
		}
	}
	if d.live != nil {
		_ = d.live.Close()
	}
	if d.host != nil {
		_ = d.host.Close(ctx)
	}
	if d.st != nil {
		_ = d.st.Close()
	}
}

func reportSet(log *slog.Logger, s *engine.Set) {
	for _, err := range s.Errors {
		log.Error("recipe rejected", "err", err.Error())
	}
	log.Info("recipes loaded", "count", len(s.Recipes), "rejected", len(s.Errors))
}

// dryRunWorld is what dry-run reactions act on: kills, blocks, power, evidence and file writes
// are recorded (and audited as "would"), reads and the data store are real.
func dryRunWorld(live sandbox.World, floor proc.Floor) (sandbox.World, error) {
	rec := &sandbox.Recorder{Floor: proc.NewLive(floor)}
	root, err := fsguard.New("/")
	if err != nil {
		return sandbox.World{}, fmt.Errorf("dry-run world: %w", err)
	}
	return sandbox.World{Proc: rec, Net: rec, Power: rec, Store: live.Store, TempRoot: live.TempRoot,
		Files: sandbox.ReadOnlyFiles{Files: sandbox.GuardedFiles{FS: root}, Rec: rec}, Evidence: rec}, nil
}

// preventState is what the kernel was told to refuse, to apply changes on reload.
type preventState struct {
	mu       sync.Mutex
	wantKill map[string]bool       // paths enforcing `prevent: kill` recipes name
	kill     map[string]bpf.FileID // what the kernel holds for each, by inode
	wantDeny map[string]bool       // paths enforcing `prevent: deny` recipes name
	deny     map[string]bpf.FileID // the inode fanotify marked for each
}

// applyKernelFilters pushes the cheap parts of the recipes into the kernel: file path prefixes,
// `prevent: kill` (SIGKILL at exec by inode) and `prevent: deny` (fanotify exec permission).
func (d *daemon) applyKernelFilters(s *engine.Set) {
	d.prevent.mu.Lock()
	defer d.prevent.mu.Unlock()
	kill, deny := map[string]bool{}, map[string]bool{}
	prefixes := map[string]bpf.OpMask{}
	// Only execs an enforcing reaction may act on need the reader woken at once; the others
	// (dry-run recipes, the process table) are delivered in batches, which spares every exec on
	// the host the cost of a wake-up.
	var urgent []string
	wakeAll := false
	for _, l := range s.Recipes {
		r := l.Recipe
		if !r.Enabled {
			continue
		}
		if r.Mechanism.MatchesFiles() {
			for _, p := range engine.FilePrefixes(l) {
				prefixes[p.Prefix] |= p.Ops
			}
		}
		if r.Mechanism.MatchesExecutions() && l.Mode == policy.ModeEnforce && len(l.Recipe.Reactions) > 0 {
			names, ok := execBaseNames(r)
			wakeAll = wakeAll || !ok
			urgent = append(urgent, names...)
		}
		if r.Prevent == "" || l.Mode != policy.ModeEnforce {
			continue
		}
		paths := exactPaths(r)
		if len(paths) == 0 {
			d.log.Warn("prevent needs full paths (dir and base); falling back to reactions", "recipe", r.Name)
		}
		for _, p := range paths {
			if r.Prevent == recipes.PreventKill {
				kill[p] = true
			} else {
				deny[p] = true
			}
		}
	}
	filter := make([]bpf.FilePrefix, 0, len(prefixes))
	for p, ops := range prefixes {
		filter = append(filter, bpf.FilePrefix{Prefix: p, Ops: ops})
	}
	sort.Slice(filter, func(i, j int) bool { return filter[i].Prefix < filter[j].Prefix })
	if err := d.sensors.SetExecWakeup(wakeAll, urgent); err != nil {
		d.log.Warn("exec wake-up policy: every exec wakes the reader", "err", err)
		_ = d.sensors.SetExecWakeup(true, nil)
	}
	if err := d.sensors.SetFileFilter(filter); err != nil {
		d.log.Warn("in-kernel file filter", "err", err)
	}
	if d.prevent.kill == nil {
		d.prevent.kill, d.prevent.deny = map[string]bpf.FileID{}, map[string]bpf.FileID{}
	}
	d.prevent.wantKill = kill
	d.syncKillLocked()
	if len(deny) > 0 && d.denier == nil {
		dn, err := bpf.NewDenier(bpf.DenierConfig{})
		if err != nil {
			d.log.Warn("prevent: deny unavailable", "err", err)
			return
		}
		d.denier = dn
	}
	d.prevent.wantDeny = deny
	d.syncDenyLocked()
}

// syncDenyLocked keeps the fanotify marks on the files the deny recipes name: a mark pins the
// inode it was put on, so a file replaced at the path would escape it; a file that appears
// after start-up is marked when it appears (checked with syncKill, every second).
func (d *daemon) syncDenyLocked() {
	if d.denier == nil {
		return
	}
	for p, id := range d.prevent.deny {
		cur, err := bpf.FileIDOf(p)
		if d.prevent.wantDeny[p] && err == nil && cur == id {
			continue
		}
		_ = d.denier.UnmarkID(id)
		delete(d.prevent.deny, p)
	}
	for p := range d.prevent.wantDeny {
		if _, ok := d.prevent.deny[p]; ok {
			continue
		}
		id, err := bpf.FileIDOf(p)
		if err != nil {
			continue // not there (yet)
		}
		if err := d.denier.Mark(p); err != nil {
			d.log.Warn("prevent: deny", "path", p, "err", err)
			continue
		}
		d.prevent.deny[p] = id
		d.log.Info("prevent: deny exec", "path", p)
	}
}

// execBaseNames are the executable names an execution recipe can match; ok is false when it
// can match other names too (a directory, a regex, or no path at all).
func execBaseNames(r *recipes.Recipe) (names []string, ok bool) {
	for _, p := range r.Paths {
		if !p.Exact() {
			return nil, false
		}
		names = append(names, p.Base)
	}
	return names, len(names) > 0
}

// syncKill keeps the kernel's kill-on-exec set on the files the recipes name. The kernel keys
// it by inode, and an inode number is reused once its file is deleted: a path whose file is
// gone or replaced is dropped or re-keyed (checked every second, see runDaemon), and a path
// whose file appears later is added then.
func (d *daemon) syncKill() {
	d.prevent.mu.Lock()
	defer d.prevent.mu.Unlock()
	d.syncKillLocked()
	d.syncDenyLocked()
}

func (d *daemon) syncKillLocked() {
	for p, id := range d.prevent.kill {
		cur, err := bpf.FileIDOf(p)
		if d.prevent.wantKill[p] && err == nil && cur == id {
			continue
		}
		if err := d.sensors.ForgetKillOnExecID(id); err != nil {
			d.log.Warn("prevent: kill: forget", "path", p, "err", err)
		}
		delete(d.prevent.kill, p)
		if d.prevent.wantKill[p] {
			d.log.Warn("prevent: kill target replaced or removed", "path", p)
		}
	}
	for p := range d.prevent.wantKill {
		if _, ok := d.prevent.kill[p]; ok {
			continue
		}
		id, err := killableID(p)
		if errors.Is(err, os.ErrNotExist) {
			continue // not there (yet): tried again on the next check
		}
		if err == nil {
			err = d.sensors.KillOnExecID(id)
		}
		if err != nil {
			d.log.Warn("prevent: kill", "path", p, "err", err)
			continue
		}
		d.prevent.kill[p] = id
		d.log.Info("prevent: kill at exec", "path", p)
	}
}

// killableID identifies the file at p for kill-on-exec, from the very file it checked: a regular
// file and not a #! script (the kernel loads a script's interpreter, whose inode is not the key).
func killableID(p string) (bpf.FileID, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return bpf.FileID{}, err
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return bpf.FileID{}, err
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return bpf.FileID{}, fmt.Errorf("%s is not a regular file", p)
	}
	var magic [2]byte
	if n, _ := f.Read(magic[:]); n == 2 && string(magic[:]) == "#!" {
		return bpf.FileID{}, fmt.Errorf("%s is a #! script: the kernel runs its interpreter; use prevent: deny", p)
	}
	return bpf.FileID{Dev: st.Dev, Ino: st.Ino}, nil
}

// exactPaths are the full paths of a recipe's exact path entries.
func exactPaths(r *recipes.Recipe) []string {
	var out []string
	for _, p := range r.Paths {
		if p.Exact() && p.Dir != "" {
			out = append(out, filepath.Join(p.Dir, p.Base))
		}
	}
	return out
}
