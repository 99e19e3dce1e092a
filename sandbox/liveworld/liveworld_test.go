package liveworld

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox"
	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/store"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces and nftables tables")
	}
	for _, bin := range []string{"nft", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("needs the %s command (apt-get install nftables iproute2): %v", bin, err)
		}
	}
}

// newNS creates a network namespace removed at cleanup and returns its name
// and an open descriptor.
func newNS(t *testing.T) (string, *os.File) {
	t.Helper()
	name := fmt.Sprintf("jwtest-%08x", rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("remove namespace %s: %v\n%s", name, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return name, f
}

// nftTable prints our table in the namespace with the nft command.
func nftTable(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", netblock.TableName).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table: %v\n%s", err, out)
	}
	return string(out)
}

func TestPaths(t *testing.T) {
	if got := DBPath("/var/lib/jibril"); got != "/var/lib/jibril/jibril.db" {
		t.Fatalf("DBPath = %s", got)
	}
	if EvidenceDir("/s") != "/s/evidence" || TempRoot("/s") != "/s/tmp" {
		t.Fatalf("EvidenceDir %s TempRoot %s", EvidenceDir("/s"), TempRoot("/s"))
	}
}

func TestOpenRefusesMissingConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, Config{StateDir: t.TempDir()}); err == nil {
		t.Fatal("Open without a store succeeded")
	}
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := Open(ctx, Config{Store: st}); err == nil {
		t.Fatal("Open without a state directory succeeded")
	}
	// NetNSFd 0 never silently means the host.
	if _, err := Open(ctx, Config{Store: st, StateDir: t.TempDir()}); err == nil {
		t.Fatal("Open with NetNSFd 0 succeeded")
	}
}

// TestReactionBlocksLive runs a reaction in the live world: its blocks land
// in nftables and in the store, refusals are audited, and a second world
// opened with Restore after the table was deleted re-applies them.
func TestReactionBlocksLive(t *testing.T) {
	needRoot(t)
	ns, f := newNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	state := t.TempDir()
	st, err := store.Open(ctx, DBPath(state))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	live, err := Open(ctx, Config{StateDir: state, Store: st, NetNSFd: int(f.Fd()), Restore: true})
	if err != nil {
		t.Fatal(err)
	}
	host, err := sandbox.NewHost(ctx, sandbox.HostConfig{CacheDir: filepath.Join(state, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(ctx)
	src := `function process(d) {
  Info("timer=" + NetBlockIpTimer("198.19.8.8", 60));
  Info("cidr=" + NetBlockCidr("198.19.9.0/24"));
  Info("loop=" + NetBlockIp("127.0.0.1") + " " + Errno());
  Info("event=" + NetBlockIp());
}`
	prog, err := host.Compile(ctx, sandbox.Reaction{Recipe: "live_test", Kind: "k", File: "live.js", Source: src}, sandbox.Limits{Timeout: 5 * time.Second}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	pol, err := policy.Default("jibril", "live_test")
	if err != nil {
		t.Fatal(err)
	}
	env := &sandbox.Env{Policy: pol, Mode: policy.ModeEnforce, World: live.World, Audit: st}
	ev := `{"uuid":"u-live","process":{"pid":999999,"ppid":999998},"flow":{"remote":{"address":"2001:2::88"}}}`
	tr := prog.Run(ctx, env, "u-live", []byte(ev))
	if tr.Status != sandbox.StatusOK {
		t.Fatalf("%s %+v", tr.Status, tr.Error)
	}
	var logs []string
	for _, l := range tr.Logs {
		logs = append(logs, l.Msg)
	}
	want := "timer=0|cidr=0|loop=-1 refusing to block 127.0.0.1/32 (loopback or everything)|event=0"
	if strings.Join(logs, "|") != want {
		t.Fatalf("logs %q, want %q", strings.Join(logs, "|"), want)
	}
	table := nftTable(t, ns)
	for _, s := range []string{"198.19.8.8 timeout 1m", "198.19.9.0/24", "2001:2::88"} {
		if !strings.Contains(table, s) {
			t.Fatalf("table lacks %q:\n%s", s, table)
		}
	}
	rows, err := st.ActiveBlocks(ctx, time.Now())
	if err != nil || len(rows) != 3 {
		t.Fatalf("persisted %+v, %v; want 3 rows", rows, err)
	}
	audit, err := st.ListAudit(ctx, store.AuditFilter{Recipe: "live_test"})
	if err != nil {
		t.Fatal(err)
	}
	var outcomes []string
	for _, a := range audit {
		outcomes = append(outcomes, a.Helper+":"+a.Outcome)
	}
	if strings.Join(outcomes, ",") != "NetBlockIpTimer:done,NetBlockCidr:done,NetBlockIp:refused,NetBlockIp:done" {
		t.Fatalf("audit %v", outcomes)
	}
	if err := live.Close(); err != nil {
		t.Fatal(err)
	}

	// Reboot: the table disappears; a new world restores it.
	b, err := netblock.Open(ctx, netblock.Options{NetNSFd: int(f.Fd())})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	b.Close()
	live2, err := Open(ctx, Config{StateDir: state, Store: st, NetNSFd: int(f.Fd()), Restore: true})
	if err != nil {
		t.Fatal(err)
	}
	defer live2.Close()
	if live2.Restored.Applied != 3 {
		t.Fatalf("restore report %+v, want 3 applied", live2.Restored)
	}
	table = nftTable(t, ns)
	for _, s := range []string{"198.19.8.8 timeout", "198.19.9.0/24", "2001:2::88"} {
		if !strings.Contains(table, s) {
			t.Fatalf("restored table lacks %q:\n%s", s, table)
		}
	}
	b2, _ := json.Marshal(live2.Restored)
	t.Logf("restore: %s", b2)
}
