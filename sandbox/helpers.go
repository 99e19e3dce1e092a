package sandbox

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	qjs "github.com/jibril-rt/jibril/quickjs-wasm"
	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox/fsguard"
	"github.com/jibril-rt/jibril/sandbox/netblock"
	"github.com/jibril-rt/jibril/sandbox/proc"
)

// ret says how a helper's Go result is handed back to JS, and what a failure returns.
type ret int

const (
	retNone   ret = iota // undefined
	retInt               // 0 / 1 / -1
	retString            // "" on failure
	retBool              // false on failure
	retJSON              // parsed by the wrapper; null on failure
)

// helper is one function a reaction can call. cap is checked before fn runs; fn may refuse
// further (a kill scope, a path outside the grant) through inv.deny.
type helper struct {
	name string
	cap  string // "" = always allowed
	ret  ret
	fn   func(inv *invocation, args []string) (any, error)
}

// errDenied marks a refusal by policy; errRefused a refusal by the safety floor or the breaker.
type denial struct {
	msg     string
	outcome string // "denied" | "refused" | "disarmed"
}

func (d *denial) Error() string { return d.msg }

func (inv *invocation) deny(capability string) error {
	src := "default"
	if inv.env.Policy != nil {
		src = inv.env.Policy.Source
	}
	return &denial{msg: fmt.Sprintf("capability denied: %s (%s)", capability, src), outcome: "denied"}
}

func refuse(format string, a ...any) error {
	return &denial{msg: fmt.Sprintf(format, a...), outcome: "refused"}
}

// effects are the helpers whose calls change the system; they are audited.
var effects = map[string]bool{
	"KillCurrent": true, "KillParent": true, "KillProcess": true, "KillTree": true,
	"Freeze": true, "Thaw": true, "NetBlockIp": true, "NetUnblockIp": true, "NetBlockIpTimer": true,
	"NetBlockDomain": true, "NetUnblockDomain": true, "NetBlockCidr": true, "WriteFile": true,
	"RemoveDir": true, "CreateTempDir": true, "CollectEvidence": true, "PowerOff": true, "Panic": true,
}

// helpers lists the reaction API (SPEC §4). Order is the order of the native functions.
func helpers() []helper {
	return []helper{
		{"Info", "", retNone, logAt("info")},
		{"Warn", "", retNone, logAt("warn")},
		{"Error", "", retNone, logAt("error")},
		{"Errno", "", retString, func(inv *invocation, _ []string) (any, error) { return inv.errno, nil }},
		{"Alert", "", retInt, hAlert},
		{"KillCurrent", policy.CapProcessKill, retInt, hKill("current")},
		{"KillParent", policy.CapProcessKill, retInt, hKill("parent")},
		{"KillProcess", policy.CapProcessKill, retInt, hKill("pid")},
		{"KillTree", policy.CapProcessKill, retInt, hKill("tree")},
		{"Freeze", policy.CapProcessFreeze, retInt, hFreeze(false)},
		{"Thaw", policy.CapProcessFreeze, retInt, hFreeze(true)},
		{"NetBlockIp", policy.CapNetBlockIP, retInt, hBlockIP(false)},
		{"NetBlockIpTimer", policy.CapNetBlockIP, retInt, hBlockIP(true)},
		{"NetBlockCidr", policy.CapNetBlockIP, retInt, hBlockCidr},
		{"NetUnblockIp", policy.CapNetBlockIP, retInt, hUnblockIP},
		{"NetBlockDomain", policy.CapNetBlockDomain, retInt, hBlockDomain},
		{"NetUnblockDomain", policy.CapNetBlockDomain, retInt, hUnblockDomain},
		{"ReadFile", policy.CapFSRead, retString, hReadFile},
		{"WriteFile", policy.CapFSWrite, retInt, hWriteFile},
		{"Stat", policy.CapFSRead, retJSON, hStat},
		{"HashFile", policy.CapFSRead, retString, hHashFile},
		{"CreateTempDir", policy.CapTempdir, retString, hCreateTempDir},
		{"RemoveDir", policy.CapTempdir, retInt, hRemoveDir},
		{"CollectEvidence", policy.CapEvidence, retString, hEvidence},
		{"DataSet", policy.CapStore, retInt, hDataSet},
		{"DataGet", policy.CapStore, retString, hDataGet},
		{"DataDelete", policy.CapStore, retInt, hDataDelete},
		{"DataKeys", policy.CapStore, retString, hDataList(true)},
		{"DataValues", policy.CapStore, retString, hDataList(false)},
		{"DataClear", policy.CapStore, retInt, hDataClear},
		{"DataSize", policy.CapStore, retInt, hDataSize},
		{"DataIsEmpty", policy.CapStore, retBool, hDataIsEmpty},
		{"DataHasKey", policy.CapStore, retBool, hDataHasKey},
		{"DataHasValue", policy.CapStore, retBool, hDataHasValue},
		{"DataPush", policy.CapStore, retInt, hDataPush},
		{"DataPop", policy.CapStore, retString, hDataPop},
		{"PowerOff", policy.CapPower, retInt, hPower("poweroff")},
		{"Panic", policy.CapPower, retInt, hPower("panic")},
	}
}

