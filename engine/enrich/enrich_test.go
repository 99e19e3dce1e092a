package enrich

import (
	"context"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/dnscache"
	"github.com/jibril-rt/jibril/engine/event"
	"github.com/jibril-rt/jibril/engine/proctable"
	"github.com/jibril-rt/jibril/recipes"
)

// get walks a decoded JSON document.
func get(t *testing.T, doc any, keys ...any) any {
	t.Helper()
	cur := doc
	for _, k := range keys {
		switch k := k.(type) {
		case string:
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("%v: not an object at %q", keys, k)
			}
			v, ok := m[k]
			if !ok {
				t.Fatalf("%v: no field %q", keys, k)
			}
			cur = v
		case int:
			a, ok := cur.([]any)
			if !ok {
				t.Fatalf("%v: not an array at %d", keys, k)
			}
			if k < 0 {
				k += len(a)
			}
			if k < 0 || k >= len(a) {
				t.Fatalf("%v: index %d out of %d", keys, k, len(a))
			}
			cur = a[k]
		}
	}
	return cur
}

func decode(t *testing.T, ev *event.Event) map[string]any {
	t.Helper()
	if ev == nil {
		t.Fatal("nil event")
	}
	b, err := ev.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	// The event must read back with the engine's own strict decoder.
	if _, err := event.Decode(b); err != nil {
		t.Fatalf("event does not decode: %v\n%s", err, b)
	}
	return m
}

var uuidRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

type fixture struct {
	tbl      *proctable.Table
	dns      *dnscache.Cache
	enr      *Enricher
	self     int32
	selfExe  string
	cgroup   string
	cgroupID uint64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	tbl := proctable.New(proctable.Options{})
	if err := tbl.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	dns := dnscache.New(dnscache.Options{})
	dns.Record(bpf.DNSEvent{Name: "pool.example.com", CNAMEs: []string{"lb.example.net"},
		Addrs: []netip.Addr{netip.MustParseAddr("198.18.7.7")}, TTL: 300})
	exe, _ := os.Executable()
	f := &fixture{tbl: tbl, dns: dns, enr: New(Options{Procs: tbl, DNS: dns}), self: int32(os.Getpid()), selfExe: exe}
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		f.cgroup = cgroupV2Path(b)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil && f.cgroup != "" {
		if m := cgroup2Mount(mi); m != "" {
			var st unix.Stat_t
			if unix.Stat(m+f.cgroup, &st) == nil {
				f.cgroupID = st.Ino
			}
		}
	}
	return f
}

// checkCommon checks what every event carries.
func checkCommon(t *testing.T, m map[string]any, kind string, when time.Time) {
	t.Helper()
	if get(t, m, "event_type") != kind {
		t.Errorf("event_type = %v", get(t, m, "event_type"))
	}
	if u, _ := get(t, m, "uuid").(string); !uuidRe.MatchString(u) {
		t.Errorf("uuid %q is not a v4 uuid", u)
	}
	if get(t, m, "timestamp") != event.Stamp(when) {
		t.Errorf("timestamp = %v, want %s", get(t, m, "timestamp"), event.Stamp(when))
	}
	host, _ := os.Hostname()
	if get(t, m, "scenario", 0, "hostname") != host || get(t, m, "scenario", 0, "arch") == "" ||
		get(t, m, "scenario", 0, "os") == "" {
		t.Errorf("scenario = %v", get(t, m, "scenario"))
	}
	bg, _ := json.Marshal(get(t, m, "background"))
	base, _ := json.Marshal(get(t, m, "base", "background"))
	if string(bg) != string(base) {
		t.Error("base.background differs from background")
	}
	if _, ok := get(t, m, "background", "ancestry").([]any); !ok {
		t.Error("background.ancestry is not an array")
	}
}

func copyBin(t *testing.T, src string) string {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Skipf("no %s: %v", src, err)
	}
	defer in.Close()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

