// Command jibril-bench measures jibril's performance figures, each next to its baseline in the
// same run, and writes bench/results.json and BENCHMARKS.md. It is run by `make bench`.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// figure is one measured number with what it means and, when it has one, the key of the
// baseline measured next to it in the same run.
type figure struct {
	key, unit, what string
	baseline        string
}

var figures = []figure{
	{"sandbox_call_us_p50", "µs", "process(data) on a 1 KB event, warm QuickJS/wasm instance, 40-line reference reaction (median)", "goja_call_us_p50"},
	{"sandbox_call_us_p99", "µs", "same, 99th percentile", ""},
	{"goja_call_us_p50", "µs", "baseline: the same script and event in goja, warm runtime (median)", ""},
	{"sandbox_empty_call_us_p50", "µs", "where a call's time goes: an empty process(data) on the same event (acquire, hand-over set-up, fresh closure, release; median)", ""},
	{"sandbox_handover_us_p50", "µs", "where a call's time goes: parsing the three members the reference reads (process, background, flow) inside QuickJS", ""},
	{"sandbox_reaction_js_us_p50", "µs", "where a call's time goes: the reference reaction's own JS and helper calls with the event already parsed (20 runs inside one call, per run)", ""},
	{"sandbox_call_daemon_event_us_p50", "µs", "the same reaction on a full daemon event (~4 KB: base alias, scenario, file tree), lazy hand-over (median)", "goja_call_daemon_event_us_p50"},
	{"goja_call_daemon_event_us_p50", "µs", "baseline: the same script and daemon event in goja (median)", ""},
	{"sandbox_cold_us_p50", "µs", "from nothing to a fresh instance ready for its first call (snapshot restore, median)", "sandbox_template_us_p50"},
	{"sandbox_template_us_p50", "µs", "baseline: building an instance the straightforward way (runtime, context, prelude, compile)", ""},
	{"instance_rss_kib", "KiB", "resident memory per idle pooled instance", ""},
	{"nft_block_us_p50", "µs", "one nftables element add with timeout, flush included (median)", ""},
	{"nft_block_us_p99", "µs", "same, 99th percentile", ""},
	{"nft_blocks_per_s", "/s", "batched element adds (1000 per flush)", ""},
	{"exec_to_kill_us_p50", "µs", "exec tracepoint → victim dead through sensors, process table, enrichment, engine.Handle, JS KillCurrent, pidfd kill (median)", "baseline_exec_to_kill_us_p50"},
	{"exec_to_kill_us_p99", "µs", "same, 99th percentile", "baseline_exec_to_kill_us_p99"},
	{"baseline_exec_to_kill_us_p50", "µs", "baseline: minimal tracer, the same sensors' exec channel → pidfd_send_signal (median)", ""},
	{"baseline_exec_to_kill_us_p99", "µs", "baseline: same, 99th percentile", ""},
	{"exec_to_kill_victims", "", "victims measured per path", ""},
	{"ingest_events_per_s", "/s", "file-open storm: file events received by Go and handed to engine.Handle (built-in library)", "ingest_generator_opens_per_s"},
	{"ingest_lost", "", "file events lost in the ring buffer (a full channel holds the reader back) + dropped at shutdown, during the storm", ""},
	{"ingest_handled_per_s", "/s", "of those, events engine.Handle evaluated per second (the rest concern no recipe: engine.WantsFile turns them away first)", ""},
	{"ingest_go_cpu_ns_per_event", "ns", "CPU time the Go side (ring readers, feed, engine) used during the storm, per file event received (getrusage of the bench process)", ""},
	{"ingest_generator_opens_per_s", "/s", "the generators' opens per second during the storm (sensors attached)", "baseline_ingest_opens_per_s"},
	{"baseline_ingest_opens_per_s", "/s", "baseline: the same generators with no sensor attached", ""},
	{"exec_storm_overhead_pct", "%", "a fork+exec+wait of /bin/true with `jibril run` (built-in library) running vs not: per round, the ratio of the median execs; the median of the rounds", ""},
	{"exec_storm_cpu_overhead_pct", "%", "CPU time the exec storm itself used (its thread and children) with the daemon vs without", ""},
	{"exec_storm_us_p50", "µs", "one fork+exec+wait of /bin/true with the daemon running (median)", "baseline_exec_storm_us_p50"},
	{"exec_storm_us_p99", "µs", "same, 99th percentile", "baseline_exec_storm_us_p99"},
	{"baseline_exec_storm_us_p50", "µs", "baseline: the same without the daemon (median)", ""},
	{"baseline_exec_storm_us_p99", "µs", "baseline: same, 99th percentile", ""},
	{"open_storm_overhead_pct", "%", "1 000 open+close pairs on files in /tmp with the daemon running vs not: per round, the ratio of the median batches; the median of the rounds", ""},
	{"open_storm_cpu_overhead_pct", "%", "CPU time the open storm's thread used with the daemon vs without", ""},
	{"open_storm_ns_p50", "ns", "one open+close with the daemon running (median over batches of 1000)", "baseline_open_storm_ns_p50"},
	{"open_storm_ns_p99", "ns", "same, 99th percentile", "baseline_open_storm_ns_p99"},
	{"baseline_open_storm_ns_p50", "ns", "baseline: the same without the daemon (median)", ""},
	{"baseline_open_storm_ns_p99", "ns", "baseline: same, 99th percentile", ""},
	{"daemon_rss_mib", "MiB", "VmRSS of `jibril run` (built-in library) after start-up and the exec storm (max over rounds)", ""},
	{"daemon_startup_ms_p50", "ms", "`jibril run` start to ready (median over rounds)", ""},
}

