package evidence

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/engine/procfs"
)

const helperEnv = "JIBRIL_EVIDENCE_HELPER"

// TestMain turns the test binary into the helper child when asked: it
// listens on 127.0.0.1, prints the address and waits for stdin to close.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "listen" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(ln.Addr())
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to read /proc/PID/environ and exe of other processes")
	}
}

func copyFile(t *testing.T, src, dst string) []byte {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return data
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readManifest(t *testing.T, dir string) Manifest {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("manifest.json: %v", err)
	}
	return m
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestCollect(t *testing.T) {
	needRoot(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "jibril-evhelper")
	binData := copyFile(t, self, bin)
	work := t.TempDir()

	cmd := exec.Command(bin, "--marker", "arg with space")
	cmd.Env = []string{helperEnv + "=listen", "JIBRIL_SECRET_MARKER=xyzzy-42"}
	cmd.Dir = work
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper did not report its address: %v", err)
	}
	listen := strings.TrimSpace(line)

	root := filepath.Join(t.TempDir(), "evidence")
	at := time.Date(2025, 3, 4, 5, 6, 7, 890, time.UTC)
	c := &Collector{Dir: root, Now: func() time.Time { return at }}
	dir, err := c.Collect(context.Background(), cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}

	if want := filepath.Join(root, fmt.Sprintf("%d-%d", cmd.Process.Pid, at.UnixNano())); dir != want {
		t.Fatalf("bundle at %s, want %s", dir, want)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("bundle dir mode %v, %v", fi.Mode(), err)
	}
	m := readManifest(t, dir)
	if m.PID != cmd.Process.Pid || !m.CollectedAt.Equal(at) || m.StartTicks == 0 {
		t.Fatalf("manifest = %+v", m)
	}
	if len(m.Errors) != 0 {
		t.Fatalf("manifest errors: %v", m.Errors)
	}
	var names []string
	for _, f := range m.Files {
		names = append(names, f.Name)
		data, err := os.ReadFile(filepath.Join(dir, f.Name))
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(data)) != f.Size || sha(data) != f.SHA256 {
			t.Fatalf("%s: manifest says %d bytes %s, file has %d bytes %s", f.Name, f.Size, f.SHA256, len(data), sha(data))
		}
		if fi, _ := os.Lstat(filepath.Join(dir, f.Name)); fi.Mode() != 0o600 {
			t.Fatalf("%s: mode %v", f.Name, fi.Mode())
		}
	}
	for _, want := range []string{"cmdline", "environ", "status", "stat", "maps", "cwd", "exe", "exe.sha256", "fds.json", "sockets.json"} {
		if !slices.Contains(names, want) {
			t.Fatalf("bundle lacks %s (has %v)", want, names)
		}
	}

	file := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if got, want := file("cmdline"), bin+"\x00--marker\x00arg with space\x00"; got != want {
		t.Fatalf("cmdline = %q, want %q", got, want)
	}
	if env := strings.Split(file("environ"), "\x00"); !slices.Contains(env, "JIBRIL_SECRET_MARKER=xyzzy-42") {
		t.Fatalf("environ = %q", env)
	}
	if got := file("exe"); got != bin+"\n" {
		t.Fatalf("exe = %q", got)
	}
	if got := file("cwd"); got != work+"\n" {
		t.Fatalf("cwd = %q, want %s", got, work)
	}
	if m.ExeSHA256 != sha(binData) || file("exe.sha256") != sha(binData)+"\n" {
		t.Fatalf("exe sha256 = %s, binary's is %s", m.ExeSHA256, sha(binData))
	}
	if !strings.Contains(file("status"), fmt.Sprintf("Pid:\t%d\n", cmd.Process.Pid)) {
		t.Fatal("status is not the helper's")
	}
	if !strings.Contains(file("maps"), bin) {
		t.Fatal("maps does not map the helper binary")
	}

	var fds []FD
	readJSON(t, filepath.Join(dir, "fds.json"), &fds)
	var socks []Socket
	readJSON(t, filepath.Join(dir, "sockets.json"), &socks)
	found := false
	for _, s := range socks {
		if s.Proto == "tcp" && s.Local == listen && s.State == "LISTEN" && s.Remote == "0.0.0.0:0" {
			found = true
			if !slices.Contains(fds, FD{FD: s.FD, Target: fmt.Sprintf("socket:[%d]", s.Inode)}) {
				t.Fatalf("socket %+v not among the fds %v", s, fds)
			}
		}
	}
	if !found {
		t.Fatalf("sockets.json lacks the listener on %s: %+v", listen, socks)
	}
}