func TestExec(t *testing.T) {
	f := newFixture(t)
	sleep := copyBin(t, "/bin/sleep")
	cmd := exec.Command(sleep, "30", "--", "a b")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	child := int32(cmd.Process.Pid)
	cp, ok := f.tbl.Get(child) // read lazily from /proc: gives the real start time
	if !ok {
		t.Fatal("child not readable")
	}
	when := time.Now()
	ev := bpf.ExecEvent{Time: when, PID: uint32(child), TGID: uint32(child), PPID: uint32(f.self),
		StartTime: cp.Start, UID: uint32(os.Getuid()), GID: uint32(os.Getgid()), CgroupID: f.cgroupID,
		Comm: "sleep", Filename: sleep, Interp: sleep, Argv: []string{sleep, "30", "--", "a b"}}

	// Both orders of table update and enrichment give the same process.
	for _, tableFirst := range []bool{false, true} {
		if tableFirst {
			f.tbl.OnExec(ev)
		}
		m := decode(t, f.enr.Exec(ev))
		checkCommon(t, m, event.TypeExecution, when)
		p := get(t, m, "process").(map[string]any)
		want := map[string]any{"pid": float64(child), "ppid": float64(f.self), "comm": "sleep", "exe": sleep,
			"cmd": sleep + " 30 -- a b", "args": "30 -- a b", "uid": float64(os.Getuid()), "gid": float64(os.Getgid())}
		for k, v := range want {
			if p[k] != v {
				t.Errorf("tableFirst=%v process.%s = %v, want %v", tableFirst, k, p[k], v)
			}
		}
		if argv := get(t, p, "argv").([]any); len(argv) != 4 || argv[3] != "a b" {
			t.Errorf("argv = %v", argv)
		}
		start, err := event.ParseStamp(p["start"].(string))
		if err != nil || start.After(time.Now()) || time.Since(start) > time.Minute {
			t.Errorf("start = %v (%v)", p["start"], err)
		}
		if p["prev_exe"] != "" && p["prev_exe"] != f.selfExe {
			t.Errorf("prev_exe = %v", p["prev_exe"])
		}
		if f.cgroup != "" && p["cgroup"] != f.cgroup {
			t.Errorf("cgroup = %v, want %s", p["cgroup"], f.cgroup)
		}
		if get(t, m, "file", "file") != sleep || get(t, m, "file", "execve") != true ||
			get(t, m, "file", "basename") != "sleep" {
			t.Errorf("file = %v", get(t, m, "file"))
		}
		anc := get(t, m, "background", "ancestry").([]any)
		if len(anc) < 3 {
			t.Fatalf("ancestry = %v", anc)
		}
		last, parent := anc[len(anc)-1].(map[string]any), anc[len(anc)-2].(map[string]any)
		if last["pid"] != float64(child) || last["exe"] != sleep || last["args"] != "30 -- a b" ||
			parent["pid"] != float64(f.self) || parent["exe"] != f.selfExe {
			t.Errorf("ancestry tail: %v / %v", parent, last)
		}
		if get(t, anc, 0, "ppid") != float64(0) {
			t.Errorf("ancestry does not start at the top: %v", anc[0])
		}
		files := get(t, m, "background", "files", "root")
		if get(t, files, "abs_path") != "/" {
			t.Errorf("files tree root: %v", files)
		}
	}
}