// HelperNames lists every helper a reaction can call.
func HelperNames() []string {
	var out []string
	for _, h := range helpers() {
		out = append(out, h.name)
	}
	return out
}

// maxArgBytes bounds one argument handed to the host (a file write, a log line).
const maxArgBytes = 4 << 20

// installPrelude creates the native functions and runs the prelude over them. It returns the
// native JSON.parse, which only the host's runner keeps.
func installPrelude(in *qjs.Instance, r Reaction) (qjs.Value, error) {
	hs := helpers()
	prel, err := in.Eval(prelude, "<jibril>")
	if err != nil {
		return 0, fmt.Errorf("prelude: %w", err)
	}
	defer in.Free(prel)
	natives, err := in.Eval("[]", "<jibril>")
	if err != nil {
		return 0, err
	}
	defer in.Free(natives)
	var table strings.Builder
	table.WriteString("[")
	for i, h := range hs {
		f, err := in.NewFunction(h.name, 0, native(h))
		if err != nil {
			return 0, err
		}
		err = in.Set(natives, strconv.Itoa(i), f)
		in.Free(f)
		if err != nil {
			return 0, err
		}
		kind := "plain"
		if h.ret == retJSON {
			kind = "json"
		}
		fmt.Fprintf(&table, "[%q,%q],", h.name, kind)
	}
	table.WriteString("]")
	rnd, err := in.NewFunction("random", 0, func(in *qjs.Instance, _ []qjs.Value) qjs.Value {
		st := in.User.(*instState)
		f := 0.0
		if st.call != nil {
			f = st.call.rnd.Float64()
		}
		v, _ := in.NewNumber(f)
		return v
	})
	if err != nil {
		return 0, err
	}
	err = in.Set(natives, strconv.Itoa(len(hs)), rnd)
	in.Free(rnd)
	if err != nil {
		return 0, err
	}
	tbl, err := in.Eval(table.String(), "<jibril>")
	if err != nil {
		return 0, err
	}
	defer in.Free(tbl)
	k, err := in.NewString(r.Kind)
	if err != nil {
		return 0, err
	}
	defer in.Free(k)
	n, err := in.NewString(r.Recipe)
	if err != nil {
		return 0, err
	}
	defer in.Free(n)
	res, err := in.Call(prel, natives, tbl, k, n)
	if err != nil {
		return 0, fmt.Errorf("prelude: %w", err)
	}
	return res, nil
}

