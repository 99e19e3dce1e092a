package bpf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// rawCall makes system call nr; string arguments become C strings.
func rawCall(nr uintptr, args ...any) (uintptr, error) {
	var a [6]uintptr
	var keep []*byte
	for i, v := range args {
		switch v := v.(type) {
		case string:
			p, err := unix.BytePtrFromString(v)
			if err != nil {
				return 0, err
			}
			keep = append(keep, p)
			a[i] = uintptr(unsafe.Pointer(p))
		case unsafe.Pointer:
			a[i] = uintptr(v)
		case int:
			a[i] = uintptr(v)
		default:
			panic(fmt.Sprintf("rawCall: argument %d is a %T", i, v))
		}
	}
	r, _, errno := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	runtime.KeepAlive(keep)
	runtime.KeepAlive(args)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// fileCalls makes every system call the file sensor watches, by number, on
// paths under dir, and returns what the events must say of each (system
// call, op, paths relative to dir; "fd" for the descriptor they use).
func fileCalls(t *testing.T, dir string) (want []string, fd int) {
	t.Helper()
	p := func(name string) string { return filepath.Join(dir, name) }
	fdr, err := rawCall(257, unix.AT_FDCWD, p("fd"), unix.O_CREAT|unix.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fd = int(fdr)
	t.Cleanup(func() { unix.Close(fd) })
	want = append(want, "257 open fd")
	how := unix.OpenHow{Flags: unix.O_CREAT | unix.O_WRONLY, Mode: 0o600}
	for _, c := range []struct {
		nr   uintptr
		args []any
		want string
	}{
		{2, []any{p("o1"), unix.O_CREAT | unix.O_WRONLY, 0o600}, "2 open o1"},
		{85, []any{p("c1"), 0o600}, "85 open c1"},
		{257, []any{unix.AT_FDCWD, p("o2"), unix.O_CREAT | unix.O_RDWR, 0o640}, "257 open o2"},
		{437, []any{unix.AT_FDCWD, p("o3"), unsafe.Pointer(&how), int(unsafe.Sizeof(how))}, "437 open o3"},
		{76, []any{p("o1"), 3}, "76 truncate o1"},
		{77, []any{fd, 5}, "77 truncate fd"},
		{83, []any{p("d1"), 0o700}, "83 mkdir d1"},
		{258, []any{unix.AT_FDCWD, p("d2"), 0o700}, "258 mkdir d2"},
		{84, []any{p("d1")}, "84 rmdir d1"},
		{263, []any{unix.AT_FDCWD, p("d2"), unix.AT_REMOVEDIR}, "263 rmdir d2"},
		{82, []any{p("o1"), p("o1r")}, "82 rename o1 o1r"},
		{264, []any{unix.AT_FDCWD, p("o1r"), unix.AT_FDCWD, p("o1s")}, "264 rename o1r o1s"},
		{316, []any{unix.AT_FDCWD, p("o1s"), unix.AT_FDCWD, p("o1t"), 0}, "316 rename o1s o1t"},
		{86, []any{p("o1t"), p("l1")}, "86 link o1t l1"},
		{265, []any{unix.AT_FDCWD, p("o1t"), unix.AT_FDCWD, p("l2"), 0}, "265 link o1t l2"},
		{88, []any{p("tgt"), p("s1")}, "88 symlink s1 tgt"},
		{266, []any{p("tgt"), unix.AT_FDCWD, p("s2")}, "266 symlink s2 tgt"},
		{90, []any{p("o1t"), 0o640}, "90 chmod o1t"},
		{91, []any{fd, 0o600}, "91 chmod fd"},
		{268, []any{unix.AT_FDCWD, p("o1t"), 0o644}, "268 chmod o1t"},
		{452, []any{unix.AT_FDCWD, p("o1t"), 0o600, 0}, "452 chmod o1t"},
		{92, []any{p("o1t"), os.Getuid(), os.Getgid()}, "92 chown o1t"},
		{94, []any{p("s1"), os.Getuid(), os.Getgid()}, "94 chown s1"},
		{93, []any{fd, os.Getuid(), os.Getgid()}, "93 chown fd"},
		{260, []any{unix.AT_FDCWD, p("o1t"), os.Getuid(), os.Getgid(), 0}, "260 chown o1t"},
		{87, []any{p("l1")}, "87 unlink l1"},
		{263, []any{unix.AT_FDCWD, p("l2"), 0}, "263 unlink l2"},
	} {
		r, err := rawCall(c.nr, c.args...)
		if err == unix.ENOSYS && c.nr == 452 {
			continue // fchmodat2 is 6.6+
		}
		if err != nil {
			t.Fatalf("system call %d %v: %v", c.nr, c.args, err)
		}
		if c.nr == 2 || c.nr == 85 || c.nr == 437 || c.nr == 257 {
			unix.Close(int(r))
		}
		want = append(want, c.want)
	}
	return want, fd
}

// fileKey describes a file event of fileCalls, or "" for another event.
// Every decoded field is in the key, but the ones fileCalls' table leaves
// out are only compared between the two paths.
func fileKey(e FileEvent, dir string, fd int) (short, full string) {
	if e.TGID != uint32(os.Getpid()) {
		return "", ""
	}
	rel := func(p string) string {
		if p == "" {
			return ""
		}
		return " " + strings.TrimPrefix(p, dir+"/")
	}
	switch {
	case e.FDOnly && e.FD == int32(fd):
		short = fmt.Sprintf("%d %v fd", e.Syscall, e.Op)
	case !e.FDOnly && strings.HasPrefix(e.Path, dir+"/"):
		short = fmt.Sprintf("%d %v%s%s", e.Syscall, e.Op, rel(e.Path), rel(e.Path2))
	default:
		return "", ""
	}
	full = fmt.Sprintf("%s dirfd=%d,%d fdonly=%v flags=%#x mode=%#o owner=%d:%d uid=%d:%d comm=%s abs=%s,%s matched=%v rel=%v,%v trunc=%v,%v unread=%v,%v noncanon=%v",
		short, e.DirFD, e.DirFD2, e.FDOnly, e.Flags, e.Mode, e.Owner, e.Group, e.UID, e.GID, e.Comm,
		rel(e.AbsPath), rel(e.AbsPath2), e.Matched, e.Relative, e.Relative2, e.PathTruncated, e.Path2Truncated,
		e.PathUnreadable, e.Path2Unreadable, e.NonCanonical)
	return short, full
}

// netCalls connects and sends to loopback peers and returns what the
// events must say (op, protocol, peer), in order.
func netCalls(t *testing.T) []string {
	t.Helper()
	var want []string
	var rcv []*net.UDPConn
	for range 3 {
		r, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rcv = append(rcv, r)
	}
	snd, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer snd.Close()
	to := rcv[0].LocalAddr().(*net.UDPAddr)
	if _, err := snd.WriteToUDP([]byte("ping"), to); err != nil { // sendto
		t.Fatal(err)
	}
	want = append(want, fmt.Sprintf("%v 17 %v", NetSendTo, to))
	msg := rcv[1].LocalAddr().(*net.UDPAddr)
	if _, _, err := snd.WriteMsgUDP([]byte("ping"), nil, msg); err != nil { // sendmsg
		t.Fatal(err)
	}
	want = append(want, fmt.Sprintf("%v 17 %v", NetSendMsg, msg))
	d, err := net.DialUDP("udp4", nil, rcv[2].LocalAddr().(*net.UDPAddr)) // connect
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	want = append(want, fmt.Sprintf("%v 17 %v", NetConnect, rcv[2].LocalAddr()))
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return append(want, fmt.Sprintf("%v 6 %v", NetConnect, ln.Addr()))
}

// TestSysEnterPaths runs every watched file system call and a connect,
// sendto and sendmsg with the system call programs on the syscalls
// tracepoints and on the raw_tp/sys_enter fallback: both deliver the same
// events, field for field.
func TestSysEnterPaths(t *testing.T) {
	fulls := map[bool][]string{}
	for _, raw := range []bool{false, true} {
		t.Run(fmt.Sprintf("raw=%v", raw), func(t *testing.T) {
			dir := t.TempDir()
			s := openSensors(t, Config{Sensors: SensorFile | SensorNet, WatchSelf: true, rawSysEnter: raw,
				FilePrefixes: []string{dir + "/"}, UDPPeerWindow: time.Minute})
			att := strings.Join(s.Attachments(), "; ")
			t.Log(att)
			wantPath := "tracepoint/syscalls/sys_enter_* ("
			if raw {
				wantPath = "raw_tp/sys_enter (fallback: forced by the configuration)"
			}
			for _, pre := range []string{"file: ", "connect/sendto/sendmsg: "} {
				if !strings.Contains(att, pre+wantPath) {
					t.Fatalf("attachments %q: no %q", att, pre+wantPath)
				}
			}

			want, fd := fileCalls(t, dir)
			sentinel := filepath.Join(dir, "sentinel")
			if err := os.Mkdir(sentinel, 0o700); err != nil {
				t.Fatal(err)
			}
			want = append(want, "258 mkdir sentinel")
			var got, full []string
			waitFor(t, s.File(), "sentinel mkdir", func(e FileEvent) bool {
				short, f := fileKey(e, dir, fd)
				if short != "" {
					got, full = append(got, short), append(full, f)
				}
				return e.Path == sentinel && e.Op == OpMkdir
			}, nil)
			if !slices.Equal(got, want) {
				t.Fatalf("file events:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
			}

			wantNet := netCalls(t)
			var gotNet []string
			last := wantNet[len(wantNet)-1]
			waitFor(t, s.Net(), "TCP connect", func(e NetEvent) bool {
				if e.Op == NetState || e.TGID != uint32(os.Getpid()) || e.Remote.Addr() != netip.MustParseAddr("127.0.0.1") {
					return false
				}
				k := fmt.Sprintf("%v %d %v", e.Op, e.Proto, e.Remote)
				gotNet = append(gotNet, k)
				full = append(full, fmt.Sprintf("%s local=%v notsock=%v uid=%d comm=%s", k, e.Local, e.NotSocket, e.UID, e.Comm))
				return k == last
			}, nil)
			if !slices.Equal(gotNet, wantNet) {
				t.Fatalf("net events:\n  %s\nwant:\n  %s", strings.Join(gotNet, "\n  "), strings.Join(wantNet, "\n  "))
			}
			fulls[raw] = full
		})
	}
	// Every field but the paths' and ports' names (a new temporary directory
	// and new sockets per run) is the same on both paths.
	tp, raw := fulls[false], fulls[true]
	if tp == nil || raw == nil {
		return // a subtest failed or skipped
	}
	norm := func(v []string) []string {
		out := make([]string, len(v))
		for i, s := range v {
			f := strings.Fields(s)
			if strings.HasPrefix(s, "connect") || strings.HasPrefix(s, "sendto") || strings.HasPrefix(s, "sendmsg") {
				f = slices.DeleteFunc(f, func(w string) bool { return strings.Contains(w, "127.0.0.1:") })
			}
			out[i] = strings.Join(f, " ")
		}
		return out
	}
	if a, b := norm(tp), norm(raw); !slices.Equal(a, b) {
		for i := range min(len(a), len(b)) {
			if a[i] != b[i] {
				t.Errorf("tracepoint: %s\nraw_tp:     %s", a[i], b[i])
			}
		}
		if len(a) != len(b) {
			t.Errorf("%d events on the tracepoints, %d on raw_tp", len(a), len(b))
		}
	}
}

// TestSyscallTracepointLinks: the watchdog sees every perf event link of
// the syscalls tracepoints, and another process cannot detach them.
func TestSyscallTracepointLinks(t *testing.T) {
	s := openSensors(t, Config{Sensors: SensorFile | SensorNet})
	if !strings.Contains(strings.Join(s.Attachments(), ";"), "tracepoint/syscalls") {
		t.Skipf("the syscalls tracepoints are not in use: %v", s.Attachments())
	}
	states, err := s.CheckLinks()
	if err != nil {
		t.Fatal(err)
	}
	var tps []LinkState
	for _, l := range states {
		if !l.Attached || l.Err != nil {
			t.Errorf("fresh link %s", l)
		}
		if strings.HasPrefix(l.Hook, "tracepoint sys_enter_") {
			tps = append(tps, l)
		}
	}
	want := len(fileSyscalls()) + len(netSyscalls())
	if len(tps) != want {
		t.Errorf("%d syscalls tracepoint links checked, want %d: %v", len(tps), want, states)
	}
	if _, err := exec.LookPath("bpftool"); err != nil || len(tps) == 0 {
		t.Skip("no bpftool: detaching not tried")
	}
	out, err := exec.Command("bpftool", "link", "detach", "id", fmt.Sprint(tps[0].ID)).CombinedOutput()
	if err == nil {
		t.Fatalf("bpftool detached %s", tps[0])
	}
	t.Logf("%s: bpftool link detach refused: %s", tps[0], strings.TrimSpace(string(out)))
}

// A report mounts nothing: without tracefs, tracefsIn without mount says so and stops.
func TestTracefsWithoutMount(t *testing.T) {
	const line = "%d 1 0:%d %s %s rw,relatime shared:1 - %s %s rw\n"
	none := fmt.Sprintf(line, 1, 1, "/", "/", "ext4", "/dev/vda")
	if _, err := tracefsIn(strings.NewReader(none), false); !errors.Is(err, errNoTracefs) {
		t.Fatalf("no tracefs, no mount: %v, want errNoTracefs", err)
	}
	some := none + fmt.Sprintf(line, 2, 2, "/", "/sys/kernel/tracing", "tracefs", "nodev")
	got, err := tracefsIn(strings.NewReader(some), false)
	if err != nil || got.Path != "/sys/kernel/tracing" || got.Mounted {
		t.Fatalf("tracefs present: %+v, %v", got, err)
	}
}

// TestTracefsFind reads mountinfo listings as cilium/ebpf does.
func TestTracefsFind(t *testing.T) {
	const line = "%d 1 0:%d %s %s rw,relatime shared:1 - %s %s rw\n"
	for _, tc := range []struct {
		name, info, want, err string
	}{
		{"none", fmt.Sprintf(line, 1, 1, "/", "/", "ext4", "/dev/vda"), "", ""},
		{"tracefs", fmt.Sprintf(line, 1, 1, "/", "/", "ext4", "/dev/vda") + fmt.Sprintf(line, 2, 2, "/", "/sys/kernel/tracing", "tracefs", "nodev"), "/sys/kernel/tracing", ""},
		{"escaped", fmt.Sprintf(line, 2, 2, "/", `/mnt/my\040trace`, "tracefs", "nodev"), "/mnt/my trace", ""},
		{"first wins", fmt.Sprintf(line, 2, 2, "/", "/a", "tracefs", "nodev") + fmt.Sprintf(line, 3, 2, "/", "/b", "tracefs", "nodev"), "/a", ""},
		{"bind of a subdirectory", fmt.Sprintf(line, 2, 2, "/instances", "/a", "tracefs", "nodev"), "", ""},
		{"no separator", "1 1 0:1 / / rw\n", "", "line 1"},
		{"short", "1 1 / - tracefs nodev rw\n", "", "line 1"},
		{"bad escape", fmt.Sprintf(line, 2, 2, "/", `/a\09x`, "tracefs", "nodev"), "", "bad escape"},
		{"truncated escape", fmt.Sprintf(line, 2, 2, "/", `/a\04`, "tracefs", "nodev"), "", "truncated escape"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findTracefs(strings.NewReader(tc.info))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("findTracefs = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestSyscallAbsent(t *testing.T) {
	if syscallAbsent("sys_enter_openat") {
		t.Error("openat's tracepoint is never missing for a good reason")
	}
	if syscallAbsent("sys_enter_openat2") {
		t.Error("openat2 reported absent on a kernel that has it")
	}
}

// tracefsChildEnv makes TestTracefsChild the child of TestTracefsMount.
const tracefsChildEnv = "JIBRIL_TRACEFS_CHILD"

// TestTracefsMount runs TestTracefsChild in a private mount namespace
// where tracefs is unmounted: once where jibril can mount it again (the
// probe says it did, the sensors use the tracepoints), once where it
// cannot (no /sys/kernel/tracing: the probe says why and names the
// fallback, the sensors use raw_tp/sys_enter and still report).
func TestTracefsMount(t *testing.T) {
	needRoot(t)
	for _, mode := range []string{"mount", "nomount"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestTracefsChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), tracefsChildEnv+"="+mode)
			cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: unix.CLONE_NEWNS} // and makes / private
			out, err := cmd.CombinedOutput()
			t.Logf("child:\n%s", out)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(out), "--- SKIP") {
				t.Skip("the child skipped")
			}
		})
	}
}