// options tune a run of the bench.
type options struct {
	quick      bool // small samples, to develop the harness
	generators int  // open-storm generator processes (0 = 2×CPUs)
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == openStormArg {
		if err := openStorm(os.Args[2:]); err != nil {
			fatal(err)
		}
		return
	}
	out := flag.String("out", "bench/results.json", "results file (keys are merged)")
	md := flag.String("md", "BENCHMARKS.md", "markdown report")
	only := flag.String("only", "", "comma-separated benches to run: sandbox,nftables,exec,ingest,daemon,attack (default all)")
	quick := flag.Bool("quick", false, "small samples, to develop the harness (figures not for publication)")
	gens := flag.Int("generators", 0, "open-storm generator processes (default 2×CPUs)")
	jibrilBin := flag.String("jibril", "bin/jibril", "the jibril binary the daemon storms run (make build)")
	budget := flag.Duration("budget", 8*time.Minute, "time budget of the whole run; the attack suite gets what is left")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the bench process (the in-process engine) to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	o := options{quick: *quick, generators: *gens}
	load0 := loadAvg()
	// An interrupt ends the run through ctx, so that every bench removes its namespace, daemon
	// and temporary files on the way out.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *budget)
	defer cancel()
	selected := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			selected[n] = true
		}
	}
	results := map[string]float64{}
	if b, err := os.ReadFile(*out); err == nil {
		_ = json.Unmarshal(b, &results)
	}
	figs := slices.Clone(figures)
	fresh := map[string]bool{}
	var notes []string
	if *quick {
		notes = append(notes, "quick run (-quick): small samples, for developing the harness only")
	}
	run := func(name string, f func(context.Context) (map[string]float64, []string, error)) {
		if len(selected) > 0 && !selected[name] {
			return
		}
		fmt.Fprintf(os.Stderr, "bench: %s...\n", name)
		start := time.Now()
		r, n, err := f(ctx)
		notes = append(notes, n...)
		for k, v := range r {
			results[k] = v
			fresh[k] = true
		}
		if err != nil {
			notes = append(notes, fmt.Sprintf("%s: not measured: %v", name, err))
			fmt.Fprintf(os.Stderr, "bench: %s: %v\n", name, err)
		}
		fmt.Fprintf(os.Stderr, "bench: %s took %s\n", name, time.Since(start).Round(time.Second))
	}
	plain := func(f func(context.Context) (map[string]float64, error)) func(context.Context) (map[string]float64, []string, error) {
		return func(ctx context.Context) (map[string]float64, []string, error) {
			r, err := f(ctx)
			return r, nil, err
		}
	}
	run("sandbox", plain(benchSandbox))
	run("nftables", plain(benchNFT))
	run("exec", func(ctx context.Context) (map[string]float64, []string, error) {
		return benchExecToKill(ctx, o, filepath.Join(filepath.Dir(*out), "latency.svg"))
	})
	run("ingest", func(ctx context.Context) (map[string]float64, []string, error) { return benchIngest(ctx, o) })
	run("daemon", func(ctx context.Context) (map[string]float64, []string, error) {
		return benchDaemon(ctx, o, *jibrilBin)
	})
	run("attack", func(ctx context.Context) (map[string]float64, []string, error) {
		r, n, err := benchAttack(ctx)
		for _, k := range slices.Sorted(maps.Keys(r)) {
			if !slices.ContainsFunc(figs, func(f figure) bool { return f.key == k }) {
				figs = append(figs, figure{k, "ms", "attack suite (tests/attack): detect-to-contain", ""})
			}
		}
		return r, n, err
	})
	if err := os.MkdirAll(filepath.Dir(*out), 0o755); err != nil {
		fatal(err)
	}
	b, _ := json.MarshalIndent(results, "", "  ")
	if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
		fatal(err)
	}
	if err := os.WriteFile(*md, []byte(markdown(figs, results, fresh, notes, load0)), 0o644); err != nil {
		fatal(err)
	}
	fmt.Print(table(figs, results, fresh))
	fmt.Print(targetReport(results, fresh))
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "jibril-bench:", err)
	os.Exit(1)
}