func TestCollectDeletedExe(t *testing.T) {
	needRoot(t)
	bin := filepath.Join(t.TempDir(), "jibril-gone")
	data := copyFile(t, "/bin/sleep", bin)
	cmd := exec.Command(bin, "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Wait for the exec to complete before deleting the file.
	for deadline := time.Now().Add(10 * time.Second); ; {
		if target, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)); target == bin {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("helper never exec'd")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	c := &Collector{Dir: t.TempDir()}
	dir, err := c.Collect(context.Background(), cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	m := readManifest(t, dir)
	if m.ExeSHA256 != sha(data) {
		t.Fatalf("exe sha256 of a deleted binary = %q, want %s (errors %v)", m.ExeSHA256, sha(data), m.Errors)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "exe")); string(got) != bin+" (deleted)\n" {
		t.Fatalf("exe = %q", got)
	}
	var socks []Socket
	readJSON(t, filepath.Join(dir, "sockets.json"), &socks)
	if socks == nil || len(socks) != 0 {
		t.Fatalf("sockets of sleep = %+v, want an empty list", socks)
	}
}

// killingProc is the direct /proc reader, except that its first Open of environ kills and
// reaps the process after opening: what was read by pid must then be discarded, since the pid
// may already name another process.
type killingProc struct {
	procfs.Direct
	cmd  *exec.Cmd
	done bool
}

func (k *killingProc) Open(ctx context.Context, r procfs.Ref) (*os.File, error) {
	f, err := k.Direct.Open(ctx, r)
	if r.Item == procfs.Environ && !k.done {
		k.done = true
		_ = k.cmd.Process.Kill()
		_ = k.cmd.Wait()
	}
	return f, err
}

func TestCollectDiscardsWhatOutlivedTheProcess(t *testing.T) {
	needRoot(t)
	cmd := exec.Command("/bin/sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := &Collector{Dir: t.TempDir(), Proc: &killingProc{cmd: cmd}}
	dir, err := c.Collect(context.Background(), cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	m := readManifest(t, dir)
	for _, f := range m.Files {
		if f.Name == "environ" || f.Name == "exe" || f.Name == "fds.json" {
			t.Errorf("%s kept although the process was gone when it was read", f.Name)
		}
	}
	if len(m.Errors) == 0 || !strings.Contains(m.Errors[0], "environ: the process is gone, its pid may name another one now") {
		t.Fatalf("errors %v, want environ discarded first", m.Errors)
	}
}

func TestCollectPartialAndErrors(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	c := &Collector{Dir: root}
	ctx := context.Background()

	// A kernel thread has no executable: the bundle is partial, not fatal.
	dir, err := c.Collect(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	m := readManifest(t, dir)
	if len(m.Errors) == 0 || !strings.Contains(strings.Join(m.Errors, "\n"), "exe") {
		t.Fatalf("kernel thread bundle errors = %v, want the exe listed", m.Errors)
	}
	if !slices.ContainsFunc(m.Files, func(f FileEntry) bool { return f.Name == "status" }) {
		t.Fatalf("kernel thread bundle lacks status: %+v", m.Files)
	}

	for _, tc := range []struct {
		name string
		c    *Collector
		ctx  context.Context
		pid  int
		want string
	}{
		{"no such pid", c, ctx, 1 << 30, "no such process"},
		{"zero pid", c, ctx, 0, "invalid pid"},
		{"negative pid", c, ctx, -4, "invalid pid"},
		{"no dir", &Collector{}, ctx, os.Getpid(), "no evidence directory"},
		{"cancelled", c, cancelled(), os.Getpid(), "context canceled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.c.Collect(tc.ctx, tc.pid); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Collect(%d) = %v, want %q", tc.pid, err, tc.want)
			}
		})
	}
	entries, err := os.ReadDir(root)
	if err != nil || len(entries) != 1 {
		t.Fatalf("evidence root holds %d entries (%v), want only the kernel thread's bundle", len(entries), err)
	}
}

func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestParseTables(t *testing.T) {
	tcp := "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0\n" +
		"   1: garbage\n" +
		"   2: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 notanumber 1\n"
	tcp6 := "  sl  local_address remote_address st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
		"   0: 00000000000000000000000001000000:0016 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1\n" +
		"   1: 0000000000000000FFFF00000100007F:0050 0000000000000000FFFF00000100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 78 1\n"
	udp := "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n" +
		"  100: 3500007F:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000   101        0 99 2 0000000000000000 0\n"
	unixT := "Num       RefCount Protocol Flags    Type St Inode Path\n" +
		"0000000000000000: 00000002 00000000 00010000 0001 01 555 /run/with space.sock\n" +
		"0000000000000000: 00000003 00000000 00000000 0001 03 556\n"
	tests := []struct {
		table, data string
		want        []Socket
	}{
		{"tcp", tcp, []Socket{{Inode: 4242, Proto: "tcp", Local: "127.0.0.1:8080", Remote: "0.0.0.0:0", State: "LISTEN"}}},
		{"tcp6", tcp6, []Socket{
			{Inode: 77, Proto: "tcp6", Local: "[::1]:22", Remote: "[::]:0", State: "LISTEN"},
			{Inode: 78, Proto: "tcp6", Local: "127.0.0.1:80", Remote: "127.0.0.1:50000", State: "ESTABLISHED"},
		}},
		{"udp", udp, []Socket{{Inode: 99, Proto: "udp", Local: "127.0.0.53:53", Remote: "0.0.0.0:0", State: "UNCONNECTED"}}},
		{"unix", unixT, []Socket{{Inode: 555, Proto: "unix", Path: "/run/with space.sock"}, {Inode: 556, Proto: "unix"}}},
		{"tcp", "", nil},
	}
	for _, tc := range tests {
		got := parseTable(tc.table, []byte(tc.data))
		for i := range got {
			got[i].Line = ""
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("parseTable(%s) = %+v, want %+v", tc.table, got, tc.want)
		}
	}
	for _, tc := range []struct {
		target string
		ino    uint64
		ok     bool
	}{
		{"socket:[123]", 123, true}, {"socket:[]", 0, false}, {"pipe:[5]", 0, false}, {"socket:[12", 0, false}, {"/tmp/x", 0, false},
	} {
		if ino, ok := socketInode(tc.target); ino != tc.ino || ok != tc.ok {
			t.Errorf("socketInode(%q) = %d, %v", tc.target, ino, ok)
		}
	}
	if got := startTicks([]byte("12 (a) b) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 19")); got != 424242 {
		t.Errorf("startTicks = %d", got)
	}
}
