package event

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestBound(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"fits", "abc", 3, "abc"},
		{"no limit", strings.Repeat("a", 100), 0, strings.Repeat("a", 100)},
		{"empty", "", 1, ""},
		{"cut", strings.Repeat("a", 100), 40, strings.Repeat("a", 40-len(cutMarker(100))) + cutMarker(100-(40-len(cutMarker(100))))},
		// "é" is two bytes: a cut never splits it.
		{"rune boundary", strings.Repeat("é", 50), 30, strings.Repeat("é", 6) + cutMarker(88)},
		// "<" is written \u003c: six bytes of the budget each.
		{"escapes count", strings.Repeat("<", 100), 40, "<<<" + cutMarker(97)},
		{"invalid bytes count", strings.Repeat("\xff", 10), 30, "\xff\xff" + cutMarker(8)},
		{"no room", strings.Repeat("a", 100), 3, cutMarker(100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bound(tt.in, tt.n)
			if got != tt.want {
				t.Fatalf("bound(%d bytes, %d) = %q, want %q", len(tt.in), tt.n, got, tt.want)
			}
			// Within n as encoded, whenever n leaves room for the marker (0: no limit).
			if b, _ := json.Marshal(got); tt.n >= len(cutMarker(len(tt.in))) && len(b)-2 > tt.n {
				t.Fatalf("%q encodes in %d bytes, over %d", got, len(b)-2, tt.n)
			}
		})
	}
}

func TestEncLenIsWhatJSONWrites(t *testing.T) {
	for _, s := range []string{"", "plain", "é€😀", "<>&", "\"\\", "\x00\x01\x1f", "\n\r\t", "\xff\xfe", "\u2028\u2029", "a\xc3"} {
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		// encLen may count a short escape (\n) as six: an upper bound, never below.
		if got := encLen(s); got < len(b)-2 || got > 6*len(s) {
			t.Errorf("encLen(%q) = %d, json writes %d", s, got, len(b)-2)
		}
	}
}

func TestBoundArgv(t *testing.T) {
	long := strings.Repeat("x", 50)
	tests := []struct {
		name    string
		in      []string
		n, argc int
		want    []string
	}{
		{"fits", []string{"a", "bb"}, 9, 0, []string{"a", "bb"}},
		{"nil", nil, 10, 0, nil},
		{"no limit", []string{long, long}, 0, 0, []string{long, long}},
		// "cmd" costs 6 with its quotes and comma; 30 bytes of the next fit with the marker.
		{"cut inside", []string{"cmd", long, long}, 6 + 3 + 30 + len(cutMarker(100)), 0, []string{"cmd", strings.Repeat("x", 30) + cutMarker(70)}},
		// At most argc entries, the marker's included.
		{"too many", []string{"a", "b", "c", "d"}, 100, 2, []string{"a", "b" + cutMarker(2)}},
		// No room left after the first argument: the marker still fits within n.
		{"marker room", []string{strings.Repeat("a", 4090), strings.Repeat("b", 10)}, 4096, 0,
			[]string{strings.Repeat("a", 4096-3-len(cutMarker(4100))) + cutMarker(4100-(4096-3-len(cutMarker(4100))))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]string(nil), tt.in...)
			if got := boundArgv(tt.in, tt.n, tt.argc); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("boundArgv = %q, want %q", got, tt.want)
			}
			if !reflect.DeepEqual(in, tt.in) {
				t.Fatalf("boundArgv wrote to its input: %q", tt.in)
			}
			got := boundArgv(tt.in, tt.n, tt.argc)
			enc := 0
			for _, a := range got {
				enc += encLen(a) + 3
			}
			if tt.n > 0 && enc > tt.n || tt.argc > 0 && len(got) > tt.argc {
				t.Fatalf("%d entries in %d bytes, over %d entries or %d bytes", len(got), enc, tt.argc, tt.n)
			}
		})
	}
}

