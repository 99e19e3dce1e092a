package testrun

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/recipes/policy"
	"github.com/jibril-rt/jibril/sandbox"
)

// Suffix ends the name of every test file: <recipe name>.test.yaml.
const Suffix = ".test.yaml"

// maxTestFile bounds a test file and an event fixture.
const maxTestFile = 16 << 20

// DefaultClock is the time a case sees when it sets no clock.
func DefaultClock() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// DefaultSeed seeds Math.random when a case sets no seed.
const DefaultSeed uint64 = 1

// Error is one problem in a test file; its text is "file:line: field: message".
type Error struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s:%d: ", e.File, e.Line)
	if e.Field != "" {
		s += e.Field + ": "
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s + e.Msg)
}

// KV is one key of the data store, in the order the file gives it.
type KV struct {
	Key, Value string
}

// Case is one test case of a test file.
type Case struct {
	Name     string
	Line     int
	Reaction int
	Event    []byte // compact JSON object
	UUID     string
	Clock    time.Time
	Seed     uint64
	Store    []KV
	Lists    map[string][]string
	Files    map[string]string
	Returns  map[string]Answer
	Golden   bool
	Expect   Expect

	reactionLine int
}

// Answer is what a helper answers in a case's world (`returns`).
type Answer struct {
	Result any    // int, string, bool or nil, as the helper returns it
	Errno  string // non-empty: the call fails with this Errno()
}

// Expect is what a case checks. A nil field is not checked; Status is always checked
// ("ok" unless the case says otherwise).
type Expect struct {
	Status  string
	Calls   []CallWant // nil: not checked; empty: no calls at all
	Logs    []LineWant
	Alerts  []LineWant
	Store   map[string]string
	Lists   map[string][]string
	Written map[string]ContentWant
	Denied  []string

	statusSet, hasCalls, hasLogs, hasAlerts, hasStore, hasLists, hasWritten, hasDenied bool
}

// CallWant is one expected helper call; nil fields are not compared.
type CallWant struct {
	Helper string
	Args   []string
	Result *any
	Errno  *string // "" must be empty; otherwise a substring of the errno
	Denied *bool
}

// LineWant is one expected log line or alert: an unanchored regexp and an optional level
// (importance for alerts).
type LineWant struct {
	Level string
	Match *regexp.Regexp
}

// ContentWant is what a written file must hold: exact text, a JSON subset or a regexp.
type ContentWant struct {
	Exact *string
	JSON  any
	Match *regexp.Regexp
}

// helperKinds says how every helper answers (for `returns`) and which can be answered at all.
func helperKinds() map[string]string {
	m := map[string]string{"Info": "", "Warn": "", "Error": "", "Errno": "", "Stat": "json"}
	for _, h := range []string{"Alert", "KillCurrent", "KillParent", "KillProcess", "KillTree", "Freeze", "Thaw",
		"NetBlockIp", "NetBlockIpTimer", "NetBlockCidr", "NetUnblockIp", "NetBlockDomain", "NetUnblockDomain",
		"WriteFile", "RemoveDir", "DataSet", "DataDelete", "DataClear", "DataSize", "DataPush", "PowerOff", "Panic"} {
		m[h] = "int"
	}
	for _, h := range []string{"ReadFile", "HashFile", "CreateTempDir", "CollectEvidence", "DataGet", "DataKeys", "DataValues", "DataPop"} {
		m[h] = "string"
	}
	for _, h := range []string{"DataIsEmpty", "DataHasKey", "DataHasValue"} {
		m[h] = "bool"
	}
	return m
}

// fileParser collects every problem of one test file.
type fileParser struct {
	fsys  fs.FS
	path  string // inside fsys
	shown string // in messages
	kinds map[string]string
	errs  []error
}

func (p *fileParser) fail(n *yaml.Node, field, format string, a ...any) {
	line := 1
	if n != nil && n.Line > 0 {
		line = n.Line
	}
	p.errs = append(p.errs, &Error{File: p.shown, Line: line, Field: field, Msg: fmt.Sprintf(format, a...)})
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 16; i++ {
		n = n.Alias
	}
	return n
}

