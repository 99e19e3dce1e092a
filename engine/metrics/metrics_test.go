package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// startServer runs a server on an ephemeral loopback port until the test ends.
func startServer(t *testing.T, m *Metrics, health HealthFunc) string {
	t.Helper()
	srv, err := NewServer(ServerConfig{Address: "127.0.0.1:0"}, m, health)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return "http://" + srv.Addr().String()
}

func get(t *testing.T, url string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, body
}

func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, _, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics status %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse scrape: %v\n%s", err, body)
	}
	return fams
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("metric %s missing from the scrape", name)
	}
next:
	for _, m := range f.Metric {
		got := map[string]string{}
		for _, l := range m.Label {
			got[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	t.Fatalf("metric %s has no sample with labels %v", name, want)
	return nil
}

func counter(t *testing.T, fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	t.Helper()
	m := value(t, fams, name, labels)
	if m.Counter == nil {
		t.Fatalf("%s%v is not a counter", name, labels)
	}
	return m.Counter.GetValue()
}

func TestScrapeReportsEverything(t *testing.T) {
	m := New()
	for range 3 {
		m.EventReceived("exec")
	}
	m.EventReceived("file")
	m.Detection("crypto_miner_execution")
	m.Detection("crypto_miner_execution")
	m.ObserveReaction("crypto_miner_execution", "ok", 40*time.Microsecond)
	m.ObserveReaction("crypto_miner_execution", "ok", 3*time.Millisecond)
	m.ObserveReaction("crypto_miner_execution", "timeout", 200*time.Millisecond)
	m.Denied("process.kill")
	m.Disarmed("crypto_miner_execution")
	m.SetDegraded("bpf_lsm", true)
	m.SetDegraded("fentry", true)
	m.SetDegraded("fentry", false)
	m.EventReceived("bad\xffname") // invalid UTF-8 must not panic or break the scrape

	lost := map[string]uint64{"exec": 7, "network": 0}
	m.SetLossSource(func() map[string]uint64 { return lost })
	m.SetPrinterSource(func() []PrinterStats {
		return []PrinterStats{{Printer: "stdout", Printed: 10}, {Printer: "webhook", Printed: 4, Dropped: 2, Failed: 1}}
	})

	base := startServer(t, m, nil)
	fams := scrape(t, base)

	tests := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"jibril_events_received_total", map[string]string{"stream": "exec"}, 3},
		{"jibril_events_received_total", map[string]string{"stream": "file"}, 1},
		{"jibril_events_received_total", map[string]string{"stream": "bad\uFFFDname"}, 1},
		{"jibril_detections_total", map[string]string{"recipe": "crypto_miner_execution"}, 2},
		{"jibril_reactions_total", map[string]string{"recipe": "crypto_miner_execution", "status": "ok"}, 2},
		{"jibril_reactions_total", map[string]string{"recipe": "crypto_miner_execution", "status": "timeout"}, 1},
		{"jibril_capability_denials_total", map[string]string{"capability": "process.kill"}, 1},
		{"jibril_disarms_total", map[string]string{"recipe": "crypto_miner_execution"}, 1},
		{"jibril_events_lost_total", map[string]string{"stream": "exec"}, 7},
		{"jibril_events_lost_total", map[string]string{"stream": "network"}, 0},
		{"jibril_printer_printed_total", map[string]string{"printer": "stdout"}, 10},
		{"jibril_printer_printed_total", map[string]string{"printer": "webhook"}, 4},
		{"jibril_printer_dropped_total", map[string]string{"printer": "webhook"}, 2},
		{"jibril_printer_failed_total", map[string]string{"printer": "webhook"}, 1},
	}
	for _, tt := range tests {
		if got := counter(t, fams, tt.name, tt.labels); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}

	for feature, want := range map[string]float64{"bpf_lsm": 1, "fentry": 0} {
		g := value(t, fams, "jibril_feature_degraded", map[string]string{"feature": feature}).Gauge
		if g == nil || g.GetValue() != want {
			t.Errorf("jibril_feature_degraded{feature=%s} = %v, want %v", feature, g, want)
		}
	}

	h := value(t, fams, "jibril_reaction_latency_microseconds", map[string]string{"recipe": "crypto_miner_execution"}).Histogram
	if h == nil || h.GetSampleCount() != 3 {
		t.Fatalf("latency histogram = %v, want 3 samples", h)
	}
	if sum := h.GetSampleSum(); sum != 40+3000+200000 {
		t.Errorf("latency sum = %v µs, want 203040", sum)
	}
	cum := map[float64]uint64{}
	for _, b := range h.Bucket {
		cum[b.GetUpperBound()] = b.GetCumulativeCount()
	}
	for bound, want := range map[float64]uint64{25: 0, 50: 1, 2500: 1, 5000: 2, 250000: 3} {
		if cum[bound] != want {
			t.Errorf("bucket le=%v holds %d, want %d", bound, cum[bound], want)
		}
	}

	// Loss totals are read at scrape time: a later scrape sees the new value.
	lost["exec"] = 9
	if got := counter(t, scrape(t, base), "jibril_events_lost_total", map[string]string{"stream": "exec"}); got != 9 {
		t.Errorf("events lost after update = %v, want 9", got)
	}
	// The runtime collectors are in our registry too.
	if _, ok := fams["go_goroutines"]; !ok {
		t.Error("go_goroutines missing")
	}
}

