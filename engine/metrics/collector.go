package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Descriptions of the metrics read through callbacks at scrape time. They
// are immutable once built.
func lostDesc() *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_events_lost_total",
		"Events the kernel could not deliver (ring buffer full), per stream.", []string{"stream"}, nil)
}

func printerDescs() (printed, dropped, failed *prometheus.Desc) {
	l := []string{"printer"}
	return prometheus.NewDesc(Namespace+"_printer_printed_total", "Events a printer delivered.", l, nil),
		prometheus.NewDesc(Namespace+"_printer_dropped_total", "Events dropped because a printer's queue was full.", l, nil),
		prometheus.NewDesc(Namespace+"_printer_failed_total", "Events a printer failed to deliver after retries.", l, nil)
}

// callbackCollector turns the loss and printer callbacks into counters.
type callbackCollector struct{ m *Metrics }

func (c callbackCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- lostDesc()
	ch <- nftDesc()
	p, d, f := printerDescs()
	ch <- p
	ch <- d
	ch <- f
}

func (c callbackCollector) Collect(ch chan<- prometheus.Metric) {
	if fn := c.m.lossFn.Load(); fn != nil {
		desc := lostDesc()
		seen := map[string]bool{}
		for stream, n := range safeCall(*fn) {
			name := label(stream)
			if seen[name] {
				continue // two raw names cleaned to one: a duplicate would fail the scrape
			}
			seen[name] = true
			ch <- prometheus.MustNewConstMetric(desc, prometheus.CounterValue, float64(n), name)
		}
	}
	if fn := c.m.nftFn.Load(); fn != nil {
		type res struct {
			n   int
			err error
		}
		r := safeCall(func() res { n, err := (*fn)(); return res{n, err} })
		if r.err == nil {
			ch <- prometheus.MustNewConstMetric(nftDesc(), prometheus.GaugeValue, float64(r.n))
		}
	}
	if fn := c.m.printerFn.Load(); fn != nil {
		pd, dd, fd := printerDescs()
		seen := map[string]bool{}
		for _, s := range safeCall(*fn) {
			name := label(s.Printer)
			if seen[name] {
				continue // a duplicate would fail the whole scrape
			}
			seen[name] = true
			ch <- prometheus.MustNewConstMetric(pd, prometheus.CounterValue, float64(s.Printed), name)
			ch <- prometheus.MustNewConstMetric(dd, prometheus.CounterValue, float64(s.Dropped), name)
			ch <- prometheus.MustNewConstMetric(fd, prometheus.CounterValue, float64(s.Failed), name)
		}
	}
}

func nftDesc() *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_nft_elements", "Elements in jibril's nftables sets (blocked addresses and networks).", nil, nil)
}

// safeCall runs a callback so that its panic costs one scrape's worth of
// those metrics, not the daemon.
func safeCall[T any](fn func() T) (out T) {
	defer func() {
		if recover() != nil {
			var zero T
			out = zero
		}
	}()
	return fn()
}
