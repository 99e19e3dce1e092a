// Package tests holds end-to-end tests: the jibril binary, run as a daemon against the real
// kernel, real processes and real network namespaces. Every kill, deny and recipe is scoped to
// binaries the test created, and nftables only ever changes inside the test's namespaces.
package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/jibril-rt/jibril/tests/netns"
	"github.com/jibril-rt/jibril/tests/testkit"
)

var jibrilBin string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "jibril-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		jibrilBin = filepath.Join(dir, "jibril")
		out, err := exec.Command("go", "build", "-o", jibrilBin, "../cmd/jibril").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build jibril: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

func need(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: eBPF sensors, network namespaces, nftables")
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF at /sys/kernel/btf/vmlinux")
	}
	for _, tool := range []string{"ip", "nsenter", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

// netpair is two network namespaces joined by a veth pair on 198.18.<n>.0/24 (RFC 2544):
// A holds .1 and the daemon; B holds .2 and .9 and the servers.
type netpair struct {
	a, b     string // names under /run/netns
	n        int
	addrA    string
	addrB    string
	addrPeer string // .9, the "remote" the recipes watch
}

func newNetpair(t *testing.T, tok string) *netpair {
	t.Helper()
	n := 100 + int(tok[0])%100
	p := &netpair{a: "je2eA" + tok, b: "je2eB" + tok, n: n,
		addrA: fmt.Sprintf("198.18.%d.1", n), addrB: fmt.Sprintf("198.18.%d.2", n), addrPeer: fmt.Sprintf("198.18.%d.9", n)}
	testkit.Run(t, "ip", "netns", "add", p.a)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", p.a).Run() })
	testkit.Run(t, "ip", "netns", "add", p.b)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", p.b).Run() })
	va, vb := "jva"+tok, "jvb"+tok
	testkit.Run(t, "ip", "-n", p.a, "link", "add", va, "type", "veth", "peer", "name", vb, "netns", p.b)
	testkit.Run(t, "ip", "-n", p.a, "addr", "add", p.addrA+"/24", "dev", va)
	testkit.Run(t, "ip", "-n", p.b, "addr", "add", p.addrB+"/24", "dev", vb)
	testkit.Run(t, "ip", "-n", p.b, "addr", "add", p.addrPeer+"/24", "dev", vb)
	for _, ns := range []string{p.a, p.b} {
		testkit.Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	testkit.Run(t, "ip", "-n", p.a, "link", "set", va, "up")
	testkit.Run(t, "ip", "-n", p.b, "link", "set", vb, "up")
	return p
}

// inNetns runs fn with its sockets in the named namespace (netns.Do).
func inNetns(t *testing.T, name string, fn func() error) error {
	t.Helper()
	return netns.Do(name, fn)
}

// daemon is a running `jibril run` and the detections it printed.
type daemon struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []map[string]any
	stderr strings.Builder
	notify chan struct{}
}

func startDaemon(t *testing.T, netns, recipeDir, stateDir string) *daemon {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	// pid_max is 32768 on these machines: after a while pids wrap and a test's victim can get a
	// pid below Jibril's default floor of 500. The recipes here only ever match binaries this
	// test created, so the floor is lowered to 2 (pid 1, the daemon and its parent stay protected).
	cfg := filepath.Join(filepath.Dir(stateDir), "config.yaml")
	if err := os.WriteFile(cfg, []byte("protect:\n  min_pid: 2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, "nsenter", "--net=/run/netns/"+netns, jibrilBin, "run", "--config", cfg,
		"--no-builtin", "--recipes", recipeDir, "--state-dir", stateDir, "--metrics-address", "127.0.0.1:0", "--log-format", "json")
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
	d := &daemon{cmd: cmd, notify: make(chan struct{}, 1)}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan struct{})
	var once sync.Once
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			d.mu.Lock()
			d.stderr.WriteString(line + "\n")
			d.mu.Unlock()
			if strings.Contains(line, `"msg":"ready"`) {
				once.Do(func() { close(ready) })
			}
		}
	}()
	go func() {
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
			select {
			case d.notify <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() {
		cancel() // SIGTERM: a graceful stop must exit 0
		_ = cmd.Wait()
		if st := cmd.ProcessState; st == nil || st.ExitCode() != 0 {
			t.Errorf("daemon did not stop cleanly on SIGTERM: %v", st)
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", d.log())
		}
	})
	select {
	case <-ready:
	case <-time.After(60 * time.Second):
		t.Fatalf("daemon not ready in 60s:\n%s", d.log())
	}
	return d
}

