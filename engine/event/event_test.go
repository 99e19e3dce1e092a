package event

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// keysOf returns the keys of a JSON object in document order.
func keysOf(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", raw)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}

func field(t *testing.T, raw json.RawMessage, path ...string) json.RawMessage {
	t.Helper()
	for _, p := range path {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: not an object: %v", p, err)
		}
		v, ok := m[p]
		if !ok {
			t.Fatalf("key %s missing in %s", p, raw)
		}
		raw = v
	}
	return raw
}

func TestJSONShape(t *testing.T) {
	for _, kind := range []string{TypeExecution, TypeFileAccess, TypeNetworkPeer} {
		t.Run(kind, func(t *testing.T) {
			b, err := Sample(kind).JSON()
			if err != nil {
				t.Fatal(err)
			}
			top := keysOf(t, b)
			want := []string{"uuid", "timestamp", "event_type", "note", "metadata", "process", "file",
				"background", "base", "scenario"}
			if kind == TypeNetworkPeer {
				want = []string{"uuid", "timestamp", "event_type", "note", "metadata", "process", "flow",
					"background", "base", "scenario"}
			}
			if !reflect.DeepEqual(top, want) {
				t.Errorf("top-level keys %v, want %v", top, want)
			}
			if got := keysOf(t, field(t, b, "metadata")); !reflect.DeepEqual(got, []string{"kind", "name",
				"format", "version", "description", "documentation", "importance", "tactic", "technique", "subtechnique"}) {
				t.Errorf("metadata keys %v", got)
			}
			if got := keysOf(t, field(t, b, "process")); !reflect.DeepEqual(got, []string{"start", "exit",
				"retcode", "uid", "gid", "pid", "ppid", "comm", "cmd", "exe", "args", "argv", "envs", "loader",
				"prev_exe", "prev_args", "cgroup", "container_id"}) {
				t.Errorf("process keys %v", got)
			}
			var args string
			var argv []string
			if err := json.Unmarshal(field(t, b, "process", "args"), &args); err != nil {
				t.Errorf("process.args is not a string: %v", err)
			}
			if err := json.Unmarshal(field(t, b, "process", "argv"), &argv); err != nil || len(argv) == 0 {
				t.Errorf("process.argv is not a non-empty array: %v", err)
			}
			if got := keysOf(t, field(t, b, "background")); !reflect.DeepEqual(got, []string{"ancestry", "files", "flows"}) {
				t.Errorf("background keys %v", got)
			}
			if !bytes.Equal(field(t, b, "background"), field(t, b, "base", "background")) {
				t.Error("base.background differs from background")
			}
			var anc []map[string]any
			if err := json.Unmarshal(field(t, b, "background", "ancestry"), &anc); err != nil || len(anc) != 4 {
				t.Fatalf("ancestry: %v (%d entries)", err, len(anc))
			}
			if got := keysOf(t, field(t, b, "background", "ancestry")[1:]); !reflect.DeepEqual(got,
				[]string{"pid", "ppid", "uid", "comm", "cmd", "exe", "args", "start"}) {
				// [1:] skips the array bracket: the first element is an object.
				t.Errorf("ancestor keys %v", got)
			}
			if got := keysOf(t, field(t, b, "background", "files", "root")); !reflect.DeepEqual(got,
				[]string{"abs_path", "base_name", "dirs", "files"}) {
				t.Errorf("files.root keys %v", got)
			}
			if got := keysOf(t, field(t, b, "background", "flows")); !reflect.DeepEqual(got, []string{"ip_version", "protocols"}) {
				t.Errorf("flows keys %v", got)
			}
			if got := keysOf(t, field(t, b, "scenario")[1:]); !reflect.DeepEqual(got, []string{"hostname", "ip", "mac", "os", "arch"}) {
				t.Errorf("scenario keys %v", got)
			}
		})
	}
}

