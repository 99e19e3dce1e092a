// Package policy loads and evaluates jibril's per-recipe capability policy
// files (SPEC §5): which helpers a recipe's reactions may call, within which
// limits, and the rate limiter and disarm breaker that enforce those limits.
//
// Everything fails closed: an unreadable or invalid file is an error (the
// recipe must not load), an absent capability is not granted, and a file may
// not widen the daemon's own limits.
package policy

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"time"
)

// Mode says whether a recipe's reactions act, only record what they would
// do, or do not run at all.
type Mode string

// Modes accepted in a policy file.
const (
	ModeEnforce Mode = "enforce"
	ModeDryRun  Mode = "dry-run"
	ModeOff     Mode = "off"
)

// Capability names, as written under `capabilities:` and as reported in
// "capability denied: <capability>" errors.
const (
	CapLog            = "log"
	CapProcessKill    = "process.kill"
	CapProcessFreeze  = "process.freeze"
	CapNetBlockIP     = "net.block.ip"
	CapNetBlockDomain = "net.block.domain"
	CapFSRead         = "fs.read"
	CapFSWrite        = "fs.write"
	CapTempdir        = "tempdir"
	CapStore          = "store"
	CapEvidence       = "evidence"
	CapShell          = "shell"
	CapPower          = "power"
)

// KnownCapabilities returns every capability name a policy file may use, sorted.
func KnownCapabilities() []string {
	return []string{
		CapEvidence, CapFSRead, CapFSWrite, CapLog, CapNetBlockDomain, CapNetBlockIP,
		CapPower, CapProcessFreeze, CapProcessKill, CapShell, CapStore, CapTempdir,
	}
}

// Rate is N invocations per Per. The zero value means unlimited.
type Rate struct {
	N   int
	Per time.Duration
}

// Unlimited reports whether r imposes no limit.
func (r Rate) Unlimited() bool { return r.N <= 0 || r.Per <= 0 }

func (r Rate) String() string {
	if r.Unlimited() {
		return "unlimited"
	}
	switch r.Per {
	case time.Second:
		return fmt.Sprintf("%d/s", r.N)
	case time.Minute:
		return fmt.Sprintf("%d/m", r.N)
	case time.Hour:
		return fmt.Sprintf("%d/h", r.N)
	}
	return fmt.Sprintf("%d per %s", r.N, formatDuration(r.Per))
}

// Disarm is the circuit breaker on distinct kill/block targets: more than
// MaxTargets distinct targets within Per trips it. The zero value means off.
type Disarm struct {
	MaxTargets int
	Per        time.Duration
}

// Off reports whether d disables the breaker.
func (d Disarm) Off() bool { return d.MaxTargets <= 0 || d.Per <= 0 }

func (d Disarm) String() string {
	if d.Off() {
		return "off"
	}
	return fmt.Sprintf("%d per %s", d.MaxTargets, formatDuration(d.Per))
}

// Limits bound one recipe's reactions.
type Limits struct {
	Timeout     time.Duration // per process(data) call
	MemoryBytes uint64        // wasm memory cap
	HelperCalls int           // helper calls per invocation
	Rate        Rate          // invocations of the recipe's reactions
	Disarm      Disarm        // breaker on distinct kill/block targets
}

// DefaultLimits are the limits of a policy that does not set them, and the
// usual daemon ceiling.
func DefaultLimits() Limits {
	return Limits{
		Timeout:     200 * time.Millisecond,
		MemoryBytes: 32 << 20,
		HelperCalls: 256,
		Rate:        Rate{N: 50, Per: time.Second},
		Disarm:      Disarm{MaxTargets: 10, Per: time.Minute},
	}
}

// Within returns l with every field narrowed to ceiling where ceiling is
// narrower. A zero field of ceiling imposes nothing. Use it for limits the
// user did not write (defaults), never to silently accept a too-wide file.
func (l Limits) Within(ceiling Limits) Limits {
	if ceiling.Timeout > 0 && (l.Timeout <= 0 || l.Timeout > ceiling.Timeout) {
		l.Timeout = ceiling.Timeout
	}
	if ceiling.MemoryBytes > 0 && (l.MemoryBytes == 0 || l.MemoryBytes > ceiling.MemoryBytes) {
		l.MemoryBytes = ceiling.MemoryBytes
	}
	if ceiling.HelperCalls > 0 && (l.HelperCalls <= 0 || l.HelperCalls > ceiling.HelperCalls) {
		l.HelperCalls = ceiling.HelperCalls
	}
	if rateWider(l.Rate, ceiling.Rate) {
		l.Rate = ceiling.Rate
	}
	if disarmWider(l.Disarm, ceiling.Disarm) {
		l.Disarm = ceiling.Disarm
	}
	return l
}

// KillScope says which processes process.kill may target. Any implies the
// other three (a policy that may kill any pid may kill the current one).
type KillScope struct {
	Current, Parent, Ancestry, Any bool
}

// Granted reports whether any kill is allowed at all.
func (k KillScope) Granted() bool { return k.Current || k.Parent || k.Ancestry || k.Any }

