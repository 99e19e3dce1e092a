package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"golang.org/x/net/dns/dnsmessage"
	"golang.org/x/sys/unix"
)

// layout gives the byte offsets of a C struct from the BTF of a compiled
// object, so that the hand-written decoders are checked against the C.
type layout struct {
	t    *testing.T
	name string
	st   *btf.Struct
}

func structOf(t *testing.T, load func() (*ebpf.CollectionSpec, error), name string) layout {
	t.Helper()
	spec, err := load()
	if err != nil {
		t.Fatalf("load spec: %v", err)
	}
	var st *btf.Struct
	if err := spec.Types.TypeByName(name, &st); err != nil {
		t.Fatalf("BTF of struct %s: %v", name, err)
	}
	return layout{t: t, name: name, st: st}
}

func (l layout) off(member string) int {
	l.t.Helper()
	for _, m := range l.st.Members {
		if m.Name == member {
			return int(m.Offset / 8)
		}
	}
	l.t.Fatalf("struct %s has no member %s", l.name, member)
	return 0
}

// record builds a record of the struct's size with the ev_hdr filled.
func (l layout) record(kind, flags uint32, ktime uint64) []byte {
	b := make([]byte, l.st.Size)
	h := l.off("h")
	binary.LittleEndian.PutUint32(b[h:], kind)
	binary.LittleEndian.PutUint32(b[h+4:], flags)
	binary.LittleEndian.PutUint64(b[h+8:], ktime)
	return b
}

func (l layout) put16(b []byte, m string, v uint16) { binary.LittleEndian.PutUint16(b[l.off(m):], v) }
func (l layout) put32(b []byte, m string, v uint32) { binary.LittleEndian.PutUint32(b[l.off(m):], v) }
func (l layout) put64(b []byte, m string, v uint64) { binary.LittleEndian.PutUint64(b[l.off(m):], v) }
func (l layout) putB(b []byte, m string, v []byte)  { copy(b[l.off(m):], v) }

func fixedWall(kt uint64) time.Time { return time.Unix(0, int64(kt)) }

func TestRecordSizes(t *testing.T) {
	for _, tc := range []struct {
		load func() (*ebpf.CollectionSpec, error)
		name string
		size int
	}{
		{loadBpfProc, "exec_event", execSize},
		{loadBpfProc, "fork_event", forkSize},
		{loadBpfProc, "exit_event", exitSize},
		{loadBpfProc, "file_key", 16},
		{loadBpfFile, "file_event", fileSize2},
		{loadBpfFile, "prefix_key", 4 + pathCap},
		{loadBpfFile, "jcfg", binary.Size(jcfg{})},
		{loadBpfNet, "net_event", netSize},
		{loadBpfDNS, "dns_event", dnsSize},
	} {
		l := structOf(t, tc.load, tc.name)
		if int(l.st.Size) != tc.size {
			t.Errorf("struct %s: C size %d, Go expects %d", tc.name, l.st.Size, tc.size)
		}
	}
	if got := structOf(t, loadBpfFile, "file_event").off("path1"); got != filePath1 {
		t.Errorf("file_event path1 offset: C %d, Go %d", got, filePath1)
	}
	if got := structOf(t, loadBpfFile, "file_event").off("path2_bits"); got != fileSize1 {
		t.Errorf("file_event one-path size: C %d, Go %d", got, fileSize1)
	}
	if got := binary.Size(killKey{}); got != 16 {
		t.Errorf("killKey size %d", got)
	}
}