// mapping returns the fields of a mapping node in order, rejecting unknown and duplicate ones.
func (p *fileParser) mapping(n *yaml.Node, field string, allowed ...string) ([][2]*yaml.Node, bool) {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		p.fail(n, field, "expected a mapping, got %s", recipes.DescribeNode(n))
		return nil, false
	}
	var out [][2]*yaml.Node
	seen := map[string]bool{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			p.fail(k, field, "expected a string key, got %s", recipes.DescribeNode(k))
			ok = false
			continue
		}
		if allowed != nil && !slices.Contains(allowed, k.Value) {
			p.fail(k, join(field, k.Value), "unknown field (known: %s)", strings.Join(allowed, ", "))
			ok = false
			continue
		}
		if seen[k.Value] {
			p.fail(k, join(field, k.Value), "given twice")
			ok = false
			continue
		}
		seen[k.Value] = true
		out = append(out, [2]*yaml.Node{k, v})
	}
	return out, ok
}

func join(parent, name string) string {
	if parent == "" {
		return name
	}
	return parent + "." + name
}

func (p *fileParser) scalar(n *yaml.Node, field string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		p.fail(n, field, "expected a string, got %s", recipes.DescribeNode(n))
		return "", false
	}
	return n.Value, true
}

func (p *fileParser) str(n *yaml.Node, field string) (string, bool) {
	s, ok := p.scalar(n, field)
	if ok && n.ShortTag() != "!!str" {
		p.fail(n, field, "expected a string, got %s (quote it)", n.Value)
		return "", false
	}
	return s, ok
}

func (p *fileParser) boolean(n *yaml.Node, field string) (bool, bool) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
		p.fail(n, field, "expected true or false, got %s", recipes.DescribeNode(n))
		return false, false
	}
	return n.Value == "true", true
}

func (p *fileParser) list(n *yaml.Node, field string) ([]*yaml.Node, bool) {
	n = deref(n)
	if n.Kind != yaml.SequenceNode {
		p.fail(n, field, "expected a list, got %s", recipes.DescribeNode(n))
		return nil, false
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = deref(c)
	}
	return out, true
}

func (p *fileParser) regex(n *yaml.Node, field string) (*regexp.Regexp, bool) {
	s, ok := p.scalar(n, field)
	if !ok {
		return nil, false
	}
	re, err := regexp.Compile(s)
	if err != nil {
		p.fail(n, field, "bad regexp: %v", err)
		return nil, false
	}
	return re, true
}

// value decodes a node into plain Go values (maps with string keys, lists, scalars).
func (p *fileParser) value(n *yaml.Node, field string) (any, bool) {
	var v any
	if err := n.Decode(&v); err != nil {
		p.fail(n, field, "%v", err)
		return nil, false
	}
	if _, err := json.Marshal(v); err != nil {
		p.fail(n, field, "not representable as JSON (keys must be strings): %v", err)
		return nil, false
	}
	return v, true
}

