// Package testkit holds the helpers the daemon suites (tests, tests/attack, tests/faults)
// share: commands, files, names, and reading the JSON events the daemon prints.
package testkit

import (
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// Token is a short random name part, so that parallel runs never share a name.
func Token(t *testing.T) string {
	t.Helper()
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Run runs a command and fails the test with its output when it fails.
func Run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Write writes a 0600 file.
func Write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// Field is the value at path in a decoded JSON object, nil when any step is missing.
func Field(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// Str is Field as a string ("" when absent or not a string).
func Str(m map[string]any, path ...string) string {
	s, _ := Field(m, path...).(string)
	return s
}

// Num is Field as an int (0 when absent or not a number).
func Num(m map[string]any, path ...string) int {
	f, _ := Field(m, path...).(float64)
	return int(f)
}

// ServeDNS answers A queries for name with addr, and anything else with NXDOMAIN.
func ServeDNS(c net.PacketConn, name, addr string) {
	buf := make([]byte, 512)
	ip := net.ParseIP(addr).To4()
	for {
		n, from, err := c.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		found := strings.EqualFold(strings.TrimSuffix(q.Name.String(), "."), name)
		hdr := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true}
		if !found {
			hdr.RCode = dnsmessage.RCodeNameError
		}
		b := dnsmessage.NewBuilder(nil, hdr)
		b.EnableCompression()
		_ = b.StartQuestions()
		_ = b.Question(q)
		_ = b.StartAnswers()
		if found && q.Type == dnsmessage.TypeA {
			_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 300},
				dnsmessage.AResource{A: [4]byte(ip)})
		}
		out, err := b.Finish()
		if err != nil {
			continue
		}
		_, _ = c.WriteTo(out, from)
	}
}
