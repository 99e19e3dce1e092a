package builtin

import (
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox"
)

// helperCapability is the capability each helper needs ("" = always allowed), as SPEC §4 says.
func helperCapability() map[string]string {
	return map[string]string{
		"Info": "", "Warn": "", "Error": "", "Errno": "", "Alert": "",
		"KillCurrent": policy.CapProcessKill, "KillParent": policy.CapProcessKill,
		"KillProcess": policy.CapProcessKill, "KillTree": policy.CapProcessKill,
		"Freeze": policy.CapProcessFreeze, "Thaw": policy.CapProcessFreeze,
		"NetBlockIp": policy.CapNetBlockIP, "NetBlockIpTimer": policy.CapNetBlockIP,
		"NetBlockCidr": policy.CapNetBlockIP, "NetUnblockIp": policy.CapNetBlockIP,
		"NetBlockDomain": policy.CapNetBlockDomain, "NetUnblockDomain": policy.CapNetBlockDomain,
		"ReadFile": policy.CapFSRead, "Stat": policy.CapFSRead, "HashFile": policy.CapFSRead,
		"WriteFile":     policy.CapFSWrite,
		"CreateTempDir": policy.CapTempdir, "RemoveDir": policy.CapTempdir,
		"CollectEvidence": policy.CapEvidence,
		"DataSet":         policy.CapStore, "DataGet": policy.CapStore, "DataDelete": policy.CapStore,
		"DataKeys": policy.CapStore, "DataValues": policy.CapStore, "DataClear": policy.CapStore,
		"DataSize": policy.CapStore, "DataIsEmpty": policy.CapStore, "DataHasKey": policy.CapStore,
		"DataHasValue": policy.CapStore, "DataPush": policy.CapStore, "DataPop": policy.CapStore,
		"PowerOff": policy.CapPower, "Panic": policy.CapPower,
	}
}

// TestHelperTableMatchesSandbox keeps the table above in step with the sandbox: a new helper
// must be classified here before a built-in reaction can be checked against its policy.
func TestHelperTableMatchesSandbox(t *testing.T) {
	var table []string
	for h := range helperCapability() {
		table = append(table, h)
	}
	sort.Strings(table)
	names := sandbox.HelperNames()
	sort.Strings(names)
	if !reflect.DeepEqual(table, names) {
		t.Errorf("helper table %v\nsandbox helpers %v", table, names)
	}
}

// call is one global function call found in reaction code.
type call struct {
	name    string
	noArgs  bool
	argText string // source text between the parentheses, for literal checks
}

// jsCalls returns the calls of plain (non-member) functions in JavaScript source, skipping
// comments, string and template literal text (not ${} code) and regular expression literals,
// so that a helper name in a message or a comment does not count.
func jsCalls(src string) []call {
	var out []call
	lexJS(src, 0, false, &out)
	return out
}

func isIdentStart(c byte) bool {
	return c == '_' || c == '$' || (c|0x20) >= 'a' && (c|0x20) <= 'z'
}

func isIdentPart(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

// lexJS scans from i; with inTemplate it stops at the "}" closing a ${ substitution and
// returns the index after it.
func lexJS(s string, i int, inTemplate bool, out *[]call) int {
	depth := 0
	prev := byte(0) // last significant character
	prevWord := ""  // last identifier, when prev ends one
	regexAfter := func() bool {
		switch prevWord {
		case "return", "typeof", "case", "in", "of", "new", "delete", "void", "throw":
			return true
		}
		return prev == 0 || strings.IndexByte("(,=:[!&|?{};+-*%<>~^", prev) >= 0
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
			continue
		case c == '/' && i+1 < len(s) && s[i+1] == '/':
			for i < len(s) && s[i] != '\n' {
				i++
			}
			continue
		case c == '/' && i+1 < len(s) && s[i+1] == '*':
			end := strings.Index(s[i+2:], "*/")
			if end < 0 {
				return len(s)
			}
			i += end + 4
			continue
		case c == '\'' || c == '"':
			i++
			for i < len(s) && s[i] != c {
				if s[i] == '\\' {
					i++
				}
				i++
			}
			i++
			prev, prevWord = 'a', ""
			continue
		case c == '`':
			i++
			for i < len(s) && s[i] != '`' {
				switch {
				case s[i] == '\\':
					i += 2
				case s[i] == '$' && i+1 < len(s) && s[i+1] == '{':
					i = lexJS(s, i+2, true, out)
				default:
					i++
				}
			}
			i++
			prev, prevWord = 'a', ""
			continue
		case c == '/' && regexAfter():
			i++
			inClass := false
			for i < len(s) && (inClass || s[i] != '/') && s[i] != '\n' {
				switch s[i] {
				case '\\':
					i++
				case '[':
					inClass = true
				case ']':
					inClass = false
				}
				i++
			}
			i++
			for i < len(s) && isIdentPart(s[i]) { // flags
				i++
			}
			prev, prevWord = 'a', ""
			continue
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentPart(s[j]) {
				j++
			}
			word := s[i:j]
			k := j
			for k < len(s) && (s[k] == ' ' || s[k] == '\t') {
				k++
			}
			if k < len(s) && s[k] == '(' && prev != '.' {
				args := argText(s, k)
				*out = append(*out, call{name: word, noArgs: strings.TrimSpace(args) == "", argText: args})
			}
			prev, prevWord = 'a', word
			i = j
			continue
		case c == '{':
			depth++
		case c == '}':
			if inTemplate && depth == 0 {
				return i + 1
			}
			depth--
		}
		prev, prevWord = c, ""
		i++
	}
	return i
}

