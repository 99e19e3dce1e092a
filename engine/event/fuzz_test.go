package event

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to Decode. Seeds: the samples of every event type, the
// fixtures of the built-in recipe tests (testdata/fuzz/FuzzDecode) and hostile shapes.
//
// Properties: no panic; an error is one line starting with "event:"; what Decode accepts
// encodes, the encoding decodes again, and encoding is then a fixed point (decode → JSON →
// decode → JSON gives the same bytes); the JSON has the SPEC §3 shape (process, background
// and its base alias always present, file actions agreeing with the booleans).
func FuzzDecode(f *testing.F) {
	for _, k := range []string{TypeExecution, TypeFileAccess, TypeNetworkPeer} {
		b, err := Sample(k).JSON()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// Events cut at the harder levels: re-encoding them must not cut them again.
	for _, fill := range []string{"A", "<", "\xff"} {
		b, err := worstEvent(fill).JSON()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := Decode(data)
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !strings.HasPrefix(msg, "event: ") {
				t.Fatalf("bad error %q", msg)
			}
			return
		}
		j1, err := e.JSON()
		if err != nil {
			t.Fatalf("accepted event does not encode: %v", err)
		}
		e2, err := Decode(j1)
		if err != nil {
			t.Fatalf("own encoding does not decode: %v\n%s", err, j1)
		}
		j2, err := e2.JSON()
		if err != nil {
			t.Fatalf("re-decoded event does not encode: %v", err)
		}
		if !bytes.Equal(j1, j2) {
			t.Fatalf("encoding is not a fixed point:\n%s\n%s", j1, j2)
		}
		checkShape(t, j1)
		if e.File != nil {
			for _, a := range ActionNames() {
				if e.File.Has(a) != (e.File.flag(a) != nil && *e.File.flag(a)) {
					t.Fatalf("file action %s: list and boolean disagree: %+v", a, e.File)
				}
			}
		}
	})
}

// checkShape checks the parts of SPEC §3 every event has.
func checkShape(t *testing.T, j []byte) {
	t.Helper()
	var m map[string]json.RawMessage
	if err := json.Unmarshal(j, &m); err != nil {
		t.Fatalf("encoding is not an object: %v", err)
	}
	for _, k := range []string{"uuid", "timestamp", "event_type", "metadata", "process", "background", "base", "scenario"} {
		if _, ok := m[k]; !ok {
			t.Fatalf("encoding lacks %q: %s", k, j)
		}
	}
	var base struct {
		Background json.RawMessage `json:"background"`
	}
	if err := json.Unmarshal(m["base"], &base); err != nil || !bytes.Equal(base.Background, m["background"]) {
		t.Fatalf("base.background is not background: %s", j)
	}
	var p struct {
		Argv json.RawMessage `json:"argv"`
	}
	if err := json.Unmarshal(m["process"], &p); err != nil || len(p.Argv) == 0 || p.Argv[0] != '[' {
		t.Fatalf("process.argv is not an array: %s", m["process"])
	}
}
