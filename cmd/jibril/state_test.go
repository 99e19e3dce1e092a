package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/jibril-rt/jibril/sandbox/livenet"
	"github.com/jibril-rt/jibril/sandbox/liveworld"
	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/store"
)

// childEnv makes the test binary behave as the jibril command, so that a test can run the CLI
// inside a network namespace with `ip netns exec` without building it first.
const childEnv = "JIBRIL_CLI_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestStoreCommands(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state")
	s := []string{"--state-dir", state}
	steps := []struct {
		args   []string
		code   int
		out    string // exact stdout when code is 0
		errHas string
	}{
		{[]string{"store", "get", "ns1", "k"}, 2, "", "no database at " + filepath.Join(state, "jibril.db")},
		{[]string{"store", "set", "ns1", "k", "v1"}, 0, "", ""},
		{[]string{"store", "set", "ns1", "k2", "two\nlines"}, 0, "", ""},
		{[]string{"store", "set", "ns2", "x", "y"}, 0, "", ""},
		{[]string{"store", "get", "ns1", "k"}, 0, "v1\n", ""},
		{[]string{"store", "set", "ns1", "k", "v2"}, 0, "", ""},
		{[]string{"store", "get", "ns1", "k"}, 0, "v2\n", ""},
		{[]string{"store", "list"}, 0, "ns1\nns2\n", ""},
		{[]string{"store", "list", "ns1"}, 0, "k\tv2\nk2\t\"two\\nlines\"\n", ""},
		{[]string{"store", "list", "ns1", "--json"}, 0, "[\n  {\n    \"key\": \"k\",\n    \"value\": \"v2\"\n  },\n  {\n    \"key\": \"k2\",\n    \"value\": \"two\\nlines\"\n  }\n]\n", ""},
		{[]string{"store", "list", "nothing-here"}, 0, "", ""},
		{[]string{"store", "delete", "ns1", "k"}, 0, "", ""},
		{[]string{"store", "get", "ns1", "k"}, 1, "", "store get: ns1: no key k"},
		{[]string{"store", "delete", "ns1", "k"}, 1, "", "store delete: ns1: no key k"},
		{[]string{"store", "get", "ns1"}, 2, "", "want 2 argument(s)"},
		{[]string{"store", "set", "", "k", "v"}, 2, "", "namespace is empty"},
		{[]string{"store", "list", "a", "b"}, 2, "", "want 0 to 1 argument(s)"},
		{[]string{"store", "get", "ns1", "k", "--bogus"}, 2, "", "unknown flag: --bogus"},
	}
	for i, st := range steps {
		out, msg, code := run(t, "", append(st.args, s...)...)
		if code != st.code {
			t.Fatalf("step %d %v: exit %d (%q), want %d", i, st.args, code, msg, st.code)
		}
		if code == 0 && out != st.out {
			t.Fatalf("step %d %v: stdout %q, want %q", i, st.args, out, st.out)
		}
		if code != 0 && (!strings.Contains(msg, st.errHas) || strings.Contains(msg, "\n")) {
			t.Fatalf("step %d %v: error %q, want one line containing %q", i, st.args, msg, st.errHas)
		}
		if code == 2 && out != "" {
			t.Fatalf("step %d: bad input printed on stdout: %q", i, out)
		}
	}
	// Every change made by hand is in the audit trail.
	out, msg, code := run(t, "", "audit", "list", "--json", "--state-dir", state)
	if code != 0 {
		t.Fatalf("audit list: %d %s", code, msg)
	}
	var rows []auditJSON
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		t.Fatal(err)
	}
	var helpers []string
	for _, r := range rows {
		helpers = append(helpers, r.Helper)
	}
	if got := strings.Join(helpers, ","); got != "cli:store.set,cli:store.set,cli:store.set,cli:store.set,cli:store.delete" {
		t.Fatalf("audited %s", got)
	}
}

// auditState makes a state directory whose chain holds n rows written through the store.
func auditState(t *testing.T, n int) string {
	t.Helper()
	state := t.TempDir()
	st, err := store.Open(context.Background(), liveworld.DBPath(state))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := 1; i <= n; i++ {
		recipe := "r_even"
		if i%2 == 1 {
			recipe = "r_odd"
		}
		_, err := st.AppendAudit(context.Background(), store.AuditEntry{Recipe: recipe, Helper: "KillCurrent",
			Args: fmt.Sprintf(`["%d"]`, i), Result: "0", Outcome: "done", Mode: "enforce"})
		if err != nil {
			t.Fatal(err)
		}
	}
	return state
}

