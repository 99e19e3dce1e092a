package engine

import (
	"context"
	"sync"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/dnscache"
	"github.com/jibril-rt/jibril/engine/enrich"
	"github.com/jibril-rt/jibril/engine/proctable"
)

// Feed connects the kernel sensors to the engine: the process table follows exec, fork and
// exit; DNS answers fill the name cache (and, through its observers, domain blocks); exec,
// file and network events are enriched and evaluated. One goroutine per stream, so a burst of
// file events never delays an exec.
type Feed struct {
	Sensors  *bpf.Sensors
	Procs    *proctable.Table
	Enrich   *enrich.Enricher
	DNS      *dnscache.Cache
	Engine   *Engine
	Received func(stream string) // counts events per stream (metrics); may be nil
	// Resolve, when set, makes file events' relative paths absolute here, before the
	// recipes see them: a Landlocked daemon opens its sensors with NoResolvePaths (their
	// direct /proc reads would be refused) and resolves through the /proc broker.
	Resolve bpf.ProcLinks
}

// Run consumes the sensor streams until ctx ends or the sensors close.
func (f *Feed) Run(ctx context.Context) {
	count := func(s string) {
		if f.Received != nil {
			f.Received(s)
		}
	}
	var wg sync.WaitGroup
	run := func(fn func()) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn()
		}()
	}
	s := f.Sensors
	run(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-s.Exec():
				if !ok {
					return
				}
				count("exec")
				f.Procs.OnExec(ev)
				if e := f.Enrich.Exec(ev); e != nil {
					f.Engine.Handle(e)
				}
			case ev, ok := <-s.Fork():
				if !ok {
					return
				}
				count("fork")
				f.Procs.OnFork(ev)
			case ev, ok := <-s.Exit():
				if !ok {
					return
				}
				count("exit")
				f.Procs.OnExit(ev)
			}
		}
	})
	run(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-s.File():
				if !ok {
					return
				}
				count("file")
				if f.Resolve != nil {
					bpf.ResolveFileEvent(&ev, f.Resolve)
				}
				if !f.Engine.WantsFile(filePath(ev), enrich.ActionMask(ev)) {
					continue
				}
				if e := f.Enrich.File(ev); e != nil {
					f.Engine.Handle(e)
				}
			}
		}
	})
	run(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-s.Net():
				if !ok {
					return
				}
				count("net")
				if e := f.Enrich.Flow(ev); e != nil {
					f.Engine.Handle(e)
				}
			case ev, ok := <-s.DNS():
				if !ok {
					return
				}
				count("dns")
				f.DNS.Record(ev)
			}
		}
	})
	wg.Wait()
}

// filePath is the path of a file event as WantsFile takes it (WantsFile cleans it).
func filePath(ev bpf.FileEvent) string {
	if ev.AbsPath != "" {
		return ev.AbsPath
	}
	return ev.Path
}
