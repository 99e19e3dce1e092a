// Command jibril-bench measures jibril's performance figures, each next to its baseline in the
// same run, and writes bench/results.json and BENCHMARKS.md. It is run by `make bench`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// figure is one measured number with what it means.
type figure struct {
	key, unit, what string
}

var figures = []figure{
	{"sandbox_call_us_p50", "µs", "process(data) on a 1 KB event, warm QuickJS/wasm instance, 40-line reference reaction (median)"},
	{"sandbox_call_us_p99", "µs", "same, 99th percentile"},
	{"goja_call_us_p50", "µs", "baseline: the same script and event in goja, warm runtime (median)"},
	{"sandbox_cold_us_p50", "µs", "from nothing to a fresh instance ready for its first call (snapshot restore, median)"},
	{"sandbox_template_us_p50", "µs", "baseline: building an instance the straightforward way (runtime, context, prelude, compile)"},
	{"instance_rss_kib", "KiB", "resident memory per idle pooled instance"},
	{"nft_block_us_p50", "µs", "one nftables element add with timeout, flush included (median)"},
	{"nft_block_us_p99", "µs", "same, 99th percentile"},
	{"nft_blocks_per_s", "/s", "batched element adds (1000 per flush)"},
}

func main() {
	out := flag.String("out", "bench/results.json", "results file (keys are merged)")
	md := flag.String("md", "BENCHMARKS.md", "markdown report")
	flag.Parse()
	ctx := context.Background()
	results := map[string]float64{}
	if b, err := os.ReadFile(*out); err == nil {
		_ = json.Unmarshal(b, &results)
	}
	var notes []string
	run := func(name string, f func(context.Context) (map[string]float64, error)) {
		fmt.Fprintf(os.Stderr, "bench: %s...\n", name)
		r, err := f(ctx)
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: not measured: %v", name, err))
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", name, err)
			return
		}
		for k, v := range r {
			results[k] = v
		}
	}
	run("sandbox", benchSandbox)
	run("nftables", benchNFT)
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fatal(err)
	}
	b, _ := json.MarshalIndent(results, "", "  ")
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		fatal(err)
	}
	if err := os.WriteFile(*md, []byte(markdown(results, notes)), 0o644); err != nil {
		fatal(err)
	}
	fmt.Print(table(results))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "jibril-bench:", err)
	os.Exit(1)
}

func table(r map[string]float64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-26s %14s  %s\n", "key", "value", "what")
	for _, f := range figures {
		s := "-"
		if v, ok := r[f.key]; ok {
			s = fmt.Sprintf("%.1f %s", v, f.unit)
		}
		fmt.Fprintf(&b, "%-26s %14s  %s\n", f.key, s, f.what)
	}
	return b.String()
}

func machine() string {
	cpu := "unknown cpu"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	kernel, _ := exec.Command("uname", "-r").Output()
	return fmt.Sprintf("%d cores (%s), kernel %s, %s", runtime.NumCPU(), cpu, strings.TrimSpace(string(kernel)), runtime.Version())
}

func markdown(r map[string]float64, notes []string) string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\nWritten by `make bench` (cmd/jibril-bench); every figure is measured next to its baseline in the same run.\n\n")
	fmt.Fprintf(&b, "- Machine: %s\n- Date: %s\n\n", machine(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("| key | value | what |\n|---|---|---|\n")
	known := map[string]bool{}
	for _, f := range figures {
		known[f.key] = true
		s := "not measured"
		if v, ok := r[f.key]; ok {
			s = fmt.Sprintf("%.1f %s", v, f.unit)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", f.key, s, f.what)
	}
	var extra []string
	for k := range r {
		if !known[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		fmt.Fprintf(&b, "| `%s` | %.1f | |\n", k, r[k])
	}
	b.WriteString(method)
	for _, n := range notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	return b.String()
}

const method = `
## Method

- **Sandbox calls**: one Program (the reference reaction in cmd/jibril-bench/sandbox.go: reads
  process, ancestry and flow fields, keeps a counter, logs, kills and blocks) runs 5 000 times on
  the same ~1 KB execution event after 200 warm-up calls, sequentially, with cheap in-memory
  helpers (a map store, the dry-run recorder, no audit) so that the engine is what is measured.
  Each call includes handing the event over (JSON text, parsed inside QuickJS), the invocation,
  and the isolation of the next call (a fresh closure per call in a frozen, sealed realm).
- **goja**: the same script and event, helpers as Go functions doing the same nothing, in one
  warm goja runtime reused across calls (which, unlike the sandbox, keeps state between calls and
  has no memory cap).
- **Cold start**: 300 instances restored from the reaction's snapshot (wasm instantiate,
  mmap-backed memory, the image's non-zero pages copied in); the baseline builds the same
  instance the straightforward way (new runtime and context, prelude, reaction compiled).
- **RSS**: 200 idle instances restored from the snapshot; growth of VmRSS divided by 200.
- **nftables**: in a throwaway network namespace: one element add with a timeout and its flush,
  repeated; then 100 000 addresses in chunks of 1 000 per flush, counted back.

## Notes
`
