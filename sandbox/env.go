package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/store"
)

// Clock is the time a reaction sees.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock.
type SystemClock struct{}

// Now returns the current time.
func (SystemClock) Now() time.Time { return time.Now() }

// FixedClock always answers the same instant (deterministic tests).
type FixedClock time.Time

// Now returns the fixed instant.
func (c FixedClock) Now() time.Time { return time.Time(c) }

// Auditor keeps the tamper-evident trail of effects, denials and refusals.
type Auditor interface {
	AppendAudit(ctx context.Context, e store.AuditEntry) (store.AuditEntry, error)
}

// Env is what a recipe's reactions run against: its policy, the effective mode, the world the
// helpers act on, and the sources of time and randomness. One Env serves many invocations.
type Env struct {
	Policy     *policy.Policy
	Mode       policy.Mode // effective mode; "" = the policy's
	World      World
	Clock      Clock
	Seed       *uint64 // Math.random seed per invocation; nil = from the OS
	Audit      Auditor // nil = no audit trail
	Breaker    *policy.Breaker
	AllowPower bool // the daemon's allow_power
	Log        *slog.Logger
	// Answer, when set, answers a helper call in place of the helper (deterministic tests:
	// what a helper returns in the test's world). It is consulted only after the capability
	// check, so a denied helper stays denied; answered=false lets the helper run.
	Answer func(helper string, args []string) (result any, answered bool, err error)
}

func (e *Env) mode() policy.Mode {
	if e.Mode != "" {
		return e.Mode
	}
	if e.Policy != nil && e.Policy.Mode != "" {
		return e.Policy.Mode
	}
	return policy.ModeEnforce
}

func (e *Env) answer(helper string, args []string) (any, bool, error) {
	if e.Answer == nil {
		return nil, false, nil
	}
	return e.Answer(helper, args)
}

func (e *Env) clock() Clock {
	if e.Clock == nil {
		return SystemClock{}
	}
	return e.Clock
}

func (e *Env) logger() *slog.Logger {
	if e.Log != nil {
		return e.Log
	}
	return slog.New(slog.DiscardHandler)
}

// invocation is the state of one process(data) call.
type invocation struct {
	ctx        context.Context
	env        *Env
	p          *Program
	t          *Transcript
	uuid       string
	event      []byte
	ev         *Targets
	secs       sections
	evErr      error
	errno      string
	calls      int
	overBudget bool
	rnd        *rand.Rand
}

func newInvocation(ctx context.Context, env *Env, p *Program, t *Transcript, uuid string, event []byte) *invocation {
	inv := &invocation{ctx: ctx, env: env, p: p, t: t, uuid: uuid, event: event}
	if env.Seed != nil {
		inv.rnd = rand.New(rand.NewPCG(*env.Seed, *env.Seed^0x9e3779b97f4a7c15))
	} else {
		inv.rnd = newRand()
	}
	return inv
}

// Targets is what the helpers need from an event to pick what they act on. It comes from the
// host's copy of the event, never from the reaction's (which the reaction may have changed).
type Targets struct {
	PID         int
	PPID        int
	Ancestry    []int    // pids, oldest first
	RemoteAddrs []string // flow.remote.address, then the remotes of background.flows
	RemoteNames []string // flow.remote.name and flow.remote.names
	// PIDPin and PPIDPin are pidfds of the process and its parent taken when the event was
	// seen (nil when not taken): kills and freezes of PID and PPID go through them, so a pid
	// recycled since the event is never hit. Their owner closes them.
	PIDPin, PPIDPin *os.File
}

// eventView is the JSON shape TargetsFromJSON reads.
type eventView struct {
	Process struct {
		PID  int `json:"pid"`
		PPID int `json:"ppid"`
	} `json:"process"`
	Flow struct {
		Remote struct {
			Address string   `json:"address"`
			Name    string   `json:"name"`
			Names   []string `json:"names"`
		} `json:"remote"`
	} `json:"flow"`
	Background struct {
		Ancestry []struct {
			PID int `json:"pid"`
		} `json:"ancestry"`
		Flows struct {
			Protocols []struct {
				Pairs []struct {
					Nodes struct {
						Remote struct {
							Address string `json:"address"`
						} `json:"remote"`
					} `json:"nodes"`
				} `json:"pairs"`
			} `json:"protocols"`
		} `json:"flows"`
	} `json:"background"`
}

// TargetsFromJSON reads the targets of an event given as JSON (sandbox exec, tests). The daemon
// builds Targets from its own event structure instead of decoding JSON a second time.
func TargetsFromJSON(event []byte) (*Targets, error) {
	var v eventView
	if err := json.Unmarshal(event, &v); err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	t := &Targets{PID: v.Process.PID, PPID: v.Process.PPID}
	for _, a := range v.Background.Ancestry {
		t.Ancestry = append(t.Ancestry, a.PID)
	}
	if r := v.Flow.Remote; r.Address != "" {
		t.RemoteAddrs = append(t.RemoteAddrs, r.Address)
	}
	for _, pr := range v.Background.Flows.Protocols {
		for _, pair := range pr.Pairs {
			if a := pair.Nodes.Remote.Address; a != "" {
				t.RemoteAddrs = append(t.RemoteAddrs, a)
			}
		}
	}
	if n := v.Flow.Remote.Name; n != "" {
		t.RemoteNames = append(t.RemoteNames, n)
	}
	t.RemoteNames = append(t.RemoteNames, v.Flow.Remote.Names...)
	return t, nil
}

// view returns the event's targets, decoding the JSON on first use when the caller gave none.
func (inv *invocation) view() (*Targets, error) {
	if inv.ev == nil && inv.evErr == nil {
		inv.ev, inv.evErr = TargetsFromJSON(inv.event)
	}
	return inv.ev, inv.evErr
}

// audit writes one row; a failing audit is logged, never silently dropped.
func (inv *invocation) audit(helper string, args []string, result any, errno, outcome string) {
	if inv.env.Audit == nil {
		return
	}
	a, _ := json.Marshal(args)
	r, _ := json.Marshal(result)
	_, err := inv.env.Audit.AppendAudit(inv.ctx, store.AuditEntry{
		Time: time.Now().UTC(), Recipe: inv.p.r.Recipe, Reaction: inv.p.r.Index, EventUUID: inv.uuid,
		Helper: helper, Args: string(a), Result: string(r), Errno: errno, Outcome: outcome,
		Mode: string(inv.env.mode()),
	})
	if err != nil {
		inv.env.logger().Error("audit write failed", "recipe", inv.p.r.Recipe, "helper", helper, "err", err)
	}
}
