package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/confine"
)

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSystemdInstall(t *testing.T) {
	prefix := t.TempDir()
	unit := filepath.Join(prefix, unitPath)
	conf := filepath.Join(prefix, defaultConfigFile)
	recipes := filepath.Join(prefix, recipesDirPath)

	// Dry run: prints, writes nothing.
	out, msg, code := run(t, "", "systemd", "install", "--prefix", prefix, "--binary", "/usr/local/bin/jibril", "--dry-run")
	if code != 0 {
		t.Fatalf("dry run: exit %d %s", code, msg)
	}
	for _, want := range []string{"would write " + unit, "would write " + conf, "would create " + recipes + "/", "Type=notify"} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, out)
		}
	}
	if ents, _ := os.ReadDir(prefix); len(ents) != 0 {
		t.Fatalf("dry run wrote %v", ents)
	}

	out, msg, code = run(t, "", "systemd", "install", "--prefix", prefix, "--binary", "/usr/local/bin/jibril")
	if code != 0 {
		t.Fatalf("install: exit %d %s", code, msg)
	}
	if !strings.Contains(out, "wrote "+unit) || !strings.Contains(out, "wrote "+conf) || !strings.Contains(out, "created "+recipes+"/") {
		t.Fatalf("install output:\n%s", out)
	}
	u := readFile(t, unit)
	var keptNames []string
	for _, k := range confine.DaemonKeep() {
		keptNames = append(keptNames, k.String())
	}
	kept := strings.Join(keptNames, " ")
	for _, line := range []string{
		"Type=notify", "NotifyAccess=main", "WatchdogSec=30",
		"ExecStartPre=/usr/local/bin/jibril config check --config /etc/jibril/config.yaml",
		"ExecStartPre=-/usr/local/bin/jibril recipes validate /etc/jibril/recipes",
		"ExecStart=/usr/local/bin/jibril run --config /etc/jibril/config.yaml --recipes /etc/jibril/recipes --state-dir /var/lib/jibril --log-format json",
		"CapabilityBoundingSet=CAP_BPF CAP_PERFMON CAP_SYS_ADMIN CAP_NET_ADMIN CAP_DAC_OVERRIDE CAP_SYS_RESOURCE CAP_SETPCAP CAP_KILL CAP_SYS_PTRACE CAP_DAC_READ_SEARCH",
		"AmbientCapabilities=", "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/jibril",
		"ProtectHome=read-only", "PrivateTmp=no", "StateDirectory=jibril", "Environment=TMPDIR=/var/lib/jibril/tmp",
		"SystemCallFilter=@system-service bpf perf_event_open fanotify_init fanotify_mark landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp",
		"MemoryDenyWriteExecute=no", "RestrictRealtime=yes", "KillMode=mixed", "WantedBy=multi-user.target",
	} {
		if !slices.Contains(strings.Split(u, "\n"), line) {
			t.Errorf("unit lacks the line %q", line)
		}
	}
	// Every capability kept after start-up is in the bounding set and named in the comment.
	for _, k := range confine.DaemonKeep() {
		if !strings.Contains(u, "CapabilityBoundingSet=") || !strings.Contains(u, " "+k.String()) {
			t.Errorf("unit does not name kept %s", k)
		}
	}
	if !strings.Contains(u, "# only "+kept+"\n") {
		t.Errorf("unit comment does not list the kept set %s", kept)
	}
	st, err := os.Stat(conf)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config %v mode %v", err, st.Mode())
	}
	if st, err := os.Stat(recipes); err != nil || !st.IsDir() {
		t.Fatalf("recipes dir: %v", err)
	}
	if _, msg, code := run(t, "", "config", "check", "--config", conf); code != 0 {
		t.Fatalf("the installed config does not check: %s", msg)
	}

	// A second install keeps the edited config, rewrites the unit; --force replaces the config.
	edited := "metrics:\n  enabled: false\n"
	if err := os.WriteFile(conf, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, code = run(t, "", "systemd", "install", "--prefix", prefix, "--binary", "/opt/jibril/bin/jibril")
	if code != 0 || !strings.Contains(out, "kept "+conf) || !strings.Contains(out, "replaced "+unit) {
		t.Fatalf("reinstall: exit %d\n%s", code, out)
	}
	if readFile(t, conf) != edited {
		t.Fatal("reinstall overwrote the configuration")
	}
	if !strings.Contains(readFile(t, unit), "ExecStart=/opt/jibril/bin/jibril run") {
		t.Fatal("reinstall did not rewrite the unit")
	}
	out, _, code = run(t, "", "systemd", "install", "--prefix", prefix, "--binary", "/opt/jibril/bin/jibril", "--force")
	if code != 0 || !strings.Contains(out, "replaced "+conf) || readFile(t, conf) == edited {
		t.Fatalf("--force did not replace the config: exit %d\n%s", code, out)
	}

	// Refusals.
	if err := os.Remove(conf); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", conf); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--prefix", prefix, "--binary", "/usr/bin/jibril", "--force"}, 1, "is not a regular file"},
		{[]string{"--prefix", "relative/dir"}, 2, `--prefix: "relative/dir" is not an absolute path`},
		{[]string{"--prefix", prefix, "--binary", "/usr/local/bin/jib ril"}, 2, "characters a unit file would split"},
		{[]string{"--prefix", prefix, "--binary", "bin/jibril"}, 2, `"bin/jibril" is not an absolute path`},
	} {
		_, msg, code := run(t, "", append([]string{"systemd", "install"}, c.args...)...)
		if code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("install %v: exit %d %q, want %d %q", c.args, code, msg, c.code, c.msg)
		}
	}
	if target, err := os.Readlink(conf); err != nil || target != "/etc/passwd" {
		t.Fatalf("the symbolic link was replaced: %q %v", target, err)
	}
}

