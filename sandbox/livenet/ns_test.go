package livenet

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/store"
)

// Every test works in a network namespace it creates (jltest-<random>),
// with RFC 2544 addresses (198.18.0.0/15, 2001:2::/48), removed in t.Cleanup.

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

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

type netns struct {
	name string
	f    *os.File
}

func newNS(t *testing.T) *netns {
	t.Helper()
	name := fmt.Sprintf("jltest-%08x", rand.Uint32())
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
	return &netns{name: name, f: f}
}

// nftElem is one set element as `nft -j` prints it.
type nftElem struct {
	timeout float64 // seconds, 0 when none
	expires float64
}

// elems lists a set of our table with the nft command, independently of
// the code under test.
func (n *netns) elems(t *testing.T, set string) map[string]nftElem {
	t.Helper()
	out := run(t, "ip", "netns", "exec", n.name, "nft", "-j", "list", "set", "inet", netblock.TableName, set)
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("parse nft -j output: %v\n%s", err, out)
	}
	got := map[string]nftElem{}
	for _, item := range doc.Nftables {
		if item.Set == nil {
			continue
		}
		for _, raw := range item.Set.Elem {
			v, e := parseElem(t, raw)
			got[v] = e
		}
	}
	return got
}

func parseElem(t *testing.T, raw json.RawMessage) (string, nftElem) {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nftElem{}
	}
	var obj struct {
		Prefix *struct {
			Addr string `json:"addr"`
			Len  int    `json:"len"`
		} `json:"prefix"`
		Elem *struct {
			Val     json.RawMessage `json:"val"`
			Timeout float64         `json:"timeout"`
			Expires float64         `json:"expires"`
		} `json:"elem"`
	}
	if err := json.Unmarshal(raw, &obj); err != nil {
		t.Fatalf("parse nft element %s: %v", raw, err)
	}
	switch {
	case obj.Prefix != nil:
		return fmt.Sprintf("%s/%d", obj.Prefix.Addr, obj.Prefix.Len), nftElem{}
	case obj.Elem != nil:
		v, _ := parseElem(t, obj.Elem.Val)
		return v, nftElem{timeout: obj.Elem.Timeout, expires: obj.Elem.Expires}
	}
	t.Fatalf("unknown nft element %s", raw)
	return "", nftElem{}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func openStore(t *testing.T, path string) *store.Store {
	t.Helper()
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func newStore(t *testing.T) *store.Store {
	return openStore(t, filepath.Join(t.TempDir(), "jibril.db"))
}

// openNet opens a Net in ns over st and closes it at cleanup.
func openNet(t *testing.T, ns *netns, st Store, protect ...netip.Prefix) *Net {
	t.Helper()
	n, err := Open(testCtx(t), st, Options{Netblock: netblock.Options{NetNSFd: int(ns.f.Fd())}, Protect: protect})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}
