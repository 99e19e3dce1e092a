package bpf

import (
	"bytes"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// FuzzDecodeRecord feeds arbitrary ring-buffer records to every decoder, as the sensors would:
// the process ring dispatches on the record kind, while the file, net and DNS rings carry one
// kind each and decode whatever arrives. The input is also parsed as a bare DNS message.
// Seeds (testdata/fuzz/FuzzDecodeRecord) are records of every kind built from the BTF layouts
// of the compiled objects, plus truncated and hostile variants.
//
// Properties: no panic; a record is never modified; a decoded event never aliases the record
// (the ring buffer reuses its memory); every string is NUL-free and within its C buffer;
// lengths, ops, families and addresses are in range.
func FuzzDecodeRecord(f *testing.F) {
	var in interner // shared by the inputs: interned strings must never alias a record
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		if kind, err := recordKind(b); err == nil {
			switch kind {
			case kindExec:
				decodeTwice(t, b, decodeExec, checkExec)
			case kindFork:
				decodeTwice(t, b, decodeFork, checkFork)
			case kindExit:
				decodeTwice(t, b, decodeExit, checkExit)
			}
		}
		decodeTwice(t, b, func(b []byte, wall func(uint64) time.Time) (FileEvent, error) {
			return decodeFile(b, wall, nil)
		}, checkFile)
		decodeTwice(t, b, func(b []byte, wall func(uint64) time.Time) (FileEvent, error) {
			return decodeFile(b, wall, &in)
		}, checkFile)
		decodeTwice(t, b, decodeNet, checkNet)
		decodeTwice(t, b, decodeDNS, checkDNSRecord)
		for _, trunc := range []bool{false, true} {
			e := DNSEvent{Truncated: trunc}
			if err := parseDNS(b, &e); err == nil {
				checkDNS(t, e, len(b))
				checkWireNames(t, e, b)
			}
		}
		if !bytes.Equal(b, orig) {
			t.Fatalf("a decoder modified the record")
		}
	})
}

// decodeTwice decodes b, checks the event, and makes sure it does not alias b: the event
// decoded before b is overwritten must equal the one decoded from an untouched copy.
func decodeTwice[E any](t *testing.T, b []byte, decode func([]byte, func(uint64) time.Time) (E, error), check func(*testing.T, E, []byte)) {
	t.Helper()
	scratch := bytes.Clone(b)
	e, err := decode(scratch, fixedWall)
	if err != nil {
		if strings.ContainsAny(err.Error(), "\r\n") {
			t.Fatalf("multi-line error %q", err)
		}
		return
	}
	check(t, e, b)
	for i := range scratch {
		scratch[i] ^= 0xa5
	}
	again, err := decode(b, fixedWall)
	if err != nil {
		t.Fatalf("second decode of the same record failed: %v", err)
	}
	if !reflect.DeepEqual(e, again) {
		t.Fatalf("decoded event aliases the record:\n%+v\n%+v", e, again)
	}
}

// cstr checks a string read from a fixed C buffer of size n (NUL-terminated when shorter).
func cstr(t *testing.T, field, s string, n int) {
	t.Helper()
	if len(s) >= n+1 || strings.IndexByte(s, 0) >= 0 {
		t.Fatalf("%s: %d bytes %q, buffer is %d", field, len(s), s, n)
	}
}

func checkExec(t *testing.T, e ExecEvent, b []byte) {
	if len(b) < execSize {
		t.Fatalf("exec decoded from %d bytes", len(b))
	}
	cstr(t, "comm", e.Comm, taskCommLen)
	cstr(t, "filename", e.Filename, pathCap)
	cstr(t, "interp", e.Interp, pathCap)
	if e.Argv != nil && len(e.Argv) == 0 {
		t.Fatal("empty non-nil argv")
	}
	total := 0
	for _, a := range e.Argv {
		if strings.IndexByte(a, 0) >= 0 {
			t.Fatalf("argv element with a NUL: %q", a)
		}
		total += len(a) + 1
	}
	if total > argvCap+1 {
		t.Fatalf("argv of %d bytes from a %d byte area", total, argvCap)
	}
}

func checkFork(t *testing.T, e ForkEvent, b []byte) {
	if len(b) < forkSize {
		t.Fatalf("fork decoded from %d bytes", len(b))
	}
	cstr(t, "comm", e.Comm, taskCommLen)
}

func checkExit(t *testing.T, e ExitEvent, b []byte) {
	if len(b) < exitSize {
		t.Fatalf("exit decoded from %d bytes", len(b))
	}
	cstr(t, "comm", e.Comm, taskCommLen)
	// ExitCode is -1 for a status that is neither an exit nor a signal (only a hostile record).
	switch {
	case e.Signal < 0 || e.Signal > 127, e.ExitCode < -1 || e.ExitCode > 255:
		t.Fatalf("status %#x: signal %d, code %d", e.Status, e.Signal, e.ExitCode)
	case e.Signal != 0 && e.ExitCode != 0, e.CoreDump && e.Signal == 0:
		t.Fatalf("status %#x: signal %d, code %d, core %t", e.Status, e.Signal, e.ExitCode, e.CoreDump)
	}
}