// parseFile reads one test file. The recipe it names is resolved later.
func parseFile(fsys fs.FS, name, shown string) (string, int, []*Case, []error) {
	p := &fileParser{fsys: fsys, path: name, shown: shown, kinds: helperKinds()}
	data, err := readLimited(fsys, name)
	if err != nil {
		return "", 0, nil, []error{&Error{File: shown, Line: 1, Msg: err.Error()}}
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return "", 0, nil, []error{&Error{File: shown, Line: 1, Msg: "empty test file"}}
		}
		return "", 0, nil, []error{yamlErr(shown, err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return "", 0, nil, []error{&Error{File: shown, Line: extra.Line, Msg: "a second YAML document: a test file is one mapping"}}
	} else if !errors.Is(err, io.EOF) {
		return "", 0, nil, []error{yamlErr(shown, err)}
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	fields, ok := p.mapping(root, "", "recipe", "cases")
	if !ok && fields == nil {
		return "", 0, nil, p.errs
	}
	var recipe string
	recipeLine := root.Line
	var cases []*Case
	var haveCases bool
	for _, f := range fields {
		switch f[0].Value {
		case "recipe":
			recipe, _ = p.str(f[1], "recipe")
			recipeLine = f[1].Line
		case "cases":
			haveCases = true
			items, ok := p.list(f[1], "cases")
			if !ok {
				continue
			}
			if len(items) == 0 {
				p.fail(f[1], "cases", "no cases")
			}
			names := map[string]int{}
			for i, it := range items {
				c := p.parseCase(it, fmt.Sprintf("cases[%d]", i))
				if c == nil {
					continue
				}
				if first, dup := names[c.Name]; dup {
					p.fail(it, fmt.Sprintf("cases[%d].name", i), "case %q already defined at line %d", c.Name, first)
					continue
				}
				names[c.Name] = c.Line
				cases = append(cases, c)
			}
		}
	}
	if recipe == "" && len(p.errs) == 0 {
		p.fail(root, "recipe", "missing (the name of the recipe under test)")
	}
	if !haveCases {
		p.fail(root, "cases", "missing")
	}
	for _, c := range cases {
		if c.UUID == "" {
			sum := sha256.Sum256([]byte(recipe + "/" + c.Name))
			c.UUID = "00000000-0000-4000-8000-" + hex.EncodeToString(sum[:6])
		}
	}
	return recipe, recipeLine, cases, p.errs
}

func yamlErr(file string, err error) error {
	line, msg := recipes.YAMLLine(err)
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

func readLimited(fsys fs.FS, name string) ([]byte, error) {
	return recipes.ReadFile(fsys, name, maxTestFile)
}

func caseFields() []string {
	return []string{"name", "reaction", "event", "clock", "seed", "store", "lists", "files", "returns", "golden", "expect"}
}

func (p *fileParser) parseCase(n *yaml.Node, field string) *Case {
	before := len(p.errs)
	fields, _ := p.mapping(n, field, caseFields()...)
	c := &Case{Line: n.Line, Clock: DefaultClock(), Seed: DefaultSeed, Expect: Expect{Status: string(sandbox.StatusOK)}}
	var haveEvent, haveExpect bool
	var expectNode *yaml.Node
	for _, f := range fields {
		k, v := f[0].Value, f[1]
		fp := join(field, k)
		switch k {
		case "name":
			if s, ok := p.str(v, fp); ok {
				if strings.TrimSpace(s) == "" {
					p.fail(v, fp, "empty")
				}
				c.Name = s
			}
		case "reaction":
			i, err := strconv.Atoi(v.Value)
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || err != nil || i < 0 {
				p.fail(v, fp, "expected a reaction index (0, 1, ...), got %s", recipes.DescribeNode(v))
			}
			c.Reaction, c.reactionLine = i, v.Line
		case "event":
			haveEvent = true
			c.Event, c.UUID = p.event(v, fp)
		case "clock":
			if s, ok := p.scalar(v, fp); ok {
				t, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					p.fail(v, fp, "expected an RFC 3339 time like 2026-01-01T00:00:00Z, got %q", s)
				}
				c.Clock = t.UTC()
			}
		case "seed":
			u, err := strconv.ParseUint(v.Value, 0, 64)
			if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || err != nil {
				p.fail(v, fp, "expected a non-negative integer, got %s", recipes.DescribeNode(v))
			}
			c.Seed = u
		case "store":
			kvs, _ := p.storeMap(v, fp)
			c.Store = kvs
		case "lists":
			c.Lists, _ = p.lists(v, fp)
		case "files":
			c.Files = p.files(v, fp)
		case "returns":
			c.Returns = p.returns(v, fp)
		case "golden":
			c.Golden, _ = p.boolean(v, fp)
		case "expect":
			haveExpect = true
			expectNode = v
			p.expect(v, fp, &c.Expect)
		}
	}
	if c.Name == "" && len(p.errs) == before {
		p.fail(n, join(field, "name"), "missing")
	}
	if !haveEvent {
		p.fail(n, join(field, "event"), "missing (a JSON file relative to the test file, or a mapping)")
	}
	if len(p.errs) == before && !c.Golden && (!haveExpect || c.Expect.empty()) {
		at := n
		if expectNode != nil {
			at = expectNode
		}
		p.fail(at, join(field, "expect"), "case %q expects nothing (give expect.status, calls, logs, alerts, store, lists, written or denied, or golden: true)", c.Name)
	}
	if len(p.errs) > before {
		return nil
	}
	return c
}

// empty reports whether an expect block asks for nothing at all (status is not counted:
// it is checked anyway).
func (e *Expect) empty() bool {
	return !(e.hasCalls || e.hasLogs || e.hasAlerts || e.hasStore || e.hasLists || e.hasWritten || e.hasDenied || e.statusSet)
}

func (p *fileParser) event(v *yaml.Node, field string) ([]byte, string) {
	var raw []byte
	switch {
	case v.Kind == yaml.ScalarNode && v.ShortTag() == "!!str":
		rel := v.Value
		full := path.Join(path.Dir(p.path), rel)
		if path.IsAbs(rel) || !fs.ValidPath(full) {
			p.fail(v, field, "event file %q must be a relative path inside the tested tree", rel)
			return nil, ""
		}
		data, err := readLimited(p.fsys, full)
		if err != nil {
			p.fail(v, field, "read event file: %v", unwrapPath(err))
			return nil, ""
		}
		raw = data
	case v.Kind == yaml.MappingNode:
		val, ok := p.value(v, field)
		if !ok {
			return nil, ""
		}
		raw, _ = json.Marshal(val)
	default:
		p.fail(v, field, "expected a file name or a mapping, got %s", recipes.DescribeNode(v))
		return nil, ""
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		msg := "the event must be a JSON object"
		if err != nil {
			msg = "invalid event JSON: " + err.Error()
		}
		p.fail(v, field, "%s", msg)
		return nil, ""
	}
	var uuid string
	if u, ok := obj["uuid"]; ok {
		_ = json.Unmarshal(u, &uuid)
	}
	compact, err := json.Marshal(obj)
	if err != nil {
		p.fail(v, field, "%v", err)
		return nil, ""
	}
	return compact, uuid
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", pe.Path, pe.Err)
	}
	return err
}

func (p *fileParser) storeMap(v *yaml.Node, field string) ([]KV, bool) {
	fields, ok := p.mapping(v, field)
	var out []KV
	for _, f := range fields {
		s, sok := p.scalar(f[1], join(field, f[0].Value))
		if !sok {
			ok = false
			continue
		}
		out = append(out, KV{Key: f[0].Value, Value: s})
	}
	if out == nil {
		out = []KV{}
	}
	return out, ok
}

func (p *fileParser) lists(v *yaml.Node, field string) (map[string][]string, bool) {
	fields, ok := p.mapping(v, field)
	out := map[string][]string{}
	for _, f := range fields {
		fp := join(field, f[0].Value)
		items, lok := p.list(f[1], fp)
		if !lok {
			ok = false
			continue
		}
		vals := []string{}
		for i, it := range items {
			s, sok := p.scalar(it, fmt.Sprintf("%s[%d]", fp, i))
			ok = ok && sok
			vals = append(vals, s)
		}
		if len(vals) > 0 {
			out[f[0].Value] = vals
		}
	}
	return out, ok
}

func (p *fileParser) files(v *yaml.Node, field string) map[string]string {
	fields, _ := p.mapping(v, field)
	out := map[string]string{}
	for _, f := range fields {
		fp := join(field, f[0].Value)
		name := f[0].Value
		if !path.IsAbs(name) || path.Clean(name) != name || strings.Contains(name, "\x00") {
			p.fail(f[0], fp, "expected an absolute, clean path")
			continue
		}
		if s, ok := p.scalar(f[1], fp); ok {
			out[name] = s
		}
	}
	return out
}

func (p *fileParser) returns(v *yaml.Node, field string) map[string]Answer {
	fields, _ := p.mapping(v, field)
	out := map[string]Answer{}
	for _, f := range fields {
		name, val := f[0].Value, f[1]
		fp := join(field, name)
		kind, known := p.kinds[name]
		if !known {
			p.fail(f[0], fp, "unknown helper")
			continue
		}
		if kind == "" {
			p.fail(f[0], fp, "%s cannot be answered by the test (it only logs or reports)", name)
			continue
		}
		var a Answer
		resNode := val
		if val.Kind == yaml.MappingNode && (kind != "json" || hasKey(val, "errno") || hasKey(val, "result")) {
			ff, ok := p.mapping(val, fp, "result", "errno")
			if !ok {
				continue
			}
			resNode = nil
			for _, g := range ff {
				switch g[0].Value {
				case "result":
					resNode = g[1]
				case "errno":
					a.Errno, _ = p.str(g[1], join(fp, "errno"))
				}
			}
		}
		if resNode != nil {
			r, ok := p.answerValue(resNode, fp, kind)
			if !ok {
				continue
			}
			a.Result = r
		}
		if kind == "int" && a.Result == -1 && a.Errno == "" {
			a.Errno = "failed (answered -1 by the test's returns)"
		}
		if a.Result == nil && a.Errno == "" {
			p.fail(val, fp, "give a result or an errno")
			continue
		}
		out[name] = a
	}
	return out
}

func hasKey(n *yaml.Node, key string) bool {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return true
		}
	}
	return false
}