func TestCallbacksThatMisbehave(t *testing.T) {
	m := New()
	m.SetLossSource(func() map[string]uint64 { panic("boom") })
	m.SetPrinterSource(func() []PrinterStats {
		return []PrinterStats{{Printer: "file", Printed: 1}, {Printer: "file", Printed: 2}}
	})
	m.Detection("x")
	fams := scrape(t, startServer(t, m, nil))
	if _, ok := fams["jibril_events_lost_total"]; ok {
		t.Error("a panicking loss source still produced samples")
	}
	if got := counter(t, fams, "jibril_printer_printed_total", map[string]string{"printer": "file"}); got != 1 {
		t.Errorf("duplicate printer: printed = %v, want the first (1)", got)
	}
	if got := counter(t, fams, "jibril_detections_total", map[string]string{"recipe": "x"}); got != 1 {
		t.Errorf("other metrics lost: detections = %v", got)
	}
	m.SetLossSource(nil)
	m.SetPrinterSource(nil)
	scrape(t, startServer(t, m, nil))
}

func TestTwoInstancesAreIndependent(t *testing.T) {
	a, b := New(), New()
	a.Detection("r")
	fams := scrape(t, startServer(t, b, nil))
	if _, ok := fams["jibril_detections_total"]; ok {
		t.Fatal("a detection counted in one Metrics shows up in another")
	}
}

