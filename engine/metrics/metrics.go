// Package metrics holds the daemon's Prometheus metrics in a registry of its
// own and serves them, with a health endpoint, on a local address.
package metrics

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Namespace prefixes every metric name.
const Namespace = "jibril"

// LatencyBuckets returns the reaction latency histogram's upper bounds in
// µs: from a cheap JS reaction (tens of µs) to a shell reaction's timeout (5 s).
func LatencyBuckets() []float64 {
	return []float64{
		25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000,
		100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
	}
}

// PrinterStats are one printer's monotonic counters, as the printer set
// reports them (engine/printer.Stats converts field by field).
type PrinterStats struct {
	Printer                  string
	Printed, Dropped, Failed uint64
}

// Metrics is the daemon's set of metrics. The vectors are exported for
// direct use; the methods below add label hygiene for values that may come
// from hostile input.
type Metrics struct {
	Registry *prometheus.Registry

	EventsReceived  *prometheus.CounterVec   // {stream}
	Detections      *prometheus.CounterVec   // {recipe}
	Reactions       *prometheus.CounterVec   // {recipe, status}
	ReactionLatency *prometheus.HistogramVec // {recipe}, µs
	Denials         *prometheus.CounterVec   // {capability}
	Disarms         *prometheus.CounterVec   // {recipe}
	Degraded        *prometheus.GaugeVec     // {feature}, 1 = degraded
	Tampering       *prometheus.CounterVec   // {what}: repairs of kernel state undone by others
	Recycles        *prometheus.CounterVec   // {recipe}: wasm instances discarded after a timeout, OOM or trap

	lossFn    atomic.Pointer[func() map[string]uint64]
	printerFn atomic.Pointer[func() []PrinterStats]
	nftFn     atomic.Pointer[func() (int, error)]

	mu       sync.Mutex
	degraded map[string]bool
}

// New builds the metrics and registers them, with the Go runtime and process
// collectors, in a new registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		EventsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "events_received_total",
			Help: "Events received from the kernel, per stream.",
		}, []string{"stream"}),
		Detections: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "detections_total",
			Help: "Detections, per recipe.",
		}, []string{"recipe"}),
		Reactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "reactions_total",
			Help: "Reactions run, per recipe and final status (ok, error, timeout, oom, trap, ...).",
		}, []string{"recipe", "status"}),
		ReactionLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "reaction_latency_microseconds",
			Help:    "Time from dispatch to the end of a reaction, in microseconds.",
			Buckets: LatencyBuckets(),
		}, []string{"recipe"}),
		Denials: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "capability_denials_total",
			Help: "Helper calls refused by policy or by the safety floor, per capability.",
		}, []string{"capability"}),
		Disarms: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "disarms_total",
			Help: "Circuit breaker trips (a recipe exceeded its distinct-target budget), per recipe.",
		}, []string{"recipe"}),
		Degraded: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "feature_degraded",
			Help: "1 when a feature runs on a fallback or not at all on this kernel, 0 when it works fully.",
		}, []string{"feature"}),
		Tampering: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "tamper_repairs_total",
			Help: "Kernel state found undone behind the daemon's back and repaired (nftables table, BPF link).",
		}, []string{"what"}),
		Recycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "instance_recycles_total",
			Help: "Reaction instances discarded after a timeout, an out-of-memory or a trap, per recipe.",
		}, []string{"recipe"}),
		degraded: map[string]bool{},
	}
	m.Registry.MustRegister(
		m.EventsReceived, m.Detections, m.Reactions, m.ReactionLatency,
		m.Denials, m.Disarms, m.Degraded, m.Tampering, m.Recycles,
		callbackCollector{m},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// SetLossSource installs the function that reports kernel event loss as
// monotonic totals per stream (ring buffer and perf loss counters). It is
// called on every scrape and must be quick; nil removes it.
func (m *Metrics) SetLossSource(fn func() map[string]uint64) {
	if fn == nil {
		m.lossFn.Store(nil)
		return
	}
	m.lossFn.Store(&fn)
}

// SetPrinterSource installs the function that reports printer counters. It
// is called on every scrape and must be quick; nil removes it.
func (m *Metrics) SetPrinterSource(fn func() []PrinterStats) {
	if fn == nil {
		m.printerFn.Store(nil)
		return
	}
	m.printerFn.Store(&fn)
}

// EventReceived counts one event from stream.
func (m *Metrics) EventReceived(stream string) {
	m.EventsReceived.WithLabelValues(label(stream)).Inc()
}

// Detection counts one detection of recipe.
func (m *Metrics) Detection(recipe string) {
	m.Detections.WithLabelValues(label(recipe)).Inc()
}

// ObserveReaction counts a finished reaction and records how long it took.
func (m *Metrics) ObserveReaction(recipe, status string, took time.Duration) {
	recipe = label(recipe)
	m.Reactions.WithLabelValues(recipe, label(status)).Inc()
	m.ReactionLatency.WithLabelValues(recipe).Observe(float64(took.Nanoseconds()) / 1e3)
}

// Denied counts a refused helper call.
func (m *Metrics) Denied(capability string) {
	m.Denials.WithLabelValues(label(capability)).Inc()
}

// Disarmed counts a circuit breaker trip of recipe.
func (m *Metrics) Disarmed(recipe string) {
	m.Disarms.WithLabelValues(label(recipe)).Inc()
}

// InstanceRecycled counts one discarded reaction instance of recipe.
func (m *Metrics) InstanceRecycled(recipe string) {
	m.Recycles.WithLabelValues(label(recipe)).Inc()
}

// SetNftSource installs the function that counts the elements of jibril's nftables sets,
// read at each scrape; nil removes it.
func (m *Metrics) SetNftSource(fn func() (int, error)) {
	if fn == nil {
		m.nftFn.Store(nil)
		return
	}
	m.nftFn.Store(&fn)
}

// Tampered counts one repair of state someone else undid (engine/watchdog).
func (m *Metrics) Tampered(what string) {
	m.Tampering.WithLabelValues(label(what)).Inc()
}

// SetDegraded records whether feature is degraded on this host.
func (m *Metrics) SetDegraded(feature string, degraded bool) {
	feature = label(feature)
	v := 0.0
	if degraded {
		v = 1
	}
	m.mu.Lock()
	m.degraded[feature] = degraded
	m.mu.Unlock()
	m.Degraded.WithLabelValues(feature).Set(v)
}

// DegradedFeatures lists the features currently marked degraded, sorted.
func (m *Metrics) DegradedFeatures() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for f, d := range m.degraded {
		if d {
			out = append(out, f)
		}
	}
	slices.Sort(out)
	return out
}

// maxLabelLen bounds label values: they end up in every scrape.
const maxLabelLen = 128

// label makes a label value safe: the client library panics on invalid
// UTF-8, and recipe or stream names may come from files we do not trust.
func label(v string) string {
	if !utf8.ValidString(v) {
		v = strings.ToValidUTF8(v, "\uFFFD")
	}
	if len(v) > maxLabelLen {
		cut := maxLabelLen
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut]
	}
	if v == "" {
		return "unknown"
	}
	return v
}
