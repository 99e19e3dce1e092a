// Package attack runs real offensive tools (nmap, masscan, hping3, ncat, socat, netcat, curl)
// against a host guarded by the real `jibril run` daemon with its built-in recipes, and checks
// what the daemon printed, what its reactions did, what it audited, and how long containment
// took. Everything happens inside network namespaces the tests create (198.18.0.0/15 only);
// the daemon runs under `nsenter --net=` so that its nftables table lives in namespace A.
//
// The daemon's sensors see the whole machine, shared with other tests. So each scenario
// switches to enforce only the recipes it attacks (every other built-in recipe is off: it
// prints, it does not react), attacks with its own uid, addresses and payload hashes where a
// recipe keys on them, and enforces the broad recipes (a binary run from /tmp) through copies
// limited to its own processes. Containment times go to the JSON file named by
// JIBRIL_ATTACK_TIMES, for `make bench`.
package attack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/tests/netns"
	"github.com/jibril-rt/jibril/tests/testkit"
)

var (
	jibrilBin string // the daemon and CLI, built once for the package
	minerBin  string // internal/fakeminer, copied under miner names by the tests
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := binDir()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		jibrilBin = filepath.Join(dir, "jibril")
		minerBin = filepath.Join(dir, "fakeminer")
		for out, pkg := range map[string]string{jibrilBin: "../../cmd/jibril", minerBin: "./internal/fakeminer"} {
			if b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// binDir makes the directory for the binaries the tests build. Not under /tmp when it can: a
// binary written in a temporary directory and run minutes later is exactly what the dropper
// recipes kill, and the tests run the jibril CLI while those recipes enforce. (Without root the
// tests skip, and the temporary directory does.)
func binDir() (string, error) {
	for _, parent := range []string{"/run", "/var/lib"} {
		var st unix.Statfs_t
		if unix.Statfs(parent, &st) != nil || st.Flags&unix.ST_NOEXEC != 0 {
			continue
		}
		if dir, err := os.MkdirTemp(parent, "jibril-attack-bin-"); err == nil {
			return dir, nil
		}
	}
	return os.MkdirTemp("", "jibril-attack-bin-")
}

// need skips the test when the machine cannot run it: root, kernel BTF, the namespace and
// nftables tools, and the offensive tools the scenario uses.
func need(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF sensors, network namespaces, nftables")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF at /sys/kernel/btf/vmlinux")
	}
	for _, tool := range append([]string{"ip", "nsenter", "nft"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install nmap masscan hping3 ncat socat netcat-openbsd curl)", tool)
		}
	}
}

// netpair is two network namespaces joined by a veth pair on 198.18.<n>.0/24 (RFC 2544):
// A (.1) is the guarded host, where the daemon and the attack tools run; B (.2 and the peers
// .9 to .11) plays the attacker's servers and the scan targets.
type netpair struct {
	a, b   string // names under /run/netns
	va, vb string // veth ends in A and B
	n      int
	addrA  string
	addrB  string
}

func (p *netpair) peer(i int) string { return fmt.Sprintf("198.18.%d.%d", p.n, i) }

