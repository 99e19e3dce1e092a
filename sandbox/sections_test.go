package sandbox

import (
	"bytes"
	"encoding/json"
	"testing"
)

// checkSections compares splitSections with encoding/json on a valid JSON text: when the lazy
// form is taken, every span must hold exactly the member's value, in order.
func checkSections(t *testing.T, in []byte) {
	t.Helper()
	s, ok := splitSections(in)
	if !ok {
		return
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(in, &m); err != nil {
		t.Fatalf("lazy form taken for %q, which is not a JSON object: %v", in, err)
	}
	if len(s.spans) != len(m) {
		t.Fatalf("%q: %d sections, encoding/json sees %d members", in, len(s.spans), len(m))
	}
	names := bytes.Split([]byte(s.shape), []byte{0x1f})
	for k, sp := range s.spans {
		name := string(bytes.TrimPrefix(names[k], []byte{1}))
		want, found := m[name]
		if !found {
			t.Fatalf("%q: section %q is not a member", in, name)
		}
		if got := in[sp[0]:sp[1]]; !bytes.Equal(got, want) {
			t.Fatalf("%q: member %q spans %q, want %q", in, name, got, want)
		}
	}
}

func TestSplitSections(t *testing.T) {
	for _, tc := range []struct {
		in   string
		lazy bool
	}{
		{`{"a":"x\\","b":"\"}","c":[1,{"d":"]"}]}`, true},
		{`{"a":"\\\\\"","b":1}`, true},
		{` { "a" : [ ] , "b" : { } , "c" : "" } `, true},
		{`{"a":1,"a":2}`, false},
		{`{"__proto__":{}}`, false},
		{`{"a\"b":1}`, false},
		{`[1,2]`, false},
		{`{}`, true},
	} {
		_, ok := splitSections([]byte(tc.in))
		if ok != tc.lazy {
			t.Errorf("%s: lazy %v, want %v", tc.in, ok, tc.lazy)
		}
		checkSections(t, []byte(tc.in))
	}
}

// FuzzSplitSections: on any valid JSON text, the lazy form must split exactly where
// encoding/json does (a wrong span would hand a reaction a different event).
func FuzzSplitSections(f *testing.F) {
	for _, s := range []string{`{"a":"x\\","b":"\"}"}`, testEvent, `{"k":[{"x":"\\\""}],"z":null}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if !json.Valid(in) {
			return
		}
		checkSections(t, in)
	})
}