// TestSystemdAnalyzeVerify has systemd check the unit: no output means no complaint.
func TestSystemdAnalyzeVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("needs systemd-analyze")
	}
	prefix := t.TempDir()
	bin := "/bin/true" // verify checks that ExecStart names an executable
	if _, msg, code := run(t, "", "systemd", "install", "--prefix", prefix, "--binary", bin); code != 0 {
		t.Fatal(msg)
	}
	out, err := exec.Command("systemd-analyze", "verify", filepath.Join(prefix, unitPath)).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) != 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// settingLine is a commented-out setting of the default configuration.
var settingLine = regexp.MustCompile(`^#( *[a-z_]+:( .*)?)$`)

// uncomment turns every commented-out setting into a live one.
func uncomment(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if m := settingLine.FindStringSubmatch(l); m != nil {
			l = m[1][1:]
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// emptyToNil makes empty slices and maps nil, recursively, so that "recipes: []" in a file
// compares equal to a default that never set the field.
func emptyToNil(v reflect.Value) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			emptyToNil(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				emptyToNil(v.Field(i))
			}
		}
	case reflect.Slice, reflect.Map:
		if v.Len() == 0 && !v.IsNil() {
			v.Set(reflect.Zero(v.Type()))
		}
	}
}

// koanfKeys lists the dotted keys of a configuration struct.
func koanfKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" || tag == "-" {
			continue
		}
		out = append(out, prefix+tag)
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Duration(0)) {
			out = append(out, koanfKeys(f.Type, prefix+tag+".")...)
		}
	}
	return out
}

func TestDefaultConfig(t *testing.T) {
	text, err := defaultConfigYAML()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	want := defaultDaemonConfig(stateDirPath)
	want.Printers = want.Printers.WithDefaults()
	emptyToNil(reflect.ValueOf(&want))
	for name, content := range map[string]string{"as installed": text, "every line uncommented": uncomment(text)} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-")+".yaml")
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := loadDaemonConfig(p, true, nil, defaultDaemonConfig(stateDirPath))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got.Printers = got.Printers.WithDefaults()
		emptyToNil(reflect.ValueOf(&got))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: loads to\n%+v\nwant the built-in defaults\n%+v", name, got, want)
		}
	}
	// Every key of the configuration is documented, at its place in the hierarchy.
	live := uncomment(text)
	for _, key := range koanfKeys(reflect.TypeOf(daemonConfig{}), "") {
		parts := strings.Split(key, ".")
		pat := regexp.MustCompile(`(?m)^` + strings.Repeat("  ", len(parts)-1) + regexp.QuoteMeta(parts[len(parts)-1]) + `:`)
		if !pat.MatchString(live) {
			t.Errorf("the default configuration does not show %s", key)
		}
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := write(t, dir, "good.yaml", "confine:\n  enabled: true\n  landlock: true\n  read_write: [/var/log/jibril]\n")
	cases := []struct {
		name, content string
		code          int
		msg           string
	}{
		{"unknown key", "confine:\n  enabled: true\n  landlok: true\n", 2, "invalid keys: landlok"},
		{"relative read_write", "confine:\n  read_write: [logs]\n", 2, `confine.read_write[0]: "logs" is not an absolute path`},
		{"bad enum", "default_policy: lax\n", 2, `default_policy: "lax"`},
	}
	if out, msg, code := run(t, "", "config", "check", "--config", good); code != 0 || out != good+": ok\n" {
		t.Fatalf("good config: exit %d %q %s", code, out, msg)
	}
	for _, c := range cases {
		p := write(t, dir, "bad.yaml", c.content)
		if _, msg, code := run(t, "", "config", "check", "--config", p); code != c.code || !strings.Contains(msg, c.msg) {
			t.Errorf("%s: exit %d %q, want %d %q", c.name, code, msg, c.code, c.msg)
		}
	}
	if _, msg, code := run(t, "", "config", "check", "--config", filepath.Join(dir, "missing.yaml")); code != 2 || !strings.Contains(msg, "missing.yaml") {
		t.Errorf("missing file: exit %d %q", code, msg)
	}
}