// value formats a figure; one not measured in this run is marked as coming from an earlier one.
func value(f figure, key string, r map[string]float64, fresh map[string]bool) string {
	v, ok := r[key]
	if !ok {
		return "-"
	}
	unit := f.unit
	if unit != "" && unit != "%" {
		unit = " " + unit
	}
	s := fmt.Sprintf("%.1f%s", v, unit)
	if !fresh[key] {
		s += " (earlier run)"
	}
	return s
}

func table(figs []figure, r map[string]float64, fresh map[string]bool) string {
	w := len("key")
	for _, f := range figs {
		w = max(w, len(f.key))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s %18s %18s  %s\n", w, "key", "value", "baseline", "what")
	for _, f := range figs {
		base := ""
		if f.baseline != "" {
			base = value(f, f.baseline, r, fresh)
		}
		fmt.Fprintf(&b, "%-*s %18s %18s  %s\n", w, f.key, value(f, f.key, r, fresh), base, f.what)
	}
	return b.String()
}

// target is a goal a figure is compared against.
type target struct {
	what string
	keys []string
	met  func(r map[string]float64) bool
}

var targets = []target{
	{"exec_to_kill p99 ≤ 1.5 × baseline p99", []string{"exec_to_kill_us_p99", "baseline_exec_to_kill_us_p99"},
		func(r map[string]float64) bool {
			return r["exec_to_kill_us_p99"] <= 1.5*r["baseline_exec_to_kill_us_p99"]
		}},
	{"ingest ≥ 500 000 events/s with 0 lost", []string{"ingest_events_per_s", "ingest_lost"},
		func(r map[string]float64) bool { return r["ingest_events_per_s"] >= 500000 && r["ingest_lost"] == 0 }},
	{"exec storm overhead ≤ 3 %", []string{"exec_storm_overhead_pct"},
		func(r map[string]float64) bool { return r["exec_storm_overhead_pct"] <= 3 }},
	{"daemon RSS ≤ 80 MiB", []string{"daemon_rss_mib"},
		func(r map[string]float64) bool { return r["daemon_rss_mib"] <= 80 }},
}

func targetReport(r map[string]float64, fresh map[string]bool) string {
	var b strings.Builder
	b.WriteString("\ntargets:\n")
	for _, t := range targets {
		state := "not measured in this run"
		if !slices.ContainsFunc(t.keys, func(k string) bool { return !fresh[k] }) {
			state = "MISSED"
			if t.met(r) {
				state = "met"
			}
		}
		fmt.Fprintf(&b, "  %-42s %s\n", t.what, state)
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

// loadAvg is the 1, 5 and 15 minute load averages: on a 2-core machine shared with compilers
// they say how much the figures were disturbed.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	if f := strings.Fields(string(b)); len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

func markdown(figs []figure, r map[string]float64, fresh map[string]bool, notes []string, load0 string) string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\nWritten by `make bench` (cmd/jibril-bench); every figure is measured next to its baseline in the same run.\n\n")
	fmt.Fprintf(&b, "- Machine: %s\n- Date: %s\n- Load average (1/5/15 min): %s at the start, %s at the end\n\n",
		machine(), time.Now().UTC().Format("2006-01-02 15:04 MST"), load0, loadAvg())
	b.WriteString("| key | value | baseline | what |\n|---|---|---|---|\n")
	known := map[string]bool{}
	for _, f := range figs {
		known[f.key] = true
		s := value(f, f.key, r, fresh)
		if s == "-" {
			s = "not measured"
		}
		base := ""
		if f.baseline != "" {
			base = fmt.Sprintf("%s (`%s`)", value(f, f.baseline, r, fresh), f.baseline)
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", f.key, s, base, f.what)
	}
	var extra []string
	for k := range r {
		if !known[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	for _, k := range extra {
		fmt.Fprintf(&b, "| `%s` | %s | | |\n", k, value(figure{}, k, r, fresh))
	}
	b.WriteString("\n## Targets\n\n")
	for _, l := range strings.Split(strings.TrimSpace(targetReport(r, fresh)), "\n")[1:] {
		fmt.Fprintf(&b, "- %s\n", strings.TrimSpace(l))
	}
	b.WriteString("\nThe latency distributions of `exec_to_kill` are drawn in [bench/latency.svg](bench/latency.svg).\n")
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
- **Where a call's time goes** (same event, same helpers): an empty process(data) is the fixed
  cost of an invocation; a variant of the reference whose process reads the three members the
  reference reads (handing them over) and then runs the reference's body 0 or 20 times gives
  the hand-over (0 runs minus the empty call) and the reaction's own JS and helper calls
  (the difference divided by 20). The JS alone is the floor any hand-over leaves.
- **goja**: the same script and event, helpers as Go functions doing the same nothing, in one
  warm goja runtime reused across calls (which, unlike the sandbox, keeps state between calls and
  has no memory cap).
- **Cold start**: 300 instances restored from the reaction's snapshot (wasm instantiate,
  mmap-backed memory, the image's non-zero pages copied in); the baseline builds the same
  instance the straightforward way (new runtime and context, prelude, reaction compiled).
- **RSS**: 200 idle instances restored from the snapshot; growth of VmRSS divided by 200.
- **nftables**: in a throwaway network namespace: one element add with a timeout and its flush,
  repeated; then 100 000 addresses in chunks of 1 000 per flush, counted back.
- **exec → kill** (cmd/jibril-bench/exec.go): the daemon's code path in the bench process,
  without the CLI: bpf.Open (proc sensor with the daemon's defaults: the exec ring reader on the
  Go netpoller, woken at once only for the names the recipe watches), engine.Feed (process
  table, enrichment), engine.Handle, and one recipe scoped to a copy of /bin/sleep in a temp
  directory whose JS reaction calls KillCurrent, acting through the live process actuator (pidfd
  kill behind the safety floor; audit rows in a real SQLite store). Victims are started one after the other with a
  pidfd (clone), each waited for until dead: the time is from the exec event's kernel timestamp
  (bpf_ktime_get_ns, CLOCK_MONOTONIC) to the moment poll(2) on the victim's pidfd returns
  (CLOCK_MONOTONIC). The jibril path reads the kernel time back from the detection's timestamp
  (the sensors stamp kernel time + the realtime-monotonic offset); the note says how close that
  recovery is, checked on the baseline's events where both are known. The **baseline** is a
  minimal tracer on sensors of its own: on its victim's exec event (a second copy of /bin/sleep,
  matched by inode; its reader woken at once only for that name) pidfd_open +
  pidfd_send_signal(SIGKILL), nothing else. Both paths stay attached for the whole run and their
  victims alternate one by one (which goes first swaps each pair), so that a burst of load on the
  machine lands on both alike: 2 000 victims per path, after 20 warm-up victims each; the p99 then
  has 20 samples above it. [bench/latency.svg](bench/latency.svg) draws both distributions.
- **Ingest** (cmd/jibril-bench/ingest.go): proc and file sensors with the in-kernel path filter
  on the storm's directory only, engine.Feed and engine.Handle with the built-in library loaded
  (reactions act on recorders). Generator processes (2 per CPU) open 64 files of that directory
  round-robin as fast as they can for 4 s (openat by raw system call, descriptors closed 64 at a
  time with close_range(2): the storm is of opens); three such storms, each drained before the
  next. Events/s is the file events Go received (sensor Stats) divided by the time from the
  storm's start to the last event received, for the median storm (the note gives all three); lost is
  ring-buffer loss plus channel drops (a full channel holds its ring reader back, so loss happens
  only in the kernel, when the ring is full); handled is what engine.Handle evaluated in the same
  time (engine.WantsFile turns away the events no recipe can match before enrichment: the storm's
  64 paths concern none). The baseline is the same generators for 2 s with no sensor attached.
- **Storms** (cmd/jibril-bench/daemon.go): ` + "`jibril run --config C --no-metrics --state-dir TMP`" + `
  under ` + "`nsenter --net=`" + ` in a network namespace the bench creates, with the built-in library and
  every default sensor; C only switches crypto_miner_binary (the one recipe enforced out of the
  box) to dry-run, so that the daemon cannot kill other people's processes on a shared machine.
  Each round runs 2 000 fork+exec+wait of /bin/true from Go, then 150 000 open+close pairs on 64
  files in /tmp (timed in batches of 1 000), once with the daemon running and once without; fifteen
  rounds alternate which comes first. A round's overhead is the ratio of its median exec (or
  batch of opens) with the daemon to the median without, and the figure is the median of the
  rounds: on this VM a round's wall time moved by up to ±30 % with other load, which the medians
  of 2 000 execs barely feel (the note gives every round's wall-time overhead too, their median
  and the ratio of the summed times); the CPU-time overhead compares the CPU the storms themselves used (their thread, plus
  the exec'd children: getrusage), which other load barely moves while the sensors' programs,
  running in the storm's context, still count. The daemon's VmRSS is read right after each
  round's exec storm; the figure is the largest.
- **Attack suite**: ` + "`go test ./tests/attack/ -run . -count=1`" + ` with JIBRIL_ATTACK_TIMES set; the
  suite writes its detect-to-contain times (ms) and they are merged as they are.
- A figure marked "(earlier run)" was not measured by this run (its bench failed or was not
  selected): it is the value kept in bench/results.json from a previous run.

## Notes
`