// argText returns the source between the parenthesis at open and its match (nesting counted;
// good enough for the literal checks below, which only look at simple arguments).
func argText(s string, open int) string {
	depth := 0
	for i := open; i < len(s); i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
			if depth == 0 {
				return s[open+1 : i]
			}
		}
	}
	return s[open+1:]
}

func TestJSCalls(t *testing.T) {
	src := `// KillParent() in a comment
	/* NetBlockIp() too */
	var s = "DataSet('x')" + 'Freeze()' + ` + "`CollectEvidence() ${KillTree()} x`" + `;
	var r = /KillCurrent\(/.test(s), q = a / b / c;
	x.Info("member calls do not count");
	function process(data) { Warn("w"); NetBlockIpTimer(ip, 600); KillTree(); }`
	var got []string
	for _, c := range jsCalls(src) {
		got = append(got, c.name+":"+strconv.FormatBool(c.noArgs))
	}
	want := []string{"KillTree:true", "process:false", "Warn:false", "NetBlockIpTimer:false", "KillTree:true"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("calls %v, want %v", got, want)
	}
}

// TestPoliciesGrantExactlyWhatReactionsUse: every capability a built-in policy grants is used
// by its recipe's reactions, and every capability they use is granted, down to kill scopes;
// literal paths read are covered by fs.read, files are written only inside the recipe's own
// temp directories, and IP blocks are timed, within max_ttl, never on internal networks.
func TestPoliciesGrantExactlyWhatReactionsUse(t *testing.T) {
	caps := helperCapability()
	lib := loadLibrary(t)
	timer := regexp.MustCompile(`^[^,]+,\s*([0-9]+)\s*$`)
	literal := regexp.MustCompile(`^\s*"([^"]*)"\s*$`)
	internal := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16")}
	for _, r := range lib.recipes {
		pol := lib.policies[r.Name]
		if pol == nil {
			continue
		}
		need := map[string]bool{}
		var scopes policy.KillScope
		var calls []call
		for _, rx := range r.Reactions {
			if rx.Format != "js" {
				t.Errorf("%s: built-in reactions are JavaScript, got %s", r.Name, rx.Format)
				need[policy.CapShell] = true
				continue
			}
			calls = append(calls, jsCalls(rx.Code)...)
		}
		for _, c := range calls {
			capName, isHelper := caps[c.name]
			if !isHelper || capName == "" {
				continue
			}
			need[capName] = true
			switch c.name {
			case "KillCurrent":
				scopes.Current = true
			case "KillParent":
				scopes.Parent = true
			case "KillProcess":
				scopes.Ancestry = true
			case "KillTree":
				if c.noArgs {
					scopes.Current = true
				} else {
					scopes.Ancestry = true
				}
			case "ReadFile", "HashFile", "Stat":
				if m := literal.FindStringSubmatch(c.argText); m != nil && !pol.CanRead(m[1]) {
					t.Errorf("%s: %s(%q) is outside fs.read %v", r.Name, c.name, m[1], pol.FSRead)
				}
			case "NetBlockIpTimer":
				m := timer.FindStringSubmatch(c.argText)
				if m == nil {
					t.Errorf("%s: NetBlockIpTimer(%s): the duration must be a literal so it can be checked", r.Name, c.argText)
					continue
				}
				secs, _ := strconv.Atoi(m[1])
				if !pol.NetBlockIP.TTLAllowed(time.Duration(secs) * time.Second) {
					t.Errorf("%s: NetBlockIpTimer for %ss beyond max_ttl %s", r.Name, m[1], pol.NetBlockIP.MaxTTL)
				}
			case "NetBlockIp", "NetBlockCidr":
				if pol.NetBlockIP.MaxTTL > 0 && !strings.Contains(c.argText, ",") {
					t.Errorf("%s: %s(%s) is permanent but max_ttl is %s", r.Name, c.name, c.argText, pol.NetBlockIP.MaxTTL)
				}
			}
		}
		var granted []string
		for _, c := range pol.Capabilities() {
			if c != policy.CapLog {
				granted = append(granted, c)
			}
		}
		var used []string
		for c := range need {
			used = append(used, c)
		}
		sort.Strings(used)
		for _, c := range granted {
			if !need[c] {
				t.Errorf("%s%s grants %s, which the reactions never use", r.Name, policy.FileSuffix, c)
			}
		}
		for _, c := range used {
			if !slices.Contains(granted, c) {
				t.Errorf("%s: reactions use %s, which %s%s does not grant", r.Name, c, r.Name, policy.FileSuffix)
			}
		}
		if need[policy.CapProcessKill] && pol.Kill != scopes {
			t.Errorf("%s: process.kill grants %+v, reactions need %+v", r.Name, pol.Kill, scopes)
		}
		for _, g := range pol.FSWrite {
			if !strings.HasPrefix(g, "/**/"+r.Name+"/") {
				t.Errorf("%s: fs.write %q is not inside the recipe's own temp directories (/**/%s/...)", r.Name, g, r.Name)
			}
		}
		if pol.NetBlockIP.Allow {
			if pol.NetBlockIP.MaxTTL == 0 {
				t.Errorf("%s: net.block.ip without max_ttl: built-in blocks must expire", r.Name)
			}
			for _, p := range internal {
				if pol.NetBlockIP.CanBlock(p) {
					t.Errorf("%s: net.block.ip may block internal network %s", r.Name, p)
				}
			}
		}
	}
}
