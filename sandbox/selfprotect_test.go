package sandbox_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/liveworld"
	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/sandbox/proc"
	"github.com/jibril-rt/jibril/store"
)

// allPolicy grants every helper the self-protection floor must still hold back.
const allPolicy = `recipe: selfprotect
mode: enforce
capabilities:
  process.kill: [any]
  process.freeze: true
  net.block.ip: true
  net.block.domain: true
  fs.write: ["/**"]
`

// TestSelfProtection runs reactions in the live world under a policy that grants every kill,
// freeze and block, aimed at the daemon (this test process), its parent, pid 1, kernel
// threads, a process with a protected name, loopback and a protected network. Each is
// refused, returns -1, and leaves an audit row with outcome "refused"; a process the floor
// does not protect is killed, so the grants are real.
func TestSelfProtection(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespace and nftables")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ns := fmt.Sprintf("jself-%08x", rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns del: %v %s", err, out)
		}
	})
	nsf, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer nsf.Close()

	// Processes of the test: a protected name, and a bystander the floor lets die.
	dir := t.TempDir()
	spawn := func(name string) *exec.Cmd {
		p := filepath.Join(dir, name)
		b, err := os.ReadFile("/bin/sleep")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(p, "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	guarded := spawn("jguarded")
	bystander := spawn("jbystander")

	state := t.TempDir()
	st, err := store.Open(ctx, liveworld.DBPath(state))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	protected := netip.MustParsePrefix("198.19.200.0/24")
	live, err := liveworld.Open(ctx, liveworld.Config{StateDir: state, Store: st, NetNSFd: int(nsf.Fd()),
		// MinPID 3 (not the default 500): on a machine whose pids have wrapped, the test's own
		// parent may sit below 500, and each refusal here must be for the reason it tests.
		Protect: []netip.Prefix{protected}, Floor: proc.Floor{MinPID: 3, ProtectedNames: []string{"jguarded"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	host, err := sandbox.NewHost(ctx, sandbox.HostConfig{CacheDir: filepath.Join(state, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(ctx)
	pol, err := policy.Parse("selfprotect.policy.yaml", []byte(allPolicy), policy.DefaultLimits())
	if err != nil {
		t.Fatal(err)
	}
	env := &sandbox.Env{Policy: pol, Mode: policy.ModeEnforce, World: live.World, Audit: st}

	self, parent := os.Getpid(), os.Getppid()
	// An event whose process is the daemon itself (a forged or feedback event).
	selfEvent := fmt.Sprintf(`{"uuid":"u-self","process":{"pid":%d,"ppid":%d},"background":{"ancestry":[{"pid":%d},{"pid":%d}]}}`, self, parent, parent, self)
	otherEvent := `{"uuid":"u-other","process":{"pid":999999,"ppid":999998}}`
	cases := []struct {
		name, event, call, helper string
		errno                     string // part of Errno()
		outcome                   string
		result                    string
	}{
		{"kill the daemon", otherEvent, fmt.Sprintf("KillProcess(%d)", self), "KillProcess", "is the daemon itself", "refused", "-1"},
		{"kill its parent", otherEvent, fmt.Sprintf("KillProcess(%d)", parent), "KillProcess", "is the daemon's parent", "refused", "-1"},
		{"kill pid 1", otherEvent, "KillProcess(1)", "KillProcess", "pid 1", "refused", "-1"},
		{"kill kthreadd", otherEvent, "KillProcess(2)", "KillProcess", "below protect.min_pid", "refused", "-1"},
		{"kill a protected name", otherEvent, fmt.Sprintf("KillProcess(%d)", guarded.Process.Pid), "KillProcess", "protected process name jguarded", "refused", "-1"},
		{"kill current = daemon", selfEvent, "KillCurrent()", "KillCurrent", "is the daemon itself", "refused", "-1"},
		{"kill parent of the daemon", selfEvent, "KillParent()", "KillParent", "is the daemon's parent", "refused", "-1"},
		{"kill tree of the daemon", selfEvent, "KillTree()", "KillTree", "is the daemon itself", "refused", "-1"},
		{"freeze the daemon", selfEvent, "Freeze()", "Freeze", "is the daemon itself", "refused", "-1"},
		{"freeze its parent", selfEvent, fmt.Sprintf("Freeze(%d)", parent), "Freeze", "is the daemon's parent", "refused", "-1"},
		{"block loopback", otherEvent, `NetBlockIp("127.0.0.1")`, "NetBlockIp", "loopback", "refused", "-1"},
		{"block ipv6 loopback", otherEvent, `NetBlockIp("::1")`, "NetBlockIp", "loopback", "refused", "-1"},
		{"block loopback net", otherEvent, `NetBlockCidr("127.0.0.0/8")`, "NetBlockCidr", "loopback", "refused", "-1"},
		{"block everything", otherEvent, `NetBlockCidr("0.0.0.0/0")`, "NetBlockCidr", "everything", "refused", "-1"},
		{"block a protected address", otherEvent, `NetBlockIp("198.19.200.5")`, "NetBlockIp", "protected", "refused", "-1"},
		{"block around a protected net", otherEvent, `NetBlockCidr("198.19.0.0/16", 60)`, "NetBlockCidr", "protected", "refused", "-1"},
		{"block link-local", otherEvent, `NetBlockIp("169.254.1.1")`, "NetBlockIp", "protected", "refused", "-1"},
		{"write under /proc", otherEvent, `WriteFile("/proc/sys/kernel/hostname", "pwned")`, "WriteFile", "never writing under /proc", "refused", "-1"},
		{"write under /sys", otherEvent, `WriteFile("/sys/kernel/mm/transparent_hugepage/enabled", "never")`, "WriteFile", "never writing under /sys", "refused", "-1"},
		{"write under /dev", otherEvent, `WriteFile("/dev/null", "x")`, "WriteFile", "never writing under /dev", "refused", "-1"},
		{"kill a bystander", otherEvent, fmt.Sprintf("KillProcess(%d)", bystander.Process.Pid), "KillProcess", "", "done", "0"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			recipe := fmt.Sprintf("selfprotect_%02d", i)
			src := fmt.Sprintf("function process(d) { var r = %s; Info(r + \"|\" + Errno()); }", c.call)
			prog, err := host.Compile(ctx, sandbox.Reaction{Recipe: recipe, Kind: "k", File: "selfprotect.js", Source: src}, sandbox.Limits{Timeout: 10 * time.Second}, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			tr := prog.Run(ctx, env, "u-"+recipe, []byte(c.event))
			if tr.Status != sandbox.StatusOK || len(tr.Logs) != 1 {
				t.Fatalf("%s %+v %+v", tr.Status, tr.Error, tr.Logs)
			}
			res, errno, _ := strings.Cut(tr.Logs[0].Msg, "|")
			if res != c.result || !strings.Contains(errno, c.errno) {
				t.Errorf("%s = %s, Errno %q; want %s and an Errno with %q", c.call, res, errno, c.result, c.errno)
			}
			rows, err := st.ListAudit(ctx, store.AuditFilter{Recipe: recipe})
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != 1 || rows[0].Helper != c.helper || rows[0].Outcome != c.outcome {
				t.Fatalf("audit %+v, want one %s row with outcome %s", rows, c.helper, c.outcome)
			}
		})
	}

	// Nothing protected was touched.
	for _, p := range []*exec.Cmd{guarded} {
		if err := p.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("%s: %v", p.Path, err)
		}
	}
	if err := bystander.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("bystander: %v, want killed", err)
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", netblock.TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft: %v %s", err, out)
	}
	for _, s := range []string{"127.0.0", "::1", "198.19", "169.254", "0.0.0.0/0"} {
		if strings.Contains(string(out), s) {
			t.Errorf("the table holds %s:\n%s", s, out)
		}
	}
	if rows, err := st.ActiveBlocks(ctx, time.Now()); err != nil || len(rows) != 0 {
		t.Errorf("persisted blocks %+v %v, want none", rows, err)
	}
	if rep, err := st.VerifyAudit(ctx); err != nil || !rep.OK {
		t.Errorf("audit chain: %+v %v", rep, err)
	}
}
