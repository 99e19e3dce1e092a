package main

import (
	"encoding/xml"
	"io"
	"strings"
	"testing"
)

func TestCDFSVG(t *testing.T) {
	a := []float64{100, 200, 300, 400, 500, 600, 700, 800, 900, 5000}
	b := []float64{50, 60, 70, 80, 90, 100, 110, 120, 130, 900}
	svg := cdfSVG("t <&>", []cdfSeries{{"jibril", "#c00", a}, {"baseline", "#00c", b}})

	// Well-formed XML, and count what was drawn.
	d := xml.NewDecoder(strings.NewReader(svg))
	count := map[string]int{}
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, svg)
		}
		switch v := tok.(type) {
		case xml.StartElement:
			count[v.Name.Local]++
		case xml.CharData:
			text.Write(v)
			text.WriteByte('\n')
		}
	}
	if count["polyline"] != 2 {
		t.Errorf("%d curves, want 2", count["polyline"])
	}
	if count["circle"] != 4 {
		t.Errorf("%d percentile markers, want 4 (p50 and p99 per curve)", count["circle"])
	}
	for _, want := range []string{
		"t <&>",                  // the title, escaped in the file, intact once parsed
		"p50 500 µs, p99 900 µs", // jibril: nearest rank below
		"p50 90 µs, p99 130 µs",  // baseline
		"jibril (n=10)", "baseline (n=10)",
		"10 µs", "1 ms", "10 ms", // decades of the log axis
		"exec tracepoint → victim dead (µs, log scale)",
		"victims dead (cumulative fraction)",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("no %q in the drawing's text:\n%s", want, text.String())
		}
	}
}

func TestQuantile(t *testing.T) {
	v := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	for _, c := range []struct {
		p    float64
		want float64
	}{{0, 1}, {0.5, 5}, {0.99, 9}, {1, 10}} {
		if got := quantileOf([]float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}, c.p); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.p, got, c.want)
		}
		if got := quantile(v, c.p); got != c.want {
			t.Errorf("sorted quantile(%v) = %v, want %v", c.p, got, c.want)
		}
	}
	if quantile(nil, 0.5) != 0 {
		t.Error("quantile of nothing should be 0")
	}
}

func TestValidKey(t *testing.T) {
	for _, c := range []struct {
		key string
		ok  bool
	}{
		{"attack_reverse_shell_kill_ms", true},
		{"a1", true},
		{"", false},
		{"Attack", false},
		{"a-b", false},
		{"a b", false},
		{"| `x` |", false},
		{strings.Repeat("a", 65), false},
	} {
		if got := validKey(c.key); got != c.ok {
			t.Errorf("validKey(%q) = %v, want %v", c.key, got, c.ok)
		}
	}
}

func TestFailures(t *testing.T) {
	out := "=== RUN   TestA\n--- FAIL: TestA (1.2s)\n    a_test.go:10: no kill in 5s\n=== RUN TestB\n--- PASS: TestB\nFAIL\n"
	if got := failures(out); got != "--- FAIL: TestA (1.2s) a_test.go:10: no kill in 5s" {
		t.Errorf("failures = %q", got)
	}
	nested := "--- FAIL: TestA (2s)\n    --- FAIL: TestA/x (1s)\n        a_test.go:9: boom\n"
	if got := failures(nested); got != "--- FAIL: TestA (2s); --- FAIL: TestA/x (1s) a_test.go:9: boom" {
		t.Errorf("failures of a subtest = %q", got)
	}
	if got := failures("build failed\nline 2\nline 3\n"); got != "build failed | line 2 | line 3" {
		t.Errorf("failures without a FAIL line = %q", got)
	}
}

func TestTargetReport(t *testing.T) {
	all := map[string]bool{}
	r := map[string]float64{
		"exec_to_kill_us_p99": 150, "baseline_exec_to_kill_us_p99": 100,
		"ingest_events_per_s": 600000, "ingest_lost": 1,
		"exec_storm_overhead_pct": 2.5,
	}
	for k := range r {
		all[k] = true
	}
	rep := targetReport(r, all)
	for _, want := range []string{
		"exec_to_kill p99 ≤ 1.5 × baseline p99      met",
		"ingest ≥ 500 000 events/s with 0 lost      MISSED", // one event lost
		"exec storm overhead ≤ 3 %                  met",
		"daemon RSS ≤ 80 MiB                        not measured in this run",
	} {
		if !strings.Contains(rep, want) {
			t.Errorf("no %q in:\n%s", want, rep)
		}
	}
	// A value kept from an earlier run is not judged.
	delete(all, "exec_storm_overhead_pct")
	if rep := targetReport(r, all); !strings.Contains(rep, "exec storm overhead ≤ 3 %                  not measured") {
		t.Errorf("stale figure judged:\n%s", rep)
	}
}