// tamper edits the database behind the store's back.
func tamper(t *testing.T, state string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite3", liveworld.DBPath(state))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

func TestAuditCommands(t *testing.T) {
	state := auditState(t, 5)
	out, msg, code := run(t, "", "audit", "verify", "--state-dir", state)
	if code != 0 || out != "audit chain intact: 5 rows\n" {
		t.Fatalf("verify of an intact chain: exit %d %q %q", code, out, msg)
	}
	out, _, code = run(t, "", "audit", "list", "--state-dir", state)
	if code != 0 || strings.Count(out, "\n") != 6 || !strings.Contains(out, "KillCurrent") || !strings.HasPrefix(out, "SEQ") {
		t.Fatalf("audit list: %d\n%s", code, out)
	}
	for _, c := range []struct {
		args []string
		seqs []int64
	}{
		{nil, []int64{1, 2, 3, 4, 5}},
		{[]string{"--limit", "2"}, []int64{4, 5}},
		{[]string{"--recipe", "r_odd"}, []int64{1, 3, 5}},
		{[]string{"--recipe", "r_odd", "--limit", "1"}, []int64{5}},
		{[]string{"--recipe", "nobody"}, nil},
	} {
		out, msg, code := run(t, "", append([]string{"audit", "list", "--json", "--state-dir", state}, c.args...)...)
		if code != 0 {
			t.Fatalf("audit list %v: %d %s", c.args, code, msg)
		}
		var rows []auditJSON
		if err := json.Unmarshal([]byte(out), &rows); err != nil {
			t.Fatalf("audit list %v: %v\n%s", c.args, err, out)
		}
		var seqs []int64
		for _, r := range rows {
			seqs = append(seqs, r.Seq)
		}
		if fmt.Sprint(seqs) != fmt.Sprint(c.seqs) {
			t.Fatalf("audit list %v: seqs %v, want %v", c.args, seqs, c.seqs)
		}
	}
	if _, msg, code := run(t, "", "audit", "list", "--limit", "-1", "--state-dir", state); code != 2 || !strings.Contains(msg, "--limit: -1 is negative") {
		t.Fatalf("negative limit: %d %q", code, msg)
	}

	cases := []struct {
		name  string
		stmts []string
		row   string
	}{
		{"edited", []string{`UPDATE audit SET args = '["9"]' WHERE seq = 3`}, "row 3"},
		{"edited outcome", []string{`UPDATE audit SET outcome = 'would' WHERE seq = 1`}, "row 1"},
		{"deleted", []string{`DELETE FROM audit WHERE seq = 2`}, "row 2"},
		{"newest deleted", []string{`DELETE FROM audit WHERE seq = 5`}, "row 5"},
		{"reordered", []string{
			`UPDATE audit SET seq = 100 WHERE seq = 2`, `UPDATE audit SET seq = 2 WHERE seq = 3`, `UPDATE audit SET seq = 3 WHERE seq = 100`,
		}, "row 2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			state := auditState(t, 5)
			tamper(t, state, c.stmts...)
			out, msg, code := run(t, "", "audit", "verify", "--state-dir", state)
			if code != 1 || out != "" || !strings.Contains(msg, "audit chain broken at "+c.row+":") {
				t.Fatalf("exit %d, stdout %q, error %q; want 1 naming %s", code, out, msg, c.row)
			}
		})
	}
}

func needNetns(t *testing.T) {
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

// cliIn runs the CLI (this test binary in child mode) inside network namespace ns.
func cliIn(t *testing.T, ns string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, os.Args[0]}, args...)...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), errb.String(), 0
	case errors.As(err, &ee):
		return out.String(), errb.String(), ee.ExitCode()
	}
	t.Fatalf("run CLI in %s: %v", ns, err)
	return "", "", -1
}

func nftSet(t *testing.T, ns, set string) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "set", "inet", netblock.TableName, set).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list set %s: %v\n%s", set, err, out)
	}
	return string(out)
}