// answerValue converts a returns value to what the helper hands back to JS.
func (p *fileParser) answerValue(n *yaml.Node, field, kind string) (any, bool) {
	switch kind {
	case "int":
		i, err := strconv.Atoi(n.Value)
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || err != nil {
			p.fail(n, field, "expected an integer (0 done, 1 nothing to do, -1 error), got %s", recipes.DescribeNode(n))
			return nil, false
		}
		return i, true
	case "bool":
		return p.boolean(n, field)
	case "string":
		if n.Kind == yaml.SequenceNode { // DataKeys/DataValues answer a JSON array string
			v, ok := p.value(n, field)
			if !ok {
				return nil, false
			}
			b, _ := json.Marshal(v)
			return string(b), true
		}
		return p.scalar(n, field)
	default: // json (Stat)
		if n.Kind != yaml.MappingNode {
			p.fail(n, field, "expected a mapping like {size: 3, mode: 420, isDir: false}, got %s", recipes.DescribeNode(n))
			return nil, false
		}
		v, ok := p.value(n, field)
		if !ok {
			return nil, false
		}
		b, _ := json.Marshal(v)
		return string(b), true
	}
}

func expectFields() []string {
	return []string{"status", "calls", "logs", "alerts", "store", "lists", "written", "denied"}
}