func TestSDNotifier(t *testing.T) {
	dir := t.TempDir()
	listen := func(t *testing.T, addr string) *net.UnixConn {
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	recv := func(t *testing.T, c *net.UnixConn) string {
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	for _, addr := range []string{filepath.Join(dir, "notify"), fmt.Sprintf("@jibril-test-%08x", rand.Uint32())} {
		t.Run(addr[:1], func(t *testing.T) {
			srv := listen(t, addr)
			env := map[string]string{"NOTIFY_SOCKET": addr, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "4242"}
			n, err := newSDNotifier(func(k string) string { return env[k] }, 4242)
			if err != nil {
				t.Fatal(err)
			}
			defer n.Close()
			if n.WatchdogInterval() != 200*time.Millisecond {
				t.Fatalf("watchdog %v", n.WatchdogInterval())
			}
			if err := n.Ready("3 recipes\nconfined"); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, srv); got != "READY=1\nSTATUS=3 recipes confined\n" {
				t.Fatalf("ready %q", got)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); n.KeepAlive(ctx, func() bool { return true }) }()
			if got := recv(t, srv); got != "WATCHDOG=1\n" {
				t.Fatalf("ping %q", got)
			}
			cancel()
			<-done
			if err := n.Stopping(); err != nil {
				t.Fatal(err)
			}
			if got := recv(t, srv); got != "STOPPING=1\n" {
				t.Fatalf("stopping %q", got)
			}
		})
	}
	cases := []struct {
		name string
		env  map[string]string
		err  string
		wd   time.Duration
	}{
		{"no socket", map[string]string{}, "", 0},
		{"watchdog for another pid", map[string]string{"NOTIFY_SOCKET": filepath.Join(dir, "notify2"), "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}, "", 0},
		{"relative socket", map[string]string{"NOTIFY_SOCKET": "notify"}, `NOTIFY_SOCKET "notify"`, 0},
		{"bad usec", map[string]string{"NOTIFY_SOCKET": filepath.Join(dir, "notify2"), "WATCHDOG_USEC": "-5"}, `WATCHDOG_USEC "-5"`, 0},
		{"nobody listening", map[string]string{"NOTIFY_SOCKET": filepath.Join(dir, "nothing")}, "NOTIFY_SOCKET", 0},
	}
	listen(t, filepath.Join(dir, "notify2"))
	for _, c := range cases {
		n, err := newSDNotifier(func(k string) string { return c.env[k] }, 4242)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %v, want %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || n.WatchdogInterval() != c.wd || n.Ready("x") != nil {
			t.Errorf("%s: %v, watchdog %v", c.name, err, n.WatchdogInterval())
		}
		n.Close()
	}
}

// setprivCaps writes capability names as setpriv wants them: +bpf,+kill,...
func setprivCaps(names []string) string {
	var out []string
	for _, n := range names {
		out = append(out, "+"+strings.ToLower(strings.TrimPrefix(n, "CAP_")))
	}
	return "-all," + strings.Join(out, ",")
}

// TestDaemonStartsWithUnitCaps starts the daemon (this test binary as jibril) in a network
// namespace with the unit's bounding set and a notify socket: it must reach ready with every
// kernel feature the unrestricted probe finds, drop to the kept set, notify systemd, ping
// its watchdog and stop cleanly. Without CAP_SETPCAP it must refuse to run (fail closed).
func TestDaemonStartsWithUnitCaps(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range []string{"ip", "nsenter", "setpriv", "nft", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF")
	}
	feats := bpf.Probe(context.Background())
	want, _ := featureSummary(feats)
	if !slices.Contains(want, "raw_tp") || !slices.Contains(want, "ringbuf") {
		t.Skipf("the sensors cannot load here: %v", feats.Lines())
	}
	ns := fmt.Sprintf("jsd-%08x", rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	// A real binary: the CLI test child's own JIBRIL_* variable would be read as configuration.
	self := filepath.Join(t.TempDir(), "jibril")
	if out, err := exec.Command("go", "build", "-o", self, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var all []string
	for _, c := range startupCaps() {
		all = append(all, c.name)
	}
	noSetpcap := slices.DeleteFunc(slices.Clone(all), func(s string) bool { return s == "CAP_SETPCAP" })

	start := func(t *testing.T, caps []string, notify string) (*exec.Cmd, *bufio.Scanner) {
		state := filepath.Join(t.TempDir(), "state")
		cmd := exec.Command("nsenter", "--net=/run/netns/"+ns, "setpriv", "--bounding-set", setprivCaps(caps), "--inh-caps", "-all",
			self, "run", "--no-builtin", "--state-dir", state, "--no-metrics", "--log-format", "json")
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify, "WATCHDOG_USEC=2000000")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		return cmd, sc
	}

	t.Run("unit bounding set", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "notify")
		srv, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		msgs := make(chan string, 64)
		go func() {
			buf := make([]byte, 4096)
			for {
				n, err := srv.Read(buf)
				if err != nil {
					return
				}
				msgs <- string(buf[:n])
			}
		}()
		cmd, sc := start(t, all, sock)
		var log strings.Builder
		var ready, dropped string
		for sc.Scan() {
			line := sc.Text()
			log.WriteString(line + "\n")
			if strings.Contains(line, `"msg":"privileges dropped"`) {
				dropped = line
			}
			if strings.Contains(line, `"msg":"ready"`) {
				ready = line
				break
			}
		}
		var rest sync.WaitGroup
		rest.Add(1)
		go func() {
			defer rest.Done()
			for sc.Scan() {
				log.WriteString(sc.Text() + "\n")
			}
		}()
		if ready == "" {
			_ = cmd.Wait()
			rest.Wait()
			t.Fatalf("no ready line:\n%s", log.String())
		}
		if !strings.Contains(ready, `"kernel_features":"`+strings.Join(want, ",")+`"`) {
			t.Errorf("ready line features differ from the unrestricted probe %v:\n%s", want, ready)
		}
		if !strings.Contains(ready, "dns: cgroup_skb") || strings.Contains(ready, "waits in epoll_wait") {
			t.Errorf("a sensor is missing under the unit's bounding set:\n%s", ready)
		}
		mask := confine.MaskOf(confine.DaemonKeep()...).String()
		if !strings.Contains(dropped, `"cap_eff":"`+mask+`"`) || !strings.Contains(dropped, `"cap_bnd":"`+mask+`"`) {
			t.Errorf("privileges line %q, want cap_eff and cap_bnd %s", dropped, mask)
		}
		seen := map[string]bool{}
		deadline := time.After(10 * time.Second)
		for !seen["READY=1"] || !seen["WATCHDOG=1"] {
			select {
			case m := <-msgs:
				seen[strings.SplitN(m, "\n", 2)[0]] = true
			case <-deadline:
				t.Fatalf("notifications %v, want READY=1 and WATCHDOG=1", seen)
			}
		}
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Wait(); err != nil {
			rest.Wait()
			t.Fatalf("daemon exit: %v\n%s", err, log.String())
		}
		rest.Wait()
		for len(msgs) > 0 {
			seen[strings.SplitN(<-msgs, "\n", 2)[0]] = true
		}
		if !seen["STOPPING=1"] {
			t.Errorf("no STOPPING=1: %v", seen)
		}
	})
	t.Run("without CAP_SETPCAP it refuses to run", func(t *testing.T) {
		cmd, sc := start(t, noSetpcap, "")
		var log strings.Builder
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
		}
		err := cmd.Wait()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("exit %v, want 1\n%s", err, log.String())
		}
		if !strings.Contains(log.String(), "drop privileges: confine: drop CAP_") || strings.Contains(log.String(), `"msg":"ready"`) {
			t.Fatalf("log:\n%s", log.String())
		}
	})
}