func newNetpair(t *testing.T, tok string) *netpair {
	t.Helper()
	n := 20 + int(tok[0]+tok[1])%200
	p := &netpair{a: "jatkA" + tok, b: "jatkB" + tok, va: "jka" + tok, vb: "jkb" + tok, n: n,
		addrA: fmt.Sprintf("198.18.%d.1", n), addrB: fmt.Sprintf("198.18.%d.2", n)}
	testkit.Run(t, "ip", "netns", "add", p.a)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", p.a).Run() })
	testkit.Run(t, "ip", "netns", "add", p.b)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", p.b).Run() })
	testkit.Run(t, "ip", "-n", p.a, "link", "add", p.va, "type", "veth", "peer", "name", p.vb, "netns", p.b)
	testkit.Run(t, "ip", "-n", p.a, "addr", "add", p.addrA+"/24", "dev", p.va)
	testkit.Run(t, "ip", "-n", p.b, "addr", "add", p.addrB+"/24", "dev", p.vb)
	for i := 9; i <= 11; i++ {
		testkit.Run(t, "ip", "-n", p.b, "addr", "add", p.peer(i)+"/24", "dev", p.vb)
	}
	for _, ns := range []string{p.a, p.b} {
		testkit.Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	testkit.Run(t, "ip", "-n", p.a, "link", "set", p.va, "up")
	testkit.Run(t, "ip", "-n", p.b, "link", "set", p.vb, "up")
	return p
}

// unique gives B one more address, in 198.19.0.0/16 (the other half of RFC 2544's /15, which
// the rest of the tests leave alone) and drawn from tok, reachable from A over the pair. The
// sensors see the whole host and a DNS answer names an address whatever the namespace: an
// address of this test's own keeps other tests' connections out of its recipes' way.
func (p *netpair) unique(t *testing.T, tok string) string {
	t.Helper()
	n, err := strconv.ParseUint(tok, 16, 32)
	if err != nil {
		t.Fatal(err)
	}
	ip := fmt.Sprintf("198.19.%d.%d", (n>>8)%254+1, n%254+1)
	testkit.Run(t, "ip", "-n", p.b, "addr", "add", ip+"/32", "dev", p.vb)
	testkit.Run(t, "ip", "-n", p.a, "route", "add", ip+"/32", "dev", p.va)
	return ip
}

// ipExe is the path of ip(8) as the tests exec it (events name the path given to execve), the
// exe of `ip netns exec` until it execs the tool.
// ipExes are the names process.exe may give the exec of ip: the image the kernel loaded
// (/usr/sbin/ip is a link on merged-/usr systems), or the executed path when the process had
// already exec'd its command by the time /proc was read.
func ipExes(t *testing.T) []string {
	t.Helper()
	p, err := exec.LookPath("ip")
	if err != nil {
		t.Fatal(err)
	}
	out := []string{p}
	if real, err := filepath.EvalSymlinks(p); err == nil && real != p {
		out = append(out, real)
	}
	return out
}

// compact is a JSON document without insignificant white space.
func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("compact %s: %v", raw, err)
	}
	return b.String()
}