func TestNetCommands(t *testing.T) {
	needNetns(t)
	ns := fmt.Sprintf("jctest-%08x", rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("remove namespace %s: %v\n%s", ns, err, out)
		}
	})
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()

	// The daemon's side: blocks made through the live actuator in the namespace.
	state := t.TempDir()
	st, err := store.Open(ctx, liveworld.DBPath(state))
	if err != nil {
		t.Fatal(err)
	}
	nw, err := livenet.Open(ctx, st, livenet.Options{Netblock: netblock.Options{NetNSFd: int(f.Fd())}})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []struct {
		p   string
		ttl time.Duration
	}{{"198.19.20.1/32", 0}, {"198.19.21.0/24", time.Hour}, {"2001:2::20/128", 0}, {"198.19.22.0/24", 0}} {
		if ret, err := nw.BlockPrefix(ctx, netip.MustParsePrefix(b.p), b.ttl, "daemon_recipe"); ret != 0 || err != nil {
			t.Fatalf("BlockPrefix(%s): %d %v", b.p, ret, err)
		}
	}
	if err := nw.ObserveDNS(ctx, "evil.example", []netip.Addr{netip.MustParseAddr("198.19.20.5")}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ret, err := nw.BlockDomain(ctx, "evil.example", "daemon_recipe"); ret != 0 || err != nil {
		t.Fatalf("BlockDomain: %d %v", ret, err)
	}
	nw.Close()
	st.Close()
	// Someone flushed one element: the listing must show the difference.
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "delete", "element", "inet", netblock.TableName, netblock.SetCIDR4, "{ 198.19.22.0/24 }").CombinedOutput(); err != nil {
		t.Fatalf("nft delete element: %v\n%s", err, out)
	}

	s := []string{"--state-dir", state}
	out, errs, code := cliIn(t, ns, append([]string{"net", "list", "--json"}, s...)...)
	if code != 0 {
		t.Fatalf("net list --json: exit %d: %s", code, errs)
	}
	var doc netListJSON
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("net list --json: %v\n%s", err, out)
	}
	byValue := map[string]blockJSON{}
	for _, b := range doc.Blocks {
		byValue[b.Value] = b
	}
	if len(doc.Blocks) != 5 {
		t.Fatalf("%d blocks listed, want 5: %s", len(doc.Blocks), out)
	}
	if b := byValue["198.19.20.1"]; b.InKernel == nil || !*b.InKernel || *b.KernelTTL != 0 || b.Expires != "" || b.Recipe != "daemon_recipe" {
		t.Fatalf("permanent block listed as %+v", b)
	}
	if b := byValue["198.19.21.0/24"]; b.InKernel == nil || !*b.InKernel || *b.KernelTTL <= 0 || b.Expires == "" {
		t.Fatalf("timed CIDR listed as %+v", b)
	}
	if b := byValue["198.19.22.0/24"]; b.InKernel == nil || *b.InKernel {
		t.Fatalf("flushed CIDR listed as %+v, want in_nftables false", b)
	}
	if b := byValue["evil.example"]; b.Kind != "domain" || fmt.Sprint(b.Addresses) != "[198.19.20.5]" {
		t.Fatalf("domain listed as %+v", b)
	}
	if len(doc.NFTables) != 4 || doc.NFTablesError != "" {
		t.Fatalf("nftables elements %+v (error %q), want 4", doc.NFTables, doc.NFTablesError)
	}
	out, _, code = cliIn(t, ns, append([]string{"net", "list"}, s...)...)
	if code != 0 || !strings.Contains(out, "MISSING") || !strings.Contains(out, "1 address(es) 198.19.20.5") || !strings.Contains(out, "4 element(s)") {
		t.Fatalf("net list: exit %d\n%s", code, out)
	}

	steps := []struct {
		target string
		code   int
		has    string // in stdout (0) or stderr
	}{
		{"198.19.20.1", 0, "unblocked 198.19.20.1/32"},
		{"198.19.20.1", 1, "198.19.20.1/32 was not blocked"},
		{"198.19.21.0/24", 0, "unblocked 198.19.21.0/24"},
		{"2001:2::20", 0, "unblocked 2001:2::20/128"},
		{"Evil.Example.", 0, "unblocked evil.example"},
		{"evil.example", 1, "evil.example was not blocked"},
		{"300.1.1.1", 2, `"300.1.1.1" is not an IP address or a CIDR`},
		{"198.19.0.0/33", 2, "is not an IP address or a CIDR"},
		{"bad_domain!", 2, "is not an IP address, a CIDR or a domain"},
		{"localhost", 2, "a single label is not blockable"},
	}
	for _, c := range steps {
		out, errs, code := cliIn(t, ns, append([]string{"net", "unblock", c.target}, s...)...)
		where := out
		if code != 0 {
			where = errs
		}
		if code != c.code || !strings.Contains(where, c.has) {
			t.Fatalf("net unblock %s: exit %d, stdout %q, stderr %q; want %d with %q", c.target, code, out, errs, c.code, c.has)
		}
		if code == 2 && (out != "" || strings.Count(errs, "\n") != 1) {
			t.Fatalf("net unblock %s: bad input must be one line on stderr: %q %q", c.target, out, errs)
		}
	}
	for set, gone := range map[string][]string{
		netblock.SetBlock4: {"198.19.20.1", "198.19.20.5"},
		netblock.SetCIDR4:  {"198.19.21.0/24"},
		netblock.SetBlock6: {"2001:2::20"},
	} {
		got := nftSet(t, ns, set)
		for _, g := range gone {
			if strings.Contains(got, g) {
				t.Fatalf("%s still in set %s after net unblock:\n%s", g, set, got)
			}
		}
	}
	st, err = store.Open(ctx, liveworld.DBPath(state))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rows, err := st.ActiveBlocks(ctx, time.Now())
	if err != nil || len(rows) != 1 || rows[0].Value != "198.19.22.0/24" {
		t.Fatalf("persisted after unblocks: %+v %v; want only 198.19.22.0/24", rows, err)
	}
	rep, err := st.VerifyAudit(ctx)
	if err != nil || !rep.OK || rep.Rows != 4 {
		t.Fatalf("audit after unblocks: %+v %v; want 4 intact rows", rep, err)
	}
}

