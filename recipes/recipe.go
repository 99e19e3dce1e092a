// Package recipes loads detection recipes: Jibril v2.4 compatible YAML files, each a list of
// recipes. Parsing is strict: a recipe with an unknown field, a wrong enum value, a bad regex,
// CIDR or port, or a JavaScript reaction without a process() function is rejected with one
// error line "file:line: recipe <name or #index>: field <field>: message"; the other recipes of
// the file still load.
//
// Decisions where Jibril's documentation is vague (see also SPEC §2):
//
//   - file_actions, file_actions_excl, flow_actions and flow_actions_excl take a list or one
//     string; a string may hold several names separated by "|" or "," (Jibril's recipes write
//     "open|mmap|unlink|execve"). Macros are expanded as Jibril's reference table says.
//   - *_excl: an event carrying an excluded action never matches, and excluded actions are
//     removed from the wanted set.
//   - base, dir and regex at the top level form one more path entry, like an entry of bases.
//     Inside an entry every given matcher must hold: base is the exact basename, regex is an
//     unanchored Go regexp searched in the full path, dir alone matches the directory and every
//     path below it (on a path boundary), and dir together with base is the exact full path
//     dir/base (Jibril writes {dir: /etc, base: passwd} for /etc/passwd).
//   - arbitrary items: Jibril's item "which" is a polarity (pertinent|irrelevant). An item
//     without it inherits its group's. An item counts as true for its group when its condition
//     holds and its polarity equals the group's, or when its condition fails and its polarity is
//     the opposite one. A group combines its items with AND or OR; a pertinent group keeps the
//     event when it is true (drops it otherwise), an irrelevant group drops the event when it
//     is true. Every group must keep the event. This reads Jibril's recipes as their authors
//     meant them ("how: OR, which: irrelevant" with a pertinent pattern keeps only events whose
//     arguments match).
//   - jibril extension on items: "match: regex|exact|prefix|suffix|contains" (default regex,
//     unanchored, Go RE2 syntax). "which" also accepts a match mode directly
//     (which: exact), the polarity then being the group's.
//   - times: times_per_host and times_per_hostname (in Jibril's reference table) are read as
//     times_in_total, since a daemon sees one host.
//   - prevent needs mechanism execution, every path entry with a base and no regex, and no
//     arbitrary groups: the kernel fast path cannot evaluate anything else.
//   - Network fields on a file or execution recipe (and file fields on a network recipe) are
//     errors, unless empty; the *_how and remote_domains_type switches alone are tolerated.
//   - Required: kind, name and mechanism. importance defaults to medium, enabled to true,
//     file_actions_how and flow_actions_how to any, remote_domains_type to exact. An execution
//     recipe without file_actions gets [execve]; a file_access recipe without them gets every
//     action. A file or execution recipe needs at least one path entry (regex: .* for all).
package recipes

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Breed is Jibril's detection category.
type Breed string

// Breeds accepted in recipe files.
const (
	BreedFileAccess    Breed = "file_access"
	BreedExecution     Breed = "execution"
	BreedRemoteDomains Breed = "remote_domains"
	BreedRemoteCIDRs   Breed = "remote_cidrs"
	BreedRemoteIPs     Breed = "remote_ips"
	BreedLocalDomains  Breed = "local_domains"
	BreedLocalIPs      Breed = "local_ips"
)

// Mechanism says which events a recipe looks at.
type Mechanism string

// Mechanisms accepted in recipe files.
const (
	MechFileAccess             Mechanism = "file_access"
	MechExecution              Mechanism = "execution"
	MechFileAccessAndExecution Mechanism = "file_access_and_execution"
	MechNetworkPeers           Mechanism = "network_peers"
	MechNetworkFlows           Mechanism = "network_flows"
)

// MatchesFiles reports whether the mechanism looks at file access events.
func (m Mechanism) MatchesFiles() bool {
	return m == MechFileAccess || m == MechFileAccessAndExecution
}

// MatchesExecutions reports whether the mechanism looks at execution events.
func (m Mechanism) MatchesExecutions() bool {
	return m == MechExecution || m == MechFileAccessAndExecution
}

// MatchesNetwork reports whether the mechanism looks at network peer events.
func (m Mechanism) MatchesNetwork() bool {
	return m == MechNetworkPeers || m == MechNetworkFlows
}

// Importance is the severity written into event metadata.
type Importance string

// Importance levels.
const (
	ImportanceLow      Importance = "low"
	ImportanceMedium   Importance = "medium"
	ImportanceHigh     Importance = "high"
	ImportanceCritical Importance = "critical"
)

// How combines a list of actions: any of them or all of them.
type How string

// Values of file_actions_how and flow_actions_how.
const (
	HowAny How = "any"
	HowAll How = "all"
)