func TestDecodeExec(t *testing.T) {
	l := structOf(t, loadBpfProc, "exec_event")
	b := l.record(kindExec, execPrevented|execArgvTrunc, 123)
	l.put64(b, "start_ns", 99)
	l.put64(b, "cgroup_id", 7)
	l.put64(b, "ino", 4242)
	l.put32(b, "dev", 8<<20|3)
	l.put32(b, "pid", 10)
	l.put32(b, "tgid", 11)
	l.put32(b, "ppid", 12)
	l.put32(b, "old_pid", 13)
	l.put32(b, "uid", 1000)
	l.put32(b, "gid", 1001)
	l.put32(b, "euid", 0)
	l.put32(b, "egid", 1003)
	argv := []byte("/x/tool\x00-a\x00b c\x00")
	l.put16(b, "argv_len", uint16(len(argv)))
	l.putB(b, "comm", []byte("tool\x00junk"))
	l.putB(b, "filename", []byte("/x/tool"))
	l.putB(b, "interp", []byte("/x/tool"))
	l.putB(b, "argv", argv)

	got, err := decodeExec(b, fixedWall)
	if err != nil {
		t.Fatal(err)
	}
	want := ExecEvent{
		Time: time.Unix(0, 123), Ktime: 123, PID: 10, TGID: 11, PPID: 12, OldPID: 13, StartTime: 99,
		UID: 1000, GID: 1001, EUID: 0, EGID: 1003, CgroupID: 7, Comm: "tool",
		Filename: "/x/tool", Interp: "/x/tool", Argv: []string{"/x/tool", "-a", "b c"},
		Exe: FileID{Dev: unix.Mkdev(8, 3), Ino: 4242}, ArgvTruncated: true, Prevented: true,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("decodeExec:\n got %+v\nwant %+v", got, want)
	}

	// A hostile argv length is rejected, a short record too.
	l.put16(b, "argv_len", argvCap+1)
	if _, err := decodeExec(b, fixedWall); err == nil {
		t.Error("argv_len beyond the buffer accepted")
	}
	if _, err := decodeExec(b[:100], fixedWall); !errors.Is(err, errShort) {
		t.Errorf("short record: %v", err)
	}
}

func TestDecodeForkExit(t *testing.T) {
	f := structOf(t, loadBpfProc, "fork_event")
	b := f.record(kindFork, 0, 5)
	f.put64(b, "child_start", 77)
	f.put32(b, "parent_pid", 20)
	f.put32(b, "parent_tgid", 21)
	f.put32(b, "child_pid", 22)
	f.putB(b, "comm", []byte("bash"))
	fe, err := decodeFork(b, fixedWall)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ForkEvent{Time: time.Unix(0, 5), Ktime: 5, ParentPID: 20, ParentTGID: 21, ChildPID: 22, ChildStart: 77, Comm: "bash"}); fe != want {
		t.Errorf("decodeFork: got %+v want %+v", fe, want)
	}

	x := structOf(t, loadBpfProc, "exit_event")
	for _, tc := range []struct {
		status       uint32
		code, signal int
		core         bool
	}{
		{7 << 8, 7, 0, false},
		{0, 0, 0, false},
		{9, 0, 9, false},
		{11 | 0x80, 0, 11, true},
	} {
		b := x.record(kindExit, 0, 6)
		x.put64(b, "start_ns", 1)
		x.put32(b, "tgid", 30)
		x.put32(b, "status", tc.status)
		x.putB(b, "comm", []byte("sh"))
		e, err := decodeExit(b, fixedWall)
		if err != nil {
			t.Fatal(err)
		}
		if e.TGID != 30 || e.Comm != "sh" || e.ExitCode != tc.code || e.Signal != tc.signal || e.CoreDump != tc.core {
			t.Errorf("status %#x: got %+v", tc.status, e)
		}
	}
}