func statuses() []string {
	return []string{string(sandbox.StatusOK), string(sandbox.StatusError), string(sandbox.StatusTimeout),
		string(sandbox.StatusOOM), string(sandbox.StatusTrap), StatusOff}
}

// StatusOff is the status of a case whose recipe's mode is off: no reaction runs.
const StatusOff = "off"

func (p *fileParser) expect(v *yaml.Node, field string, e *Expect) {
	if v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null" {
		return // "expect:" with nothing: rejected as expecting nothing
	}
	fields, _ := p.mapping(v, field, expectFields()...)
	for _, f := range fields {
		k, n := f[0].Value, f[1]
		fp := join(field, k)
		switch k {
		case "status":
			s, ok := p.scalar(n, fp)
			if ok && !slices.Contains(statuses(), s) {
				p.fail(n, fp, "unknown status %q (known: %s)", s, strings.Join(statuses(), ", "))
			}
			e.Status, e.statusSet = s, true
		case "calls":
			e.hasCalls = true
			e.Calls = p.calls(n, fp)
		case "logs":
			e.hasLogs = true
			e.Logs = p.lines(n, fp, "level", []string{"info", "warn", "error"})
		case "alerts":
			e.hasAlerts = true
			e.Alerts = p.lines(n, fp, "importance", []string{"low", "medium", "high", "critical"})
		case "store":
			e.hasStore = true
			kvs, _ := p.storeMap(n, fp)
			e.Store = map[string]string{}
			for _, kv := range kvs {
				e.Store[kv.Key] = kv.Value
			}
		case "lists":
			e.hasLists = true
			e.Lists, _ = p.lists(n, fp)
		case "written":
			e.hasWritten = true
			e.Written = p.written(n, fp)
		case "denied":
			e.hasDenied = true
			e.Denied = p.denied(n, fp)
		}
	}
}