// liveShell runs script with /bin/sh in dir, and keeps the shell alive (reading its stdin)
// until the test ends: the daemon resolves a relative path from the process's cwd, which
// only exists while the process does.
func liveShell(t *testing.T, dir, script string) *exec.Cmd {
	t.Helper()
	sh := exec.Command("/bin/sh", "-c", script+"; read _")
	sh.Dir = dir
	stdin, err := sh.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sh.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = sh.Wait() })
	return sh
}

// broker is the pid of the daemon's /proc broker: its child running `jibril __proc-broker`.
func (d *daemon) broker(t *testing.T) int {
	t.Helper()
	pid := d.cmd.Process.Pid // nsenter execs jibril in place
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		for _, f := range strings.Fields(string(b)) {
			var child int
			fmt.Sscan(f, &child)
			if cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", child)); strings.Contains(string(cl), "\x00__proc-broker") {
				return child
			}
		}
	}
	t.Fatalf("daemon %d has no /proc broker child", pid)
	return 0
}

// metrics fetches the daemon's /metrics, from inside its network namespace.
func (d *daemon) metrics(t *testing.T, netns string) string {
	t.Helper()
	i := strings.Index(d.log(), `"msg":"metrics","address":"`)
	if i < 0 {
		t.Fatal("the daemon logged no metrics address")
	}
	addr := d.log()[i+len(`"msg":"metrics","address":"`):]
	addr = addr[:strings.IndexByte(addr, '"')]
	var c net.Conn
	if err := inNetns(t, netns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET /metrics HTTP/1.0\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (d *daemon) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.stderr.String()
}

// wait returns the first detection of recipe that satisfies ok.
func (d *daemon) wait(t *testing.T, recipe string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	return d.waitFrom(t, 0, recipe, ok)
}

// mark is the number of detections printed so far.
func (d *daemon) mark() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.events)
}

// waitFrom is wait among the detections printed after mark.
func (d *daemon) waitFrom(t *testing.T, seen int, recipe string, ok func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		d.mu.Lock()
		evs := d.events[seen:]
		seen = len(d.events)
		d.mu.Unlock()
		for _, e := range evs {
			if testkit.Str(e, "metadata", "name") == recipe && (ok == nil || ok(e)) {
				return e
			}
		}
		select {
		case <-d.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no detection of %s in 20s", recipe)
		}
	}
}

func (d *daemon) count(recipe string, ok func(map[string]any) bool) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, e := range d.events {
		if testkit.Str(e, "metadata", "name") == recipe && (ok == nil || ok(e)) {
			n++
		}
	}
	return n
}