// native adapts a helper to a QuickJS host function: it reads the (already string) arguments,
// applies the budget and the capability check, runs the helper, records the call and converts
// the result.
func native(h helper) qjs.HostFunc {
	return func(in *qjs.Instance, argv []qjs.Value) qjs.Value {
		st := in.User.(*instState)
		inv := st.call
		if inv == nil {
			return 0 // load time: helpers do nothing
		}
		args := make([]string, 0, len(argv))
		for _, a := range argv {
			s, err := in.String(a)
			if err != nil {
				return 0
			}
			if len(s) > maxArgBytes {
				s = s[:maxArgBytes]
			}
			args = append(args, s)
		}
		return toJS(in, h.ret, inv.dispatch(in, h, args))
	}
}

func (inv *invocation) dispatch(in *qjs.Instance, h helper, args []string) any {
	inv.calls++
	if inv.calls > inv.p.lim.HelperCalls {
		// Past the budget the reaction is stopped: an uncatchable interrupt, not an error it
		// could swallow in a loop.
		inv.overBudget = true
		in.Interrupt()
		return failure(h.ret)
	}
	call := Call{Helper: h.name, Args: args}
	var res any
	var err error
	if h.cap != "" && (inv.env.Policy == nil || !inv.env.Policy.Granted(h.cap)) {
		err = inv.deny(h.cap)
	} else if r, ok, aerr := inv.env.answer(h.name, args); ok {
		res, err = r, aerr
	} else if !inv.env.World.equips(h.cap) {
		err = fmt.Errorf("%s: this world has nothing to act through for %s", h.name, h.cap)
	} else {
		res, err = h.fn(inv, args)
	}
	if err != nil && floorRefusal(err) {
		err = refuse("%v", err) // the safety floor, reached in the world: audited as a refusal
	}
	if err != nil {
		res = failure(h.ret)
		inv.errno = err.Error()
		call.Errno = inv.errno
		var d *denial
		if errors.As(err, &d) {
			call.Denied = true
			inv.audit(h.name, args, res, d.msg, d.outcome)
		} else if effects[h.name] {
			inv.audit(h.name, args, res, err.Error(), "failed")
		}
	} else if effects[h.name] {
		outcome := "done"
		if inv.env.mode() == policy.ModeDryRun {
			outcome = "would"
		}
		inv.audit(h.name, args, res, "", outcome)
	}
	call.Result = res
	if h.name != "Errno" && h.name != "Info" && h.name != "Warn" && h.name != "Error" {
		inv.t.Calls = append(inv.t.Calls, call)
	}
	return res
}

// floorRefusal tells the safety floor's refusals, as the live world reports them (a
// protected network, a write under /proc, /sys or /dev, a protected process), from
// failures. A tree kill that stopped at a protected member did kill the rest: a failure.
func floorRefusal(err error) bool {
	var d *denial
	var tree *proc.TreeError
	switch {
	case errors.As(err, &d), errors.As(err, &tree):
		return false
	}
	return errors.Is(err, netblock.ErrProtected) || errors.Is(err, fsguard.ErrProtected) || errors.Is(err, proc.ErrRefused)
}

func failure(r ret) any {
	switch r {
	case retInt:
		return -1
	case retString:
		return ""
	case retBool:
		return false
	default:
		return nil
	}
}

func toJS(in *qjs.Instance, r ret, v any) qjs.Value {
	var out qjs.Value
	var err error
	switch x := v.(type) {
	case nil:
		if r == retNone {
			return 0
		}
		out, err = in.Null()
	case int:
		out, err = in.NewNumber(float64(x))
	case bool:
		out, err = in.Bool(x)
	case string:
		out, err = in.NewString(strings.ReplaceAll(x, "\x00", "\uFFFD"))
	default:
		return 0
	}
	if err != nil {
		return 0
	}
	return out
}

