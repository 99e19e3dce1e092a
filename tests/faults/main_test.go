// Package faults drives the real jibril daemon through load and faults: a flood of file events
// (memory stays bounded, every lost event is counted), the loss watcher's actions, graceful
// shutdown, kill -9 and restart, a full disk, a read-only state directory, a hanging webhook and
// reactions that never end. The daemon always runs inside a network namespace the test created,
// its recipes watch only directories the test created, and it is stopped or killed by pid.
package faults

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/tests/netns"
	"github.com/jibril-rt/jibril/tests/testkit"
)

// binDir holds the binaries the tests execute: the daemon, the event generator (a copy of this
// test binary) and victims. It is under /run, not /tmp: other tests on the machine may run a
// daemon whose built-in recipes kill what is written and then executed in /tmp.
var binDir, jibrilBin, genBin string

func TestMain(m *testing.M) {
	if os.Getenv(genEnv) != "" {
		os.Exit(generatorMain())
	}
	code := func() int {
		base := "/run"
		if os.Geteuid() != 0 {
			base = "" // the tests skip without root; the build still checks the daemon compiles
		}
		dir, err := os.MkdirTemp(base, "jibril-faults-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binDir, jibrilBin, genBin = dir, filepath.Join(dir, "jibril"), filepath.Join(dir, "faults-gen")
		out, err := exec.Command("go", "build", "-o", jibrilBin, "../../cmd/jibril").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build jibril: %v\n%s", err, out)
			return 1
		}
		self, err := os.ReadFile("/proc/self/exe")
		if err == nil {
			err = os.WriteFile(genBin, self, 0o755)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "copy the generator:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func need(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF sensors, network namespaces, mounts")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF at /sys/kernel/btf/vmlinux")
	}
	for _, tool := range append([]string{"ip", "nsenter"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

func mkdirs(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// newNetns creates a network namespace with loopback up (the metrics endpoint listens there)
// and removes it when the test ends.
func newNetns(t *testing.T) string {
	t.Helper()
	ns := "jflt" + testkit.Token(t)
	testkit.Run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	testkit.Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// metricsAddr is where every test daemon serves metrics, on its own namespace's loopback.
const metricsAddr = "127.0.0.1:9464"

// daemon is a running `jibril run` (pid = the daemon: nsenter execs it), what it printed on
// stdout (one JSON object per line) and its log.
type daemon struct {
	t       *testing.T
	ns      string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error

	mu     sync.Mutex
	events []map[string]any
	log    []string
	notify chan struct{}
}

type daemonOpts struct {
	ns       string
	config   string // config file ("" = none)
	recipes  string
	stateDir string
	args     []string
	// exitOK says the test itself ends the daemon (kill -9, an expected failure): the
	// cleanup then only reaps it.
	exitOK bool
	// noWaitReady returns as soon as the process started.
	noWaitReady bool
}

func startDaemon(t *testing.T, o daemonOpts) *daemon {
	t.Helper()
	args := []string{"--net=/run/netns/" + o.ns, jibrilBin, "run", "--no-builtin", "--recipes", o.recipes,
		"--state-dir", o.stateDir, "--log-format", "json"}
	if o.config != "" {
		args = append(args, "--config", o.config)
	}
	args = append(args, o.args...)
	cmd := exec.Command("nsenter", args...)
	// pids wrap at 32768 here, so a victim may get a pid below Jibril's default floor of 500;
	// the recipes of these tests only match what the tests create.
	cmd.Env = append(os.Environ(), "JIBRIL_PROTECT__MIN_PID=2")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, ns: o.ns, cmd: cmd, done: make(chan struct{}), notify: make(chan struct{}, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			d.mu.Lock()
			d.log = append(d.log, sc.Text())
			d.mu.Unlock()
			d.poke()
		}
	}()
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 4<<20), 4<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) != nil {
				continue
			}
			d.mu.Lock()
			d.events = append(d.events, m)
			d.mu.Unlock()
			d.poke()
		}
	}()
	go func() {
		readers.Wait() // Wait closes the pipes: read them to the end first
		d.waitErr = cmd.Wait()
		close(d.done)
		d.poke()
	}()
	t.Cleanup(func() {
		if !d.exited() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(20 * time.Second):
				_ = cmd.Process.Kill()
				<-d.done
				t.Errorf("daemon did not stop within 20s of SIGTERM")
			}
			if !o.exitOK && d.exitCode() != 0 {
				t.Errorf("daemon did not stop cleanly on SIGTERM: %v", d.waitErr)
			}
		}
		if t.Failed() {
			t.Logf("daemon (pid %d, %v) log, last 60 lines:\n%s", d.pid(), d.waitErr, d.tail(60))
		}
	})
	if !o.noWaitReady {
		d.waitLog(t, 60*time.Second, func(l string) bool { return strings.Contains(l, `"msg":"ready"`) })
	}
	return d
}

