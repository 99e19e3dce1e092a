package bpf

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// sysEnterModes are the attachments BenchmarkSysEnter* compare: no sensors,
// the file and net sensors on raw_tp/sys_enter (every system call), and on
// the per-syscall tracepoints.
var sysEnterModes = []struct {
	name string
	raw  bool
	on   bool
}{
	{"none", false, false},
	{"raw", true, true},
	{"tp", false, true},
}

// sysEnterStorm measures what the file and net sensors cost a storm that
// makes mostly unrelated system calls. Per operation of the storm it reports
// the medians over rounds of: the storm's CPU (its processes: the programs
// run there), its CPU overhead against the round's run without sensors, and
// the run time and runs of the file and net programs. The kernel counts
// those for the whole machine: the rate measured over a quarter of the
// storm's duration right after it (the background: other processes of a
// shared machine) is subtracted.
func sysEnterStorm(b *testing.B, unit string, scale float64, storm func(n int) *os.ProcessState) {
	const rounds = 5
	if os.Geteuid() != 0 {
		b.Skip("needs root to load BPF programs")
	}
	// The run time statistics cost every run two clock reads: without them
	// (JIBRIL_BENCH_NOSTATS=1) the CPU figures are the sensors' alone.
	if os.Getenv("JIBRIL_BENCH_NOSTATS") == "" {
		if st, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME)); err == nil {
			defer st.Close()
		}
	}
	daemonOps := MaskOf(OpCreate, OpWrite, OpTruncate, OpUnlink, OpRmdir, OpRename, OpLink, OpSymlink, OpMkdir)
	cpu, over, progNs, runs, bgNs := map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}, map[string][]float64{}
	for range rounds {
		var base float64
		for _, m := range sysEnterModes {
			var s *Sensors
			if m.on {
				var err error
				s, err = Open(b.Context(), Config{Sensors: SensorFile | SensorNet, ChannelSize: 1 << 16,
					FileFilter: []FilePrefix{{Prefix: "/tmp/", Ops: daemonOps}}, rawSysEnter: m.raw})
				if err != nil {
					b.Skipf("open sensors: %v", err)
				}
				if att := s.Attachments(); !m.raw && !strings.Contains(att[0], "tracepoint/syscalls") {
					b.Skipf("the syscalls tracepoints are not in use: %v", att)
				}
				go func() {
					for range s.File() {
					}
				}()
				go func() {
					for range s.Net() {
					}
				}()
			}
			rt0, rc0 := syscallProgStats(s)
			start := time.Now()
			ps := storm(b.N)
			wall := time.Since(start)
			rt1, rc1 := syscallProgStats(s)
			if s != nil {
				time.Sleep(wall / 4)
			}
			rt2, rc2 := syscallProgStats(s)
			ru := ps.SysUsage().(*syscall.Rusage)
			c := float64(ru.Utime.Nano()+ru.Stime.Nano()) / scale / float64(b.N)
			cpu[m.name] = append(cpu[m.name], c)
			if s == nil {
				base = c
				continue
			}
			over[m.name] = append(over[m.name], 100*(c-base)/base)
			n := float64(b.N)
			progNs[m.name] = append(progNs[m.name], (float64(rt1-rt0)-4*float64(rt2-rt1))/n)
			runs[m.name] = append(runs[m.name], (float64(rc1-rc0)-4*float64(rc2-rc1))/n)
			bgNs[m.name] = append(bgNs[m.name], 4*float64(rt2-rt1)/n)
			s.Close()
		}
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	for _, m := range sysEnterModes {
		b.ReportMetric(median(cpu[m.name]), m.name+"-storm-cpu-"+unit)
		if m.on {
			b.ReportMetric(median(over[m.name]), m.name+"-overhead-%")
			b.ReportMetric(median(progNs[m.name]), m.name+"-bpf-ns/op")
			b.ReportMetric(median(runs[m.name]), m.name+"-runs/op")
			b.ReportMetric(median(bgNs[m.name]), m.name+"-background-bpf-ns/op")
		}
	}
}

// BenchmarkSysEnterExecStorm: execs of a copy of /bin/true from a shell
// loop, each making some 30-40 system calls the sensors do not want.
//
//	go test -run '^$' -bench SysEnterExecStorm -benchtime 2000x ./bpf
func BenchmarkSysEnterExecStorm(b *testing.B) {
	tru := filepath.Join(b.TempDir(), "jstorm-true")
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		b.Skip(err)
	}
	if err := os.WriteFile(tru, data, 0o755); err != nil {
		b.Fatal(err)
	}
	sysEnterStorm(b, "µs/op", 1e3, func(n int) *os.ProcessState {
		cmd := exec.Command("/bin/sh", "-c", fmt.Sprintf("i=0; while [ $i -lt %d ]; do %s; i=$((i+1)); done", n, tru))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		return cmd.ProcessState
	})
}

// BenchmarkSysEnterOpenStorm: read-only open+close of a file in /tmp (the
// child of BenchmarkOpenStorm), dropped by the kernel filter.
//
//	go test -run '^$' -bench SysEnterOpenStorm -benchtime 200000x ./bpf
func BenchmarkSysEnterOpenStorm(b *testing.B) {
	dir, err := os.MkdirTemp("/tmp", "jibril-openstorm-")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	target := filepath.Join(dir, "f")
	if err := os.WriteFile(target, []byte("x"), 0o644); err != nil {
		b.Fatal(err)
	}
	sysEnterStorm(b, "ns/op", 1, func(n int) *os.ProcessState {
		cmd := exec.Command(os.Args[0], "-test.run=^TestOpenStormChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d %s", stormEnv, n, target))
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %s", err, out)
		}
		return cmd.ProcessState
	})
}

// syscallProgStats sums the run time (ns) and runs of the file and net
// programs (the TCP state program, which runs rarely, included).
func syscallProgStats(s *Sensors) (ns, runs uint64) {
	if s == nil {
		return 0, 0
	}
	for _, sp := range s.progs {
		if sp.stream != streamFile && sp.stream != streamNet {
			continue
		}
		if st, err := sp.prog.Stats(); err == nil {
			ns += uint64(st.Runtime)
			runs += st.RunCount
		}
	}
	return ns, runs
}
