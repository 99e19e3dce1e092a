package testrun

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jibril-rt/jibril/sandbox"
)

// check compares a case's expectations with what happened; each failure is a readable
// message, possibly several lines.
func check(e *Expect, rec *Record) []string {
	var out []string
	add := func(s string) {
		if s != "" {
			out = append(out, s)
		}
	}
	add(checkStatus(e, rec.Transcript))
	if e.hasCalls {
		add(checkCalls(e.Calls, rec.Calls))
	}
	if e.hasLogs {
		got := make([][2]string, len(rec.Logs))
		for i, l := range rec.Logs {
			got[i] = [2]string{l.Level, l.Msg}
		}
		add(checkLines("logs", "level", e.Logs, got))
	}
	if e.hasAlerts {
		got := make([][2]string, len(rec.Alerts))
		for i, a := range rec.Alerts {
			got[i] = [2]string{a.Importance, a.Msg}
		}
		add(checkLines("alerts", "importance", e.Alerts, got))
	}
	if e.hasStore {
		add(mapDiff("store", e.Store, rec.World.Store, strconv.Quote))
	}
	if e.hasLists {
		add(mapDiff("lists", e.Lists, rec.World.Lists, func(v []string) string {
			b, _ := json.Marshal(v)
			return string(b)
		}))
	}
	if e.hasWritten {
		out = append(out, checkWritten(e.Written, rec.World.Written)...)
	}
	if e.hasDenied {
		add(checkDenied(e.Denied, rec.Calls))
	}
	return out
}

func checkStatus(e *Expect, t *sandbox.Transcript) string {
	if string(t.Status) == e.Status {
		return ""
	}
	msg := fmt.Sprintf("status: want %s, got %s", e.Status, t.Status)
	if t.Error != nil {
		msg += fmt.Sprintf(" (%s: %s)", t.Error.Name, t.Error.Message)
		if t.Error.Stack != "" {
			msg += "\n" + indent(t.Error.Stack, "  ")
		}
	}
	return msg
}

// renderCall shows a call as it happened: Helper("arg", ...) = result [errno] [denied].
func renderCall(c sandbox.Call) string {
	var b strings.Builder
	b.WriteString(c.Helper + "(")
	for i, a := range c.Args {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(strconv.Quote(a))
	}
	r, _ := json.Marshal(c.Result)
	fmt.Fprintf(&b, ") = %s", r)
	if c.Errno != "" {
		fmt.Fprintf(&b, " errno=%q", c.Errno)
	}
	if c.Denied {
		b.WriteString(" [denied]")
	}
	return b.String()
}

// renderWant shows an expected call with only the fields it constrains.
func renderWant(w CallWant) string {
	var b strings.Builder
	b.WriteString(w.Helper)
	if w.Args != nil {
		b.WriteString("(")
		for i, a := range w.Args {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(strconv.Quote(a))
		}
		b.WriteString(")")
	}
	if w.Result != nil {
		r, _ := json.Marshal(*w.Result)
		fmt.Fprintf(&b, " = %s", r)
	}
	if w.Errno != nil {
		if *w.Errno == "" {
			b.WriteString(" errno=\"\"")
		} else {
			fmt.Fprintf(&b, " errno~%q", *w.Errno)
		}
	}
	if w.Denied != nil {
		if *w.Denied {
			b.WriteString(" [denied]")
		} else {
			b.WriteString(" [not denied]")
		}
	}
	return b.String()
}

func callMatches(w CallWant, c sandbox.Call) bool {
	if w.Helper != c.Helper {
		return false
	}
	if w.Args != nil && !slices.Equal(w.Args, c.Args) {
		return false
	}
	if w.Result != nil && !sameJSON(*w.Result, c.Result) {
		return false
	}
	if w.Errno != nil {
		if *w.Errno == "" && c.Errno != "" || !strings.Contains(c.Errno, *w.Errno) {
			return false
		}
	}
	if w.Denied != nil && *w.Denied != c.Denied {
		return false
	}
	return true
}

func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func checkCalls(want []CallWant, got []sandbox.Call) string {
	ops := lcs(len(want), len(got), func(i, j int) bool { return callMatches(want[i], got[j]) })
	if ops == nil {
		return ""
	}
	var b strings.Builder
	b.WriteString("calls differ (- want, + got):\n")
	if len(want) == 0 && len(got) > 0 {
		b.WriteString("  (want no calls)\n")
	}
	if len(got) == 0 && len(want) > 0 {
		b.WriteString("  (the reaction made no calls)\n")
	}
	renderOps(&b, len(want), len(got), ops,
		func(i int) string { return renderWant(want[i]) },
		func(j int) string { return renderCall(got[j]) })
	return strings.TrimRight(b.String(), "\n")
}