func TestFileAndFlowShape(t *testing.T) {
	b, _ := Sample(TypeFileAccess).JSON()
	want := append([]string{"file", "dir", "basename", "actions"}, ActionNames()...)
	if got := keysOf(t, field(t, b, "file")); !reflect.DeepEqual(got, want) {
		t.Errorf("file keys %v, want %v", got, want)
	}
	var f map[string]any
	_ = json.Unmarshal(field(t, b, "file"), &f)
	if f["read"] != true || f["write"] != false || !reflect.DeepEqual(f["actions"], []any{"open", "read", "close"}) {
		t.Errorf("file: %v", f)
	}

	b, _ = Sample(TypeNetworkPeer).JSON()
	if got := keysOf(t, field(t, b, "flow")); !reflect.DeepEqual(got, []string{"ip_version", "proto", "local",
		"remote", "service_port", "flags", "phase"}) {
		t.Errorf("flow keys %v", got)
	}
	if got := keysOf(t, field(t, b, "flow", "remote")); !reflect.DeepEqual(got, []string{"address", "name", "names", "port"}) {
		t.Errorf("flow.remote keys %v", got)
	}
	if got := keysOf(t, field(t, b, "flow", "flags")); !reflect.DeepEqual(got, []string{"ingress", "egress",
		"incoming", "outgoing", "started", "ongoing", "ended", "terminator", "terminated"}) {
		t.Errorf("flow.flags keys %v", got)
	}
	if got := keysOf(t, field(t, b, "flow", "phase")); !reflect.DeepEqual(got, []string{"direction",
		"initiated_by", "status", "ended_by"}) {
		t.Errorf("flow.phase keys %v", got)
	}
	pair := field(t, b, "background", "flows", "protocols")[1:]
	if got := keysOf(t, pair); !reflect.DeepEqual(got, []string{"proto", "pairs"}) {
		t.Errorf("protocol keys %v", got)
	}
}