func TestFile(t *testing.T) {
	f := newFixture(t)
	when := time.Unix(1_800_000_000, 5).UTC()
	base := bpf.FileEvent{Time: when, PID: uint32(f.self), TGID: uint32(f.self), UID: uint32(os.Getuid()),
		GID: uint32(os.Getgid()), CgroupID: f.cgroupID, Comm: "proctest", DirFD: bpf.AtFDCWD, FD: -1}
	cases := []struct {
		name    string
		mod     func(*bpf.FileEvent)
		file    string
		dir     string
		actions []string
		note    string
	}{
		{"open for writing", func(e *bpf.FileEvent) {
			e.Op, e.Path, e.AbsPath = bpf.OpOpen, "y", "/tmp/x/y"
			e.Flags = unix.O_WRONLY | unix.O_CREAT | unix.O_TRUNC
		}, "/tmp/x/y", "/tmp/x", []string{"open", "write", "truncate", "create"}, ""},
		{"read only open", func(e *bpf.FileEvent) { e.Op, e.Path = bpf.OpOpen, "/etc/./shadow" },
			"/etc/shadow", "/etc", []string{"open"}, ""},
		{"rename", func(e *bpf.FileEvent) {
			e.Op, e.Path, e.Path2, e.AbsPath, e.AbsPath2 = bpf.OpRename, "/a/b", "/a/c", "/a/b", "/a/c"
		}, "/a/b", "/a", []string{"rename"}, "rename to /a/c"},
		{"rmdir", func(e *bpf.FileEvent) { e.Op, e.Path = bpf.OpRmdir, "/var/tmp/d" },
			"/var/tmp/d", "/var/tmp", []string{"unlink"}, "rmdir"},
		{"symlink", func(e *bpf.FileEvent) { e.Op, e.Path, e.Path2 = bpf.OpSymlink, "/tmp/l", "/etc/passwd" },
			"/tmp/l", "/tmp", []string{"create"}, "symlink to /etc/passwd"},
		{"chmod", func(e *bpf.FileEvent) { e.Op, e.Path = bpf.OpChmod, "/usr/bin/su" },
			"/usr/bin/su", "/usr/bin", []string{}, "chmod"},
		{"root file", func(e *bpf.FileEvent) { e.Op, e.Path = bpf.OpUnlink, "/x" },
			"/x", "/", []string{"unlink"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := base
			c.mod(&ev)
			m := decode(t, f.enr.File(ev))
			checkCommon(t, m, event.TypeFileAccess, when)
			if get(t, m, "file", "file") != c.file || get(t, m, "file", "dir") != c.dir ||
				get(t, m, "file", "basename") != filepath.Base(c.file) {
				t.Errorf("file = %v", get(t, m, "file"))
			}
			var acts []string
			for _, a := range get(t, m, "file", "actions").([]any) {
				acts = append(acts, a.(string))
				if get(t, m, "file", a.(string)) != true {
					t.Errorf("boolean %s not set", a)
				}
			}
			if !slices.Equal(acts, c.actions) && !(len(acts) == 0 && len(c.actions) == 0) {
				t.Errorf("actions = %v, want %v", acts, c.actions)
			}
			if get(t, m, "note") != c.note {
				t.Errorf("note = %q, want %q", get(t, m, "note"), c.note)
			}
			if get(t, m, "process", "pid") != float64(f.self) || get(t, m, "process", "exe") != f.selfExe ||
				get(t, m, "process", "comm") != "proctest" || get(t, m, "process", "ppid") != float64(os.Getppid()) {
				t.Errorf("process = %v", get(t, m, "process"))
			}
			if last := get(t, m, "background", "ancestry", -1); get(t, last, "pid") != float64(f.self) ||
				get(t, last, "comm") != "proctest" {
				t.Errorf("ancestry does not end with the process: %v", last)
			}
			// The file tree holds the file at the right depth.
			dir := get(t, m, "background", "files", "root")
			for _, part := range strings.Split(strings.Trim(c.dir, "/"), "/") {
				if part == "" {
					break
				}
				dir = get(t, dir, "dirs", 0)
				if get(t, dir, "base_name") != part {
					t.Fatalf("tree: %v", get(t, m, "background", "files"))
				}
			}
			if get(t, dir, "files", 0, "abs_path") != c.file {
				t.Errorf("tree leaf: %v", dir)
			}
		})
	}
}