func TestDecodeFile(t *testing.T) {
	l := structOf(t, loadBpfFile, "file_event")
	for _, tc := range []struct {
		name    string
		op      uint32
		flags   uint32
		arg     uint64
		p1, p2  string
		size    int
		wantOp  Op
		actions []Op
	}{
		{"openat rw creat trunc", 1, fileMatch, unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC, "/etc/x", "", fileSize1, OpOpen, []Op{OpOpen, OpCreate, OpWrite, OpTruncate}},
		{"openat read", 1, 0, unix.O_RDONLY, "/etc/x", "", fileSize1, OpOpen, []Op{OpOpen}},
		{"ends with the path's NUL", 1, 0, unix.O_RDONLY, "/etc/x", "", filePath1 + len("/etc/x") + 1, OpOpen, []Op{OpOpen}},

		{"O_TMPFILE", 1, 0, unix.O_TMPFILE | unix.O_WRONLY, "/tmp", "", fileSize1, OpOpen, []Op{OpOpen, OpCreate, OpWrite}},
		{"rename", 5, fileRel2, 0, "/a", "b", fileSize2, OpRename, []Op{OpRename}},
		{"unlink", 3, 0, 0, "/a", "", fileSize1, OpUnlink, []Op{OpUnlink}},
		{"rmdir", 4, 0, 0, "/a", "", fileSize1, OpRmdir, []Op{OpRmdir}},
		{"chown", 10, fileFDOnly, 0, "", "", fileSize1, OpChown, []Op{OpChown}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := l.record(kindFile, tc.flags, 9)
			l.put64(b, "arg", tc.arg)
			l.put32(b, "pid", 40)
			l.put32(b, "tgid", 41)
			l.put32(b, "op", tc.op)
			l.put32(b, "nr", 257)
			l.put32(b, "dirfd1", uint32(0xffffff9c)) // AT_FDCWD
			l.put32(b, "fd", 0xffffffff)
			l.putB(b, "comm", []byte("cat"))
			l.putB(b, "path1", []byte(tc.p1))
			l.putB(b, "path2", []byte(tc.p2))
			e, err := decodeFile(b[:tc.size], fixedWall, nil)
			if err != nil {
				t.Fatal(err)
			}
			if e.Op != tc.wantOp || e.Path != tc.p1 || e.Path2 != tc.p2 || e.PID != 40 || e.TGID != 41 ||
				e.DirFD != AtFDCWD || e.FD != -1 || e.Comm != "cat" || e.Flags != tc.arg {
				t.Errorf("decoded %+v", e)
			}
			if e.Matched != (tc.flags&fileMatch != 0) || e.Relative2 != (tc.flags&fileRel2 != 0) || e.FDOnly != (tc.flags&fileFDOnly != 0) {
				t.Errorf("flags %#x decoded as %+v", tc.flags, e)
			}
			if got := e.Actions(); !slices.Equal(got, tc.actions) {
				t.Errorf("Actions() = %v, want %v", got, tc.actions)
			}
		})
	}
	// A record that ends inside its path (no NUL) decodes as truncated: fail closed.
	cut := l.record(kindFile, 0, 9)
	l.put32(cut, "op", 1)
	l.putB(cut, "path1", []byte("/etc/passwd"))
	if e, err := decodeFile(cut[:filePath1+len("/etc/pa")], fixedWall, nil); err != nil || e.Path != "/etc/pa" || !e.PathTruncated {
		t.Errorf("record cut in its path: %+v, %v; want /etc/pa, truncated", e, err)
	}
	if _, err := decodeFile(make([]byte, fileSizeMin-1), fixedWall, nil); err == nil {
		t.Error("a record without its path accepted")
	}
	b := l.record(kindFile, 0, 1)
	l.put32(b, "op", 99)
	if _, err := decodeFile(b, fixedWall, nil); err == nil {
		t.Error("unknown op accepted")
	}
}

func TestDecodeNet(t *testing.T) {
	l := structOf(t, loadBpfNet, "net_event")
	for _, tc := range []struct {
		family        uint16
		saddr, daddr  []byte
		local, remote string
	}{
		{unix.AF_INET, []byte{127, 0, 0, 1}, []byte{198, 18, 0, 1}, "127.0.0.1:4000", "198.18.0.1:443"},
		{unix.AF_INET6, netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("::ffff:198.18.0.2").AsSlice(), "[2001:db8::1]:4000", "198.18.0.2:443"},
	} {
		b := l.record(kindNet, netNoOwner, 3)
		l.put64(b, "sock", 0xdead)
		l.put32(b, "pid", 50)
		l.put32(b, "tgid", 51)
		l.put16(b, "family", tc.family)
		b[l.off("proto")] = unix.IPPROTO_TCP
		b[l.off("op")] = byte(NetState)
		l.put16(b, "sport", 4000)
		l.put16(b, "dport", 443)
		b[l.off("oldstate")] = byte(TCPSynSent)
		b[l.off("newstate")] = byte(TCPEstablished)
		l.putB(b, "saddr", tc.saddr)
		l.putB(b, "daddr", tc.daddr)
		l.putB(b, "comm", []byte("curl"))
		e, err := decodeNet(b, fixedWall)
		if err != nil {
			t.Fatal(err)
		}
		if e.Local.String() != tc.local || e.Remote.String() != tc.remote || e.Op != NetState ||
			e.OldState != TCPSynSent || e.NewState != TCPEstablished || !e.OwnerUnknown ||
			e.Sock != 0xdead || e.TGID != 51 || e.Comm != "curl" || e.Proto != unix.IPPROTO_TCP {
			t.Errorf("decoded %+v", e)
		}
	}
	b := l.record(kindNet, 0, 3)
	b[l.off("op")] = byte(NetState)
	l.put16(b, "family", 1) // AF_UNIX
	if _, err := decodeNet(b, fixedWall); err == nil {
		t.Error("unknown family accepted")
	}
}

