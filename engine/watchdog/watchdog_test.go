package watchdog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/metrics"
	"github.com/jibril-rt/jibril/sandbox/livenet"
	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/store"
)

// waitUntil polls cond until it holds or the deadline passes (a bound, not a timing
// assertion: the watchdog ticks every 100 ms in these tests).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func needRoot(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
}

func newNetns(t *testing.T) (string, *os.File) {
	t.Helper()
	name := fmt.Sprintf("jwd-%08x", rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return name, f
}

func nft(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	return string(out), err
}

// repairs reads the tamper counter of what.
func repairs(t *testing.T, m *metrics.Metrics, what string) float64 {
	var d dto.Metric
	if err := m.Tampering.WithLabelValues(what).Write(&d); err != nil {
		t.Error(err)
	}
	return d.GetCounter().GetValue()
}

// run starts the watchdog until the test ends.
func run(t *testing.T, w *Watchdog) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestTableRestored deletes the table behind the daemon's back (nft delete table) and
// flushes a chain: the watchdog restores the table, its rules and the blocks.
func TestTableRestored(t *testing.T) {
	needRoot(t, "ip", "nft")
	ns, f := newNetns(t)
	ctx := context.Background()
	st, err := store.Open(ctx, filepath.Join(t.TempDir(), "jibril.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, err := livenet.Open(ctx, st, livenet.Options{Netblock: netblock.Options{NetNSFd: int(f.Fd())}})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for _, p := range []string{"198.19.5.5/32", "198.19.6.0/24"} {
		if _, err := n.BlockPrefix(ctx, netip.MustParsePrefix(p), time.Hour, "wd_test"); err != nil {
			t.Fatal(err)
		}
	}
	met := metrics.New()
	run(t, New(Config{Interval: 100 * time.Millisecond, Table: NetTable(n), Observer: met}))

	restored := func(want float64) func() bool {
		return func() bool {
			out, err := nft(ns, "list", "table", "inet", netblock.TableName)
			return err == nil && strings.Contains(out, "198.19.5.5") && strings.Contains(out, "198.19.6.0/24") &&
				strings.Contains(out, "drop") && repairs(t, met, WhatNftables) >= want
		}
	}
	for i, tamper := range [][]string{
		{"delete", "table", "inet", netblock.TableName},
		{"flush", "table", "inet", netblock.TableName}, // rules and elements gone, table kept
	} {
		if out, err := nft(ns, tamper...); err != nil {
			t.Fatalf("nft %v: %v\n%s", tamper, err, out)
		}
		waitUntil(t, fmt.Sprintf("table restored after nft %s", strings.Join(tamper, " ")), restored(float64(i+1)))
	}
	out, _ := nft(ns, "list", "table", "inet", netblock.TableName)
	if !strings.Contains(out, "198.19.5.5 timeout") {
		t.Errorf("the restored block lost its expiry:\n%s", out)
	}
}

type countObserver map[string]int

func (c countObserver) Tampered(what string) { c[what]++ }

type failingTable struct{ present bool }

func (f failingTable) Present(context.Context) (bool, error) { return f.present, nil }
func (failingTable) Restore(context.Context) error {
	return errors.New("netlink: operation not permitted")
}

type brokenLinks struct{ states []bpf.LinkState }

func (b brokenLinks) CheckLinks() ([]bpf.LinkState, error) { return b.states, nil }
func (b brokenLinks) Reattach() ([]bpf.LinkState, error) {
	return nil, errors.New("reattach link 7: not a cgroup link")
}

// TestCheckReportsFailures: a repair that fails is counted, logged and returned.
func TestCheckReportsFailures(t *testing.T) {
	cases := []struct {
		name      string
		cfg       Config
		counts    map[string]int
		errSubstr string
	}{
		{"table intact", Config{Table: failingTable{present: true}}, map[string]int{}, ""},
		{"table gone, restore fails", Config{Table: failingTable{}}, map[string]int{WhatNftables: 1}, "restore nftables table: netlink: operation not permitted"},
		{"links fine", Config{Links: brokenLinks{[]bpf.LinkState{{ID: 7, Attached: true}}}}, map[string]int{}, ""},
		{"link detached, repair fails", Config{Links: brokenLinks{[]bpf.LinkState{{ID: 7, Hook: "raw_tp x"}}}}, map[string]int{WhatBPFLink: 1}, "not a cgroup link"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			obs := countObserver{}
			c.cfg.Observer = obs
			r := New(c.cfg).Check(context.Background())
			if c.errSubstr == "" && r.Err != nil || c.errSubstr != "" && (r.Err == nil || !strings.Contains(r.Err.Error(), c.errSubstr)) {
				t.Errorf("err %v, want %q", r.Err, c.errSubstr)
			}
			if fmt.Sprint(map[string]int(obs)) != fmt.Sprint(c.counts) {
				t.Errorf("counted %v, want %v", obs, c.counts)
			}
		})
	}
}

func dnsAnswer(t *testing.T, id uint16, name string) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RecursionAvailable: true})
	n := dnsmessage.MustNewName(name)
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		t.Fatal(err)
	}
	if err := b.StartAnswers(); err != nil {
		t.Fatal(err)
	}
	if err := b.AResource(dnsmessage.ResourceHeader{Name: n, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{198, 18, 0, 7}}); err != nil {
		t.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// sendDNS sends an answer from a loopback port 53 and returns the client address.
func sendDNS(t *testing.T, id uint16) netip.AddrPort {
	t.Helper()
	var srv *net.UDPConn
	var err error
	for _, ip := range []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(127, 77, 0, 53)} {
		if srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ip, Port: 53}); err == nil {
			break
		}
	}
	if err != nil {
		t.Skipf("cannot bind a loopback port 53: %v", err)
	}
	defer srv.Close()
	cli, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := srv.WriteToUDP(dnsAnswer(t, id, "jibril-watchdog.example."), cli.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := cli.ReadFromUDP(buf); err != nil {
		t.Fatalf("the answer was not delivered: %v", err)
	}
	return netip.MustParseAddrPort(cli.LocalAddr().String())
}

