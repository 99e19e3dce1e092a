package recipes

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxAliasDepth bounds alias chains; longer ones are reported as aliases, not followed.
const maxAliasDepth = 16

// deref follows YAML aliases so that anchors work like copies.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < maxAliasDepth; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null")
}

// DescribeNode names a node's type and value for error messages ("a list", "the number 3").
func DescribeNode(n *yaml.Node) string { return describe(n) }

// describe names a node's type for error messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return fmt.Sprintf("the boolean %s", n.Value)
		case "!!int", "!!float":
			return fmt.Sprintf("the number %s", n.Value)
		}
		return fmt.Sprintf("the string %q", n.Value)
	}
	return "an unknown node"
}

// YAMLLine splits one of go-yaml's "yaml: line N: message" errors into its line (1 when it
// names none) and its message, for errors that point at file:line.
func YAMLLine(err error) (int, string) {
	msg := err.Error()
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return line, m[2]
	}
	return 1, strings.TrimPrefix(msg, "yaml: ")
}

var yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

func yamlError(file string, err error) error {
	line, msg := YAMLLine(err)
	return &Error{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

// orList renders "a, b or c".
func orList(vals []string) string {
	switch len(vals) {
	case 0:
		return ""
	case 1:
		return vals[0]
	}
	return strings.Join(vals[:len(vals)-1], ", ") + " or " + vals[len(vals)-1]
}

// suggest returns " (did you mean x?)" when a known name is close to s.
func suggest(s string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		limit := 2
		if len(k) < 5 {
			limit = 1
		}
		if d := levenshtein(s, k); d <= limit && d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99 // not worth it: only short field names are compared
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// SnakeCase normalises a kind: "CryptoMinerExecution", "crypto-miner execution" and
// "crypto_miner_execution" all give "crypto_miner_execution".
func SnakeCase(s string) string {
	isUpper := func(r rune) bool { return r >= 'A' && r <= 'Z' }
	isLower := func(r rune) bool { return r >= 'a' && r <= 'z' }
	isDigit := func(r rune) bool { return r >= '0' && r <= '9' }
	rs := []rune(strings.TrimSpace(s))
	var b strings.Builder
	lastUnderscore := true // no leading underscore
	for i, r := range rs {
		switch {
		case isUpper(r):
			prevLowerOrDigit := i > 0 && (isLower(rs[i-1]) || isDigit(rs[i-1]))
			acronymEnd := i > 0 && isUpper(rs[i-1]) && i+1 < len(rs) && isLower(rs[i+1])
			if (prevLowerOrDigit || acronymEnd) && !lastUnderscore {
				b.WriteByte('_')
			}
			b.WriteRune(r + ('a' - 'A'))
			lastUnderscore = false
		case isLower(r) || isDigit(r):
			b.WriteRune(r)
			lastUnderscore = false
		default:
			if !lastUnderscore {
				b.WriteByte('_')
				lastUnderscore = true
			}
		}
	}
	return strings.TrimSuffix(b.String(), "_")
}

// validName accepts names usable as a store namespace and in "<name>.policy.yaml".
func validName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case (r == '_' || r == '-' || r == '.') && i > 0:
		default:
			return false
		}
	}
	return true
}