func copyBinary(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestDaemonEndToEnd runs one daemon with a set of recipes scoped to this test's binaries,
// directories and namespaces, and checks each kind of detection and reaction against it.
func TestDaemonEndToEnd(t *testing.T) {
	need(t)
	tok := testkit.Token(t)
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	watched := filepath.Join(root, "watched")
	recipesDir := filepath.Join(root, "recipes")
	for _, d := range []string{bin, watched, recipesDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	np := newNetpair(t, tok)
	domain := "e2e-" + tok + ".jibril.test"
	// The daemon is Landlocked (the default): shell reactions write only under its state
	// directory, so that is where the shell recipe writes; its attempt outside must fail.
	state := filepath.Join(root, "state")
	shellOut := filepath.Join(state, "shell-data.json")
	shellOutside := filepath.Join(root, "shell-outside")

	miner := filepath.Join(bin, "xmrig")
	victim := filepath.Join(bin, "victim-"+tok)
	shelly := filepath.Join(bin, "shelly-"+tok)
	prevented := filepath.Join(bin, "prevented-"+tok)
	denied := filepath.Join(bin, "denied-"+tok)
	copyBinary(t, "/bin/sleep", miner)
	copyBinary(t, "/bin/sleep", victim)
	copyBinary(t, "/bin/true", shelly)
	copyBinary(t, "/usr/bin/touch", prevented)
	copyBinary(t, "/usr/bin/touch", denied)

	testkit.Write(t, filepath.Join(recipesDir, "e2e.yaml"), fmt.Sprintf(`
- kind: crypto_miner
  name: e2e_miner
  mechanism: execution
  importance: critical
  dir: %[1]s
  base: xmrig
- kind: e2e
  name: e2e_killer
  mechanism: execution
  dir: %[1]s
  base: victim-%[2]s
  reactions:
    - format: js
      code: |
        function process(data) {
          var r = KillCurrent();
          Info("killed " + data.process.pid + ": " + r + " " + Errno());
        }
- kind: e2e
  name: e2e_shell
  mechanism: execution
  dir: %[1]s
  base: shelly-%[2]s
  reactions:
    - format: shell
      code: |
        (echo > %[7]s) 2>/dev/null
        printf '%%s' "$REACTION_DATA" > %[3]s
- kind: e2e
  name: e2e_prevent_kill
  mechanism: execution
  prevent: kill
  dir: %[1]s
  base: prevented-%[2]s
- kind: e2e
  name: e2e_prevent_deny
  mechanism: execution
  prevent: deny
  dir: %[1]s
  base: denied-%[2]s
- kind: e2e
  name: e2e_files
  mechanism: file_access
  file_actions: [unlink, write, truncate, create]
  dir: %[4]s
- kind: e2e
  name: e2e_flow
  mechanism: network_peers
  protocol: tcp
  remote_cidrs: [%[5]s/32]
  remote_port: 8443
- kind: e2e
  name: e2e_domain
  mechanism: network_peers
  remote_domains: [%[6]s]
`, bin, tok, shellOut, watched, np.addrPeer, domain, shellOutside))
	for name, pol := range map[string]string{
		"e2e_killer":       "mode: enforce\ncapabilities:\n  process.kill: [current]\n",
		"e2e_shell":        "mode: enforce\ncapabilities:\n  shell: true\n",
		"e2e_prevent_kill": "mode: enforce\n",
		"e2e_prevent_deny": "mode: enforce\n",
	} {
		testkit.Write(t, filepath.Join(recipesDir, name+".policy.yaml"), "recipe: "+name+"\n"+pol)
	}

	// Servers in B: TCP on .9:8443, DNS on .2:53 answering the test domain with .9.
	var ln net.Listener
	var dnsConn net.PacketConn
	if err := inNetns(t, np.b, func() error {
		var err error
		if ln, err = net.Listen("tcp", np.addrPeer+":8443"); err != nil {
			return err
		}
		dnsConn, err = net.ListenPacket("udp", np.addrB+":53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close(); dnsConn.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _, _ = io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	go testkit.ServeDNS(dnsConn, domain, np.addrPeer)

	d := startDaemon(t, np.a, recipesDir, state)

	t.Run("the daemon is Landlocked and reads /proc through its broker", func(t *testing.T) {
		if !strings.Contains(d.log(), `"landlock":true`) {
			t.Skip("Landlock not applied on this kernel: see the daemon log")
		}
		broker := d.broker(t)
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", broker))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"CapEff:\t0000000000080004", "CapBnd:\t0000000000080004", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(string(st), want) {
				t.Errorf("broker %d status lacks %q:\n%s", broker, want, st)
			}
		}
	})

	t.Run("exec of a binary named like a miner", func(t *testing.T) {
		cmd := exec.Command(miner, "0.2")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		_ = cmd.Wait()
		e := d.wait(t, "e2e_miner", func(e map[string]any) bool { return testkit.Num(e, "process", "pid") == pid })
		if testkit.Str(e, "process", "exe") != miner || testkit.Str(e, "event_type") != "execution" || testkit.Str(e, "metadata", "kind") != "crypto_miner" {
			t.Fatalf("process = %v", testkit.Field(e, "process"))
		}
		anc, _ := testkit.Field(e, "background", "ancestry").([]any)
		if len(anc) < 2 {
			t.Fatalf("ancestry = %v", anc)
		}
		last := anc[len(anc)-1].(map[string]any)
		parent := anc[len(anc)-2].(map[string]any)
		if int(last["pid"].(float64)) != pid || int(parent["pid"].(float64)) != os.Getpid() {
			t.Fatalf("ancestry ends with %v, %v; want the test (%d) then the miner (%d)", parent["pid"], last["pid"], os.Getpid(), pid)
		}
	})

	t.Run("a symbolic link named otherwise does not hide the miner", func(t *testing.T) {
		link := filepath.Join(bin, "kworker-"+tok)
		if err := os.Symlink(miner, link); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(link, "0.2")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		pid := cmd.Process.Pid
		_ = cmd.Wait()
		e := d.wait(t, "e2e_miner", func(e map[string]any) bool { return testkit.Num(e, "process", "pid") == pid })
		if testkit.Str(e, "process", "exe") != miner || testkit.Str(e, "file", "file") != link {
			t.Fatalf("process.exe %q file.file %q, want the image %s and the link %s", testkit.Str(e, "process", "exe"), testkit.Str(e, "file", "file"), miner, link)
		}
	})

	t.Run("JS reaction kills the process", func(t *testing.T) {
		cmd := exec.Command(victim, "30")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
				t.Fatalf("victim ended with %v, want SIGKILL", err)
			}
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			t.Fatal("the reaction did not kill the victim in 15s")
		}
	})

	t.Run("shell reaction receives REACTION_DATA", func(t *testing.T) {
		if err := exec.Command(shelly).Run(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if _, err := os.Stat(shellOutside); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the shell reaction wrote outside the state directory (%s): %v", shellOutside, err)
			}
		}()
		deadline := time.Now().Add(15 * time.Second)
		for {
			b, err := os.ReadFile(shellOut)
			if err == nil && len(b) > 0 {
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatalf("REACTION_DATA is not JSON: %v", err)
				}
				if testkit.Str(m, "metadata", "name") != "e2e_shell" || testkit.Str(m, "process", "exe") != shelly {
					t.Fatalf("REACTION_DATA = %s", b)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("the shell reaction wrote nothing in 15s")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("prevent kill stops the binary before its first instruction", func(t *testing.T) {
		marker := filepath.Join(root, "prevented-marker")
		err := exec.Command(prevented, marker).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("prevented binary ended with %v, want SIGKILL", err)
		}
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the prevented binary ran: marker %v", err)
		}
	})

	t.Run("prevent kill follows the file when it is replaced", func(t *testing.T) {
		// kill-on-exec is keyed by inode: a new file at the path must be re-keyed (and the old
		// inode, free for reuse by anything, forgotten).
		replaceAndRetry(t, prevented, filepath.Join(root, "prevented-marker-2"), "killed at exec", func(err error) bool {
			var ee *exec.ExitError
			return errors.As(err, &ee) && ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
		})
	})

	t.Run("prevent deny refuses the exec with EPERM", func(t *testing.T) {
		marker := filepath.Join(root, "denied-marker")
		err := exec.Command(denied, marker).Run()
		if !errors.Is(err, syscall.EPERM) {
			t.Fatalf("exec of the denied binary: %v, want EPERM", err)
		}
		if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("the denied binary ran: marker %v", err)
		}
	})

	t.Run("prevent deny follows the file when it is replaced", func(t *testing.T) {
		// A fanotify mark pins the inode it was put on: a new file at the path must be marked.
		replaceAndRetry(t, denied, filepath.Join(root, "denied-marker-2"), "denied", func(err error) bool {
			return errors.Is(err, syscall.EPERM)
		})
	})

	t.Run("file recipe fires on modify and unlink, not on read", func(t *testing.T) {
		f := filepath.Join(watched, "target.txt")
		ofFile := func(action string) func(map[string]any) bool {
			return func(e map[string]any) bool {
				acts, _ := testkit.Field(e, "file", "actions").([]any)
				for _, a := range acts {
					if a == action && testkit.Str(e, "file", "file") == f {
						return true
					}
				}
				return false
			}
		}
		testkit.Write(t, f, "one")
		d.wait(t, "e2e_files", ofFile("create"))
		before := d.count("e2e_files", nil)
		at := d.mark()
		if _, err := os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
		fh, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fh.WriteString("two")
		fh.Close()
		e := d.waitFrom(t, at, "e2e_files", ofFile("write"))
		if acts := fmt.Sprint(testkit.Field(e, "file", "actions")); strings.Contains(acts, "create") {
			t.Fatalf("append reported as %s", acts)
		}
		if got := d.count("e2e_files", nil); got != before+1 {
			t.Fatalf("%d detections between the read and the write, want only the write", got-before)
		}
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
		e = d.wait(t, "e2e_files", ofFile("unlink"))
		if testkit.Num(e, "process", "pid") != os.Getpid() {
			t.Fatalf("unlink by pid %d, want the test %d", testkit.Num(e, "process", "pid"), os.Getpid())
		}
	})

	t.Run("relative paths of processes outside the daemon's domain are resolved", func(t *testing.T) {
		// The kernel reports the path as given; the daemon makes it absolute with the
		// process's cwd, which Landlock hides from it: it asks its broker.
		rel := "rel-" + tok + ".txt"
		sh := liveShell(t, watched, "echo x > "+rel)
		e := d.wait(t, "e2e_files", func(e map[string]any) bool { return testkit.Str(e, "file", "file") == filepath.Join(watched, rel) })
		if testkit.Num(e, "process", "pid") != sh.Process.Pid {
			t.Fatalf("pid %d, want the shell %d", testkit.Num(e, "process", "pid"), sh.Process.Pid)
		}
		// A relative exec: file.file from the cwd, process.exe from /proc/PID/exe.
		cmd := exec.Command("./"+filepath.Base(miner), "0.2")
		cmd.Dir = bin
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		e = d.wait(t, "e2e_miner", func(e map[string]any) bool { return testkit.Num(e, "process", "pid") == cmd.Process.Pid })
		if testkit.Str(e, "process", "exe") != miner || testkit.Str(e, "file", "file") != miner {
			t.Fatalf("process.exe %q file.file %q, want %s", testkit.Str(e, "process", "exe"), testkit.Str(e, "file", "file"), miner)
		}
	})

	t.Run("network recipe fires on a TCP connection between namespaces", func(t *testing.T) {
		var local string
		if err := inNetns(t, np.a, func() error {
			c, err := net.DialTimeout("tcp", np.addrPeer+":8443", 5*time.Second)
			if err != nil {
				return err
			}
			local = c.LocalAddr().String()
			_, _ = c.Write([]byte("hello"))
			return c.Close()
		}); err != nil {
			t.Fatal(err)
		}
		e := d.wait(t, "e2e_flow", nil)
		if testkit.Str(e, "flow", "remote", "address") != np.addrPeer || testkit.Num(e, "flow", "remote", "port") != 8443 {
			t.Fatalf("flow = %v", testkit.Field(e, "flow"))
		}
		if testkit.Str(e, "flow", "proto") != "tcp" || testkit.Str(e, "flow", "phase", "direction") != "outgoing" {
			t.Fatalf("flow = %v (local %s)", testkit.Field(e, "flow"), local)
		}
	})

	t.Run("DNS answer fills names", func(t *testing.T) {
		if !strings.Contains(d.log(), `"sensors":`) || strings.Contains(d.log(), "no DNS sensor") {
			t.Skip("the DNS sensor is not attached on this machine (cgroup_skb): see the daemon log")
		}
		if err := inNetns(t, np.a, func() error {
			if err := queryDNS(np.addrB+":53", domain); err != nil {
				return err
			}
			c, err := net.DialTimeout("tcp", np.addrPeer+":8443", 5*time.Second)
			if err != nil {
				return err
			}
			return c.Close()
		}); err != nil {
			t.Fatal(err)
		}
		e := d.wait(t, "e2e_domain", nil)
		names, _ := testkit.Field(e, "flow", "remote", "names").([]any)
		found := false
		for _, n := range names {
			found = found || n == domain
		}
		if !found || testkit.Str(e, "flow", "remote", "address") != np.addrPeer {
			t.Fatalf("flow.remote = %v, want names with %s", testkit.Field(e, "flow", "remote"), domain)
		}
	})

	// Last: it leaves the daemon without its broker.
	t.Run("a dead broker is reported and detection goes on", func(t *testing.T) {
		if !strings.Contains(d.log(), `"landlock":true`) {
			t.Skip("Landlock not applied on this kernel: see the daemon log")
		}
		if err := syscall.Kill(d.broker(t), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Second)
		for !strings.Contains(d.log(), "DEGRADED: the /proc broker died") || !strings.Contains(d.metrics(t, np.a), `jibril_feature_degraded{feature="proc_broker"} 1`) {
			if time.Now().After(deadline) {
				t.Fatalf("the broker's death is neither logged nor in the metrics:\n%s", d.metrics(t, np.a))
			}
			time.Sleep(50 * time.Millisecond)
		}
		// A relative path can no longer be resolved, an absolute one is still detected: the
		// file stream is handled in order, so once the second is printed the first was seen.
		rel := "after-" + tok + ".txt"
		liveShell(t, watched, "echo x > "+rel+"; echo y > "+filepath.Join(watched, "abs-"+tok+".txt"))
		d.wait(t, "e2e_files", func(e map[string]any) bool {
			return testkit.Str(e, "file", "file") == filepath.Join(watched, "abs-"+tok+".txt")
		})
		if n := d.count("e2e_files", func(e map[string]any) bool { return strings.Contains(testkit.Str(e, "file", "file"), rel) }); n != 0 {
			t.Fatalf("%d detections of %s without a broker: its path was resolved", n, rel)
		}
	})
}

// replaceAndRetry replaces the binary at path by a new copy (a new inode) and runs it until
// stopped(err) says the daemon acted on the new file, within 15 s (the daemon re-checks its
// prevented paths every second).
func replaceAndRetry(t *testing.T, path, marker, what string, stopped func(error) bool) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	copyBinary(t, "/usr/bin/touch", path)
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := exec.Command(path, marker).Run()
		if stopped(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replaced binary is not %s: %v", what, err)
		}
		_ = os.Remove(marker)
		time.Sleep(200 * time.Millisecond)
	}
}

func queryDNS(server, name string) error {
	c, err := net.Dial("udp", server)
	if err != nil {
		return err
	}
	defer c.Close()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 4242, RecursionDesired: true})
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name + "."), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET})
	q, err := b.Finish()
	if err != nil {
		return err
	}
	if _, err := c.Write(q); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 512)
	if _, err := c.Read(buf); err != nil {
		return fmt.Errorf("DNS answer: %w", err)
	}
	return nil
}