func TestFlow(t *testing.T) {
	f := newFixture(t)
	when := time.Unix(1_800_000_000, 0).UTC()
	local, remote := netip.MustParseAddrPort("198.18.0.2:51234"), netip.MustParseAddrPort("198.18.7.7:443")
	base := bpf.NetEvent{Time: when, PID: uint32(f.self), TGID: uint32(f.self), UID: uint32(os.Getuid()),
		Comm: "proctest", Proto: unix.IPPROTO_TCP, Local: local, Remote: remote, CgroupID: f.cgroupID}
	type step struct {
		op        bpf.NetOp
		old, new  bpf.TCPState
		flags     []string
		direction string
		status    string
		endedBy   string
		service   float64
	}
	cases := []struct {
		name  string
		sock  uint64
		steps []step
	}{
		{"connect", 1, []step{{op: bpf.NetConnect, flags: []string{"egress", "outgoing", "started"},
			direction: "outgoing", status: "started", service: 443}}},
		{"outgoing tcp closed locally", 2, []step{
			{op: bpf.NetState, old: bpf.TCPClose, new: bpf.TCPSynSent, flags: []string{"egress", "outgoing", "started"}, direction: "outgoing", status: "started", service: 443},
			{op: bpf.NetState, old: bpf.TCPSynSent, new: bpf.TCPEstablished, flags: []string{"egress", "outgoing", "ongoing"}, direction: "outgoing", status: "ongoing", service: 443},
			{op: bpf.NetState, old: bpf.TCPEstablished, new: 4, flags: []string{"egress", "outgoing", "ended", "terminator"}, direction: "outgoing", status: "ended", endedBy: "local", service: 443},
			{op: bpf.NetState, old: 6, new: bpf.TCPClose, flags: []string{"egress", "outgoing", "ended", "terminator"}, direction: "outgoing", status: "ended", endedBy: "local", service: 443},
		}},
		{"incoming closed by the peer", 3, []step{
			{op: bpf.NetState, old: bpf.TCPSynRecv, new: bpf.TCPEstablished, flags: []string{"ingress", "incoming", "ongoing"}, direction: "incoming", status: "ongoing", service: 51234},
			{op: bpf.NetState, old: bpf.TCPEstablished, new: 8, flags: []string{"ingress", "incoming", "ended", "terminated"}, direction: "incoming", status: "ended", endedBy: "remote", service: 51234},
		}},
		{"udp sends", 4, []step{
			{op: bpf.NetSendTo, flags: []string{"egress", "outgoing", "started"}, direction: "outgoing", status: "started", service: 443},
			{op: bpf.NetSendMsg, flags: []string{"egress", "outgoing", "ongoing"}, direction: "outgoing", status: "ongoing", service: 443},
		}},
	}
	allFlags := []string{"ingress", "egress", "incoming", "outgoing", "started", "ongoing", "ended", "terminator", "terminated"}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for i, s := range c.steps {
				ev := base
				ev.Op, ev.OldState, ev.NewState, ev.Sock = s.op, s.old, s.new, c.sock
				m := decode(t, f.enr.Flow(ev))
				checkCommon(t, m, event.TypeNetworkPeer, when)
				fl := get(t, m, "flow")
				if get(t, fl, "proto") != "tcp" || get(t, fl, "ip_version") != float64(4) ||
					get(t, fl, "remote", "address") != "198.18.7.7" || get(t, fl, "remote", "port") != float64(443) ||
					get(t, fl, "local", "port") != float64(51234) || get(t, fl, "remote", "name") != "pool.example.com" {
					t.Errorf("step %d: flow = %v", i, fl)
				}
				if names := get(t, fl, "remote", "names").([]any); len(names) != 2 || names[1] != "lb.example.net" {
					t.Errorf("step %d: remote names %v", i, names)
				}
				for _, fk := range allFlags {
					if want := slices.Contains(s.flags, fk); get(t, fl, "flags", fk) != want {
						t.Errorf("step %d: flags.%s = %v, want %v", i, fk, get(t, fl, "flags", fk), want)
					}
				}
				if get(t, fl, "phase", "direction") != s.direction || get(t, fl, "phase", "status") != s.status ||
					get(t, fl, "phase", "ended_by") != s.endedBy || get(t, fl, "service_port") != s.service {
					t.Errorf("step %d: phase %v service %v", i, get(t, fl, "phase"), get(t, fl, "service_port"))
				}
				pair := get(t, m, "background", "flows", "protocols", 0, "pairs", 0)
				if get(t, pair, "nodes", "remote", "name") != "pool.example.com" ||
					get(t, pair, "port_matrix", 0, "phase") != s.status {
					t.Errorf("step %d: background flow %v", i, pair)
				}
				if get(t, m, "process", "pid") != float64(f.self) || get(t, m, "process", "exe") != f.selfExe {
					t.Errorf("step %d: process %v", i, get(t, m, "process"))
				}
				if get(t, m, "background", "ancestry", -1, "pid") != float64(f.self) {
					t.Errorf("step %d: ancestry", i)
				}
			}
		})
	}

	// Not flows.
	for name, ev := range map[string]bpf.NetEvent{
		"listen":     {Op: bpf.NetState, NewState: bpf.TCPListen, Local: local, Remote: remote},
		"not socket": {Op: bpf.NetConnect, NotSocket: true, Remote: remote},
		"no remote":  {Op: bpf.NetConnect, Local: local},
	} {
		if got := f.enr.Flow(ev); got != nil {
			t.Errorf("%s gave an event", name)
		}
	}

	// An accepted socket of unknown owner: no process, empty ancestry, IPv6 peer without names.
	ev := bpf.NetEvent{Time: when, Op: bpf.NetState, OldState: bpf.TCPSynRecv, NewState: bpf.TCPEstablished,
		Proto: unix.IPPROTO_TCP, OwnerUnknown: true, Sock: 9,
		Local: netip.MustParseAddrPort("[2001:db8::1]:22"), Remote: netip.MustParseAddrPort("[2001:db8::2]:40000")}
	m := decode(t, f.enr.Flow(ev))
	if get(t, m, "process", "pid") != float64(0) || len(get(t, m, "background", "ancestry").([]any)) != 0 ||
		get(t, m, "flow", "ip_version") != float64(6) || len(get(t, m, "flow", "remote", "names").([]any)) != 0 ||
		get(t, m, "flow", "service_port") != float64(22) {
		t.Errorf("unknown owner: %v %v", get(t, m, "process"), get(t, m, "flow"))
	}
}