// NetIP is the net.block.ip capability.
type NetIP struct {
	Allow bool
	// MaxTTL > 0 means every block must expire within MaxTTL (so permanent
	// blocks are refused); 0 means no limit.
	MaxTTL time.Duration
	// Never lists networks that may not be blocked, in addition to the
	// daemon's safety floor. Stored unmapped and masked.
	Never []netip.Prefix
}

// CanBlock reports whether blocking p (an address is a full-length prefix)
// is allowed: the capability is granted and p overlaps no Never network.
func (n NetIP) CanBlock(p netip.Prefix) bool {
	if !n.Allow || !p.IsValid() {
		return false
	}
	p = unmapPrefix(p)
	for _, nv := range n.Never {
		if nv.Overlaps(p) {
			return false
		}
	}
	return true
}

// TTLAllowed reports whether a block lasting ttl (0 = permanent) fits MaxTTL.
func (n NetIP) TTLAllowed(ttl time.Duration) bool {
	if !n.Allow || ttl < 0 {
		return false
	}
	if n.MaxTTL == 0 {
		return true
	}
	return ttl > 0 && ttl <= n.MaxTTL
}

// unmapPrefix turns an IPv4-mapped IPv6 prefix into its IPv4 form so that a
// Never entry of 10.0.0.0/8 also covers ::ffff:10.0.0.1.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	a := p.Addr().WithZone("")
	bits := p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			// Wider than the mapped range: keep it IPv6, it covers all of IPv4-mapped space.
			return netip.PrefixFrom(a, bits).Masked()
		}
		return netip.PrefixFrom(a.Unmap(), bits-96).Masked()
	}
	return netip.PrefixFrom(a, bits).Masked()
}

// Policy is one recipe's validated capability policy.
type Policy struct {
	Recipe string
	Mode   Mode
	// ModeSet is true when the file says mode; it then wins over the
	// recipe's own mode (SPEC §2), otherwise the recipe's applies.
	ModeSet bool
	Source  string // file path, or "default:strict" / "default:jibril"
	Limits  Limits

	Kill                                                           KillScope
	Freeze, NetBlockDomain, Tempdir, Store, Evidence, Shell, Power bool
	NetBlockIP                                                     NetIP
	FSRead, FSWrite                                                []string
}

// Default returns the built-in policy of the given kind for recipe:
// "strict" grants log, store and tempdir; "jibril" grants everything but
// power, as Jibril does. Both use DefaultLimits and mode enforce.
func Default(kind, recipe string) (*Policy, error) {
	if recipe == "" {
		return nil, fmt.Errorf("default policy %q: empty recipe name", kind)
	}
	p := &Policy{
		Recipe:  recipe,
		Mode:    ModeEnforce,
		Source:  "default:" + kind,
		Limits:  DefaultLimits(),
		Store:   true,
		Tempdir: true,
	}
	switch kind {
	case "strict":
	case "jibril":
		p.Kill = KillScope{Current: true, Parent: true, Ancestry: true, Any: true}
		p.Freeze = true
		p.NetBlockIP = NetIP{Allow: true}
		p.NetBlockDomain = true
		p.FSRead = []string{"/**"}
		p.FSWrite = []string{"/**"}
		p.Evidence = true
		p.Shell = true
	default:
		return nil, fmt.Errorf("default policy %q: unknown kind (known: jibril, strict)", kind)
	}
	return p, nil
}

// Granted reports whether the policy grants capability (a name from
// KnownCapabilities). "log" is always granted; unknown names never are.
func (p *Policy) Granted(capability string) bool {
	if p == nil {
		return false
	}
	switch capability {
	case CapLog:
		return true
	case CapProcessKill:
		return p.Kill.Granted()
	case CapProcessFreeze:
		return p.Freeze
	case CapNetBlockIP:
		return p.NetBlockIP.Allow
	case CapNetBlockDomain:
		return p.NetBlockDomain
	case CapFSRead:
		return len(p.FSRead) > 0
	case CapFSWrite:
		return len(p.FSWrite) > 0
	case CapTempdir:
		return p.Tempdir
	case CapStore:
		return p.Store
	case CapEvidence:
		return p.Evidence
	case CapShell:
		return p.Shell
	case CapPower:
		return p.Power
	}
	return false
}

// Capabilities returns the names of the granted capabilities, sorted.
func (p *Policy) Capabilities() []string {
	var out []string
	for _, c := range KnownCapabilities() {
		if p.Granted(c) {
			out = append(out, c)
		}
	}
	return out
}

// CanRead reports whether fs.read covers path (absolute and clean).
func (p *Policy) CanRead(path string) bool { return p != nil && matchAny(p.FSRead, path) }

// CanWrite reports whether fs.write covers path (absolute and clean). The
// daemon's safety floor (/proc, /sys, /dev) is enforced by the caller too.
func (p *Policy) CanWrite(path string) bool { return p != nil && matchAny(p.FSWrite, path) }

func matchAny(globs []string, p string) bool {
	return slices.ContainsFunc(globs, func(g string) bool { return MatchGlob(g, p) })
}

// cleanAbs reports whether p is an absolute path in path.Clean form.
func cleanAbs(p string) bool {
	return len(p) > 0 && p[0] == '/' && path.Clean(p) == p
}
