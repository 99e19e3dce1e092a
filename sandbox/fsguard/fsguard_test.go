package fsguard

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

func newFS(t *testing.T, root string) *FS {
	t.Helper()
	f, err := New(root)
	if err != nil {
		if errors.Is(err, syscall.ENOSYS) || strings.Contains(err.Error(), "not supported") {
			t.Skipf("openat2 unavailable: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// tempDir returns a temp dir without symlinks in its path, since the live
// FS refuses every symlink below "/".
func tempDir(t *testing.T) string {
	t.Helper()
	d, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// privateMounts moves the test goroutine's thread into a private mount
// namespace, so that the mounts a test makes are seen by nobody else and
// vanish with the thread (which is never unlocked, so it dies with the test).
func privateMounts(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	runtime.LockOSThread()
	if err := syscall.Unshare(syscall.CLONE_NEWNS); err != nil {
		t.Skipf("unshare mount namespace: %v", err)
	}
	if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
		t.Skipf("make mounts private: %v", err)
	}
}

func wantErr(t *testing.T, err error, target error, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %q", text)
	}
	if target != nil && !errors.Is(err, target) {
		t.Fatalf("error %q does not wrap %v", err, target)
	}
	if !strings.Contains(err.Error(), text) {
		t.Fatalf("error %q does not say %q", err, text)
	}
}

func TestClean(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "/etc/passwd", want: "/etc/passwd"},
		{in: "/", want: "/"},
		{in: "//etc//./passwd/", want: "/etc/passwd"},
		{in: "/tmp/.hidden/..x", want: "/tmp/.hidden/..x"},
		{in: "", err: "empty path"},
		{in: "etc/passwd", err: "relative path refused"},
		{in: "./etc", err: "relative path refused"},
		{in: "/etc/../root/.ssh", err: `".." refused`},
		{in: "/tmp/..", err: `".." refused`},
		{in: "/..", err: `".." refused`},
		{in: "/etc/pass\x00wd", err: "NUL byte"},
		{in: "/" + strings.Repeat("a", maxPath), err: "longer than"},
	}
	for _, tc := range tests {
		got, err := Clean(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Clean(%q) = %q, %v, want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Clean(%q) = %q, %v, want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestReadWriteStatHash(t *testing.T) {
	dir := tempDir(t)
	f := newFS(t, "/")
	p := dir + "/note.txt"
	data := []byte("hello jibril\n")
	if err := f.WriteFile(p, data); err != nil {
		t.Fatal(err)
	}
	got, err := f.ReadFile(p, 1024)
	if err != nil || string(got) != string(data) {
		t.Fatalf("ReadFile = %q, %v", got, err)
	}
	info, err := f.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size != int64(len(data)) || info.Mode != 0o600 || info.IsDir || info.ModTime.IsZero() {
		t.Fatalf("Stat = %+v", info)
	}
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode() != 0o600 {
		t.Fatalf("mode on disk = %v, %v, want 0600", fi.Mode(), err)
	}
	sum := sha256.Sum256(data)
	if h, err := f.HashFile(p); err != nil || h != hex.EncodeToString(sum[:]) {
		t.Fatalf("HashFile = %s, %v", h, err)
	}
	if info, err := f.Stat(dir); err != nil || !info.IsDir || !info.Mode.IsDir() {
		t.Fatalf("Stat(dir) = %+v, %v", info, err)
	}

	// Rewriting truncates and keeps an existing file's mode.
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteFile(p, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(p); string(got) != "x" {
		t.Fatalf("after rewrite: %q", got)
	}
	if fi, _ := os.Lstat(p); fi.Mode() != 0o640 {
		t.Fatalf("rewrite changed the mode to %v", fi.Mode())
	}

	_, err = f.ReadFile(p, 0)
	wantErr(t, err, nil, "not positive")
	if err := os.WriteFile(p, make([]byte, 100), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = f.ReadFile(p, 99)
	wantErr(t, err, ErrTooLarge, "more than 99 bytes")
	_, err = f.ReadFile(dir+"/missing", 10)
	wantErr(t, err, fs.ErrNotExist, "fs: read "+dir+"/missing")
	_, err = f.Stat(dir + "/missing")
	wantErr(t, err, fs.ErrNotExist, "no such file")

	// Files of /proc report size 0 and are read to their end; /proc/self
	// is a symlink like any other, and magic links are refused.
	status := "/proc/" + strconv.Itoa(os.Getpid()) + "/status"
	if b, err := f.ReadFile(status, 1<<20); err != nil || !strings.Contains(string(b), "Pid:") {
		t.Fatalf("ReadFile(%s) = %.40q, %v", status, b, err)
	}
	_, err = f.ReadFile("/proc/self/status", 1<<20)
	wantErr(t, err, ErrSymlink, "fs: /proc/self: symlink refused")
	_, err = f.ReadFile("/proc/"+strconv.Itoa(os.Getpid())+"/root/etc/passwd", 1<<20)
	wantErr(t, err, ErrSymlink, "/root: symlink refused")
}

func TestSymlinksRefused(t *testing.T) {
	dir := tempDir(t)
	f := newFS(t, "/")
	real := dir + "/real"
	if err := os.Mkdir(real, 0o700); err != nil {
		t.Fatal(err)
	}
	secret := real + "/secret"
	if err := os.WriteFile(secret, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ name, to string }{
		{"last", secret}, {"middle", real}, {"dangling", dir + "/nowhere"}, {"abs", "/etc"},
	} {
		if err := os.Symlink(l.to, dir+"/"+l.name); err != nil {
			t.Fatal(err)
		}
	}
	ops := map[string]func(string) error{
		"read":   func(p string) error { _, err := f.ReadFile(p, 100); return err },
		"write":  func(p string) error { return f.WriteFile(p, []byte("pwned")) },
		"stat":   func(p string) error { _, err := f.Stat(p); return err },
		"hash":   func(p string) error { _, err := f.HashFile(p); return err },
		"remove": f.RemoveAll,
		"mktemp": func(p string) error { _, err := f.MkdirTemp(p, ""); return err },
	}
	paths := []struct{ path, link string }{
		{dir + "/last", dir + "/last"},
		{dir + "/middle/secret", dir + "/middle"},
		{dir + "/dangling", dir + "/dangling"},
		{dir + "/abs/passwd", dir + "/abs"},
	}
	for name, op := range ops {
		for _, p := range paths {
			if name == "mktemp" && p.path == dir+"/last" {
				continue // a file, not a directory: refused, but not for the link
			}
			err := op(p.path)
			wantErr(t, err, ErrSymlink, "fs: "+p.link+": symlink refused")
		}
	}
	if got, _ := os.ReadFile(secret); string(got) != "s" {
		t.Fatalf("the link target was written: %q", got)
	}
	if _, err := os.Stat(dir + "/nowhere"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a write through a dangling link created its target")
	}
	// A symlink inside a tree being removed is removed, not followed.
	tree := dir + "/tree"
	if err := os.MkdirAll(tree+"/sub", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, tree+"/sub/out"); err != nil {
		t.Fatal(err)
	}
	if err := f.RemoveAll(tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("tree still there: %v", err)
	}
	if got, _ := os.ReadFile(secret); string(got) != "s" {
		t.Fatal("RemoveAll followed a link out of the tree")
	}
}

func TestDotDotRefused(t *testing.T) {
	dir := tempDir(t)
	f := newFS(t, "/")
	if err := os.Mkdir(dir+"/a", 0o700); err != nil {
		t.Fatal(err)
	}
	p := dir + "/a/../escaped"
	_, err := f.ReadFile(p, 10)
	wantErr(t, err, nil, `".." refused`)
	wantErr(t, f.WriteFile(p, nil), nil, `".." refused`)
	wantErr(t, f.RemoveAll(dir+"/a/.."), nil, `".." refused`)
	if _, err := os.Stat(dir + "/escaped"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a write with .. landed")
	}
	wantErr(t, f.WriteFile("relative/x", nil), nil, "relative path refused")
}

func TestWriteRefusals(t *testing.T) {
	dir := tempDir(t)
	f := newFS(t, "/")
	for _, p := range []string{"/proc/sys/kernel/hostname", "/sys/kernel/x", "/dev/null", "/dev", "/proc"} {
		wantErr(t, f.WriteFile(p, []byte("x")), ErrProtected, "fs: "+p+": writes under")
		wantErr(t, f.RemoveAll(p), ErrProtected, "writes under")
	}
	wantErr(t, f.RemoveAll("/"), ErrProtected, "fs: /:")
	_, err := f.MkdirTemp("/proc/self", "")
	wantErr(t, err, ErrProtected, "writes under")

	// No parent directories are created on the live root.
	err = f.WriteFile(dir+"/no/such/dir/file", []byte("x"))
	wantErr(t, err, fs.ErrNotExist, dir+"/no/such/dir")

	// A hard link to another file is not written through.
	victim := dir + "/victim"
	if err := os.WriteFile(victim, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, dir+"/hardlink"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.WriteFile(dir+"/hardlink", []byte("x")), ErrHardlink, "hard-linked file refused")
	if got, _ := os.ReadFile(victim); string(got) != "keep" {
		t.Fatalf("written through a hard link: %q", got)
	}

	// A FIFO is neither opened for writing (which would block) nor read.
	fifo := dir + "/fifo"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.WriteFile(fifo, []byte("x")), ErrNotFile, "not a regular file")
	_, err = f.ReadFile(fifo, 10)
	wantErr(t, err, ErrNotFile, "not a regular file")
	_, err = f.ReadFile(dir, 10)
	wantErr(t, err, ErrNotFile, "not a regular file")
	_, err = f.ReadFile("/dev/zero", 10)
	wantErr(t, err, ErrNotFile, "fs: /dev/zero: not a regular file")

}

// TestKernelFSElsewhere mounts proc away from /proc: writes into it are
// refused by file system type, not only by path.
func TestKernelFSElsewhere(t *testing.T) {
	privateMounts(t)
	dir := tempDir(t)
	f := newFS(t, "/")
	mnt := dir + "/procmnt"
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("proc", mnt, "proc", 0, ""); err != nil {
		t.Skipf("cannot mount proc: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	wantErr(t, f.WriteFile(mnt+"/sys/kernel/hostname", []byte("x")), ErrProtected, "kernel file system")
	wantErr(t, f.RemoveAll(mnt+"/sys/kernel"), ErrProtected, "kernel file system")
}

func TestScratchRoot(t *testing.T) {
	root := tempDir(t)
	f := newFS(t, root)
	if f.Root() != root {
		t.Fatalf("Root() = %s", f.Root())
	}
	if err := f.WriteFile("/etc/jibril/x.conf", []byte("dry")); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(root + "/etc/jibril/x.conf")
	if err != nil || string(got) != "dry" {
		t.Fatalf("scratch file = %q, %v", got, err)
	}
	for _, d := range []string{"/etc", "/etc/jibril"} {
		fi, err := os.Lstat(root + d)
		if err != nil || fi.Mode() != fs.ModeDir|0o700 {
			t.Fatalf("scratch parent %s: %v, %v, want 0700 dir", d, fi.Mode(), err)
		}
	}
	if b, err := f.ReadFile("/etc/jibril/x.conf", 10); err != nil || string(b) != "dry" {
		t.Fatalf("ReadFile in scratch = %q, %v", b, err)
	}
	// The real /etc is not visible through a scratch root.
	_, err = f.ReadFile("/etc/hostname", 100)
	wantErr(t, err, fs.ErrNotExist, "/etc/hostname")
	// A symlink inside the scratch root does not lead out of it.
	if err := os.Symlink("/etc", root+"/link"); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.WriteFile("/link/x", []byte("x")), ErrSymlink, "fs: /link: symlink refused")
	_, err = f.ReadFile("/link/hostname", 100)
	wantErr(t, err, ErrSymlink, "symlink refused")
	// The write floor holds in dry-run too.
	wantErr(t, f.WriteFile("/proc/x", nil), ErrProtected, "writes under")

	tmp, err := f.MkdirTemp("/var/tmp/jibril", "rx-*")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(root + tmp); err != nil || !fi.IsDir() {
		t.Fatalf("scratch temp dir %s: %v", tmp, err)
	}
	if err := f.RemoveAll("/etc"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(root + "/etc"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("RemoveAll in scratch left /etc")
	}
	if fi, err := os.Stat("/etc"); err != nil || !fi.IsDir() {
		t.Fatalf("the real /etc is gone: %v", err)
	}
}

func TestMkdirTempAndRemove(t *testing.T) {
	dir := tempDir(t)
	f := newFS(t, "/")
	tests := []struct{ pattern, prefix, suffix string }{
		{"", "jibril-", ""},
		{"evidence-*", "evidence-", ""},
		{"a*.d", "a", ".d"},
		{"plain", "plain", ""},
	}
	for _, tc := range tests {
		p, err := f.MkdirTemp(dir, tc.pattern)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(p)
		if filepath.Dir(p) != dir || !strings.HasPrefix(base, tc.prefix) || !strings.HasSuffix(base, tc.suffix) ||
			len(base) <= len(tc.prefix)+len(tc.suffix) {
			t.Fatalf("MkdirTemp(%q) = %s", tc.pattern, p)
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode() != fs.ModeDir|0o700 {
			t.Fatalf("%s: mode %v, %v, want 0700 dir", p, fi.Mode(), err)
		}
	}
	for _, bad := range []string{"a/b", "..", "x\x00"} {
		_, err := f.MkdirTemp(dir, bad)
		wantErr(t, err, nil, "pattern")
	}
	_, err := f.MkdirTemp(dir+"/missing", "")
	wantErr(t, err, fs.ErrNotExist, "missing")

	// RemoveAll of a populated tree, then of what is no longer there.
	p, err := f.MkdirTemp(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"/a/b/c", "/d"} {
		if err := os.MkdirAll(p+sub, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+sub+"/f", []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("%s still there: %v", p, err)
	}
	if err := f.RemoveAll(p); err != nil {
		t.Fatalf("RemoveAll of a missing path = %v", err)
	}
	if err := f.RemoveAll(dir + "/missing/deeper"); err != nil {
		t.Fatalf("RemoveAll under a missing dir = %v", err)
	}
	file := dir + "/file"
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.RemoveAll(file); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveAllStopsAtMounts(t *testing.T) {
	privateMounts(t)
	dir := tempDir(t)
	f := newFS(t, "/")
	mnt := dir + "/tree/mnt"
	if err := os.MkdirAll(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("cannot mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(mnt, syscall.MNT_DETACH) })
	if err := os.WriteFile(mnt+"/precious", []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	wantErr(t, f.RemoveAll(dir+"/tree"), ErrMount, "crosses a mount point")
	if _, err := os.Stat(mnt + "/precious"); err != nil {
		t.Fatalf("file on the other mount removed: %v", err)
	}
}

func TestNewErrors(t *testing.T) {
	for _, root := range []string{"", "rel", "/no/such/root/x"} {
		if _, err := New(root); err == nil {
			t.Errorf("New(%q) succeeded", root)
		}
	}
}