// Protocol restricts a network recipe to one transport.
type Protocol string

// Protocols; the empty protocol matches all.
const (
	ProtoAny  Protocol = ""
	ProtoTCP  Protocol = "tcp"
	ProtoUDP  Protocol = "udp"
	ProtoICMP Protocol = "icmp"
)

// DomainMatch says how remote_domains are compared with the names of a peer.
type DomainMatch string

// Domain match kinds. Suffix matches the name itself and its sub-domains (label boundary);
// a pattern starting with "." matches sub-domains only. Prefix is a plain string prefix.
const (
	DomainExact  DomainMatch = "exact"
	DomainSuffix DomainMatch = "suffix"
	DomainPrefix DomainMatch = "prefix"
)

// FlowAction is one of the flow flags a network recipe may require.
type FlowAction string

// Flow actions. Created is read as the flow's started flag.
const (
	FlowCreated    FlowAction = "created"
	FlowIngress    FlowAction = "ingress"
	FlowEgress     FlowAction = "egress"
	FlowIncoming   FlowAction = "incoming"
	FlowOutgoing   FlowAction = "outgoing"
	FlowOngoing    FlowAction = "ongoing"
	FlowStarted    FlowAction = "started"
	FlowEnded      FlowAction = "ended"
	FlowTerminator FlowAction = "terminator"
	FlowTerminated FlowAction = "terminated"
)

// FlowActions lists every flow action in canonical order.
func FlowActions() []FlowAction {
	return []FlowAction{FlowCreated, FlowIngress, FlowEgress, FlowIncoming, FlowOutgoing,
		FlowOngoing, FlowStarted, FlowEnded, FlowTerminator, FlowTerminated}
}

// Polarity is pertinent or irrelevant (arbitrary groups and items).
type Polarity string

// Polarities; the empty polarity on an item means "the group's".
const (
	Pertinent  Polarity = "pertinent"
	Irrelevant Polarity = "irrelevant"
)

// GroupHow combines the items of an arbitrary group.
type GroupHow string

// Group combinators.
const (
	GroupAND GroupHow = "AND"
	GroupOR  GroupHow = "OR"
)

// MatchMode says how an item's pattern is compared with a string value.
type MatchMode string

// Match modes for arbitrary items; regex is an unanchored search.
const (
	MatchRegex    MatchMode = "regex"
	MatchExact    MatchMode = "exact"
	MatchPrefix   MatchMode = "prefix"
	MatchSuffix   MatchMode = "suffix"
	MatchContains MatchMode = "contains"
)

// When compares an item's number or time with the event's value (event value <when> item).
type When string

// Comparisons.
const (
	WhenEqual   When = "equal"
	WhenSmaller When = "smaller"
	WhenBigger  When = "bigger"
)

// TimesKind keys a noise limiter.
type TimesKind string

// Times kinds.
const (
	TimesPerProc          TimesKind = "times_per_proc"
	TimesPerExe           TimesKind = "times_per_exe"
	TimesPerParentProc    TimesKind = "times_per_parent_proc"
	TimesPerParentExe     TimesKind = "times_per_parent_exe"
	TimesPerCmd           TimesKind = "times_per_cmd"
	TimesPerFullAncestry  TimesKind = "times_per_full_ancestry"
	TimesInTotal          TimesKind = "times_in_total"
	timesPerHostAlias     TimesKind = "times_per_host"
	timesPerHostnameAlias TimesKind = "times_per_hostname"
)

// Prevent is the jibril extension that stops an execution in the kernel.
type Prevent string

// Prevent modes; empty means detect only.
const (
	PreventNone Prevent = ""
	PreventKill Prevent = "kill"
	PreventDeny Prevent = "deny"
)

// Mode is the recipe's enforcement mode; the policy file wins when both set one.
type Mode string

// Modes; empty means "not set in the recipe".
const (
	ModeUnset   Mode = ""
	ModeEnforce Mode = "enforce"
	ModeDryRun  Mode = "dry-run"
	ModeOff     Mode = "off"
)

// Format of a reaction.
type Format string

// Reaction formats.
const (
	FormatJS    Format = "js"
	FormatShell Format = "shell"
)