func logAt(level string) func(inv *invocation, args []string) (any, error) {
	return func(inv *invocation, args []string) (any, error) {
		msg := strings.Join(args, " ")
		if len(msg) > 64<<10 {
			msg = msg[:64<<10]
		}
		inv.t.Logs = append(inv.t.Logs, Log{Level: level, Msg: msg})
		l := inv.env.logger().With("recipe", inv.p.r.Recipe, "reaction", inv.p.r.Index, "uuid", inv.uuid)
		switch level {
		case "warn":
			l.Warn(msg)
		case "error":
			l.Error(msg)
		default:
			l.Info(msg)
		}
		return nil, nil
	}
}

func hAlert(inv *invocation, args []string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("Alert needs a message")
	}
	imp := "medium"
	if len(args) > 1 {
		imp = args[1]
	}
	switch imp {
	case "low", "medium", "high", "critical":
	default:
		return nil, fmt.Errorf("unknown importance %q (low|medium|high|critical)", imp)
	}
	inv.t.Alerts = append(inv.t.Alerts, Alert{Msg: args[0], Importance: imp})
	return 0, nil
}

func parsePID(s string) (int, error) {
	pid, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || pid <= 0 {
		return 0, fmt.Errorf("invalid pid %q", s)
	}
	return pid, nil
}

// target resolves which process a kill or freeze helper means and whether the policy allows it.
func (inv *invocation) target(scope string, args []string, kill bool) (proc.Target, error) {
	ev, err := inv.view()
	if err != nil {
		return proc.Target{}, err
	}
	var ks policy.KillScope
	if inv.env.Policy != nil {
		ks = inv.env.Policy.Kill
	}
	inAncestry := func(pid int) bool {
		return slices.Contains(ev.Ancestry, pid) || pid == ev.PID || pid == ev.PPID
	}
	var pid int
	switch {
	case scope == "current" || (scope != "parent" && scope != "pid" && len(args) == 0):
		pid = ev.PID
		if kill && !ks.Current && !ks.Any {
			return proc.Target{}, inv.deny(policy.CapProcessKill + ": current")
		}
	case scope == "parent":
		pid = ev.PPID
		if kill && !ks.Parent && !ks.Any {
			return proc.Target{}, inv.deny(policy.CapProcessKill + ": parent")
		}
	default:
		if len(args) == 0 {
			return proc.Target{}, errors.New("a pid is required")
		}
		if pid, err = parsePID(args[0]); err != nil {
			return proc.Target{}, err
		}
		if kill && !ks.Any && !(ks.Ancestry && inAncestry(pid)) {
			return proc.Target{}, inv.deny(policy.CapProcessKill + ": ancestry")
		}
		if !kill && !inAncestry(pid) {
			return proc.Target{}, refuse("pid %d is not in the event's ancestry", pid)
		}
	}
	if pid <= 0 {
		return proc.Target{}, errors.New("the event names no such process")
	}
	t := proc.Target{PID: pid}
	switch pid {
	case ev.PID:
		t.Pin = ev.PIDPin
	case ev.PPID:
		t.Pin = ev.PPIDPin
	}
	if kill {
		// Kill and KillTree apply the floor themselves, on the process they have pinned (the
		// live actuator reads /proc there): a check here too cost every kill a second /proc
		// read, ~60 µs of the containment path.
		return t, nil
	}
	if err := inv.env.World.Proc.Check(t); err != nil {
		if errors.Is(err, proc.ErrGone) {
			return t, err // nothing to do (1), not a refusal: see gone
		}
		return t, refuse("%v", err)
	}
	return t, nil
}

// gone turns "the target already exited" into Jibril's "nothing to do" (1): done is true
// when the helper is finished, with result or err.
func gone(err error) (result any, done bool, rest error) {
	if errors.Is(err, proc.ErrGone) {
		return 1, true, nil
	}
	return nil, err != nil, err
}

// disarm applies the policy's circuit breaker to a kill or block target.
func (inv *invocation) disarm(target string) error {
	settle, err := inv.hold(target)
	settle(true)
	return err
}