func TestEmptyEventHasArraysNotNull(t *testing.T) {
	b, err := (&Event{}).JSON()
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"uuid":"","timestamp":"","event_type":"","note":"",` +
		`"metadata":{"kind":"","name":"","format":"","version":"","description":"","documentation":"","importance":"","tactic":"","technique":"","subtechnique":""},` +
		`"process":{"start":"","exit":"","retcode":0,"uid":0,"gid":0,"pid":0,"ppid":0,"comm":"","cmd":"","exe":"","args":"","argv":[],"envs":"","loader":"","prev_exe":"","prev_args":"","cgroup":"","container_id":""},` +
		`"background":{"ancestry":[],"files":{"root":{"abs_path":"","base_name":"","dirs":[],"files":[]}},"flows":{"ip_version":0,"protocols":[]}},` +
		`"base":{"background":{"ancestry":[],"files":{"root":{"abs_path":"","base_name":"","dirs":[],"files":[]}},"flows":{"ip_version":0,"protocols":[]}}},` +
		`"scenario":[]}`
	if string(b) != want {
		t.Errorf("empty event:\n got  %s\n want %s", b, want)
	}
	if bytes.Contains(b, []byte("null")) {
		t.Error("null in output")
	}
}

func TestJSONIsStable(t *testing.T) {
	a, _ := Sample(TypeExecution).JSON()
	b, _ := Sample(TypeExecution).JSON()
	if !bytes.Equal(a, b) {
		t.Error("two encodings of the same event differ")
	}
	// json.Marshal of the value and of the pointer agree.
	e := Sample(TypeExecution)
	c, _ := json.Marshal(*e)
	if !bytes.Equal(a, c) {
		t.Error("value and pointer encodings differ")
	}
}

func TestRoundTrip(t *testing.T) {
	for _, kind := range []string{TypeExecution, TypeFileAccess, TypeNetworkPeer} {
		a, _ := Sample(kind).JSON()
		e, err := Decode(a)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		b, _ := e.JSON()
		if !bytes.Equal(a, b) {
			t.Errorf("%s: round trip differs:\n%s\n%s", kind, a, b)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := []struct{ in, want string }{
		{``, "event: empty input"},
		{"  \n", "event: empty input"},
		{`[{"uuid":"x"}]`, "event: expected a JSON object, got an array"},
		{`"event"`, "event: expected a JSON object, got a string"},
		{`42`, "event: expected a JSON object, got a number"},
		{`null`, "event: expected a JSON object, got null"},
		{`true`, "event: expected a JSON object, got a boolean"},
		{`<xml/>`, `event: expected a JSON object, got invalid JSON (starts with '<')`},
		{`{"uuid": 1}`, "event: field uuid: expected a string, got number"},
		{`{"process": []}`, "event: field process: expected an object, got array"},
		{`{"process": {"pid": "4242"}}`, "event: field process.pid: expected an integer (32-bit), got string"},
		{`{"process": {"pid": 1.5}}`, "event: field process.pid: expected an integer (32-bit), got number 1.5"},
		{`{"process": {"uid": -1}}`, "event: field process.uid: expected a non-negative integer (32-bit), got number -1"},
		{`{"process": {"argv": "a b"}}`, "event: field process.argv: expected an array, got string"},
		{`{"process": {"args": ["a"]}}`, "event: field process.args: expected a string, got array"},
		{`{"flow": {"remote": {"port": 70000}}}`, "event: field flow.remote.port: expected a non-negative integer (16-bit), got number 70000"},
		{`{"file": {"read": "yes"}}`, "event: field file.read: expected a boolean, got string"},
		{`{"background": {"ancestry": {}}}`, "event: field background.ancestry: expected an array, got object"},
		{`{"background": {"ancestry": [{"pid": true}]}}`, "event: field background.ancestry.pid: expected an integer (32-bit), got bool"},
		{`{"timestamp": "yesterday"}`, `event: field timestamp: "yesterday" is not an RFC 3339 timestamp`},
		{`{"process": {"start": "2026-13-01T00:00:00Z"}}`, `event: field process.start: "2026-13-01T00:00:00Z" is not an RFC 3339 timestamp`},
		{`{"background": {"ancestry": [{}, {"start": "now"}]}}`, `event: field background.ancestry[1].start: "now" is not an RFC 3339 timestamp`},
		{`{"event_type": "exec"}`, `event: field event_type: unknown value "exec" (want file_access, execution or network_peer)`},
		{`{"file": {"actions": ["open", "fly"]}}`, `event: field file.actions[1]: unknown action "fly"`},
		{`{"uuid": "a"} {"uuid": "b"}`, "event: invalid JSON at byte 15: invalid character '{' after top-level value"},
		{`{"uuid": "a"`, "event: invalid JSON at byte 12: unexpected end of JSON input"},
		{`{"base": {"background": {"ancestry": [{"uid": "root"}]}}}`, "event: field base.background.ancestry.uid: expected a non-negative integer (32-bit), got string"},
		{`{"base": []}`, "event: field base: expected an object, got array"},
	}
	for _, tc := range cases {
		e, err := Decode([]byte(tc.in))
		if err == nil {
			t.Errorf("%s: accepted: %+v", tc.in, e)
			continue
		}
		if err.Error() != tc.want {
			t.Errorf("%s:\n got  %s\n want %s", tc.in, err, tc.want)
		}
	}
}

func TestDecodeLenient(t *testing.T) {
	// Jibril events carry sections we do not model; base.background alone is accepted; the
	// action list and booleans are reconciled.
	in := `{"uuid":"u","event_type":"file_access","attenuator":{"x":1},"score":null,
		"file":{"file":"/etc/shadow","actions":["read"],"open":true},
		"base":{"background":{"ancestry":[{"pid":1,"exe":"/sbin/init"}]}}}`
	e, err := Decode([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Background.Ancestry) != 1 || e.Background.Ancestry[0].Exe != "/sbin/init" {
		t.Errorf("ancestry from base.background: %+v", e.Background.Ancestry)
	}
	if !reflect.DeepEqual([]string(e.File.Actions), []string{"open", "read"}) || !e.File.Open || !e.File.Read {
		t.Errorf("actions: %+v", e.File)
	}
	// Missing arrays come back as [] on output.
	b, _ := e.JSON()
	if !bytes.Contains(b, []byte(`"argv":[]`)) || !bytes.Contains(b, []byte(`"scenario":[]`)) {
		t.Errorf("output: %s", b)
	}
}

func TestSetActionsAndHas(t *testing.T) {
	f := &File{}
	if f.SetActions("write", "open", "write", "bogus") {
		t.Error("SetActions accepted an unknown action")
	}
	if !reflect.DeepEqual([]string(f.Actions), []string{"open", "write"}) || !f.Open || !f.Write || f.Read {
		t.Errorf("SetActions: %+v", f)
	}
	if !f.Has("open") || f.Has("read") || f.Has("bogus") {
		t.Error("Has")
	}
	f.SetActions()
	if len(f.Actions) != 0 || f.Open {
		t.Errorf("clearing: %+v", f)
	}
}

func TestSetArgvAndPath(t *testing.T) {
	var p Process
	p.SetArgv([]string{"/bin/ls", "-l", "/tmp"})
	if p.Cmd != "/bin/ls -l /tmp" || p.Args != "-l /tmp" || len(p.Argv) != 3 {
		t.Errorf("SetArgv: %+v", p)
	}
	p.SetArgv([]string{"true"})
	if p.Args != "" || p.Cmd != "true" {
		t.Errorf("SetArgv one: %+v", p)
	}
	var f File
	f.SetPath("/etc/ssh/sshd_config")
	if f.Dir != "/etc/ssh" || f.Basename != "sshd_config" {
		t.Errorf("SetPath: %+v", f)
	}
}

func TestStamp(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600))
	if got := Stamp(ts); got != "2026-01-02T02:04:05.000000600Z" {
		t.Errorf("Stamp = %s", got)
	}
	if Stamp(time.Time{}) != "" {
		t.Error("zero time")
	}
	back, err := ParseStamp(Stamp(ts))
	if err != nil || !back.Equal(ts) {
		t.Errorf("ParseStamp: %v %v", back, err)
	}
}

// FuzzStamp: the digit writer agrees with time.Format for every instant, the years Format
// alone handles (before 0, after 9999) included.
func FuzzStamp(f *testing.F) {
	for _, s := range []int64{0, 1, -1, 1 << 62, -(1 << 62), 253402300799, 253402300800, -62135596800, -62167219201} {
		f.Add(s, int64(999999999))
	}
	f.Fuzz(func(t *testing.T, sec, nsec int64) {
		ts := time.Unix(sec, nsec%1e9)
		want := ts.UTC().Format(StampLayout)
		if ts.IsZero() {
			want = ""
		}
		if got := Stamp(ts); got != want {
			t.Fatalf("Stamp(%d, %d) = %q, Format gives %q", sec, nsec, got, want)
		}
	})
}

func TestSample(t *testing.T) {
	if Sample("bogus") != nil {
		t.Error("unknown kind")
	}
	a, b := Sample(TypeExecution), Sample(TypeExecution)
	a.Process.Argv[0] = "changed"
	a.Background.Ancestry[0].Exe = "changed"
	if b.Process.Argv[0] == "changed" || b.Background.Ancestry[0].Exe == "changed" {
		t.Error("samples share memory")
	}
	e := Sample(TypeExecution)
	if got := len(e.Ancestors()); got != 3 {
		t.Errorf("execution sample has %d ancestors, want 3", got)
	}
	if par := e.Parent(); par == nil || par.Comm != "sh" {
		t.Errorf("parent: %+v", par)
	}
	if !strings.Contains(e.Process.Args, "--donate-level") || e.File == nil || !e.File.Execve {
		t.Errorf("execution sample: %+v", e.Process)
	}
	for _, k := range []string{TypeExecution, TypeFileAccess, TypeNetworkPeer} {
		s := Sample(k)
		if s.EventType != k || s.Background.Ancestry[len(s.Background.Ancestry)-1].PID != s.Process.PID {
			t.Errorf("%s: type %s, last ancestor is not the process", k, s.EventType)
		}
		b, _ := s.JSON()
		t.Logf("%s sample: %d bytes of JSON", k, len(b))
	}
}

func TestParentWithoutAncestry(t *testing.T) {
	e := &Event{Process: Process{PID: 10, PPID: 9}}
	if e.Parent() != nil || len(e.Ancestors()) != 0 {
		t.Error("parent of an event without ancestry")
	}
	// A process whose parent pid is its own (hostile data) is not its own parent.
	e.Background.Ancestry = []Ancestor{{PID: 10, PPID: 10}}
	e.Process.PPID = 10
	if e.Parent() != nil {
		t.Error("process is its own parent")
	}
}

func BenchmarkJSON(b *testing.B) {
	e := Sample(TypeExecution)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.JSON(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	data, _ := Sample(TypeExecution).JSON()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data); err != nil {
			b.Fatal(err)
		}
	}
}
