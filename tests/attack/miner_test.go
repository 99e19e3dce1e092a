package attack

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/tests/testkit"
)

// servePool is a stand-in stratum pool: it answers xmrig's `login` and stratum v1's
// `mining.subscribe` / `mining.authorize`, hands out one job, and reports each method it
// was sent on seen (without blocking).
func servePool(ln net.Listener, seen chan<- string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			enc := json.NewEncoder(c)
			sc := bufio.NewScanner(c)
			for sc.Scan() {
				var req struct {
					ID     any    `json:"id"`
					Method string `json:"method"`
				}
				if json.Unmarshal(sc.Bytes(), &req) != nil {
					return
				}
				select {
				case seen <- req.Method:
				default:
				}
				switch req.Method {
				case "login":
					_ = enc.Encode(map[string]any{"id": req.ID, "jsonrpc": "2.0", "error": nil, "result": map[string]any{
						"id": "worker-1", "status": "OK",
						"job": map[string]any{"job_id": "1", "blob": strings.Repeat("0", 152), "target": "b88d0600"}}})
				case "mining.subscribe":
					_ = enc.Encode(map[string]any{"id": req.ID, "error": nil,
						"result": []any{[]any{[]any{"mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"}}, "08000002", 4}})
				case "mining.authorize":
					_ = enc.Encode(map[string]any{"id": req.ID, "error": nil, "result": true})
					_ = enc.Encode(map[string]any{"id": nil, "method": "mining.notify",
						"params": []any{"1", strings.Repeat("0", 64), "", "", []any{}, "20000000", "1d00ffff", "5f5e1000", true}})
				default:
					_ = enc.Encode(map[string]any{"id": req.ID, "result": nil, "error": []any{20, "unknown method", nil}})
				}
			}
		}()
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestCryptoMiner: a small program of ours playing a miner, in namespace A, against stand-in
// pools in namespace B. Three ways to be caught, three recipes in enforce:
// crypto_miner_binary (the file is named xmrig), crypto_mining_pool_domain (a renamed miner
// reaching a pool by its domain: names and address blocked, miner killed) and
// crypto_miner_stratum_args (a renamed miner given a stratum URL: evidence, kill, summary).
func TestCryptoMiner(t *testing.T) {
	need(t, "sh")
	tok := testkit.Token(t)
	p := newNetpair(t, tok)
	seen := make(chan string, 64)
	poolIP := p.unique(t, tok) // the pool reached by name
	for _, ip := range []string{p.peer(9), poolIP, p.peer(11)} {
		go servePool(listen(t, p.b, ip+":3333"), seen)
	}
	domain := "t" + tok + ".supportxmr.com" // resolved only by our DNS server in B
	var dnsConn net.PacketConn
	if err := inNetns(p.b, func() error {
		var err error
		dnsConn, err = net.ListenPacket("udp", p.addrB+":53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsConn.Close() })
	go testkit.ServeDNS(dnsConn, domain, poolIP)
	d := startDaemon(t, p, daemonOpts{modes: map[string]string{"crypto_miner_binary": "enforce",
		"crypto_mining_pool_domain": "enforce", "crypto_miner_stratum_args": "enforce"}})
	// The miners' files live outside the temporary directories: what a jibril with the
	// dropper recipes enforced elsewhere on the host would kill at once is not this test's.
	dir, err := os.MkdirTemp(filepath.Dir(minerBin), "miners-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	install := func(name string) string {
		path := filepath.Join(dir, name)
		copyFile(t, minerBin, path, 0o755)
		return path
	}
	minerSum := sha256File(t, minerBin)
	logins := func() string {
		var got []string
		for {
			select {
			case m := <-seen:
				got = append(got, m)
			default:
				return strings.Join(got, ", ")
			}
		}
	}

	t.Run("binary named xmrig", func(t *testing.T) {
		const recipe = "crypto_miner_binary"
		xmrig := install("xmrig")
		a := startIn(t, p.a, xmrig, "-o", p.peer(9)+":3333", "-u", "wallet-"+tok, "-p", "x")
		contain := a.killed(t)
		e := d.waitEvent(t, recipe, ofPID(a.pid()))
		if testkit.Str(e, "process", "exe") != xmrig {
			t.Fatalf("detected process = %v", testkit.Field(e, "process"))
		}
		uuid := testkit.Str(e, "uuid")
		recordTime(t, "attack_crypto_miner_contain_ms", contain)
		// crypto_miner_binary ships in enforce: any other jibril on the host kills a process
		// named xmrig too, and may get there first. Then ours finds it gone.
		row := d.waitAuditRow(t, recipe, uuid, "KillCurrent")
		requireKill(t, row)
		if settled(row) {
			return // the count is the other actor's
		}
		d.waitLog(t, recipe, uuid, "Crypto miners stopped on this host so far: ")
		// Counted: at least this one (others on the host count too while the daemon runs).
		if n, err := strconv.Atoi(d.storeGet(t, recipe, "miners_terminated")); err != nil || n < 1 {
			t.Fatalf("miners_terminated = %d (%v), want at least 1", n, err)
		}
		t.Logf("pool saw before the kill: [%s]", logins())
	})

	t.Run("renamed miner reaching a pool domain", func(t *testing.T) {
		const recipe = "crypto_mining_pool_domain"
		if strings.Contains(d.log(), "no DNS sensor") {
			t.Skip("the DNS sensor is not attached on this machine (cgroup_skb): flows carry no names")
		}
		// Once the pool's name is known, whatever connects to its address from anywhere on the
		// host is a miner to this recipe, the test process included: the checks that traffic
		// flows, then no longer does, go the other way, from the pool's address to A.
		inbound := listen(t, p.a, p.addrA+":0")
		go acceptAll(inbound)
		if err := dialFrom(p.b, poolIP, inbound.Addr().String(), time.Second); err != nil {
			t.Fatalf("before the attack, %s cannot reach %s: %v", poolIP, p.a, err)
		}
		miner := install("kworkerds")
		cfg := filepath.Join(dir, "config.json")
		// The pause keeps the test off a race of the engine's: DNS answers and connections
		// reach it on separate streams, and a connection handled before the answer that named
		// its address carries no name, so no domain recipe can match it.
		b, _ := json.Marshal(map[string]string{"url": domain + ":3333", "user": "wallet-" + tok, "pass": "x",
			"dns": p.addrB + ":53", "proto": "stratum", "pause": "300ms"})
		if err := os.WriteFile(cfg, b, 0o600); err != nil {
			t.Fatal(err)
		}
		a := startIn(t, p.a, miner, "--config", cfg)
		a.killed(t)
		e := d.waitEvent(t, recipe, ofPID(a.pid()))
		if testkit.Str(e, "process", "exe") != miner || testkit.Str(e, "flow", "remote", "address") != poolIP {
			t.Fatalf("detected process %v flow %v", testkit.Field(e, "process"), testkit.Field(e, "flow"))
		}
		names := fmt.Sprint(testkit.Field(e, "flow", "remote", "names"), " ", testkit.Str(e, "flow", "remote", "name"))
		if !strings.Contains(names, domain) {
			t.Fatalf("flow.remote = %v, want the pool's name %s", testkit.Field(e, "flow", "remote"), domain)
		}
		uuid := testkit.Str(e, "uuid")
		// 1 is "already blocked": the connection may be reported more than once, and the
		// reactions of those events run in parallel.
		if row := d.waitAudit(t, recipe, uuid, "NetBlockDomain"); compact(t, row.Args) != `["`+domain+`"]` || (string(row.Result) != "0" && string(row.Result) != "1") {
			t.Fatalf("NetBlockDomain args %s result %s", row.Args, row.Result)
		}
		// 1 here too: the domain block has just put the address in the kernel, and the
		// timed block of the address is persisted on top of it.
		block := d.waitAudit(t, recipe, uuid, "NetBlockIpTimer")
		if compact(t, block.Args) != `["`+poolIP+`","86400"]` || (string(block.Result) != "0" && string(block.Result) != "1") {
			t.Fatalf("NetBlockIpTimer args %s result %s", block.Args, block.Result)
		}
		d.waitDone(t, a.pid(), "KillCurrent", recipe)
		if !nftBlocked(t, p, poolIP) {
			t.Fatalf("%s is not in the block4 set of %s", poolIP, p.a)
		}
		d.requireNetBlock(t, p, "ip", poolIP, recipe)
		if b := d.requireNetBlock(t, p, "domain", domain, recipe); !slices.Contains(b.Addresses, poolIP) {
			t.Fatalf("domain block %+v does not hold the pool's address %s", b, poolIP)
		}
		requireDroppedFrom(t, p, poolIP, inbound)
		// From the connection (the event's time stamp; the miner paused before it) to the
		// miner's death observed by wait, and to the block.
		conn, err := time.Parse(time.RFC3339Nano, testkit.Str(e, "timestamp"))
		if err != nil {
			t.Fatalf("event timestamp: %v", err)
		}
		recordTime(t, "attack_mining_pool_kill_ms", a.end.Sub(conn))
		recordTime(t, "attack_mining_pool_contain_ms", max(a.end.Sub(conn), block.at(t).Sub(conn)))
		t.Logf("pool saw before the kill: [%s]", logins())
	})

	t.Run("renamed miner given a stratum URL", func(t *testing.T) {
		const recipe = "crypto_miner_stratum_args"
		miner := install("kdevtmpfsi")
		url := "stratum+tcp://" + p.peer(11) + ":3333"
		// The URL reaches the miner through the environment of a launcher, so that only the
		// miner's own exec carries it (a wrapper's command line would be caught first).
		a := startEnv(t, p.a, []string{"MINER_ARGS=-o " + url + " -u wallet-" + tok + " -p x"}, "sh", "-c", `exec "$0" $MINER_ARGS`, miner)
		contain := a.killed(t)
		e := d.waitEvent(t, recipe, ofPID(a.pid()))
		if testkit.Str(e, "process", "exe") != miner {
			t.Fatalf("detected process = %v", testkit.Field(e, "process"))
		}
		uuid := testkit.Str(e, "uuid")
		ev := d.waitAudit(t, recipe, uuid, "CollectEvidence")
		bundle, m := d.evidence(t, ev)
		if int(m["pid"].(float64)) != a.pid() || m["exe_sha256"] != minerSum {
			t.Fatalf("evidence manifest pid %v exe_sha256 %v, want %d and %s", m["pid"], m["exe_sha256"], a.pid(), minerSum)
		}
		if _, err := os.Stat(filepath.Join(bundle, "cmdline")); err != nil {
			t.Fatalf("evidence bundle without the command line: %v", err)
		}
		kill := d.waitAuditRow(t, recipe, uuid, "KillCurrent")
		requireKill(t, kill)
		recordTime(t, "attack_miner_stratum_contain_ms", contain)
		d.waitAudit(t, recipe, uuid, "CreateTempDir")
		w := d.waitAudit(t, recipe, uuid, "WriteFile")
		var args []string
		if err := json.Unmarshal(w.Args, &args); err != nil || len(args) == 0 {
			t.Fatalf("WriteFile args %s", w.Args)
		}
		if !strings.HasPrefix(args[0], filepath.Join(d.state, "tmp", recipe)+"/stratum-") {
			t.Fatalf("summary written to %s, want the recipe's temp directory under %s", args[0], d.state)
		}
		b, err := os.ReadFile(args[0])
		if err != nil {
			t.Fatal(err)
		}
		var sum struct {
			Pid      int
			Exe      string
			Pool     string
			Evidence string
			Killed   bool
		}
		if err := json.Unmarshal(b, &sum); err != nil {
			t.Fatalf("summary %s: %v", b, err)
		}
		if sum.Pid != a.pid() || sum.Exe != miner || sum.Pool != url || sum.Evidence != bundle || sum.Killed != (kill.Outcome == "done") {
			t.Fatalf("summary = %s", b)
		}
		t.Logf("pool saw before the kill: [%s]", logins())
	})
}