func seeDNS(t *testing.T, s *bpf.Sensors, id uint16) bool {
	t.Helper()
	client := sendDNS(t, id)
	timeout := time.After(3 * time.Second)
	for {
		select {
		case e := <-s.DNS():
			if e.Client == client && e.ID == id {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

// TestLinksReattached detaches the sensors' links with bpftool: the tracepoint links
// refuse (EOPNOTSUPP), the cgroup link of the DNS sensor goes and the watchdog attaches
// it again; DNS answers and execs are reported again.
func TestLinksReattached(t *testing.T) {
	needRoot(t, "bpftool")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := bpf.Open(ctx, bpf.Config{Sensors: bpf.SensorProc | bpf.SensorDNS})
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOENT) {
			t.Skipf("kernel refused the sensors: %v", err)
		}
		t.Fatal(err)
	}
	defer s.Close()
	if !seeDNS(t, s, 0x1111) {
		t.Fatal("no DNS event before tampering")
	}
	states, err := s.CheckLinks()
	if err != nil {
		t.Fatal(err)
	}
	var cgroup []bpf.LinkState
	for _, l := range states {
		if !l.Attached || l.Err != nil {
			t.Fatalf("fresh link not attached: %s", l)
		}
		if strings.HasPrefix(l.Hook, "cgroup") {
			cgroup = append(cgroup, l)
			continue
		}
		out, err := exec.Command("bpftool", "link", "detach", "id", fmt.Sprint(l.ID)).CombinedOutput()
		if err == nil {
			t.Fatalf("bpftool detached tracepoint %s: the watchdog cannot repair it", l)
		}
		t.Logf("%s: bpftool link detach refused: %s", l, strings.TrimSpace(string(out)))
	}
	if len(cgroup) != 1 {
		t.Fatalf("cgroup links %v, want the DNS sensor's", cgroup)
	}
	met := metrics.New()
	run(t, New(Config{Interval: 100 * time.Millisecond, Links: s, Observer: met}))
	if out, err := exec.Command("bpftool", "link", "detach", "id", fmt.Sprint(cgroup[0].ID)).CombinedOutput(); err != nil {
		t.Fatalf("bpftool link detach %d: %v %s", cgroup[0].ID, err, out)
	}
	waitUntil(t, "cgroup link re-attached", func() bool {
		states, err := s.CheckLinks()
		if err != nil || repairs(t, met, WhatBPFLink) < 1 {
			return false
		}
		for _, l := range states {
			if !l.Attached {
				return false
			}
		}
		return true
	})
	if !seeDNS(t, s, 0x2222) {
		t.Fatal("no DNS event after the watchdog re-attached the link")
	}
	// Exec events never stopped: their links cannot be detached.
	dir := t.TempDir()
	exe := filepath.Join(dir, "jwd-probe")
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(exe).Run(); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(5 * time.Second)
	for seen := false; !seen; {
		select {
		case e := <-s.Exec():
			seen = e.Filename == exe
		case <-timeout:
			t.Fatal("no exec event")
		}
	}
}