func checkFile(t *testing.T, e FileEvent, b []byte) {
	if len(b) < fileSize1 {
		t.Fatalf("file event decoded from %d bytes", len(b))
	}
	// The kernel reports opens as OpOpen; create and write are derived from the flags.
	if e.Op < OpOpen || e.Op > OpChown || e.Op == OpCreate || e.Op == OpWrite {
		t.Fatalf("op %v", e.Op)
	}
	cstr(t, "comm", e.Comm, taskCommLen)
	cstr(t, "path", e.Path, pathCap)
	cstr(t, "path2", e.Path2, pathCap)
	if len(b) < fileSize2 && e.Path2 != "" {
		t.Fatalf("path2 %q from a one-path record", e.Path2)
	}
	if acts := e.Actions(); len(acts) == 0 || acts[0] != e.Op {
		t.Fatalf("actions %v for op %v", acts, e.Op)
	}
}

func checkAddr(t *testing.T, field string, a netip.Addr) {
	t.Helper()
	if !a.IsValid() || a.Is4In6() || a.Zone() != "" {
		t.Fatalf("%s: bad address %v", field, a)
	}
}

func checkNet(t *testing.T, e NetEvent, b []byte) {
	if len(b) < netSize {
		t.Fatalf("net event decoded from %d bytes", len(b))
	}
	if e.Op < NetState || e.Op > NetSendMsg {
		t.Fatalf("op %v", e.Op)
	}
	checkAddr(t, "local", e.Local.Addr())
	checkAddr(t, "remote", e.Remote.Addr())
	cstr(t, "comm", e.Comm, taskCommLen)
}

func checkDNSRecord(t *testing.T, e DNSEvent, b []byte) {
	if len(b) < dnsSize {
		t.Fatalf("dns event decoded from %d bytes", len(b))
	}
	checkAddr(t, "server", e.Server.Addr())
	checkAddr(t, "client", e.Client.Addr())
	checkDNS(t, e, dnsCap)
}

// checkDNS checks what parseDNS fills from a message of at most n bytes.
func checkDNS(t *testing.T, e DNSEvent, n int) {
	t.Helper()
	// A DNS name is at most 255 bytes on the wire; its lower-cased text must not grow.
	for i, name := range append([]string{e.Name}, e.CNAMEs...) {
		if len(name) > 255 {
			t.Fatalf("name %d: %d bytes %q", i, len(name), name)
		}
		if name != asciiLower(name) {
			t.Fatalf("name %d %q is not lower case", i, name)
		}
	}
	// Every answer record takes at least 12 bytes (root name, fixed fields, 1 byte of data).
	if len(e.Addrs)+len(e.CNAMEs) > n/12 {
		t.Fatalf("%d addresses and %d aliases from %d bytes", len(e.Addrs), len(e.CNAMEs), n)
	}
	for _, a := range e.Addrs {
		checkAddr(t, "answer", a)
	}
	if len(e.Addrs) == 0 && e.TTL != 0 {
		t.Fatalf("ttl %d without an address", e.TTL)
	}
}

// checkWireNames compares the names parseDNS returned with the message's own: lower-cased in
// ASCII only (DNS compares names so), without the final dot, otherwise byte for byte.
func checkWireNames(t *testing.T, e DNSEvent, msg []byte) {
	t.Helper()
	norm := func(n dnsmessage.Name) string { return asciiLower(strings.TrimSuffix(n.String(), ".")) }
	var p dnsmessage.Parser
	var cnames []string
	if _, err := p.Start(msg); err != nil {
		t.Fatalf("parsed a message whose header does not parse: %v", err)
	}
	q, err := p.Question()
	if err != nil {
		t.Fatalf("parsed a message without a question: %v", err)
	}
	if want := norm(q.Name); e.Name != want {
		t.Fatalf("name %q, the question is %q", e.Name, want)
	}
	if p.SkipAllQuestions() == nil {
		for {
			h, err := p.AnswerHeader()
			if err != nil {
				break
			}
			if h.Type != dnsmessage.TypeCNAME {
				if p.SkipAnswer() != nil {
					break
				}
				continue
			}
			r, err := p.CNAMEResource()
			if err != nil {
				break
			}
			cnames = append(cnames, norm(r.CNAME))
		}
	}
	// A truncated capture keeps the aliases read before the cut: a prefix of the message's.
	if len(e.CNAMEs) > len(cnames) || !slices.Equal(e.CNAMEs, cnames[:len(e.CNAMEs)]) {
		t.Fatalf("aliases %q, the message has %q", e.CNAMEs, cnames)
	}
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