// TestPaddedAncestryIsBounded: a chain of 64 processes with 32 KiB command lines (what /proc
// allows) would make an 8 MiB event; on the wire it fits MaxEventBytes, every cut says so, the
// event still decodes, and the event value itself (what matching reads) is untouched.
func TestPaddedAncestryIsBounded(t *testing.T) {
	ev := Sample(TypeExecution)
	pad := strings.Repeat("A", 32<<10)
	ev.Process.SetArgv([]string{"/bin/sh", "-c", pad})
	ev.Process.PrevArgs = pad
	ev.Background.Ancestry = nil
	for i := 0; i < 64; i++ {
		ev.Background.Ancestry = append(ev.Background.Ancestry, Ancestor{PID: int32(100 + i), Comm: "sh", Cmd: "sh -c " + pad, Args: "-c " + pad})
	}
	b, got := roundTrip(t, ev)
	if len(b) > MaxEventBytes {
		t.Fatalf("event is %d bytes, want at most %d", len(b), MaxEventBytes)
	}
	for name, s := range map[string]string{"cmd": got.Process.Cmd, "args": got.Process.Args, "prev_args": got.Process.PrevArgs,
		"ancestor cmd": got.Background.Ancestry[0].Cmd, "ancestor args": got.Background.Ancestry[63].Args} {
		if !strings.HasSuffix(s, " bytes cut]") {
			t.Errorf("%s does not say it was cut: ...%q", name, s[max(0, len(s)-40):])
		}
	}
	if n := len(strings.Join(got.Process.Argv, "")); n > MaxCmdBytes {
		t.Errorf("argv is %d bytes on the wire, want at most %d", n, MaxCmdBytes)
	}
	var raw struct {
		Base struct {
			Background json.RawMessage `json:"background"`
		} `json:"base"`
		Background json.RawMessage `json:"background"`
	}
	if err := json.Unmarshal(b, &raw); err != nil || string(raw.Base.Background) != string(raw.Background) {
		t.Errorf("base.background is not the bounded background: %v", err)
	}
	if len(ev.Process.Argv[2]) != len(pad) || len(ev.Background.Ancestry[0].Cmd) != len(pad)+6 {
		t.Errorf("encoding cut the event itself: matching must see every byte")
	}
}

// worstEvent fills every field the observed system controls to its limit with fill: 64
// ancestors with 32 KiB command lines and 4 KiB executables, 4096 arguments, 4 KiB paths of
// 250-byte components, a 4 KiB cgroup, a rename note, 16 long names per peer.
func worstEvent(fill string) *Event {
	rep := func(n int) string { return strings.Repeat(fill, n/len(fill)) }
	cmd := rep(32 << 10)
	var long string
	for len(long)+251 <= 4095 {
		long += "/" + rep(250)
	}
	argv := make([]string, 4096)
	argv[0], argv[1] = long, cmd
	ev := Sample(TypeFileAccess)
	ev.Note = "rename to " + long
	ev.Process.SetArgv(argv)
	ev.Process.Comm, ev.Process.Exe, ev.Process.PrevExe, ev.Process.Loader = rep(15), long, long, long
	ev.Process.PrevArgs, ev.Process.Cgroup, ev.Process.Envs, ev.Process.PID = cmd, long, cmd, 163
	ev.File.File, ev.File.Dir, ev.File.Basename = long+"/"+rep(255), long, rep(255)
	ev.Background.Ancestry = nil
	for i := 0; i < 64; i++ {
		ev.Background.Ancestry = append(ev.Background.Ancestry, Ancestor{PID: int32(100 + i), Comm: rep(15), Exe: long, Cmd: cmd, Args: cmd})
	}
	ev.Background.Files = FileTree(ev.File.File, []string{"open"})
	names := make([]string, 16)
	for i := range names {
		names[i] = rep(253)
	}
	ev.Background.Flows.Protocols = []ProtoFlows{{Proto: "tcp", Pairs: []Pair{{Nodes: PairNodes{Local: Peer{Name: names[0], Names: names}, Remote: Peer{Name: names[0], Names: names}}}}}}
	return ev
}

// TestWorstEventFitsTheBudget: whatever bytes the observed system uses (escaped ones count
// six times), the encoding fits MaxEventBytes, decodes, keeps the triggering process last in
// the ancestry and still names the file in the tree.
func TestWorstEventFitsTheBudget(t *testing.T) {
	for _, fill := range []string{"A", "é", "<", "\x01", "\xff", "\""} {
		t.Run(fmt.Sprintf("%q", fill), func(t *testing.T) {
			b, got := roundTrip(t, worstEvent(fill))
			t.Logf("%d bytes", len(b))
			if len(b) > MaxEventBytes {
				t.Fatalf("worst event is %d bytes, want at most %d", len(b), MaxEventBytes)
			}
			if anc := got.Background.Ancestry; len(anc) == 0 || anc[len(anc)-1].PID != 163 {
				t.Fatalf("ancestry lost the triggering process: %d entries", len(anc))
			}
			if !strings.Contains(string(b), `"files":[{"abs_path":`) {
				t.Fatalf("the cut tree names no file")
			}
		})
	}
}

