package enrich

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/jibril-rt/jibril/bpf"
)

// sameImage must find the loaded image without /proc only when the executed path leads, now,
// to the very file the kernel loaded; everything else is left to /proc.
func TestSameImage(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "usr", "bin", "tool")
	if err := os.MkdirAll(filepath.Dir(img), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("y"), 0o755); err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink(filepath.Join(dir, "usr", "bin"), filepath.Join(dir, "bin")))   // merged-usr style directory link
	must(os.Symlink(img, filepath.Join(dir, "kworker")))                            // a link named like something harmless
	must(os.Symlink(filepath.Join(dir, "missing"), filepath.Join(dir, "dangling"))) // leads nowhere
	idOf := func(p string) bpf.FileID {
		var st unix.Stat_t
		must(unix.Stat(p, &st))
		return bpf.FileID{Dev: st.Dev, Ino: st.Ino}
	}
	id := idOf(img)
	var c dirCache
	for _, tc := range []struct {
		name, executed string
		id             bpf.FileID
		want           string
		ok             bool
	}{
		{"the image itself", img, id, img, true},
		{"through a directory link", filepath.Join(dir, "bin", "tool"), id, img, true},
		{"through a file link", filepath.Join(dir, "kworker"), id, img, true},
		{"another file now at the path", other, id, "", false},
		{"another device", img, bpf.FileID{Dev: id.Dev + 1, Ino: id.Ino}, "", false},
		{"relative", "tool", id, "", false},
		{"gone", filepath.Join(dir, "nothing"), id, "", false},
		{"dangling link", filepath.Join(dir, "dangling"), id, "", false},
		{"a directory", filepath.Join(dir, "usr"), idOf(filepath.Join(dir, "usr")), "", false},
		{"the root", "/", idOf("/"), "", false},
		{"dot-dot", filepath.Join(dir, "bin", ".."), idOf(filepath.Join(dir, "usr")), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := c.sameImage(tc.executed, tc.id)
			if got != tc.want || ok != tc.ok {
				t.Fatalf("sameImage(%q) = %q, %v; want %q, %v", tc.executed, got, ok, tc.want, tc.ok)
			}
		})
	}
	// The cache knows bin -> usr/bin. Point bin elsewhere, at a directory holding another
	// "tool": the cached answer leads to the loaded file still, and a file that is not the
	// loaded one is never reported.
	other2 := filepath.Join(dir, "other-bin")
	must(os.MkdirAll(other2, 0o755))
	must(os.WriteFile(filepath.Join(other2, "tool"), []byte("z"), 0o755))
	must(os.Remove(filepath.Join(dir, "bin")))
	must(os.Symlink(other2, filepath.Join(dir, "bin")))
	if got, ok := c.sameImage(filepath.Join(dir, "bin", "tool"), id); ok && got != img {
		t.Fatalf("after the link moved: %q, want the loaded image %q or no answer", got, img)
	}
	if got, ok := c.sameImage(filepath.Join(dir, "bin", "tool"), idOf(filepath.Join(other2, "tool"))); ok {
		t.Fatalf("after the link moved, the cached directory answered %q for a file it does not hold", got)
	}
}