// macB is the hardware address of B's end of the pair (masscan needs the next hop's MAC).
func (p *netpair) macB(t *testing.T) string {
	t.Helper()
	var mac string
	if err := inNetns(p.b, func() error {
		ifc, err := net.InterfaceByName(p.vb)
		if err != nil {
			return err
		}
		mac = ifc.HardwareAddr.String()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}

// inNetns runs fn with its sockets in the named namespace (netns.Do).
func inNetns(name string, fn func() error) error { return netns.Do(name, fn) }

// listen opens a TCP listener in a namespace; it is closed at the end of the test.
func listen(t *testing.T, ns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := inNetns(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// dial opens and closes a TCP connection from a namespace.
func dial(ns, addr string, timeout time.Duration) error {
	return inNetns(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// requireDropped checks that a new connection from A to addr now fails, and fails by a timeout:
// the SYN is dropped by nftables in A (a refusal would mean the peer answered).
func requireDropped(t *testing.T, p *netpair, addr string) {
	t.Helper()
	err := dial(p.a, addr, 800*time.Millisecond)
	if err == nil {
		t.Fatalf("a new connection from %s to %s succeeded: the address is not blocked", p.a, addr)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connection to %s failed with %v, want a timeout (packets dropped)", addr, err)
	}
}

// dialFrom opens and closes a TCP connection from a namespace, from a given local address.
func dialFrom(ns, local, addr string, timeout time.Duration) error {
	return inNetns(ns, func() error {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// requireDroppedFrom checks that traffic from ip no longer reaches A: a connection from B,
// from that address, to a listener in A times out (dropped by A's input chain). For the
// addresses a recipe watches by name, where a connection from A to them would itself be a
// detection, and the test process the one killed.
func requireDroppedFrom(t *testing.T, p *netpair, ip string, ln net.Listener) {
	t.Helper()
	err := dialFrom(p.b, ip, ln.Addr().String(), 800*time.Millisecond)
	if err == nil {
		t.Fatalf("a connection from %s to %s in %s succeeded: the address is not blocked", ip, ln.Addr(), p.a)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("connection from %s failed with %v, want a timeout (packets dropped)", ip, err)
	}
}

// nftBlocked reports whether ip is an element of the daemon's block set in namespace A.
func nftBlocked(t *testing.T, p *netpair, ip string) bool {
	t.Helper()
	out := testkit.Run(t, "ip", "netns", "exec", p.a, "nft", "list", "set", "inet", "jibril", "block4")
	return strings.Contains(out, ip+" ") || strings.Contains(out, ip+",") || strings.Contains(out, ip+"}")
}

// cleanEnv is the environment without JIBRIL_* variables (the daemon would read them as
// configuration: JIBRIL_ATTACK_TIMES is ours, not its).
func cleanEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "JIBRIL_") {
			out = append(out, kv)
		}
	}
	return out
}

// daemon is a running `jibril run` with the built-in recipes, the detections and reaction logs
// of the recipes its scenario watches, and the rest of its log.
type daemon struct {
	state  string
	watch  [][]byte // `"name":"<recipe>"` and `"recipe":"<recipe>"` of the watched recipes
	only   [][]byte // daemonOpts.only
	mu     sync.Mutex
	events []map[string]any
	logs   []map[string]any
	stderr strings.Builder
	notify chan struct{}
}

// daemonOpts says how a scenario's daemon is configured.
type daemonOpts struct {
	// modes are the recipe_modes of the scenario's recipes, the ones watched. Every other
	// built-in recipe is set to off: it still matches and prints, but does not react. The
	// sensors see the whole host, and on a shared machine the reactions of recipes no scenario
	// looks at (to every write in /tmp, say) would only crowd the reaction queues.
	modes map[string]string
	// recipes is an extra recipe directory (--recipes).
	recipes string
	// files turns the file sensor on. The sensors see the whole host, and on a shared machine
	// /tmp is busy: a scenario that needs no file event runs without them.
	files bool
	// only, when set, narrows the watched lines further to those containing one of these
	// strings (the scenario's own paths), so that a flood of detections of a watched recipe
	// elsewhere on the host is not even decoded.
	only []string
}

// maxLog caps the daemon log kept for a failure report (a flood elsewhere on the host can
// make it huge).
const maxLog = 4 << 20

func startDaemon(t *testing.T, p *netpair, o daemonOpts) *daemon {
	t.Helper()
	root := t.TempDir()
	d := &daemon{state: filepath.Join(root, "state"), notify: make(chan struct{}, 1)}
	for _, o := range o.only {
		d.only = append(d.only, []byte(o))
	}
	// Enforcement is scoped to this test binary's descendants: the built-in recipes match
	// host-wide, and on a shared machine nothing but this test's own tools may be acted on.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "enforce_scope: [%q]\n", self)
	// pids wrap at 32768 here: a tool may get a pid below Jibril's default floor of 500. The
	// scope above keeps every effect on this test's own processes, so the floor can be 2.
	cfg.WriteString("protect:\n  min_pid: 2\n")
	fmt.Fprintf(&cfg, "sensors:\n  file: %t\nprinters:\n  stdout:\n    queue: 65536\nrecipe_modes:\n", o.files)
	modes := map[string]string{}
	for _, r := range builtinRecipes(t) {
		modes[fmt.Sprint(r["name"])] = "off"
	}
	for n, m := range o.modes {
		modes[n] = m
		d.watch = append(d.watch, []byte(`"name":"`+n+`"`), []byte(`"recipe":"`+n+`"`))
	}
	names := make([]string, 0, len(modes))
	for n := range modes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(&cfg, "  %s: %s\n", n, modes[n])
	}
	cfgPath := filepath.Join(root, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--net=/run/netns/" + p.a, jibrilBin, "run", "--config", cfgPath,
		"--state-dir", d.state, "--no-metrics", "--log-format", "json"}
	if o.recipes != "" {
		args = append(args, "--recipes", o.recipes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = cleanEnv()
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var once sync.Once
	// Both readers decode only what concerns the watched recipes: detections of everything
	// else on the host can come by the thousand, and a slow reader makes the printer drop.
	go eachLine(stderr, func(line []byte) {
		watched := d.watched(line)
		if !watched && bytes.Contains(line, []byte(`"recipe":"`)) {
			return // another recipe's reaction log
		}
		var m map[string]any
		_ = json.Unmarshal(line, &m)
		d.mu.Lock()
		if d.stderr.Len() < maxLog {
			d.stderr.Write(line)
			d.stderr.WriteByte('\n')
		}
		if m != nil && watched {
			d.logs = append(d.logs, m)
		}
		d.mu.Unlock()
		if m != nil && m["msg"] == "ready" {
			once.Do(func() { close(ready) })
		}
		d.poke()
	})
	go eachLine(stdout, func(line []byte) {
		if !d.watched(line) {
			return
		}
		var m map[string]any
		if json.Unmarshal(line, &m) != nil {
			return
		}
		d.mu.Lock()
		d.events = append(d.events, m)
		d.mu.Unlock()
		d.poke()
	})
	t.Cleanup(func() {
		cancel() // SIGTERM: a graceful stop must exit 0
		_ = cmd.Wait()
		if st := cmd.ProcessState; st == nil || st.ExitCode() != 0 {
			t.Errorf("daemon did not stop cleanly on SIGTERM: %v", st)
		}
		// Every reaction of the scenario left its rows in one intact hash chain.
		if out, err := d.cli(t, "audit", "verify"); err != nil || !strings.HasPrefix(string(out), "audit chain intact") {
			t.Errorf("audit verify: %v %s", err, out)
		}
		if t.Failed() {
			t.Logf("daemon log (watched recipes and the daemon's own lines):\n%s", d.log())
		}
	})
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("daemon not ready in 60s:\n%s", d.log())
	}
	return d
}

// maxLine is the longest line eachLine hands over. A detection carries the files and flows of
// its process, and a process that touched thousands of files elsewhere on the host makes
// lines of many megabytes: those are skipped, and reading goes on.
const maxLine = 8 << 20

// eachLine calls fn with every line of r (without its newline) until r ends.
func eachLine(r io.Reader, fn func([]byte)) {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == bufio.ErrBufferFull:
			if !tooLong && len(long)+len(chunk) <= maxLine {
				long = append(long, chunk...)
			} else {
				tooLong, long = true, long[:0]
			}
			continue
		case err != nil:
			return
		}
		line := chunk
		if len(long) > 0 || tooLong {
			line = append(long, chunk...)
		}
		if !tooLong && len(line) <= maxLine {
			fn(bytes.TrimSuffix(line, []byte{'\n'}))
		}
		long, tooLong = long[:0], false
	}
}

// watched reports whether a detection or log line concerns one of the watched recipes (and
// one of the scenario's paths, when it names them).
func (d *daemon) watched(line []byte) bool {
	return containsAny(line, d.watch) && (len(d.only) == 0 || containsAny(line, d.only))
}

func containsAny(b []byte, subs [][]byte) bool {
	for _, s := range subs {
		if bytes.Contains(b, s) {
			return true
		}
	}
	return false
}

func (d *daemon) poke() {
	select {
	case d.notify <- struct{}{}:
	default:
	}
}

func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// waitEvent returns the first detection of recipe printed on stdout that satisfies ok.
func (d *daemon) waitEvent(t *testing.T, recipe string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	e, found := d.poll(20*time.Second, func() (map[string]any, bool) {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, e := range d.events {
			if testkit.Str(e, "metadata", "name") == recipe && (ok == nil || ok(e)) {
				return e, true
			}
		}
		return nil, false
	})
	if !found {
		t.Fatalf("no detection of %s in 20s", recipe)
	}
	return e
}

// waitLog returns the first reaction log line of recipe for the event uuid that contains one
// of texts.
func (d *daemon) waitLog(t *testing.T, recipe, uuid string, texts ...string) map[string]any {
	t.Helper()
	l, found := d.poll(15*time.Second, func() (map[string]any, bool) {
		d.mu.Lock()
		defer d.mu.Unlock()
		for _, l := range d.logs {
			if l["recipe"] != recipe || l["uuid"] != uuid {
				continue
			}
			for _, text := range texts {
				if strings.Contains(fmt.Sprint(l["msg"]), text) {
					return l, true
				}
			}
		}
		return nil, false
	})
	if !found {
		t.Fatalf("no log of %s for event %s containing %q in 15s", recipe, uuid, texts)
	}
	return l
}

func (d *daemon) poll(timeout time.Duration, try func() (map[string]any, bool)) (map[string]any, bool) {
	deadline := time.After(timeout)
	for {
		if v, ok := try(); ok {
			return v, true
		}
		select {
		case <-d.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			return nil, false
		}
	}
}

// ofPID selects events of one process.
func ofPID(pid int) func(map[string]any) bool {
	return func(e map[string]any) bool { return testkit.Num(e, "process", "pid") == pid }
}

// auditRow is one row of `jibril audit list --json`.
type auditRow struct {
	Seq       int64           `json:"seq"`
	Time      string          `json:"time"`
	Recipe    string          `json:"recipe"`
	EventUUID string          `json:"event_uuid"`
	Helper    string          `json:"helper"`
	Args      json.RawMessage `json:"args"`
	Result    json.RawMessage `json:"result"`
	Errno     string          `json:"errno"`
	Outcome   string          `json:"outcome"`
	Mode      string          `json:"mode"`
}

func (r auditRow) at(t *testing.T) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, r.Time)
	if err != nil {
		t.Fatalf("audit row %d: time %q: %v", r.Seq, r.Time, err)
	}
	return ts
}

// cli runs a jibril sub-command against the daemon's state directory.
func (d *daemon) cli(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.Command(jibrilBin, append(args, "--state-dir", d.state)...)
	cmd.Env = cleanEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("jibril %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// waitAudit polls `jibril audit list --json` until recipe audited helper for the event uuid
// (the reaction runs after the detection is printed), and returns that row, which must say the
// effect was done in enforce mode.
func (d *daemon) waitAudit(t *testing.T, recipe, uuid, helper string) auditRow {
	t.Helper()
	r := d.waitAuditRow(t, recipe, uuid, helper)
	if r.Mode != "enforce" || r.Outcome != "done" {
		t.Fatalf("audit row %s/%s: mode %s, outcome %s, errno %q: want enforce and done", recipe, helper, r.Mode, r.Outcome, r.Errno)
	}
	return r
}

// waitAuditRow is waitAudit whatever the row's outcome.
func (d *daemon) waitAuditRow(t *testing.T, recipe, uuid, helper string) auditRow {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := d.cli(t, "audit", "list", "--json", "--recipe", recipe)
		if err != nil {
			t.Fatal(err)
		}
		var rows []auditRow
		if err := json.Unmarshal(out, &rows); err != nil {
			t.Fatalf("audit list --json: %v\n%s", err, out)
		}
		for _, r := range rows {
			if r.EventUUID == uuid && r.Helper == helper {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit row %s/%s for event %s in 15s; rows: %+v", recipe, helper, uuid, rows)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// netBlock is one persisted block of `jibril net list --json`.
type netBlock struct {
	Kind      string   `json:"kind"`
	Value     string   `json:"value"`
	Recipe    string   `json:"recipe"`
	Expires   string   `json:"expires"`
	InKernel  *bool    `json:"in_nftables"`
	Addresses []string `json:"addresses"`
}

// netBlocks lists the daemon's blocks as an operator sees them: `jibril net list --json` run in
// namespace A, where the daemon's nftables table is.
func (d *daemon) netBlocks(t *testing.T, p *netpair) []netBlock {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", p.a, jibrilBin, "net", "list", "--json", "--state-dir", d.state)
	cmd.Env = cleanEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("jibril net list: %v\n%s", err, out)
	}
	var l struct {
		Blocks []netBlock `json:"blocks"`
	}
	if err := json.Unmarshal(out, &l); err != nil {
		t.Fatalf("jibril net list --json: %v\n%s", err, out)
	}
	return l.Blocks
}

// requireNetBlock checks that the daemon persisted a block of value by recipe and, for an
// address, that nftables holds it.
func (d *daemon) requireNetBlock(t *testing.T, p *netpair, kind, value, recipe string) netBlock {
	t.Helper()
	blocks := d.netBlocks(t, p)
	for _, b := range blocks {
		if b.Kind == kind && b.Value == value && b.Recipe == recipe {
			if kind == "ip" && (b.InKernel == nil || !*b.InKernel) {
				t.Fatalf("block of %s is persisted but not in nftables: %+v", value, b)
			}
			return b
		}
	}
	t.Fatalf("no %s block of %s by %s in jibril net list: %+v", kind, value, recipe, blocks)
	return netBlock{}
}

// waitDone waits for an effect on pid by one of recipes: a `helper` row with outcome done and
// result 0 for any of the detections of that process (a connection can be reported more than
// once, an exec can match several recipes, and the reactions run in parallel: the later ones
// find the work done). When only rows that found the work done turn up (another jibril on the
// host can get there first, see settled), the first of them is returned.
func (d *daemon) waitDone(t *testing.T, pid int, helper string, recipes ...string) auditRow {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	var fallback *auditRow
	for {
		var all []auditRow
		for _, recipe := range recipes {
			uuids := map[string]bool{}
			d.mu.Lock()
			for _, e := range d.events {
				if testkit.Str(e, "metadata", "name") == recipe && testkit.Num(e, "process", "pid") == pid {
					uuids[testkit.Str(e, "uuid")] = true
				}
			}
			d.mu.Unlock()
			out, err := d.cli(t, "audit", "list", "--json", "--recipe", recipe)
			if err != nil {
				t.Fatal(err)
			}
			var rows []auditRow
			if err := json.Unmarshal(out, &rows); err != nil {
				t.Fatalf("audit list --json: %v\n%s", err, out)
			}
			for _, r := range rows {
				if !uuids[r.EventUUID] || r.Helper != helper || r.Mode != "enforce" {
					continue
				}
				if r.Outcome == "done" && string(r.Result) == "0" {
					return r
				}
				if fallback == nil && settled(r) {
					fallback = &r
					if soon := time.Now().Add(time.Second); soon.Before(deadline) {
						deadline = soon // a 0 may still come
					}
				}
			}
			all = append(all, rows...)
		}
		if time.Now().After(deadline) {
			if fallback != nil {
				requireKill(t, *fallback)
				return *fallback
			}
			t.Fatalf("no %s of pid %d by %v in 15s; rows: %+v", helper, pid, recipes, all)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// settled reports whether an audited effect found its work already done: 1, or a target
// process already gone (which the sandbox today audits as a refusal, -1 "process is gone").
func settled(r auditRow) bool {
	return r.Outcome == "done" && string(r.Result) == "1" ||
		r.Outcome == "refused" && strings.Contains(r.Errno, "process is gone")
}

// requireKill checks an audited kill by the daemon: done (0), or, when another jibril on the
// host got there first (the sensors and the built-in recipes see every process), settled.
func requireKill(t *testing.T, r auditRow) {
	t.Helper()
	switch {
	case r.Mode != "enforce":
		t.Fatalf("%s %s in mode %s, want enforce", r.Recipe, r.Helper, r.Mode)
	case r.Outcome == "done" && string(r.Result) == "0":
	case settled(r):
		t.Logf("%s %s found the target gone (another jibril on the host was first): %s %s %q", r.Recipe, r.Helper, r.Outcome, r.Result, r.Errno)
	default:
		t.Fatalf("%s %s: outcome %s, result %s, errno %q", r.Recipe, r.Helper, r.Outcome, r.Result, r.Errno)
	}
}

// storeGet reads a key of the reactions' data store through the CLI.
func (d *daemon) storeGet(t *testing.T, ns, key string) string {
	t.Helper()
	out, err := d.cli(t, "store", "get", ns, key)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// evidence reads the manifest of the evidence bundle the reaction reported (its path is the
// result of the CollectEvidence audit row).
func (d *daemon) evidence(t *testing.T, row auditRow) (string, map[string]any) {
	t.Helper()
	var dir string
	if err := json.Unmarshal(row.Result, &dir); err != nil || dir == "" {
		t.Fatalf("CollectEvidence returned %s, want a directory", row.Result)
	}
	if !strings.HasPrefix(dir, filepath.Join(d.state, "evidence")+"/") {
		t.Fatalf("evidence bundle %s is not under %s/evidence", dir, d.state)
	}
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatalf("evidence bundle: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("evidence manifest: %v", err)
	}
	return dir, m
}

// attack is one process the test started (a tool, a shell, a payload), in its own process
// group so that everything it spawns can be found and, at the end, killed.
type attack struct {
	name string
	cmd  *exec.Cmd
	t0   time.Time // just before the exec
	out  output
	done chan struct{}
	end  time.Time // when wait returned
	err  error
}

// output is a process's stdout and stderr, in a file rather than a pipe: wait then returns
// when the process dies, not when the last of its children closes the pipe.
type output string

func (o output) String() string {
	b, _ := os.ReadFile(string(o))
	return string(b)
}

// startIn starts argv inside namespace ns (`ip netns exec`).
func startIn(t *testing.T, ns string, argv ...string) *attack {
	t.Helper()
	return startEnv(t, ns, nil, argv...)
}

// startEnv is startIn with extra environment variables.
func startEnv(t *testing.T, ns string, env []string, argv ...string) *attack {
	t.Helper()
	full := append([]string{"ip", "netns", "exec", ns}, argv...)
	f, err := os.CreateTemp(t.TempDir(), "out-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child has its own descriptor
	a := &attack{name: strings.Join(argv, " "), cmd: exec.Command(full[0], full[1:]...), out: output(f.Name()), done: make(chan struct{})}
	a.cmd.Env = append(cleanEnv(), env...)
	a.cmd.Stdout, a.cmd.Stderr = f, f
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	a.t0 = time.Now()
	if err := a.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", a.name, err)
	}
	go func() {
		a.err = a.cmd.Wait()
		a.end = time.Now()
		close(a.done)
	}()
	t.Cleanup(func() {
		// Everything left in the group is ours: the process, or what it forked. Once the leader
		// is reaped the group id stays ours only while a member lives: look before killing.
		if a.running() || len(a.survivors(t)) > 0 {
			_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		}
		select {
		case <-a.done:
		case <-time.After(5 * time.Second):
		}
	})
	return a
}

func (a *attack) pid() int { return a.cmd.Process.Pid }

// exited waits for the process to end and returns its error (nil: exit 0).
func (a *attack) exited(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-a.done:
		return a.err
	case <-time.After(timeout):
		t.Fatalf("%s still running after %v\n%s", a.name, timeout, a.out)
		return nil
	}
}

// killed waits for the process to die of SIGKILL and returns the time from the exec to the
// death observed by wait.
func (a *attack) killed(t *testing.T) time.Duration {
	t.Helper()
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s was not killed in 15s\n%s", a.name, a.out)
	}
	var ee *exec.ExitError
	if !errors.As(a.err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("%s ended with %v, want SIGKILL\n%s", a.name, a.err, a.out)
	}
	return a.end.Sub(a.t0)
}

// running reports whether the process has not ended yet.
func (a *attack) running() bool {
	select {
	case <-a.done:
		return false
	default:
		return true
	}
}

// survivors lists the live processes of the attack's process group (its leader excluded when it
// is a zombie waiting for us): after a tree kill there must be none.
func (a *attack) survivors(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:]) // state ppid pgrp ...
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if pg, _ := strconv.Atoi(f[2]); pg == a.pid() {
			out = append(out, fmt.Sprintf("%d %s (%s)", pid, s[:i+1], f[0]))
		}
	}
	return out
}

// procState is the one-letter state of a live process (R, S, T, ...), "" when it is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return ""
	}
	return s[i+2 : i+3]
}

// recordTime logs a scenario's containment time and merges it into the JSON file named by
// JIBRIL_ATTACK_TIMES, for `make bench`.
func recordTime(t *testing.T, key string, d time.Duration) {
	t.Helper()
	ms := float64(d.Microseconds()) / 1000
	t.Logf("%s = %.3f ms", key, ms)
	path := os.Getenv("JIBRIL_ATTACK_TIMES")
	if path == "" {
		return
	}
	if err := mergeTime(path, key, ms); err != nil {
		t.Errorf("JIBRIL_ATTACK_TIMES: %v", err)
	}
}

func mergeTime(path, key string, ms float64) error {
	// Lock the directory, not the file: the file is replaced by a rename.
	lock, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", filepath.Dir(path), err)
	}
	times := map[string]float64{}
	b, err := os.ReadFile(path)
	switch {
	case err == nil && len(bytes.TrimSpace(b)) > 0:
		if err := json.Unmarshal(b, &times); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return err
	}
	times[key] = ms
	out, err := json.MarshalIndent(times, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(out, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// copyFile copies a binary or a file with the given mode.
func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}
