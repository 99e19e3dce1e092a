package confine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/sandbox/proc"
)

// daemonChild does what `jibril run` does after start-up, confined to DaemonCaps: it
// proves the kept set is enough (and the dropped capabilities are not needed).
//
// Protocol: the child prints a result line per step and waits for a line on stdin
// between steps, during which the parent checks the effects from outside.
func daemonChild() int {
	s, err := readSpec()
	if err != nil {
		emit(result{Err: "spec: " + err.Error()})
		return 1
	}
	fail := func(step string, err error) int {
		emit(result{Step: step, Err: err.Error()})
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Start-up, with every capability.
	sensors, err := bpf.Open(ctx, bpf.Config{Sensors: bpf.SensorProc | bpf.SensorDNS})
	if err != nil {
		return fail("open sensors", err)
	}
	defer sensors.Close()
	var mu sync.Mutex
	execs := map[string]bool{}
	go func() {
		for e := range sensors.Exec() {
			mu.Lock()
			execs[e.Filename] = true
			mu.Unlock()
		}
	}()
	nb, err := netblock.Open(ctx, netblock.Options{NetNSFd: -1})
	if err != nil {
		return fail("open nftables", err)
	}
	defer nb.Close()
	denier, err := bpf.NewDenier(bpf.DenierConfig{})
	if err != nil {
		return fail("fanotify", err)
	}
	defer denier.Close()

	rep, err := Apply(Options{Keep: DaemonKeep(), StateDir: s.StateDir, Landlock: s.Landlock})
	if err != nil {
		return fail("apply", err)
	}

	// Step 1: arm everything the daemon arms at runtime (a reload).
	p := map[string]string{}
	p["kill_on_exec"] = errName(sensors.KillOnExec(s.KillExe))
	p["deny_mark"] = errName(denier.Mark(s.DenyExe))
	p["ignore_process"] = errName(sensors.IgnoreProcess(uint32(os.Getpid())))
	_, err = sensors.KillOnExecSet()
	p["map_lookup"] = errName(err)
	addr := netip.MustParsePrefix(s.Block + "/32")
	_, err = nb.Block(ctx, addr, time.Hour)
	p["nft_block"] = errName(err)
	ok, err := nb.Present(ctx)
	if err == nil && !ok {
		err = errors.New("table not present")
	}
	p["nft_present"] = errName(err)
	// min_pid 2: pids wrap, the other user's process may have a low one.
	_, err = proc.NewLive(proc.Floor{MinPID: 2}).Kill(ctx, proc.Target{PID: s.OtherPID})
	p["pidfd_kill_other_user"] = errName(err)
	var ids []int
	links, err := sensors.CheckLinks()
	if err != nil {
		return fail("check links", err)
	}
	for _, l := range links {
		if !l.Attached {
			return fail("check links", fmt.Errorf("%s", l))
		}
		if strings.HasPrefix(l.Hook, "cgroup") {
			ids = append(ids, int(l.ID))
		}
	}
	emit(result{Step: "armed", Report: rep, Probes: p, Links: ids})

	in := bufio.NewScanner(os.Stdin)
	if !in.Scan() {
		return 1
	}
	// Step 2: the parent ran the targets and detached our cgroup link; repair, disarm.
	p = map[string]string{}
	fixed, err := sensors.Reattach()
	p["reattach"] = errName(err)
	if err == nil && len(fixed) != len(ids) {
		p["reattach"] = fmt.Sprintf("re-attached %d of %d", len(fixed), len(ids))
	}
	links, err = sensors.CheckLinks()
	p["links_after"] = errName(err)
	for _, l := range links {
		if !l.Attached {
			p["links_after"] = l.String()
		}
	}
	p["forget_kill"] = errName(sensors.ForgetKillOnExec(s.KillExe))
	p["deny_unmark"] = errName(denier.Unmark(s.DenyExe))
	_, err = nb.Unblock(ctx, addr)
	p["nft_unblock"] = errName(err)
	// A second table handle dials again, as netblock does after a desync: no setns.
	nb2, err := netblock.Open(ctx, netblock.Options{NetNSFd: -1})
	if err == nil {
		_, err = nb2.Present(ctx)
		nb2.Close()
	}
	p["nft_redial"] = errName(err)
	deadline := time.Now().Add(5 * time.Second)
	p["exec_event"] = "no event"
	for time.Now().Before(deadline) {
		mu.Lock()
		seen := execs[s.ProbeExe]
		mu.Unlock()
		if seen {
			p["exec_event"] = "ok"
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	emit(result{Step: "disarmed", Probes: p})
	if !in.Scan() {
		return 1
	}
	return 0
}

func newNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("jconf-%08x", rand.Uint32())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	return name
}

// TestDaemonOperations runs the daemon's post-start operations in a child confined to
// DaemonCaps (in a network namespace of its own) and checks their effects from outside.
func TestDaemonOperations(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"ip", "nsenter", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("needs kernel BTF")
	}
	for _, ll := range []LandlockMode{LandlockAuto, LandlockOff} {
		t.Run("landlock "+string(ll), func(t *testing.T) {
			if ll != LandlockOff && LandlockABI() == 0 {
				t.Skip("the kernel has no Landlock")
			}
			ns := newNetns(t)
			state, bin := t.TempDir(), t.TempDir()
			other, _ := otherUser(t, bin)
			s := spec{Landlock: ll, StateDir: state, OtherPID: other.Process.Pid, Block: "198.18.77.7",
				KillExe: filepath.Join(bin, "jconf-kill"), DenyExe: filepath.Join(bin, "jconf-deny"), ProbeExe: filepath.Join(bin, "jconf-probe")}
			for _, p := range []string{s.KillExe, s.DenyExe, s.ProbeExe} {
				copyFile(t, "/bin/true", p)
			}
			cmd, in, sc, stderr := startChild(t, "daemon", s, "nsenter", "--net=/run/netns/"+ns)
			r := readResult(t, sc, stderr)
			if r.Step != "armed" {
				t.Fatalf("step %q", r.Step)
			}
			keep := MaskOf(DaemonKeep()...)
			if r.Report.Kept != keep || r.Report.Bounding != ownStatus(t).Bnd&keep || !r.Report.NoNewPrivs {
				t.Errorf("report %+v, want kept and bounding %s", r.Report, keep)
			}
			for _, probe := range []string{"kill_on_exec", "deny_mark", "ignore_process", "map_lookup", "nft_block", "nft_present", "pidfd_kill_other_user"} {
				if r.Probes[probe] != "ok" {
					t.Errorf("%s: %s", probe, r.Probes[probe])
				}
			}
			// The effects, seen from outside the confined child.
			if got := errName(exec.Command(s.KillExe).Run()); got != "signal SIGKILL" {
				t.Errorf("kill-on-exec target: %s, want SIGKILL", got)
			}
			if got := errName(exec.Command(s.DenyExe).Run()); got != "EPERM" {
				t.Errorf("denied target: %s, want EPERM", got)
			}
			out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", netblock.TableName).CombinedOutput()
			if err != nil || !strings.Contains(string(out), s.Block) {
				t.Errorf("nft table lacks %s: %v\n%s", s.Block, err, out)
			}
			if got := waitExit(other); got != "signal SIGKILL" {
				t.Errorf("the other user's process: %s, want killed by the confined child", got)
			}
			detached := 0
			if _, err := exec.LookPath("bpftool"); err == nil {
				for _, id := range r.Links {
					if out, err := exec.Command("bpftool", "link", "detach", "id", itoa(id)).CombinedOutput(); err != nil {
						t.Errorf("bpftool link detach %d: %v %s", id, err, out)
					} else {
						detached++
					}
				}
			}
			if err := exec.Command(s.ProbeExe).Run(); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintln(in, "next")
			r = readResult(t, sc, stderr)
			if r.Step != "disarmed" {
				t.Fatalf("step %q", r.Step)
			}
			for _, probe := range []string{"reattach", "links_after", "forget_kill", "deny_unmark", "nft_unblock", "nft_redial", "exec_event"} {
				if r.Probes[probe] != "ok" {
					t.Errorf("%s: %s", probe, r.Probes[probe])
				}
			}
			for _, p := range []string{s.KillExe, s.DenyExe} {
				if err := exec.Command(p).Run(); err != nil {
					t.Errorf("%s after disarming: %v", filepath.Base(p), err)
				}
			}
			out, _ = exec.Command("ip", "netns", "exec", ns, "nft", "list", "table", "inet", netblock.TableName).CombinedOutput()
			if strings.Contains(string(out), s.Block) {
				t.Errorf("nft still blocks %s:\n%s", s.Block, out)
			}
			fmt.Fprintln(in, "bye")
			if got := waitExit(cmd); got != "ok" {
				t.Errorf("child: %s\n%s", got, stderr)
			}
			t.Logf("confined to %s: %d cgroup link(s) detached and re-attached", MaskOf(DaemonKeep()...), detached)
		})
	}
}