func TestTracefsChild(t *testing.T) {
	mode := os.Getenv(tracefsChildEnv)
	if mode == "" {
		t.Skip("the child of TestTracefsMount")
	}
	// Our own mount namespace: unmount every tracefs there.
	for range 10 {
		f, err := os.Open("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		p, err := findTracefs(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if p == "" {
			break
		}
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil {
			t.Skipf("a tracefs or debugfs at %s cannot be unmounted: %v", p, err)
		}
	}
	if mode == "nomount" {
		// Hide /sys/kernel (its tracing directory) behind a tmpfs, keeping
		// the kernel BTF the loader needs.
		keep, err := os.MkdirTemp("", "jibril-btf-")
		if err != nil {
			t.Fatal(err)
		}
		// Not t.TempDir: removing it must not reach into the bind mount.
		t.Cleanup(func() {
			unix.Unmount(keep, unix.MNT_DETACH)
			os.Remove(keep)
		})
		for _, m := range []struct {
			src, dst, typ string
			flags         uintptr
		}{
			{"/sys/kernel/btf", keep, "", unix.MS_BIND},
			{"tmpfs", "/sys/kernel", "tmpfs", 0},
		} {
			if err := unix.Mount(m.src, m.dst, m.typ, m.flags, ""); err != nil {
				t.Fatalf("mount %s on %s: %v", m.src, m.dst, err)
			}
		}
		if err := os.Mkdir("/sys/kernel/btf", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(keep, "/sys/kernel/btf", "", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
	}
	f := Probe(context.Background())
	tp := f.Tracepoint
	t.Logf("probe: %s", f.Lines()[5])
	switch mode {
	case "mount":
		if !tp.Available || tp.Note != "tracefs mounted by jibril at "+tracefsDir {
			t.Fatalf("probe %+v: tracefs was not mounted or not reported", tp)
		}
	case "nomount":
		if tp.Available || !strings.Contains(tp.Err.Error(), "mounting it at "+tracefsDir+" failed") ||
			!strings.Contains(tp.Fallback, "raw_tp/sys_enter") {
			t.Fatalf("probe %+v: the failure or its fallback is not reported", tp)
		}
	}
	dir := t.TempDir()
	s := openSensors(t, Config{Sensors: SensorFile, FilePrefixes: []string{dir + "/"}})
	att := strings.Join(s.Attachments(), "; ")
	t.Log(att)
	want := map[string]string{
		"mount":   "file: tracepoint/syscalls/sys_enter_* (",
		"nomount": "file: raw_tp/sys_enter (fallback: tracefs is not mounted and mounting it at " + tracefsDir + " failed",
	}[mode]
	if !strings.Contains(att, want) {
		t.Fatalf("attachments %q, want %q", att, want)
	}
	run(t, "/bin/mkdir", filepath.Join(dir, "x"))
	waitFor(t, s.File(), "mkdir", func(e FileEvent) bool { return e.Op == OpMkdir && e.Path == filepath.Join(dir, "x") }, nil)
}

// TestProbeMatchesSysEnterPath: what Probe says of the syscalls tracepoints
// is the path the file and net sensors take.
func TestProbeMatchesSysEnterPath(t *testing.T) {
	needRoot(t)
	f := Probe(context.Background())
	s := openSensors(t, Config{Sensors: SensorFile | SensorNet})
	att := strings.Join(s.Attachments(), "; ")
	t.Logf("probe: %s; sensors: %s", f.Lines()[5], att)
	for _, pre := range []string{"file: ", "connect/sendto/sendmsg: "} {
		tp := strings.Contains(att, pre+"tracepoint/syscalls/sys_enter_* (")
		raw := strings.Contains(att, pre+"raw_tp/sys_enter (fallback: ")
		if tp == raw || tp != f.Tracepoint.Available {
			t.Errorf("probe says tracepoint available=%v (%v), sensors: %s", f.Tracepoint.Available, f.Tracepoint.Err, att)
		}
	}
	if f.Tracepoint.Available && !strings.Contains(f.Lines()[5], "(tracefs ") {
		t.Errorf("the probe does not say where tracefs is: %s", f.Lines()[5])
	}
}
