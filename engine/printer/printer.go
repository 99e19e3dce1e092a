// Package printer delivers detections (already-encoded JSON event objects) to
// their destinations: stdout, a rotated file, a webhook. A Set fans every
// event out to all printers through one bounded queue per printer so that a
// slow destination never delays the engine: when a queue is full the event is
// dropped for that printer and counted.
package printer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Printer writes batches of events to one destination. A Set calls Write and
// Close from a single goroutine, so implementations need no locking of their
// own. Every event in a batch is one compact JSON object without a newline.
type Printer interface {
	// Name identifies the printer in counters and logs ("stdout", "file", ...).
	Name() string
	// Write delivers the batch; an error means no event of the batch is
	// known to be delivered and the whole batch is counted as failed.
	Write(ctx context.Context, batch [][]byte) error
	// Close flushes and releases the destination.
	Close(ctx context.Context) error
}

// QueueOptions tunes the queue and batching a Set uses in front of one printer.
type QueueOptions struct {
	// Size is the queue capacity in events (> 0).
	Size int
	// Batch is the most events handed to one Write call (> 0).
	Batch int
	// MaxDelay is how long the first event of an incomplete batch may wait
	// for more events. Zero means write whatever is queued right away.
	MaxDelay time.Duration
}

// Stats are the counters of one printer, all monotonic.
type Stats struct {
	Printer string
	Printed uint64 // events the destination accepted
	Dropped uint64 // events refused because the queue was full or the Set closed
	Failed  uint64 // events the destination failed to take (after retries) or that were not valid JSON
}

// Set fans events out to its printers. It is safe for concurrent use.
type Set struct {
	log     *slog.Logger
	workers []*worker

	// mu guards closed and the queue channels against a send after close:
	// Print holds it shared, Close exclusively.
	mu     sync.RWMutex
	closed bool

	runCtx    context.Context // cancelled when Close gives up waiting
	cancelRun context.CancelFunc
	done      chan struct{}
}

type worker struct {
	p      Printer
	opts   QueueOptions
	queue  chan []byte
	stopCh chan struct{}

	printed atomic.Uint64
	dropped atomic.Uint64
	failed  atomic.Uint64
}

// Entry pairs a printer with the queue in front of it.
type Entry struct {
	Printer Printer
	Queue   QueueOptions
}