// pair is one matched (want i, got j) of a longest common subsequence.
type pair struct{ i, j int }

// lcs returns the matched pairs of a longest common subsequence under eq, or nil when
// every element matches in order (lengths equal).
func lcs(n, m int, eq func(i, j int) bool) []pair {
	if n == m {
		all := true
		for i := 0; i < n && all; i++ {
			all = eq(i, i)
		}
		if all {
			return nil
		}
	}
	t := make([][]int, n+1)
	for i := range t {
		t[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if eq(i, j) {
				t[i][j] = t[i+1][j+1] + 1
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	out := []pair{}
	for i, j := 0, 0; i < n && j < m; {
		switch {
		case eq(i, j) && t[i][j] == t[i+1][j+1]+1:
			out = append(out, pair{i, j})
			i++
			j++
		case t[i+1][j] >= t[i][j+1]:
			i++
		default:
			j++
		}
	}
	return out
}

// renderOps writes a unified diff of two sequences given their matched pairs.
func renderOps(b *strings.Builder, n, m int, pairs []pair, want func(int) string, got func(int) string) {
	i, j := 0, 0
	flush := func(ti, tj int) {
		for ; i < ti; i++ {
			b.WriteString("  - " + want(i) + "\n")
		}
		for ; j < tj; j++ {
			b.WriteString("  + " + got(j) + "\n")
		}
	}
	for _, p := range pairs {
		flush(p.i, p.j)
		b.WriteString("    " + got(j) + "\n")
		i, j = p.i+1, p.j+1
	}
	flush(n, m)
}

// lineDiff is a line diff of two texts.
func lineDiff(want, got []string) string {
	pairs := lcs(len(want), len(got), func(i, j int) bool { return want[i] == got[j] })
	if pairs == nil {
		pairs = make([]pair, len(want))
		for i := range want {
			pairs[i] = pair{i, i}
		}
	}
	var b strings.Builder
	renderOps(&b, len(want), len(got), pairs, func(i int) string { return want[i] }, func(j int) string { return got[j] })
	return strings.TrimRight(b.String(), "\n")
}

// checkLines checks that the expected lines appear in order (other lines may come between);
// an empty expectation means no line at all.
func checkLines(what, levelName string, want []LineWant, got [][2]string) string {
	show := func() string {
		if len(got) == 0 {
			return "  (none)"
		}
		var b strings.Builder
		for _, g := range got {
			fmt.Fprintf(&b, "  %s: %s\n", g[0], g[1])
		}
		return strings.TrimRight(b.String(), "\n")
	}
	if len(want) == 0 {
		if len(got) == 0 {
			return ""
		}
		return fmt.Sprintf("%s: want none, got:\n%s", what, show())
	}
	j := 0
	for k, w := range want {
		for ; j < len(got); j++ {
			if (w.Level == "" || w.Level == got[j][0]) && w.Match.MatchString(got[j][1]) {
				break
			}
		}
		if j == len(got) {
			desc := fmt.Sprintf("match %q", w.Match.String())
			if w.Level != "" {
				desc = fmt.Sprintf("%s %s, %s", levelName, w.Level, desc)
			}
			after := ""
			if k > 0 {
				after = fmt.Sprintf(" after the line matching %s #%d", what, k-1)
			}
			return fmt.Sprintf("%s #%d {%s} not found%s; got:\n%s", what, k, desc, after, show())
		}
		j++
	}
	return ""
}

func mapDiff[V any](what string, want, got map[string]V, render func(V) string) string {
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	var b strings.Builder
	for _, k := range sortedKeys(keys) {
		w, wok := want[k]
		g, gok := got[k]
		switch {
		case wok && gok && render(w) == render(g):
		default:
			if wok {
				fmt.Fprintf(&b, "  - %s: %s\n", k, render(w))
			}
			if gok {
				fmt.Fprintf(&b, "  + %s: %s\n", k, render(g))
			}
		}
	}
	if b.Len() == 0 {
		return ""
	}
	return what + " differs (- want, + got):\n" + strings.TrimRight(b.String(), "\n")
}

// globRegexp compiles a written-file glob: ** any characters, * and ? within one path
// segment; a glob not starting with / matches the end of the path on a segment boundary.
func globRegexp(glob string) *regexp.Regexp {
	var b strings.Builder
	if strings.HasPrefix(glob, "/") {
		b.WriteString("^")
	} else {
		b.WriteString("(?:^|/)")
	}
	for i := 0; i < len(glob); i++ {
		switch {
		case strings.HasPrefix(glob[i:], "**"):
			b.WriteString(".*")
			i++
		case glob[i] == '*':
			b.WriteString("[^/]*")
		case glob[i] == '?':
			b.WriteString("[^/]")
		default:
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		}
	}
	b.WriteString("$")
	return regexp.MustCompile(b.String())
}

func checkWritten(want map[string]ContentWant, got map[string]string) []string {
	paths := sortedKeys(got)
	if len(want) == 0 {
		if len(got) == 0 {
			return nil
		}
		return []string{"written: want no files written, got: " + strings.Join(paths, ", ")}
	}
	var out []string
	for _, glob := range sortedKeys(want) {
		w := want[glob]
		re := globRegexp(glob)
		var matched []string
		for _, p := range paths {
			if re.MatchString(p) {
				matched = append(matched, p)
			}
		}
		if len(matched) == 0 {
			shown := "nothing"
			if len(paths) > 0 {
				shown = strings.Join(paths, ", ")
			}
			out = append(out, fmt.Sprintf("written %q: no file written matches (written: %s)", glob, shown))
			continue
		}
		for _, p := range matched {
			if msg := contentDiff(w, got[p]); msg != "" {
				out = append(out, fmt.Sprintf("written %s (matching %q): %s", p, glob, msg))
			}
		}
	}
	return out
}

func contentDiff(w ContentWant, got string) string {
	switch {
	case w.Exact != nil:
		if *w.Exact == got {
			return ""
		}
		return "content differs (- want, + got):\n" +
			lineDiff(strings.Split(*w.Exact, "\n"), strings.Split(got, "\n"))
	case w.Match != nil:
		if w.Match.MatchString(got) {
			return ""
		}
		return fmt.Sprintf("content does not match %q; got %q", w.Match.String(), clip(got))
	default:
		var g any
		if err := json.Unmarshal([]byte(got), &g); err != nil {
			return fmt.Sprintf("not JSON (%v); got %q", err, clip(got))
		}
		var want any
		b, _ := json.Marshal(w.JSON)
		_ = json.Unmarshal(b, &want)
		return subset(want, g, "$")
	}
}

func clip(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// subset reports where got does not contain want: every key of a wanted object must be
// there (recursively); lists must have the same length, element by element; scalars equal.
func subset(want, got any, at string) string {
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return fmt.Sprintf("JSON %s: want an object, got %s", at, compact(got))
		}
		keys := make([]string, 0, len(w))
		for k := range w {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			gv, ok := g[k]
			if !ok {
				return fmt.Sprintf("JSON %s.%s: missing (want %s)", at, k, compact(w[k]))
			}
			if msg := subset(w[k], gv, at+"."+k); msg != "" {
				return msg
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return fmt.Sprintf("JSON %s: want %s, got %s", at, compact(want), compact(got))
		}
		for i := range w {
			if msg := subset(w[i], g[i], fmt.Sprintf("%s[%d]", at, i)); msg != "" {
				return msg
			}
		}
		return ""
	}
	if sameJSON(want, got) {
		return ""
	}
	return fmt.Sprintf("JSON %s: want %s, got %s", at, compact(want), compact(got))
}

func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return clip(string(b))
}

// deniedDetail splits a denied call's errno "capability denied: <detail> (<source>)" into
// the capability and its detail ("process.kill: current").
func deniedDetail(c sandbox.Call) (capName, detail string) {
	d, ok := strings.CutPrefix(c.Errno, "capability denied: ")
	if !ok {
		return "", ""
	}
	if i := strings.LastIndex(d, " ("); i >= 0 {
		d = d[:i]
	}
	capName, _, _ = strings.Cut(d, ":")
	return capName, d
}

func checkDenied(want []string, calls []sandbox.Call) string {
	var denied []sandbox.Call
	for _, c := range calls {
		if c.Denied {
			denied = append(denied, c)
		}
	}
	matches := func(w string, c sandbox.Call) bool {
		capName, detail := deniedDetail(c)
		return w == c.Helper || capName != "" && (w == capName || w == detail)
	}
	var problems []string
	for _, w := range want {
		if !slices.ContainsFunc(denied, func(c sandbox.Call) bool { return matches(w, c) }) {
			problems = append(problems, fmt.Sprintf("  - %s (expected a denial, none happened)", w))
		}
	}
	for _, c := range denied {
		if !slices.ContainsFunc(want, func(w string) bool { return matches(w, c) }) {
			problems = append(problems, "  + "+renderCall(c))
		}
	}
	if len(problems) == 0 {
		return ""
	}
	return "denied differs (- want, + got):\n" + strings.Join(problems, "\n")
}