func TestHealthz(t *testing.T) {
	tests := []struct {
		name       string
		health     HealthFunc
		wantCode   int
		wantStatus string
		wantCheck  map[string]string
	}{
		{"nil func", nil, 200, "ok", nil},
		{"ok", func(context.Context) Health {
			return Health{OK: true, Checks: map[string]string{"store": "ok"}}
		}, 200, "ok", map[string]string{"store": "ok"}},
		{"not ok", func(context.Context) Health {
			return Health{OK: false, Checks: map[string]string{"store": "database is locked"}}
		}, 503, "unhealthy", map[string]string{"store": "database is locked"}},
		{"panics", func(context.Context) Health { panic("bug") }, 503, "unhealthy", map[string]string{"health": "check panicked"}},
		{"hangs until ctx ends", func(ctx context.Context) Health {
			<-ctx.Done()
			return Health{OK: true}
		}, 503, "unhealthy", map[string]string{"health": "check timed out"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New()
			m.SetDegraded("bpf_lsm", true)
			code, hdr, body := get(t, startServer(t, m, tt.health)+"/healthz")
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tt.wantCode, body)
			}
			if ct := hdr.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			var got struct {
				Status   string            `json:"status"`
				Checks   map[string]string `json:"checks"`
				Degraded []string          `json:"degraded"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %q: %v", body, err)
			}
			if got.Status != tt.wantStatus || len(got.Degraded) != 1 || got.Degraded[0] != "bpf_lsm" {
				t.Fatalf("body = %+v", got)
			}
			for k, v := range tt.wantCheck {
				if got.Checks[k] != v {
					t.Errorf("check %s = %q, want %q", k, got.Checks[k], v)
				}
			}
		})
	}
}

func TestOnlyGetAndHead(t *testing.T) {
	base := startServer(t, New(), nil)
	for _, path := range []string{"/metrics", "/healthz"} {
		resp, err := http.Post(base+path, "text/plain", strings.NewReader("x"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST %s = %d, want 405", path, resp.StatusCode)
		}
	}
	if code, _, _ := get(t, base+"/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /nothing = %d, want 404", code)
	}
}

func TestAddressPolicy(t *testing.T) {
	tests := []struct {
		cfg  ServerConfig
		want string // "" = accepted
	}{
		{ServerConfig{}, ""},
		{ServerConfig{Address: "127.0.0.1:0"}, ""},
		{ServerConfig{Address: "[::1]:9464"}, ""},
		{ServerConfig{Address: "localhost:9464"}, ""},
		{ServerConfig{Address: "0.0.0.0:9464"}, "not a loopback address"},
		{ServerConfig{Address: ":9464"}, "every interface"},
		{ServerConfig{Address: "198.18.0.1:9464"}, "not a loopback address"},
		{ServerConfig{Address: "metrics.example:9464"}, "loopback IP or localhost"},
		{ServerConfig{Address: "127.0.0.1"}, "missing port"},
		{ServerConfig{Address: "0.0.0.0:9464", AllowNonLoopback: true}, ""},
	}
	for _, tt := range tests {
		addr, err := CheckAddress(tt.cfg)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("CheckAddress(%+v) refused: %v", tt.cfg, err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("CheckAddress(%+v) = %q, %v; want error %q", tt.cfg, addr, err, tt.want)
		case tt.want != "" && !strings.Contains(err.Error(), "metrics.address"):
			t.Errorf("error does not name the field: %v", err)
		}
	}
	if addr, _ := CheckAddress(ServerConfig{}); addr != DefaultAddress {
		t.Errorf("default address = %q", addr)
	}
	// NewServer refuses before binding anything.
	if _, err := NewServer(ServerConfig{Address: "0.0.0.0:0"}, New(), nil); err == nil {
		t.Error("NewServer bound a non-loopback address")
	}
}

func TestPortInUseAndRunStops(t *testing.T) {
	m := New()
	a, err := NewServer(ServerConfig{Address: "127.0.0.1:0"}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := NewServer(ServerConfig{Address: a.Addr().String()}, m, nil); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("second bind on %s: %v, want a listen error", a.Addr(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	base := "http://" + a.Addr().String()
	if code, _, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("healthz = %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("server still answers after Run returned")
	}
}

func TestRecyclesAndNftElements(t *testing.T) {
	m := New()
	m.InstanceRecycled("r1")
	m.InstanceRecycled("r1")
	n := 3
	m.SetNftSource(func() (int, error) { return n, nil })
	base := startServer(t, m, nil)
	fams := scrape(t, base)
	if got := counter(t, fams, "jibril_instance_recycles_total", map[string]string{"recipe": "r1"}); got != 2 {
		t.Fatalf("recycles = %v", got)
	}
	if got := value(t, fams, "jibril_nft_elements", nil).GetGauge().GetValue(); got != 3 {
		t.Fatalf("nft elements = %v", got)
	}
	m.SetNftSource(func() (int, error) { return 0, errors.New("netlink: busy") })
	if _, ok := scrape(t, base)["jibril_nft_elements"]; ok {
		t.Fatal("a failed count must not be reported as a value")
	}
}