// TestPathsOutlastEverythingElse: events over the budget at the first level, made so by
// long paths (repeated in the tree, the ancestry and the base alias), by escaped bytes, or by
// a chain of long executables. The cut falls on everything else; the executable, the file
// and the rename target stay whole, because reactions act on them.
func TestPathsOutlastEverythingElse(t *testing.T) {
	longDir := "/tmp"
	for i := 0; i < 15; i++ {
		longDir += "/" + strings.Repeat("a", 250)
	}
	tests := []struct {
		name string
		ev   func() *Event
	}{
		{"exec from a long path", func() *Event {
			exe := longDir + "/.x/payload"
			ev := Sample(TypeExecution)
			ev.Process.Exe = exe
			ev.Process.SetArgv([]string{exe, strings.Repeat("B", 32<<10)})
			ev.Background.Files = FileTree(exe, []string{"execve"})
			return ev
		}},
		{"a chain of 16 long executables", func() *Event {
			ev := Sample(TypeExecution)
			ev.Background.Ancestry = nil
			for i := 0; i < 16; i++ {
				exe := "/tmp/" + strings.Repeat("a", 1800) + fmt.Sprintf("/sh%02d", i)
				ev.Background.Ancestry = append(ev.Background.Ancestry, Ancestor{PID: int32(100 + i), Comm: "sh", Exe: exe, Cmd: exe, Args: ""})
			}
			ev.Process.PID = 115
			ev.Process.Exe = ev.Background.Ancestry[15].Exe
			ev.Background.Files = FileTree(ev.Process.Exe, []string{"execve"})
			return ev
		}},
		{"an executable named with escaped bytes", func() *Event {
			exe := "/tmp"
			for len(exe) < 1200 {
				exe += "/" + strings.Repeat("<", 60)
			}
			exe += "/payload"
			ev := Sample(TypeExecution)
			ev.Process.Exe = exe
			ev.Background.Ancestry[len(ev.Background.Ancestry)-1].Exe = exe
			ev.Background.Files = FileTree(exe, []string{"execve"})
			return ev
		}},
		{"a rename to a long path", func() *Event {
			ev := Sample(TypeFileAccess)
			ev.File.File = longDir + "/x"
			ev.Note = "rename to " + longDir + "/cron-evil"
			ev.Background.Files = FileTree(ev.File.File, []string{"open"})
			return ev
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := tt.ev()
			if b, _ := json.Marshal(ev.wire(levels()[0])); len(b) <= MaxEventBytes {
				t.Fatalf("the first level fits (%d bytes): the case no longer needs a cut", len(b))
			}
			b, got := roundTrip(t, ev)
			if len(b) > MaxEventBytes {
				t.Fatalf("%d bytes", len(b))
			}
			if got.Process.Exe != ev.Process.Exe || got.Note != ev.Note {
				t.Fatalf("exe %d bytes (want %d), note %d bytes (want %d): cut", len(got.Process.Exe), len(ev.Process.Exe), len(got.Note), len(ev.Note))
			}
			if ev.File != nil && got.File.File != ev.File.File {
				t.Fatalf("file %d bytes, want %d: cut", len(got.File.File), len(ev.File.File))
			}
		})
	}
}

func TestOrdinaryEventIsNotCut(t *testing.T) {
	for _, kind := range []string{TypeExecution, TypeFileAccess, TypeNetworkPeer} {
		b, err := Sample(kind).JSON()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), "bytes cut]") {
			t.Errorf("%s sample was cut: %s", kind, b)
		}
		want, _ := json.Marshal(Sample(kind).wire(levels()[0]))
		if string(b) != string(want) {
			t.Errorf("%s sample is not encoded at the first level", kind)
		}
	}
}

func TestFileTree(t *testing.T) {
	chain := func(f Files) []string {
		var out []string
		for d := f.Root; ; d = d.Dirs[0] {
			out = append(out, d.AbsPath)
			if len(d.Dirs) == 0 {
				if len(d.Files) != 1 {
					t.Fatalf("innermost directory %s holds %d files", d.AbsPath, len(d.Files))
				}
				return append(out, d.Files[0].AbsPath)
			}
		}
	}
	deep := strings.Repeat("/d", 2000)
	outer := []string{"/"}
	for i := 1; i <= MaxTreeDirs; i++ {
		outer = append(outer, strings.Repeat("/d", i))
	}
	tests := []struct {
		name, path string
		want       []string
	}{
		{"in root", "/f", []string{"/", "/f"}},
		{"nested", "/etc/ssh/sshd_config", []string{"/", "/etc", "/etc/ssh", "/etc/ssh/sshd_config"}},
		{"relative", "dir/sub/f", []string{"/", "dir", "dir/sub", "dir/sub/f"}},
		// 2000 directories: the outer ones up to the limit, then the file's own directory.
		{"deep", deep + "/f", append(outer, deep, deep+"/f")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := chain(FileTree(tt.path, []string{"open"})); !slices.Equal(got, tt.want) {
				t.Fatalf("FileTree(%s) = %d levels %.200q, want %d levels", tt.name, len(got), got, len(tt.want))
			}
			// Encoding keeps the tree as built: it cuts depth exactly where FileTree does.
			ev := Sample(TypeFileAccess)
			ev.Background.Files = FileTree(tt.path, []string{"open"})
			_, back := roundTrip(t, ev)
			if got := chain(back.Background.Files); !slices.Equal(got, tt.want) {
				t.Fatalf("encoded tree of %s has %d levels, want %d", tt.name, len(got), len(tt.want))
			}
		})
	}
}

// roundTrip encodes ev and decodes the encoding, failing the test on any error.
func roundTrip(t *testing.T, ev *Event) ([]byte, *Event) {
	t.Helper()
	b, err := ev.JSON()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("encoding does not decode: %v", err)
	}
	return b, got
}