func (d *daemon) poke() {
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *daemon) exitCode() int {
	var ee *exec.ExitError
	switch {
	case d.waitErr == nil:
		return 0
	case errors.As(d.waitErr, &ee):
		return ee.ExitCode()
	default:
		return -1
	}
}

// stop sends SIGTERM and waits for the exit; it returns the exit code.
func (d *daemon) stop(t *testing.T) int {
	t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("daemon did not stop within 20s of SIGTERM")
	}
	return d.exitCode()
}

// kill9 kills the daemon with SIGKILL and reaps it.
func (d *daemon) kill9(t *testing.T) {
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.done
}

func (d *daemon) logLines() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.log...)
}

func (d *daemon) tail(n int) string {
	l := d.logLines()
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// waitLog waits for a log line that satisfies ok and returns it.
func (d *daemon) waitLog(t *testing.T, timeout time.Duration, ok func(string) bool) string {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		lines := d.logLines()
		for _, l := range lines[seen:] {
			if ok(l) {
				return l
			}
		}
		seen = len(lines)
		select {
		case <-d.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no matching daemon log line in %s; last lines:\n%s", timeout, d.tail(30))
		}
		if d.exited() && len(d.logLines()) == seen {
			t.Fatalf("daemon exited (%v) without the expected log line; last lines:\n%s", d.waitErr, d.tail(30))
		}
	}
}

// countLog counts log lines with the given msg (and every given "key":value fragment).
func (d *daemon) countLog(msg string, frags ...string) int {
	n := 0
	for _, l := range d.logLines() {
		if !strings.Contains(l, `"msg":`+strconv.Quote(msg)) {
			continue
		}
		all := true
		for _, f := range frags {
			all = all && strings.Contains(l, f)
		}
		if all {
			n++
		}
	}
	return n
}

func (d *daemon) printed() []map[string]any {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]map[string]any(nil), d.events...)
}

// waitPrinted waits until n detections of recipe were printed on stdout.
func (d *daemon) waitPrinted(t *testing.T, recipe string, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if got := countNamed(d.printed(), recipe); got >= n {
			return
		}
		select {
		case <-d.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d detections of %s printed in %s, want %d", countNamed(d.printed(), recipe), recipe, timeout, n)
		}
	}
}

func countNamed(evs []map[string]any, recipe string) int {
	n := 0
	for _, e := range evs {
		if testkit.Str(e, "metadata", "name") == recipe {
			n++
		}
	}
	return n
}

// rssKiB is the daemon's resident set size.
func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			return strconv.Atoi(f[1])
		}
	}
	return 0, errors.New("no VmRSS")
}

// inNetns runs fn with its sockets in the named namespace (netns.Do).
func inNetns(ns string, fn func() error) error { return netns.Do(ns, fn) }

// dialIn opens a TCP connection from inside the named network namespace.
func dialIn(ns, addr string) (net.Conn, error) {
	var c net.Conn
	err := inNetns(ns, func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil && c != nil {
		c.Close()
		return nil, err
	}
	return c, err
}

// listenIn listens on a TCP address inside the named network namespace.
func listenIn(ns, addr string) (net.Listener, error) {
	var ln net.Listener
	err := inNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil && ln != nil {
		ln.Close()
		return nil, err
	}
	return ln, err
}

// scrape reads the daemon's /metrics: the value of every sample, keyed by its name and labels
// as printed (`jibril_events_lost_total{stream="file"}`).
func (d *daemon) scrape(t *testing.T) map[string]float64 {
	t.Helper()
	m, err := scrapeNS(d.ns)
	if err != nil {
		state := "running"
		if d.exited() {
			state = fmt.Sprintf("exited: %v", d.waitErr)
		}
		t.Fatalf("scrape metrics: %v (daemon %s)\n%s", err, state, d.tail(20))
	}
	return m
}

func scrapeNS(ns string) (map[string]float64, error) {
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return dialIn(ns, metricsAddr)
	}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		out[l[:i]] = v
	}
	return out, sc.Err()
}

// jibril runs a jibril sub-command (store, audit, net) and returns its output and exit code.
func jibril(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(jibrilBin, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	default:
		t.Fatalf("jibril %v: %v", args, err)
		return "", -1
	}
}

// touch creates (or truncates) a file: one create event for a recipe watching its directory.
func touch(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}
