package netblock

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Test fixtures: every test works in network namespaces it creates (named
// jtest-<random>) with RFC 2544 / RFC 5180 addresses, and removes them in
// t.Cleanup whatever happens.

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

type netns struct {
	name string
	f    *os.File
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newNS(t *testing.T) *netns {
	t.Helper()
	name := fmt.Sprintf("jtest-%08x", rand.Uint32())
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("remove namespace %s: %v\n%s", name, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + name)
	if err != nil {
		t.Fatalf("open namespace %s: %v", name, err)
	}
	t.Cleanup(func() { f.Close() })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return &netns{name: name, f: f}
}

func (n *netns) fd() int { return int(n.f.Fd()) }

func (n *netns) nft(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", n.name, "nft"}, args...)...)
}

// nftElem is one set element as `nft -j` prints it.
type nftElem struct {
	val     string // address or prefix
	timeout int    // seconds, 0 when none
}

// elems lists a set of our table with the nft command, independently of
// the code under test.
func (n *netns) elems(t *testing.T, set string) map[string]nftElem {
	t.Helper()
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	out := n.nft(t, "-j", "list", "set", "inet", TableName, set)
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parse nft -j output: %v\n%s", err, out)
	}
	got := map[string]nftElem{}
	for _, item := range doc.Nftables {
		if item.Set == nil {
			continue
		}
		for _, raw := range item.Set.Elem {
			e := parseNftElem(t, raw)
			got[e.val] = e
		}
	}
	return got
}

func parseNftElem(t *testing.T, raw json.RawMessage) nftElem {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return nftElem{val: s}
	}
	var obj struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Elem *struct {
			Val     json.RawMessage `json:"val"`
			Timeout int             `json:"timeout"`
		} `json:"elem"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("parse nft element %s: %v", raw, err)
	}
	switch {
	case obj.Prefix != nil:
		return nftElem{val: fmt.Sprintf("%s/%d", obj.Prefix.Addr, obj.Prefix.Len)}
	case obj.Elem != nil:
		e := parseNftElem(t, obj.Elem.Val)
		e.timeout = obj.Elem.Timeout
		return e
	}
	t.Fatalf("unknown nft element %s", raw)
	return nftElem{}
}

// openIn opens a Blocker in n and closes it at cleanup.
func openIn(t *testing.T, n *netns, protect ...netip.Prefix) *Blocker {
	t.Helper()
	b, err := Open(testCtx(t), Options{NetNSFd: n.fd(), Protect: protect})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// inNS runs fn on an OS thread switched into n. The thread is never
// unlocked, so it dies with the goroutine instead of going back to the
// scheduler in the wrong namespace.
func inNS(n *netns, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(n.fd(), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", n.name, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// pair is two namespaces linked by a veth pair.
type pair struct {
	a, b         *netns
	addrA, addrB netip.Addr
	v6A, v6B     netip.Addr
}

func newPair(t *testing.T) *pair {
	t.Helper()
	p := &pair{a: newNS(t), b: newNS(t)}
	x := rand.IntN(250) + 1
	p.addrA = netip.AddrFrom4([4]byte{198, 18, byte(x), 1})
	p.addrB = netip.AddrFrom4([4]byte{198, 18, byte(x), 2})
	p.v6A = netip.MustParseAddr(fmt.Sprintf("2001:2:0:%x::1", x))
	p.v6B = netip.MustParseAddr(fmt.Sprintf("2001:2:0:%x::2", x))
	run(t, "ip", "link", "add", "va", "netns", p.a.name, "type", "veth", "peer", "name", "vb", "netns", p.b.name)
	for _, side := range []struct {
		ns     *netns
		dev    string
		v4, v6 netip.Addr
	}{{p.a, "va", p.addrA, p.v6A}, {p.b, "vb", p.addrB, p.v6B}} {
		run(t, "ip", "-n", side.ns.name, "addr", "add", side.v4.String()+"/24", "dev", side.dev)
		run(t, "ip", "-n", side.ns.name, "addr", "add", side.v6.String()+"/64", "dev", side.dev, "nodad")
		run(t, "ip", "-n", side.ns.name, "link", "set", side.dev, "up")
	}
	return p
}

// listen starts a TCP server in n that accepts and closes connections.
func listen(t *testing.T, n *netns, addr netip.Addr) netip.AddrPort {
	t.Helper()
	var ln net.Listener
	err := inNS(n, func() error {
		var err error
		ln, err = net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", n.name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// connect dials to from namespace n with a one-second timeout.
func connect(n *netns, to netip.AddrPort) error {
	return inNS(n, func() error {
		d := net.Dialer{Timeout: time.Second}
		c, err := d.Dial("tcp", to.String())
		if err != nil {
			return err
		}
		return c.Close()
	})
}

// reach is connect for a peer that must be reachable: a loaded machine may let one dial time
// out, so it tries three times. A blocked peer is checked with connect: it drops every try.
func reach(n *netns, to netip.AddrPort) error {
	var err error
	for try := 0; try < 3; try++ {
		if err = connect(n, to); err == nil {
			return nil
		}
	}
	return err
}