func (p *fileParser) calls(n *yaml.Node, field string) []CallWant {
	items, ok := p.list(n, field)
	if !ok {
		return nil
	}
	out := []CallWant{}
	for i, it := range items {
		fp := fmt.Sprintf("%s[%d]", field, i)
		if it.Kind == yaml.ScalarNode {
			if _, known := p.kinds[it.Value]; !known {
				p.fail(it, fp, "unknown helper %q", it.Value)
				continue
			}
			out = append(out, CallWant{Helper: it.Value})
			continue
		}
		ff, ok := p.mapping(it, fp, "helper", "args", "result", "errno", "denied")
		if !ok {
			continue
		}
		var w CallWant
		for _, g := range ff {
			gp := join(fp, g[0].Value)
			switch g[0].Value {
			case "helper":
				w.Helper, _ = p.scalar(g[1], gp)
				if _, known := p.kinds[w.Helper]; !known && w.Helper != "" {
					p.fail(g[1], gp, "unknown helper %q", w.Helper)
				}
			case "args":
				args, ok := p.list(g[1], gp)
				if !ok {
					continue
				}
				w.Args = []string{}
				for j, a := range args {
					s, _ := p.scalar(a, fmt.Sprintf("%s[%d]", gp, j))
					w.Args = append(w.Args, s)
				}
			case "result":
				var r any
				if !(g[1].Kind == yaml.ScalarNode && g[1].ShortTag() == "!!null") {
					if v, ok := p.value(g[1], gp); ok {
						r = v
					}
				}
				w.Result = &r
			case "errno":
				s, _ := p.str(g[1], gp)
				w.Errno = &s
			case "denied":
				b, _ := p.boolean(g[1], gp)
				w.Denied = &b
			}
		}
		if w.Helper == "" {
			p.fail(it, join(fp, "helper"), "missing")
			continue
		}
		out = append(out, w)
	}
	return out
}

func (p *fileParser) lines(n *yaml.Node, field, levelName string, levels []string) []LineWant {
	items, ok := p.list(n, field)
	if !ok {
		return nil
	}
	out := []LineWant{}
	for i, it := range items {
		fp := fmt.Sprintf("%s[%d]", field, i)
		ff, ok := p.mapping(it, fp, levelName, "match")
		if !ok {
			continue
		}
		var w LineWant
		for _, g := range ff {
			gp := join(fp, g[0].Value)
			if g[0].Value == "match" {
				w.Match, _ = p.regex(g[1], gp)
				continue
			}
			w.Level, _ = p.scalar(g[1], gp)
			if !slices.Contains(levels, w.Level) {
				p.fail(g[1], gp, "expected %s, got %q", strings.Join(levels, ", "), w.Level)
			}
		}
		if w.Match == nil {
			p.fail(it, join(fp, "match"), "missing (a regexp)")
			continue
		}
		out = append(out, w)
	}
	return out
}

func (p *fileParser) written(n *yaml.Node, field string) map[string]ContentWant {
	fields, _ := p.mapping(n, field)
	out := map[string]ContentWant{}
	for _, f := range fields {
		glob, v := f[0].Value, f[1]
		fp := join(field, glob)
		if glob == "" || strings.Contains(glob, "\x00") {
			p.fail(f[0], fp, "bad glob %q", glob)
			continue
		}
		var w ContentWant
		switch {
		case v.Kind == yaml.ScalarNode:
			s, ok := p.scalar(v, fp)
			if !ok {
				continue
			}
			w.Exact = &s
		default:
			ff, ok := p.mapping(v, fp, "json", "match")
			if !ok {
				continue
			}
			if len(ff) != 1 {
				p.fail(v, fp, "give one of json (a subset the file's JSON must contain) or match (a regexp)")
				continue
			}
			g := ff[0]
			if g[0].Value == "json" {
				w.JSON, ok = p.value(g[1], join(fp, "json"))
				if w.JSON == nil && ok {
					w.JSON = map[string]any{} // json: null: the file must hold a JSON object
				}
			} else {
				w.Match, ok = p.regex(g[1], join(fp, "match"))
			}
			if !ok {
				continue
			}
		}
		out[glob] = w
	}
	return out
}

func (p *fileParser) denied(n *yaml.Node, field string) []string {
	items, ok := p.list(n, field)
	if !ok {
		return nil
	}
	out := []string{}
	for i, it := range items {
		fp := fmt.Sprintf("%s[%d]", field, i)
		s, ok := p.scalar(it, fp)
		if !ok {
			continue
		}
		capName, _, _ := strings.Cut(s, ":")
		if _, known := p.kinds[s]; !known && !slices.Contains(policy.KnownCapabilities(), capName) {
			p.fail(it, fp, "%q is neither a helper nor a capability", s)
			continue
		}
		out = append(out, s)
	}
	return out
}
