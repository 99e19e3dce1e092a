package event

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestBound(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"fits", "abc", 3, "abc"},
		{"empty", "", 0, ""},
		{"cut", strings.Repeat("a", 100), 40, strings.Repeat("a", 40-len(cutMarker(100))) + cutMarker(100-(40-len(cutMarker(100))))},
		// "é" is two bytes: a cut never splits it.
		{"rune boundary", strings.Repeat("é", 50), 30, strings.Repeat("é", 6) + cutMarker(88)},
		{"no room", strings.Repeat("a", 100), 3, cutMarker(100)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := bound(tt.in, tt.n)
			if got != tt.want {
				t.Fatalf("bound(%d bytes, %d) = %q, want %q", len(tt.in), tt.n, got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Fatalf("bound produced invalid UTF-8: %q", got)
			}
		})
	}
}

func TestBoundArgv(t *testing.T) {
	long := strings.Repeat("x", 50)
	tests := []struct {
		name string
		in   []string
		n    int
		want []string
	}{
		{"fits", []string{"a", "bb"}, 3, []string{"a", "bb"}},
		{"nil", nil, 10, nil},
		// 3+50+50 = 103 bytes: "cmd" and 30 bytes of the rest fit, the marker counts what is gone.
		{"cut inside", []string{"cmd", long, long}, 33 + len(cutMarker(100)), []string{"cmd", strings.Repeat("x", 30) + cutMarker(70)}},
		{"cut at an argument", []string{"cmd", long, long}, 53 + len(cutMarker(50)), []string{"cmd", long, cutMarker(50)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := boundArgv(tt.in, tt.n); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("boundArgv = %q, want %q", got, tt.want)
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
	b, err := ev.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxEventBytes {
		t.Fatalf("event is %d bytes, want at most %d", len(b), MaxEventBytes)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("bounded event does not decode: %v", err)
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

// TestWorstEventFitsTheBudget fills every field the observed system controls to its limit:
// 64 ancestors with 32 KiB command lines and 4 KiB executables, 4 KiB paths, a file tree
// thousands of directories deep, 16 long names per peer. The encoding still fits
// MaxEventBytes, keeps the nearest ancestors with the triggering process last, and still
// names the file's directory in the tree.
func TestWorstEventFitsTheBudget(t *testing.T) {
	cmd := strings.Repeat("A", 32<<10)
	long := "/" + strings.Repeat("p", 4094)
	deep := strings.Repeat("/d", 2047) // 4094 bytes, 2047 directories
	ev := Sample(TypeFileAccess)
	ev.Note = long
	ev.Process.SetArgv([]string{long, cmd, cmd})
	ev.Process.Exe, ev.Process.PrevExe, ev.Process.PrevArgs, ev.Process.Cgroup, ev.Process.Envs = long, long, cmd, long, cmd
	ev.File.File, ev.File.Dir, ev.File.Basename = long, long, strings.Repeat("b", 255)
	ev.Background.Ancestry = nil
	for i := 0; i < 64; i++ {
		ev.Background.Ancestry = append(ev.Background.Ancestry, Ancestor{PID: int32(100 + i), Comm: "sh", Exe: long, Cmd: cmd, Args: cmd})
	}
	ev.Process.PID = 163
	// The tree as a decoded event may carry it: one directory per level, the file at the bottom.
	cur := FSDir{AbsPath: deep, BaseName: "d", Files: []FSFile{{AbsPath: deep + "/f", BaseName: "f"}}}
	for p := deep[:len(deep)-2]; p != ""; p = p[:len(p)-2] {
		cur = FSDir{AbsPath: p, BaseName: "d", Dirs: []FSDir{cur}}
	}
	ev.Background.Files.Root = FSDir{AbsPath: "/", BaseName: "/", Dirs: []FSDir{cur}}
	names := make([]string, 16)
	for i := range names {
		names[i] = strings.Repeat("n", 250) + ".example"
	}
	ev.Background.Flows.Protocols = []ProtoFlows{{Proto: "tcp", Pairs: []Pair{{Nodes: PairNodes{Local: Peer{Names: names}, Remote: Peer{Names: names}}}}}}

	b, err := ev.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxEventBytes {
		t.Fatalf("worst event is %d bytes, want at most %d", len(b), MaxEventBytes)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatalf("bounded event does not decode: %v", err)
	}
	anc := got.Background.Ancestry
	if len(anc) == 0 || anc[len(anc)-1].PID != 163 {
		t.Fatalf("ancestry lost the triggering process: %d entries", len(anc))
	}
	var holders []FSDir
	var walk func(d FSDir, depth int) int
	walk = func(d FSDir, depth int) int {
		if len(d.Files) > 0 {
			holders = append(holders, d)
		}
		deepest := depth
		for _, s := range d.Dirs {
			deepest = max(deepest, walk(s, depth+1))
		}
		return deepest
	}
	if depth := walk(got.Background.Files.Root, 0); depth > MaxTreeDirs+1 {
		t.Errorf("file tree is %d deep", depth)
	}
	if len(holders) != 1 || holders[0].Files[0].BaseName != "f" {
		t.Errorf("the cut tree does not end at the file: %+v", holders)
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