// hold is disarm for an action the world may still turn down: settle says whether it
// acted (see policy.Breaker.Hold).
func (inv *invocation) hold(target string) (settle func(acted bool), err error) {
	b := inv.env.Breaker
	if b == nil {
		return func(bool) {}, nil
	}
	ok, tripped, settle := b.Hold(target)
	if ok {
		return settle, nil
	}
	if tripped {
		inv.t.Alerts = append(inv.t.Alerts, Alert{Importance: "critical",
			Msg: fmt.Sprintf("recipe %s disarmed: too many distinct targets (%s)", inv.p.r.Recipe, inv.env.Policy.Limits.Disarm)})
	}
	return settle, &denial{msg: fmt.Sprintf("disarmed: more than %s distinct targets", inv.env.Policy.Limits.Disarm), outcome: "disarmed"}
}

func hKill(scope string) func(inv *invocation, args []string) (any, error) {
	return func(inv *invocation, args []string) (any, error) {
		t, err := inv.target(scope, args, true)
		if r, done, err := gone(err); done {
			return r, err
		}
		settle, err := inv.hold("pid:" + strconv.Itoa(t.PID))
		if err != nil {
			return nil, err
		}
		kill := inv.env.World.Proc.Kill
		if scope == "tree" {
			kill = inv.env.World.Proc.KillTree
		}
		n, err := kill(inv.ctx, t)
		// The actuator applies the floor and finds exited targets (no Check before the
		// breaker): those were not acted on, and must not count towards disarming the
		// recipe. A tree kill that skipped a refused member (0 and a TreeError) acted.
		settle(!(n == 1 || n == -1 && errors.Is(err, proc.ErrRefused)))
		return n, err
	}
}

func hFreeze(thaw bool) func(inv *invocation, args []string) (any, error) {
	return func(inv *invocation, args []string) (any, error) {
		t, err := inv.target("", args, false)
		if r, done, err := gone(err); done {
			return r, err
		}
		if thaw {
			return inv.env.World.Proc.Thaw(inv.ctx, t)
		}
		if err := inv.disarm("pid:" + strconv.Itoa(t.PID)); err != nil {
			return nil, err
		}
		return inv.env.World.Proc.Freeze(inv.ctx, t)
	}
}

// blockable checks the policy and the floor for one prefix and TTL.
func (inv *invocation) blockable(p netip.Prefix, ttl time.Duration) error {
	if p.Addr().IsLoopback() || p.Addr().IsUnspecified() || p.Bits() == 0 {
		return refuse("refusing to block %s (loopback or everything)", p)
	}
	n := inv.env.Policy.NetBlockIP
	if !n.CanBlock(p) {
		return inv.deny(policy.CapNetBlockIP + ": " + p.String())
	}
	if !n.TTLAllowed(ttl) {
		return inv.deny(fmt.Sprintf("%s: ttl %s beyond max_ttl %s", policy.CapNetBlockIP, ttl, n.MaxTTL))
	}
	return nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q", s)
		}
		// An IPv4-mapped range is an IPv4 one (the kernel sees IPv4 packets): unmapped, the
		// floor sees ::ffff:0.0.0.0/96 for what it is, everything.
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid IP %q", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parseSeconds(s string) (time.Duration, error) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f <= 0 || f > 10*365*24*3600 {
		return 0, fmt.Errorf("invalid seconds %q", s)
	}
	return time.Duration(f * float64(time.Second)), nil
}

func (inv *invocation) blockAll(ps []netip.Prefix, ttl time.Duration) (any, error) {
	if len(ps) == 0 {
		return nil, errors.New("the event has no remote address")
	}
	result := 1
	for _, p := range ps {
		if err := inv.blockable(p, ttl); err != nil {
			return nil, err
		}
		if err := inv.disarm("ip:" + p.String()); err != nil {
			return nil, err
		}
		r, err := inv.env.World.Net.BlockPrefix(inv.ctx, p, ttl, inv.p.r.Recipe)
		if err != nil {
			return nil, err
		}
		if r == 0 {
			result = 0
		}
	}
	return result, nil
}