// TestSandboxExecLive runs `sandbox exec --live` in a namespace: its blocks are real, persisted in
// the live database, and visible to `net list`.
func TestSandboxExecLive(t *testing.T) {
	needNetns(t)
	ns := fmt.Sprintf("jctest-%08x", rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Errorf("remove namespace %s: %v\n%s", ns, err, out)
		}
	})
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	code := write(t, dir, "block.js", `function process(d) {
  Info("ip=" + NetBlockIpTimer("198.19.30.1", 600));
  Info("cidr=" + NetBlockCidr("198.19.31.0/24"));
  Info("loop=" + NetBlockIp("127.0.0.1"));
}`)
	event := write(t, dir, "event.json", `{"uuid":"e-live","process":{"pid":999999,"ppid":999998}}`)
	out, errs, rc := cliIn(t, ns, "sandbox", "exec", "--live", "--default-policy", "jibril", "--timeout", "5s",
		"--code", code, "--event", event, "--state-dir", state)
	if rc != 0 {
		t.Fatalf("sandbox exec --live: exit %d\n%s\n%s", rc, out, errs)
	}
	for _, want := range []string{`"mode": "enforce"`, `"msg": "ip=0"`, `"msg": "cidr=0"`, `"msg": "loop=-1"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("transcript lacks %s:\n%s", want, out)
		}
	}
	if got := nftSet(t, ns, netblock.SetBlock4); !strings.Contains(got, "198.19.30.1 timeout 10m") {
		t.Fatalf("block4 after a live run:\n%s", got)
	}
	if got := nftSet(t, ns, netblock.SetCIDR4); !strings.Contains(got, "198.19.31.0/24") {
		t.Fatalf("cidr4 after a live run:\n%s", got)
	}
	out, errs, rc = cliIn(t, ns, "net", "list", "--json", "--state-dir", state)
	if rc != 0 || !strings.Contains(out, `"value": "198.19.30.1"`) || !strings.Contains(out, `"recipe": "sandbox"`) {
		t.Fatalf("net list after a live run: exit %d\n%s\n%s", rc, out, errs)
	}
	out, errs, rc = cliIn(t, ns, "audit", "verify", "--state-dir", state)
	if rc != 0 || out != "audit chain intact: 3 rows\n" {
		t.Fatalf("audit verify after a live run: exit %d %q %q", rc, out, errs)
	}
}