// NewSet starts one goroutine per printer. log may be nil (logs discarded).
// The Set owns the printers: Close closes them.
func NewSet(log *slog.Logger, entries ...Entry) (*Set, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seen := map[string]bool{}
	for i, e := range entries {
		if e.Printer == nil {
			return nil, fmt.Errorf("printer set: entry %d: nil printer", i)
		}
		name := e.Printer.Name()
		if seen[name] {
			return nil, fmt.Errorf("printer set: duplicate printer name %q", name)
		}
		seen[name] = true
		if e.Queue.Size <= 0 || e.Queue.Batch <= 0 || e.Queue.MaxDelay < 0 {
			return nil, fmt.Errorf("printer set: printer %q: queue size and batch must be positive, max delay not negative (got %d, %d, %s)",
				name, e.Queue.Size, e.Queue.Batch, e.Queue.MaxDelay)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Set{log: log, runCtx: ctx, cancelRun: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	for _, e := range entries {
		w := &worker{p: e.Printer, opts: e.Queue, queue: make(chan []byte, e.Queue.Size), stopCh: make(chan struct{})}
		s.workers = append(s.workers, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.run(w)
		}()
	}
	go func() {
		wg.Wait()
		close(s.done)
	}()
	return s, nil
}

// Print hands ev to every printer without ever blocking. The Set keeps ev, so
// the caller must not modify it afterwards; printers only read it.
func (s *Set) Print(ev []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, w := range s.workers {
		if s.closed {
			w.dropped.Add(1)
			continue
		}
		select {
		case w.queue <- ev:
		default:
			w.dropped.Add(1)
		}
	}
}

// Stats returns the counters of every printer, in the order they were given.
func (s *Set) Stats() []Stats {
	out := make([]Stats, 0, len(s.workers))
	for _, w := range s.workers {
		out = append(out, Stats{
			Printer: w.p.Name(),
			Printed: w.printed.Load(),
			Dropped: w.dropped.Load(),
			Failed:  w.failed.Load(),
		})
	}
	return out
}

// Close stops accepting events, delivers what is queued, and closes every
// printer. When ctx ends first, pending deliveries are cancelled, what is
// still queued is counted as dropped, and ctx's error is returned. Close is
// idempotent; later calls wait like the first one.
func (s *Set) Close(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for _, w := range s.workers {
			close(w.stopCh)
		}
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.cancelRun()
		return fmt.Errorf("close printers: %w", ctx.Err())
	}
}

// run is the loop of one worker: collect a batch, write it, count.
func (s *Set) run(w *worker) {
	defer func() {
		if err := w.p.Close(s.runCtx); err != nil {
			s.log.Warn("printer close failed", "printer", w.p.Name(), "err", err)
		}
	}()
	batch := make([][]byte, 0, w.opts.Batch)
	var timer *time.Timer
	for {
		if s.runCtx.Err() != nil {
			// Close gave up waiting: count the rest as dropped, quickly.
			s.drain(w)
			return
		}
		batch = batch[:0]
		stopping := false
		// Wait for the first event of a batch.
		select {
		case ev := <-w.queue:
			batch = w.add(batch, ev)
		case <-w.stopCh:
			stopping = true
		}
		if stopping {
			s.drain(w)
			return
		}
		// Fill the batch with what is already queued, then, if allowed,
		// wait up to MaxDelay for the rest.
	fill:
		for len(batch) < w.opts.Batch {
			select {
			case ev := <-w.queue:
				batch = w.add(batch, ev)
				continue
			default:
			}
			if w.opts.MaxDelay <= 0 {
				break
			}
			if timer == nil {
				timer = time.NewTimer(w.opts.MaxDelay)
			} else {
				timer.Reset(w.opts.MaxDelay)
			}
			for len(batch) < w.opts.Batch {
				select {
				case ev := <-w.queue:
					batch = w.add(batch, ev)
				case <-timer.C:
					break fill
				case <-w.stopCh:
					timer.Stop()
					break fill
				}
			}
			timer.Stop()
		}
		s.write(w, batch)
	}
}

// drain writes everything still queued once the Set is closed; nothing can
// be enqueued any more because Close flipped closed under the lock.
func (s *Set) drain(w *worker) {
	batch := make([][]byte, 0, w.opts.Batch)
	for {
		if s.runCtx.Err() != nil {
			w.dropped.Add(uint64(len(w.queue) + len(batch)))
			return
		}
		select {
		case ev := <-w.queue:
			batch = w.add(batch, ev)
			if len(batch) == w.opts.Batch {
				s.write(w, batch)
				batch = batch[:0]
			}
		default:
			if len(batch) > 0 {
				s.write(w, batch)
			}
			return
		}
	}
}

// add appends ev to batch after making sure it is one line of JSON: an event
// carrying a newline would split into several "lines" for every consumer.
func (w *worker) add(batch [][]byte, ev []byte) [][]byte {
	ev, ok := oneLine(ev)
	if !ok {
		w.failed.Add(1)
		return batch
	}
	return append(batch, ev)
}

func (s *Set) write(w *worker, batch [][]byte) {
	if len(batch) == 0 {
		return
	}
	if err := w.p.Write(s.runCtx, batch); err != nil {
		w.failed.Add(uint64(len(batch)))
		s.log.Warn("printer write failed", "printer", w.p.Name(), "events", len(batch), "err", err)
		return
	}
	w.printed.Add(uint64(len(batch)))
}

// oneLine returns ev as a single JSON line. The engine's encoder never emits
// raw newlines, so the common case costs one byte scan; anything else is
// compacted, and refused when it is not JSON.
func oneLine(ev []byte) ([]byte, bool) {
	if len(ev) == 0 {
		return nil, false
	}
	if bytes.IndexByte(ev, '\n') < 0 && bytes.IndexByte(ev, '\r') < 0 {
		return ev, true
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, ev); err != nil {
		return nil, false
	}
	return buf.Bytes(), true
}