func hBlockIP(timer bool) func(inv *invocation, args []string) (any, error) {
	return func(inv *invocation, args []string) (any, error) {
		var ttl time.Duration
		if timer {
			if len(args) < 2 {
				return nil, errors.New("NetBlockIpTimer(ip, seconds) needs two arguments")
			}
			var err error
			if ttl, err = parseSeconds(args[1]); err != nil {
				return nil, err
			}
		}
		var ps []netip.Prefix
		if len(args) > 0 {
			p, err := parsePrefix(args[0])
			if err != nil {
				return nil, err
			}
			if p.Bits() != p.Addr().BitLen() {
				return nil, fmt.Errorf("%q is a CIDR: use NetBlockCidr", args[0])
			}
			ps = append(ps, p)
		} else {
			ev, err := inv.view()
			if err != nil {
				return nil, err
			}
			ps = remoteAddrs(ev)
		}
		return inv.blockAll(ps, ttl)
	}
}

func remoteAddrs(ev *Targets) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ev.RemoteAddrs {
		if p, err := parsePrefix(s); err == nil && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func hBlockCidr(inv *invocation, args []string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("NetBlockCidr(cidr[, seconds]) needs a CIDR")
	}
	p, err := parsePrefix(args[0])
	if err != nil {
		return nil, err
	}
	var ttl time.Duration
	if len(args) > 1 {
		if ttl, err = parseSeconds(args[1]); err != nil {
			return nil, err
		}
	}
	return inv.blockAll([]netip.Prefix{p}, ttl)
}

func hUnblockIP(inv *invocation, args []string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("NetUnblockIp(ip) needs an address")
	}
	p, err := parsePrefix(args[0])
	if err != nil {
		return nil, err
	}
	return inv.env.World.Net.UnblockPrefix(inv.ctx, p)
}

func hBlockDomain(inv *invocation, args []string) (any, error) {
	var ds []string
	if len(args) > 0 {
		ds = args[:1]
	} else {
		ev, err := inv.view()
		if err != nil {
			return nil, err
		}
		ds = append(ds, ev.RemoteNames...)
	}
	if len(ds) == 0 {
		return nil, errors.New("the event has no remote domain")
	}
	result := 1
	for _, raw := range ds {
		d, err := netblock.NormalizeDomain(raw)
		if err != nil {
			return nil, err
		}
		if err := inv.disarm("domain:" + d); err != nil {
			return nil, err
		}
		r, err := inv.env.World.Net.BlockDomain(inv.ctx, d, inv.p.r.Recipe)
		if err != nil {
			return nil, err
		}
		if r == 0 {
			result = 0
		}
	}
	return result, nil
}

func hUnblockDomain(inv *invocation, args []string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("NetUnblockDomain(domain) needs a domain")
	}
	d, err := netblock.NormalizeDomain(args[0])
	if err != nil {
		return nil, err
	}
	return inv.env.World.Net.UnblockDomain(inv.ctx, d)
}

// cleanPath refuses relative paths and ".." before any matching happens.
func cleanPath(s string) (string, error) {
	if s == "" || !strings.HasPrefix(s, "/") || strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("invalid path %q (absolute paths only)", s)
	}
	for _, part := range strings.Split(s, "/") {
		if part == ".." {
			return "", refuse("path %q contains ..", s)
		}
	}
	return filepath.Clean(s), nil
}

func (inv *invocation) readable(s string) (string, error) {
	p, err := cleanPath(s)
	if err != nil {
		return "", err
	}
	if !inv.env.Policy.CanRead(p) {
		return "", inv.deny(policy.CapFSRead + ": " + p)
	}
	return p, nil
}

func hReadFile(inv *invocation, args []string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("ReadFile(path) needs a path")
	}
	p, err := inv.readable(args[0])
	if err != nil {
		return nil, err
	}
	b, err := inv.env.World.Files.ReadFile(p, maxArgBytes)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}

