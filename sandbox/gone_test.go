package sandbox

import (
	"context"
	"strconv"
	"testing"

	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox/proc"
)

// A target that already exited is Jibril's "nothing to do" (1), not a refusal.
func TestKillOfAGoneProcessIsNothingToDo(t *testing.T) {
	// Above the kernel's largest possible pid_max (2^22): no process can ever have it, so the
	// live actuator below can never hit anything.
	const pid = 1<<22 + 7
	h := newHost(t)
	env, _ := newEnv(t, "jibril")
	env.Mode = policy.ModeEnforce
	env.World.Proc = proc.NewLive(proc.Floor{MinPID: 2})
	p := compile(t, h, `function process(d) { Info(String(KillCurrent()) + " " + Freeze()) }`, Limits{})
	ev := []byte(`{"process":{"pid":` + strconv.Itoa(pid) + `,"start":"2026-01-01T00:00:00Z"},"background":{"ancestry":[]}}`)
	tr := p.Run(context.Background(), env, "u", ev)
	if tr.Status != StatusOK {
		t.Fatalf("status %s %+v", tr.Status, tr.Error)
	}
	if len(tr.Logs) != 1 || tr.Logs[0].Msg != "1 1" {
		t.Fatalf("logs %q calls %+v, want KillCurrent and Freeze to answer 1", tr.Logs, tr.Calls)
	}
}
