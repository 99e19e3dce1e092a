package engine

import (
	"slices"
	"testing"

	"github.com/jibril-rt/jibril/bpf"
	"github.com/jibril-rt/jibril/engine/enrich"
	"github.com/jibril-rt/jibril/engine/match"
	"github.com/jibril-rt/jibril/recipes"
	"github.com/jibril-rt/jibril/recipes/builtin"
	"golang.org/x/sys/unix"
)

func TestFileOpMask(t *testing.T) {
	open, write := bpf.MaskOf(bpf.OpOpen), bpf.MaskOf(bpf.OpWrite)
	for _, tc := range []struct {
		actions []string
		want    bpf.OpMask
	}{
		{nil, bpf.AllOps},
		{[]string{"open"}, open},
		{[]string{"read"}, open},
		{[]string{"mmap", "close", "llseek", "flock", "fasync"}, open},
		{[]string{"write"}, write},
		{[]string{"fsync"}, write},
		{[]string{"create"}, bpf.MaskOf(bpf.OpCreate, bpf.OpSymlink, bpf.OpMkdir)},
		{[]string{"unlink", "rename"}, bpf.MaskOf(bpf.OpUnlink, bpf.OpRmdir, bpf.OpRename)},
		{[]string{"truncate", "link"}, bpf.MaskOf(bpf.OpTruncate, bpf.OpLink)},
		{[]string{"execve"}, 0},
		{[]string{"execve", "write"}, write},
		{[]string{"write", "no-such-action"}, bpf.AllOps},
	} {
		if got := FileOpMask(tc.actions); got != tc.want {
			t.Errorf("FileOpMask(%q) = %v, want %v", tc.actions, got, tc.want)
		}
	}
}

// TestFileOpMaskCoversActionNames checks the superset property the kernel filter relies on:
// an event carrying action a (enrich.ActionNames) has an op in FileOpMask([a]).
func TestFileOpMaskCoversActionNames(t *testing.T) {
	var events []bpf.FileEvent
	for _, fl := range []uint64{unix.O_RDONLY, unix.O_WRONLY, unix.O_RDWR | unix.O_CREAT, unix.O_WRONLY | unix.O_TRUNC,
		unix.O_TMPFILE | unix.O_WRONLY, unix.O_CREAT | unix.O_WRONLY | unix.O_TRUNC} {
		events = append(events, bpf.FileEvent{Op: bpf.OpOpen, Flags: fl})
	}
	for op := bpf.OpTruncate; op <= bpf.OpChown; op++ {
		events = append(events, bpf.FileEvent{Op: op})
	}
	seen := map[string]bool{}
	for _, ev := range events {
		for _, a := range enrich.ActionNames(ev) {
			seen[a] = true
			if m := FileOpMask([]string{a}); m&ev.Ops() == 0 {
				t.Errorf("%v flags %#o carries %q but FileOpMask(%q) = %v misses its ops %v", ev.Op, ev.Flags, a, a, m, ev.Ops())
			}
		}
	}
	// Every action the file sensor reports is covered above.
	for _, a := range []recipes.FileAction{recipes.ActOpen, recipes.ActCreate, recipes.ActWrite, recipes.ActTruncate,
		recipes.ActUnlink, recipes.ActRename, recipes.ActLink} {
		if !seen[string(a)] {
			t.Errorf("no event carries %q", a)
		}
	}
	// Every action name is known to FileOpMask (an unknown one would keep everything).
	for _, a := range recipes.FileActions() {
		if a != recipes.ActExecve && FileOpMask([]string{string(a)}) == bpf.AllOps {
			t.Errorf("FileOpMask(%q) = every op", a)
		}
	}
}

// TestFilePrefixesBuiltin builds the kernel filter entries of built-in recipes: a path-scoped
// modification recipe no longer wants read-only opens, a recipe no prefix covers gets "/" with
// its operations only.
func TestFilePrefixesBuiltin(t *testing.T) {
	rs, errs := Validate([]Source{{Name: "builtin", FS: builtin.FS(), Dir: "."}}, LoadOptions{})
	if len(errs) > 0 {
		t.Fatalf("built-in library: %v", errs)
	}
	modify := bpf.MaskOf(bpf.OpCreate, bpf.OpWrite, bpf.OpTruncate, bpf.OpUnlink, bpf.OpRmdir, bpf.OpRename,
		bpf.OpLink, bpf.OpSymlink, bpf.OpMkdir)
	want := map[string][]bpf.FilePrefix{
		"ld_preload_tampering":          {{Prefix: "/etc/ld.so.preload", Ops: modify}},
		"pam_tampering":                 {{Prefix: "/", Ops: modify}}, // a bare regex
		"ssh_authorized_keys_tampering": {{Prefix: "/", Ops: modify}},
		"ssh_private_key_read": { // reads are watched in home directories only
			{Prefix: "/etc/ssh/", Ops: bpf.MaskOf(bpf.OpOpen)}, {Prefix: "/home/", Ops: bpf.MaskOf(bpf.OpOpen)},
			{Prefix: "/root/", Ops: bpf.MaskOf(bpf.OpOpen)}, {Prefix: "/srv/", Ops: bpf.MaskOf(bpf.OpOpen)},
			{Prefix: "/var/lib/", Ops: bpf.MaskOf(bpf.OpOpen)}},
	}
	union := map[string]bpf.OpMask{}
	for _, r := range rs {
		if !r.Enabled || !r.Mechanism.MatchesFiles() {
			continue
		}
		m, err := match.Compile(r)
		if err != nil {
			t.Fatal(err)
		}
		got := FilePrefixes(&Loaded{Recipe: r, prefilter: m.Prefilter()})
		if len(got) == 0 {
			t.Errorf("%s: no filter entry", r.Name)
		}
		if w, ok := want[r.Name]; ok {
			if !slices.Equal(got, w) {
				t.Errorf("%s: %v, want %v", r.Name, got, w)
			}
			delete(want, r.Name)
		}
		for _, p := range got {
			union[p.Prefix] |= p.Ops
		}
	}
	for name := range want {
		t.Errorf("no enabled file recipe %s in the built-in library", name)
	}
	for p, m := range union {
		t.Logf("%-20s %v", p, m)
	}
}