// Recipe is one validated recipe. Slices are never shared with other recipes.
type Recipe struct {
	File  string // file it was read from, as given to Parse
	Line  int    // line of the recipe's mapping
	Index int    // position in its file, from 0

	Kind          string // snake_case
	Name          string
	Enabled       bool
	Version       string
	Description   string
	Documentation string
	Breed         Breed
	Mechanism     Mechanism
	Tactic        string
	Technique     string
	Subtechnique  string
	Importance    Importance

	// File and execution matching. FileActions is expanded (no macros), deduplicated, in
	// canonical order, and already excludes FileActionsExcl.
	FileActions     []FileAction
	FileActionsHow  How
	FileActionsExcl []FileAction
	Paths           []PathMatch // top-level base/dir/regex first, then bases

	// Network matching. Ports: 0 means any.
	Protocol          Protocol
	LocalCIDRs        []netip.Prefix
	RemoteCIDRs       []netip.Prefix
	LocalPort         uint16
	RemotePort        uint16
	RemoteDomains     []string // lower case, no trailing dot
	RemoteDomainsType DomainMatch
	FlowActions       []FlowAction // excludes FlowActionsExcl
	FlowActionsHow    How
	FlowActionsExcl   []FlowAction

	Arbitrary []Group
	Times     []Times
	Reactions []Reaction

	Prevent Prevent
	Mode    Mode

	nameLine int
}

// Where returns "file:line" of the recipe.
func (r *Recipe) Where() string { return fmt.Sprintf("%s:%d", r.File, r.Line) }

// PathMatch is one path entry: every non-empty matcher must hold.
type PathMatch struct {
	Dir   string // absolute, cleaned
	Base  string
	Regex string
	Line  int
}

// Exact reports whether the entry names exact files only (no regex, no bare directory).
func (p PathMatch) Exact() bool { return p.Regex == "" && p.Base != "" }

// Group is one arbitrary filter group.
type Group struct {
	How   GroupHow
	Which Polarity
	Items []Item
	Line  int
}

// Item is one condition of an arbitrary group. Exactly one of Pattern, Number, Numbers, Time
// and CIDR is set, as Value says.
type Item struct {
	What    string
	Which   Polarity // empty: the group's
	Match   MatchMode
	Value   ValueKind
	Pattern string
	Number  int64
	Numbers []int64
	Time    time.Time
	CIDR    netip.Prefix
	When    When
	Line    int
}

// ValueKind says which value an item carries.
type ValueKind string

// Item value kinds.
const (
	ValuePattern ValueKind = "pattern"
	ValueNumber  ValueKind = "number"
	ValueNumbers ValueKind = "numbers"
	ValueTime    ValueKind = "time"
	ValueCIDR    ValueKind = "cidr"
)

// WhatKind is the type of an event attribute an item can look at.
type WhatKind int

// Attribute types.
const (
	WhatUnknown WhatKind = iota
	WhatString
	WhatNumber
	WhatTime
	WhatIP
)

// Whats lists the attributes arbitrary items accept, in documentation order.
//
// String attributes: exe comm cmd args (of the triggering process), parent_exe parent_comm
// parent_cmd parent_args (its parent in background.ancestry), task_or_parent_exe and
// task_or_parent_args (true when the process's or its parent's value matches), ancient_exe
// (any ancestor's exe), file (file.file), remote_domain (any of flow.remote.name/names).
// Numbers: uid gid pid ppid parent_uid parent_pid local_port remote_port (a pattern is also
// accepted, matched against the decimal form). Times: start parent_start. IPs: local_ip
// remote_ip (with cidr).
func Whats() []string {
	return []string{"exe", "comm", "cmd", "args", "uid", "gid", "pid", "ppid",
		"parent_exe", "parent_comm", "parent_cmd", "parent_args", "parent_uid", "parent_pid",
		"task_or_parent_exe", "task_or_parent_args", "ancient_exe",
		"start", "parent_start", "file", "remote_domain",
		"local_ip", "remote_ip", "local_port", "remote_port"}
}

// KindOfWhat returns the type of an item attribute, WhatUnknown when it is not one.
func KindOfWhat(what string) WhatKind {
	switch what {
	case "exe", "comm", "cmd", "args", "parent_exe", "parent_comm", "parent_cmd",
		"parent_args", "task_or_parent_exe", "task_or_parent_args", "ancient_exe",
		"file", "remote_domain":
		return WhatString
	case "uid", "gid", "pid", "ppid", "parent_uid", "parent_pid", "local_port", "remote_port":
		return WhatNumber
	case "start", "parent_start":
		return WhatTime
	case "local_ip", "remote_ip":
		return WhatIP
	}
	return WhatUnknown
}

// Times is one noise limit.
type Times struct {
	Kind TimesKind
	Max  int
	Line int
}

// Reaction is one reaction of a recipe.
type Reaction struct {
	Format Format
	Code   string
	Line   int
}

// Error is one validation problem. Its text is a single line.
type Error struct {
	File   string
	Line   int
	Recipe string // name, or "#index"; empty for file-level problems
	Field  string // empty when the problem is not about one field
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	if e.Recipe != "" {
		fmt.Fprintf(&b, "recipe %s: ", e.Recipe)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "field %s: ", e.Field)
	}
	b.WriteString(e.Msg)
	return oneLine(b.String())
}

// oneLine keeps an error on one line whatever a hostile file put in it.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}
