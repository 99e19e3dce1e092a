package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine"
	"github.com/jibril-rt/jibril/engine/dnscache"
	"github.com/jibril-rt/jibril/engine/enrich"
	"github.com/jibril-rt/jibril/engine/proctable"
	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/store"
)

// needKernel says why the kernel benchmarks cannot run here, or nil.
func needKernel() error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (eBPF sensors)")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return errors.New("needs kernel BTF at /sys/kernel/btf/vmlinux")
	}
	return nil
}

func token() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func copyFile(src, dst string, mode os.FileMode) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, mode)
}

// monoNow is CLOCK_MONOTONIC in ns: the clock of bpf_ktime_get_ns.
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// wallMinusMono is CLOCK_REALTIME - CLOCK_MONOTONIC now, the offset the sensors add to a kernel
// timestamp to stamp an event.
func wallMinusMono() int64 {
	var m1, r, m2 unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &r)
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2)
	return r.Nano() - (m1.Nano()+m2.Nano())/2
}

// engineRig is the daemon's in-process pipeline without the CLI: a sandbox host, an engine
// loaded with recipe sources, and (per phase) sensors feeding it through engine.Feed.
type engineRig struct {
	host *sandbox.Host
	st   *store.Store
	eng  *engine.Engine
	set  *engine.Set
}

func newEngineRig(ctx context.Context, dir string, live, dry sandbox.World, pr engine.Printer, srcs []engine.Source) (*engineRig, error) {
	r := &engineRig{}
	var err error
	if r.st, err = store.Open(ctx, filepath.Join(dir, "jibril.db")); err != nil {
		return nil, fmt.Errorf("open the store: %w", err)
	}
	if live.Store == nil {
		live.Store = r.st
	}
	if dry.Store == nil {
		dry.Store = r.st
	}
	if r.host, err = sandbox.NewHost(ctx, sandbox.HostConfig{CacheDir: filepath.Join(dir, "wazero")}); err != nil {
		r.close()
		return nil, fmt.Errorf("start the sandbox host: %w", err)
	}
	r.eng = engine.New(engine.Config{Host: r.host, Printer: pr, Live: live, DryRun: dry, Audit: r.st, Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Queue: 1024, Instances: 4})
	r.set = r.eng.Load(ctx, srcs, engine.LoadOptions{DefaultPolicy: "strict"})
	if len(r.set.Errors) > 0 {
		r.close()
		return nil, fmt.Errorf("load recipes: %w", errors.Join(r.set.Errors...))
	}
	return r, nil
}

func (r *engineRig) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if r.eng != nil {
		_ = r.eng.Close(ctx)
	}
	if r.host != nil {
		_ = r.host.Close(ctx)
	}
	if r.st != nil {
		_ = r.st.Close()
	}
}

// feeding is sensors attached and feeding the engine, as in the daemon.
type feeding struct {
	sensors *bpf.Sensors
	cancel  context.CancelFunc
	wg      sync.WaitGroup
}

func (r *engineRig) feed(ctx context.Context, cfg bpf.Config) (*feeding, error) {
	s, err := bpf.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("attach the sensors: %w", err)
	}
	procs := proctable.New(proctable.Options{})
	_ = procs.Scan(ctx)
	dns := dnscache.New(dnscache.Options{})
	f := &engine.Feed{Sensors: s, Procs: procs, DNS: dns, Engine: r.eng,
		Enrich: enrich.New(enrich.Options{Procs: procs, DNS: dns})}
	fctx, cancel := context.WithCancel(ctx)
	fd := &feeding{sensors: s, cancel: cancel}
	fd.wg.Add(1)
	go func() { defer fd.wg.Done(); f.Run(fctx) }()
	return fd, nil
}

func (f *feeding) stop() {
	f.cancel()
	f.wg.Wait()
	_ = f.sensors.Close()
}