// dnsAnswer builds a DNS response for the tests.
func dnsAnswer(t testing.TB, id uint16, name string, resp bool) []byte {
	t.Helper()
	n := dnsmessage.MustNewName(name)
	edge := dnsmessage.MustNewName("edge." + name)
	bld := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: resp, Authoritative: true})
	bld.EnableCompression()
	must := func(err error) {
		if err != nil {
			t.Fatal(err)
		}
	}
	must(bld.StartQuestions())
	must(bld.Question(dnsmessage.Question{Name: n, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	must(bld.StartAnswers())
	must(bld.CNAMEResource(dnsmessage.ResourceHeader{Name: n, Class: dnsmessage.ClassINET, TTL: 300}, dnsmessage.CNAMEResource{CNAME: edge}))
	must(bld.AResource(dnsmessage.ResourceHeader{Name: edge, Class: dnsmessage.ClassINET, TTL: 60}, dnsmessage.AResource{A: [4]byte{198, 18, 0, 7}}))
	must(bld.AAAAResource(dnsmessage.ResourceHeader{Name: edge, Class: dnsmessage.ClassINET, TTL: 120},
		dnsmessage.AAAAResource{AAAA: netip.MustParseAddr("2001:db8::7").As16()}))
	msg, err := bld.Finish()
	must(err)
	return msg
}

func TestParseDNS(t *testing.T) {
	full := dnsAnswer(t, 0x4a1b, "Jibril-Test.example.", true)
	for _, tc := range []struct {
		name      string
		msg       []byte
		truncated bool
		wantErr   bool
		addrs     int
	}{
		{"full answer", full, false, false, 2},
		{"query, not a response", dnsAnswer(t, 1, "a.example.", false), false, true, 0},
		{"garbage", []byte{1, 2, 3}, false, true, 0},
		{"cut in the answers, capture truncated", full[:len(full)-10], true, false, 1},
		{"cut in the answers, not truncated", full[:len(full)-10], false, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := DNSEvent{Truncated: tc.truncated}
			err := parseDNS(tc.msg, &e)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if e.ID != 0x4a1b || e.Name != "jibril-test.example" || e.QType != uint16(dnsmessage.TypeA) ||
				!slices.Equal(e.CNAMEs, []string{"edge.jibril-test.example"}) || len(e.Addrs) != tc.addrs {
				t.Fatalf("parsed %+v", e)
			}
			if e.Addrs[0] != netip.MustParseAddr("198.18.0.7") || e.TTL != 60 {
				t.Errorf("first address %v ttl %d", e.Addrs[0], e.TTL)
			}
			if tc.addrs == 2 && e.Addrs[1] != netip.MustParseAddr("2001:db8::7") {
				t.Errorf("second address %v", e.Addrs[1])
			}
		})
	}
}

func TestDevConversion(t *testing.T) {
	for _, tc := range []struct{ maj, min uint32 }{{8, 1}, {254, 0}, {0, 33}, {259, 1 << 19}} {
		k, err := userDevToKernel(unix.Mkdev(tc.maj, tc.min))
		if err != nil {
			t.Fatal(err)
		}
		if k != tc.maj<<20|tc.min {
			t.Errorf("%d:%d -> kernel %#x", tc.maj, tc.min, k)
		}
		if back := kernelDevToUser(k); back != unix.Mkdev(tc.maj, tc.min) {
			t.Errorf("%d:%d round trip gives %#x", tc.maj, tc.min, back)
		}
	}
	if _, err := userDevToKernel(unix.Mkdev(1<<12, 0)); err == nil {
		t.Error("major beyond 12 bits accepted")
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{OpOpen.String(), "open"}, {OpChown.String(), "chown"}, {Op(0).String(), "op(0)"}, {Op(200).String(), "op(200)"},
		{TCPEstablished.String(), "ESTABLISHED"}, {TCPState(99).String(), "tcpstate(99)"},
		{NetSendTo.String(), "sendto"}, {NetOp(9).String(), "netop(9)"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q want %q", tc.got, tc.want)
		}
	}
}

func TestInterner(t *testing.T) {
	var in interner
	b := []byte("/etc/passwd")
	s1 := in.str(b)
	b[1] = 'X' // the interned string must not alias the record
	if s1 != "/etc/passwd" {
		t.Fatalf("interned string changed with its record: %q", s1)
	}
	s2 := in.str([]byte("/etc/passwd"))
	if unsafe.StringData(s1) != unsafe.StringData(s2) {
		t.Error("the same bytes gave two strings")
	}
	for i := range internMax + 1 {
		in.str(fmt.Appendf(nil, "/p/%d", i))
	}
	if len(in.m) > internMax {
		t.Errorf("interner holds %d strings, bound %d", len(in.m), internMax)
	}
	var none *interner
	if got := none.str([]byte("x")); got != "x" {
		t.Errorf("nil interner: %q", got)
	}
}
