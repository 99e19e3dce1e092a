package attack

import (
	"encoding/json"
	"github.com/jibril-rt/jibril/tests/testkit"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// acceptAll accepts connections and closes them after reading what the client sends.
func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}()
	}
}

// TestPortScan: nmap, masscan and hping3 scan a target in namespace B from namespace A.
// network_scanner_execution (enforce) answers per uid: the first two scans within an hour are
// only warned about, every later one is killed. The scans run as an unprivileged user of this
// run's own (with the raw-socket capabilities only), so that scans elsewhere on the host, by
// root or anyone else, do not count towards its strikes.
func TestPortScan(t *testing.T) {
	need(t, "nmap", "masscan", "hping3", "setpriv")
	const recipe = "network_scanner_execution"
	tok := testkit.Token(t)
	p := newNetpair(t, tok)
	n, _ := strconv.ParseUint(tok, 16, 32)
	uid := strconv.Itoa(40000 + int(n%20000))
	asUser := func(argv ...string) []string {
		return append([]string{"setpriv", "--reuid=" + uid, "--regid=" + uid, "--clear-groups",
			"--inh-caps=+net_raw,+net_admin", "--ambient-caps=+net_raw,+net_admin"}, argv...)
	}
	target := p.peer(9)
	go acceptAll(listen(t, p.b, target+":8080")) // the open port the scanners find
	mac := p.macB(t)
	d := startDaemon(t, p, daemonOpts{modes: map[string]string{recipe: "enforce"}})

	detect := func(a *attack, exe string) map[string]any {
		t.Helper()
		e := d.waitEvent(t, recipe, ofPID(a.pid()))
		if testkit.Str(e, "process", "exe") != exe || testkit.Str(e, "event_type") != "execution" || strconv.Itoa(testkit.Num(e, "process", "uid")) != uid {
			t.Fatalf("%s detected as %v", a.name, testkit.Field(e, "process"))
		}
		return e
	}

	// Strike 1: an nmap connect scan of three ports is warned about and runs to its end.
	nmap1 := startIn(t, p.a, asUser("nmap", "-n", "-Pn", "-sT", "-p", "22,80,8080", target)...)
	e1 := detect(nmap1, "/usr/bin/nmap")
	d.waitLog(t, recipe, testkit.Str(e1, "uuid"), "strike 1 of 3 within 1h, warning only")
	if err := nmap1.exited(t, 30*time.Second); err != nil {
		t.Fatalf("strike 1 (nmap) ended with %v, want a normal exit: it must only be warned about\n%s", err, nmap1.out)
	}
	if !strings.Contains(nmap1.out.String(), "8080/tcp open") {
		t.Fatalf("nmap did not find the open port:\n%s", nmap1.out)
	}

	// Strike 2: a masscan SYN scan (its own TCP stack on a raw socket) is warned about too.
	// masscan lingers ~5 s for late answers: let it finish while the next strikes run.
	masscanArgs := func(ports, rate string) []string {
		return asUser("masscan", target, "-p"+ports, "--rate", rate, "--wait", "0", "--interface", p.va, "--router-mac", mac)
	}
	mass1 := startIn(t, p.a, masscanArgs("80,8080", "1000")...)
	e2 := detect(mass1, "/usr/bin/masscan")
	d.waitLog(t, recipe, testkit.Str(e2, "uuid"), "strike 2 of 3 within 1h, warning only")

	// Strikes 3 to 5: scans that would run for minutes are killed right after their exec.
	killedStrikes := map[string]bool{}
	long := []struct {
		key  string
		exe  string
		argv []string
	}{
		{"attack_port_scan_contain_ms", "/usr/bin/nmap", asUser("nmap", "-n", "-Pn", "-sT", "-p", "1-65535", "--max-rate", "100", target)},
		{"attack_port_scan_masscan_contain_ms", "/usr/bin/masscan", masscanArgs("1-65535", "100")},
		{"attack_port_scan_hping3_contain_ms", "/usr/sbin/hping3", asUser("hping3", "-S", "-p", "++1", "-i", "u100000", target)},
	}
	for i, l := range long {
		a := startIn(t, p.a, l.argv...)
		contain := a.killed(t)
		e := detect(a, l.exe)
		uuid := testkit.Str(e, "uuid")
		killedStrikes[uuid] = true
		requireKill(t, d.waitAuditRow(t, recipe, uuid, "KillCurrent"))
		d.waitLog(t, recipe, uuid, "strike "+strconv.Itoa(i+3)+" for uid "+uid, "exited (strike "+strconv.Itoa(i+3)+")", "Could not kill")
		if s := a.survivors(t); len(s) > 0 {
			t.Fatalf("strike %d: processes of %s survived: %v", i+3, l.exe, s)
		}
		recordTime(t, l.key, contain)
	}

	if err := mass1.exited(t, 20*time.Second); err != nil {
		t.Fatalf("strike 2 (masscan) ended with %v, want a normal exit\n%s", err, mass1.out)
	}
	if !strings.Contains(mass1.out.String(), "Discovered open port 8080/tcp on "+target) {
		t.Fatalf("masscan did not find the open port:\n%s", mass1.out)
	}

	// The first two strikes were never acted on: no KillCurrent in the audit trail for them,
	// one for each later strike. (Rows of other uids' scans elsewhere on the host may be there.)
	out, err := d.cli(t, "audit", "list", "--json", "--recipe", recipe)
	if err != nil {
		t.Fatal(err)
	}
	var rows []auditRow
	if err := json.Unmarshal(out, &rows); err != nil {
		t.Fatal(err)
	}
	kills := 0
	for _, r := range rows {
		if r.EventUUID == testkit.Str(e1, "uuid") || r.EventUUID == testkit.Str(e2, "uuid") {
			t.Fatalf("a warned strike was acted on: %+v", r)
		}
		if r.Helper == "KillCurrent" && killedStrikes[r.EventUUID] {
			kills++
		}
	}
	if kills != 3 {
		t.Fatalf("%d KillCurrent rows for strikes 3 to 5, want 3", kills)
	}
	var strikes struct{ N int }
	if err := json.Unmarshal([]byte(d.storeGet(t, recipe, "strikes:uid:"+uid)), &strikes); err != nil || strikes.N != 5 {
		t.Fatalf("strikes:uid:%s = %+v (%v), want n = 5", uid, strikes, err)
	}
}