func hWriteFile(inv *invocation, args []string) (any, error) {
	if len(args) < 2 {
		return nil, errors.New("WriteFile(path, data) needs two arguments")
	}
	p, err := cleanPath(args[0])
	if err != nil {
		return nil, err
	}
	for _, root := range []string{"/proc", "/sys", "/dev"} {
		if p == root || strings.HasPrefix(p, root+"/") {
			return nil, refuse("never writing under %s", root)
		}
	}
	if !inv.env.Policy.CanWrite(p) {
		return nil, inv.deny(policy.CapFSWrite + ": " + p)
	}
	if err := inv.env.World.Files.WriteFile(p, []byte(args[1])); err != nil {
		return nil, err
	}
	return 0, nil
}

func hStat(inv *invocation, args []string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("Stat(path) needs a path")
	}
	p, err := inv.readable(args[0])
	if err != nil {
		return nil, err
	}
	fi, err := inv.env.World.Files.Stat(p)
	if err != nil {
		return nil, err
	}
	return fmt.Sprintf(`{"size":%d,"mode":%d,"modTime":%q,"isDir":%t}`,
		fi.Size, uint32(fi.Mode.Perm()), fi.ModTime.UTC().Format(time.RFC3339Nano), fi.IsDir), nil
}

func hHashFile(inv *invocation, args []string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("HashFile(path) needs a path")
	}
	p, err := inv.readable(args[0])
	if err != nil {
		return nil, err
	}
	return inv.env.World.Files.HashFile(p)
}

// recipeTempRoot keeps each recipe's temporary directories apart, which is how RemoveDir knows
// a directory is this recipe's own.
func (inv *invocation) recipeTempRoot() string {
	return filepath.Join(inv.env.World.TempRoot, inv.p.r.Recipe)
}

func hCreateTempDir(inv *invocation, args []string) (any, error) {
	pattern := "jibril-*"
	if len(args) > 0 && args[0] != "" {
		pattern = args[0]
		if strings.ContainsAny(pattern, "/\x00") || !strings.HasSuffix(pattern, "*") {
			return nil, fmt.Errorf("invalid pattern %q (a name ending in *)", pattern)
		}
	}
	if inv.env.World.TempRoot == "" {
		return nil, errors.New("no temp root configured")
	}
	return inv.env.World.Files.MkdirTemp(inv.recipeTempRoot(), pattern)
}

func hRemoveDir(inv *invocation, args []string) (any, error) {
	if len(args) == 0 {
		return nil, errors.New("RemoveDir(path) needs a path")
	}
	p, err := cleanPath(args[0])
	if err != nil {
		return nil, err
	}
	if inv.env.World.TempRoot == "" || filepath.Dir(p) != inv.recipeTempRoot() {
		return nil, refuse("%s was not created by this recipe", p)
	}
	if err := inv.env.World.Files.RemoveAll(p); err != nil {
		return nil, err
	}
	return 0, nil
}

func hEvidence(inv *invocation, args []string) (any, error) {
	ev, err := inv.view()
	if err != nil {
		return nil, err
	}
	pid := ev.PID
	if len(args) > 0 {
		if pid, err = parsePID(args[0]); err != nil {
			return nil, err
		}
	}
	if pid <= 0 {
		return nil, errors.New("the event names no process")
	}
	return inv.env.World.Evidence.Collect(inv.ctx, pid)
}

func hPower(op string) func(inv *invocation, args []string) (any, error) {
	return func(inv *invocation, args []string) (any, error) {
		if !inv.env.AllowPower {
			return nil, inv.deny(policy.CapPower + ": allow_power is off in the daemon config")
		}
		var err error
		if op == "panic" {
			err = inv.env.World.Power.Panic(inv.ctx)
		} else {
			err = inv.env.World.Power.PowerOff(inv.ctx)
		}
		if err != nil {
			return nil, err
		}
		return 0, nil
	}
}