func TestWithRecipe(t *testing.T) {
	f := newFixture(t)
	ev := f.enr.File(bpf.FileEvent{TGID: uint32(f.self), Op: bpf.OpOpen, Path: "/etc/shadow", Comm: "x"})
	r := &recipes.Recipe{Kind: "credentials_files_access", Name: "creds", Version: "1.2",
		Description: "Access to credentials", Documentation: "https://example.test/doc",
		Importance: recipes.ImportanceHigh, Tactic: "credential_access", Technique: "unsecured_credentials",
		Subtechnique: "credentials_in_files"}
	d := WithRecipe(ev, r)
	m := decode(t, d)
	want := map[string]string{"kind": "credentials_files_access", "name": "creds", "format": "file_access",
		"version": "1.2", "description": "Access to credentials", "documentation": "https://example.test/doc",
		"importance": "high", "tactic": "credential_access", "technique": "unsecured_credentials",
		"subtechnique": "credentials_in_files"}
	for k, v := range want {
		if get(t, m, "metadata", k) != v {
			t.Errorf("metadata.%s = %v, want %s", k, get(t, m, "metadata", k), v)
		}
	}
	if d.UUID == ev.UUID || !uuidRe.MatchString(d.UUID) {
		t.Errorf("detection uuid %q (event %q)", d.UUID, ev.UUID)
	}
	if ev.Metadata.Name != "" {
		t.Error("WithRecipe changed the original event")
	}
	// The copy shares nothing mutable with the original.
	d.Process.Argv[0] = "changed"
	d.File.Actions[0] = "changed"
	d.Background.Ancestry[0].Comm = "changed"
	d.Scenario[0].Hostname = "changed"
	d.Background.Files.Root.Dirs[0].Files[0].Actions[0] = "changed"
	if ev.Process.Argv[0] == "changed" || ev.File.Actions[0] == "changed" ||
		ev.Background.Ancestry[0].Comm == "changed" || ev.Scenario[0].Hostname == "changed" ||
		ev.Background.Files.Root.Dirs[0].Files[0].Actions[0] == "changed" {
		t.Error("copy shares slices with the original")
	}
	if WithRecipe(nil, r) != nil {
		t.Error("nil event")
	}
}

func TestContainerID(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	cases := map[string]string{
		"/system.slice/docker-" + id + ".scope": id,
		"/docker/" + id:                         id,
		"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-" + id + ".scope": id,
		"/machine.slice/libpod-" + id + ".scope":                 id,
		"/machine.slice/libpod-conmon-" + id + ".scope":          "",
		"/kubepods/besteffort/pod123/" + id:                      id,
		"/crio-" + id + ".scope":                                 id,
		"/user.slice/user-1000.slice/session-3.scope":            "",
		"/system.slice/docker-" + strings.ToUpper(id) + ".scope": "",
		"/docker/" + id[:63]:                                     "",
		"":                                                       "",
	}
	for in, want := range cases {
		if got := ContainerID(in); got != want {
			t.Errorf("ContainerID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCgroupParsing(t *testing.T) {
	mi := "24 30 0:22 / /sys rw - sysfs sysfs rw\n" +
		"35 24 0:30 / /sys/fs/cgroup/un\\040ified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n" +
		"36 24 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
	if got := cgroup2Mount([]byte(mi)); got != "/sys/fs/cgroup/un ified" {
		t.Errorf("mount = %q", got)
	}
	if got := cgroup2Mount([]byte("garbage\n - \n")); got != "" {
		t.Errorf("garbage mountinfo gave %q", got)
	}
	cases := map[string]string{
		"12:memory:/x\n0::/user.slice/a.scope\n": "/user.slice/a.scope",
		"0::relative\n":                          "",
		"1:name=systemd:/a\n":                    "",
		"0::/" + strings.Repeat("a", 5000):       "",
	}
	for in, want := range cases {
		if got := cgroupV2Path([]byte(in)); got != want {
			t.Errorf("cgroupV2Path(%.30q) = %q, want %q", in, got, want)
		}
	}
}

func TestUUID(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 1000; i++ {
		u := NewUUID()
		if !uuidRe.MatchString(u) || seen[u] {
			t.Fatalf("uuid %q bad or repeated", u)
		}
		seen[u] = true
	}
}
