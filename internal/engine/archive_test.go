package engine

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func mustTree(t *testing.T, dir string) *tree {
	t.Helper()
	tr, err := openTree(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

// self keeps the owner as the caller (what a test without root can set).
func self(int, int) (int, int) { return os.Getuid(), os.Getgid() }

// TestArchiveRoundTrip: files, directories, links (symbolic and hard) and
// a FIFO go through tar and come out the same; a link is stored, not
// followed.
func TestArchiveRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "d/sub"), 0o750)
	os.WriteFile(filepath.Join(src, "d/f"), []byte("file\n"), 0o640)
	os.WriteFile(filepath.Join(src, "d/sub/g"), []byte("g\n"), 0o604)
	os.Link(filepath.Join(src, "d/f"), filepath.Join(src, "d/hard"))
	os.Symlink("/etc", filepath.Join(src, "d/etc"))
	syscall.Mkfifo(filepath.Join(src, "d/fifo"), 0o600)

	var buf bytes.Buffer
	if err := mustTree(t, src).archive(&buf, "/d", "copy"); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir()
	if err := mustTree(t, dst).extract(bytes.NewReader(buf.Bytes()), "/", self); err != nil {
		t.Fatal(err)
	}
	read := func(p string) string { b, _ := os.ReadFile(filepath.Join(dst, p)); return string(b) }
	if read("copy/f") != "file\n" || read("copy/sub/g") != "g\n" {
		t.Fatalf("contents: %q %q", read("copy/f"), read("copy/sub/g"))
	}
	for p, want := range map[string]os.FileMode{"copy/f": 0o640, "copy/sub/g": 0o604, "copy/sub": os.ModeDir | 0o750} {
		if fi, err := os.Lstat(filepath.Join(dst, p)); err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v (%v)", p, fi.Mode(), want, err)
		}
	}
	if l, err := os.Readlink(filepath.Join(dst, "copy/etc")); err != nil || l != "/etc" {
		t.Errorf("symbolic link: %q %v", l, err)
	}
	a, _ := os.Stat(filepath.Join(dst, "copy/f"))
	h, _ := os.Stat(filepath.Join(dst, "copy/hard"))
	if a == nil || h == nil || !os.SameFile(a, h) {
		t.Errorf("hard link not kept")
	}
	if fi, err := os.Lstat(filepath.Join(dst, "copy/fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v %v", fi, err)
	}

	// Only what a directory holds (SRC/.), into an existing directory.
	buf.Reset()
	if err := mustTree(t, src).archive(&buf, "/d/sub", ""); err != nil {
		t.Fatal(err)
	}
	if err := mustTree(t, dst).extract(&buf, "/copy", self); err != nil {
		t.Fatal(err)
	}
	if read("copy/g") != "g\n" {
		t.Errorf("contents only: %q", read("copy/g"))
	}
}

// TestTreeStaysInside: links in the tree that point at /etc or climb out
// with .. resolve inside it, for reading and for writing; a tar entry
// that climbs out is refused.
func TestTreeStaysInside(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc/passwd"), []byte("inside\n"), 0o644)
	os.Symlink("/etc", filepath.Join(root, "abs"))
	os.Symlink("../../../../../../etc", filepath.Join(root, "up"))
	tr := mustTree(t, root)
	for _, p := range []string{"/abs/passwd", "/up/passwd"} {
		rp, err := tr.resolve(p, true)
		if err != nil || rp != "/etc/passwd" {
			t.Fatalf("resolve %s: %q %v", p, rp, err)
		}
		var buf bytes.Buffer
		if err := tr.archive(&buf, rp, "passwd"); err != nil {
			t.Fatal(err)
		}
		r := tar.NewReader(&buf)
		if _, err := r.Next(); err != nil {
			t.Fatal(err)
		}
		if b, _ := io.ReadAll(r); string(b) != "inside\n" {
			t.Fatalf("read through %s: %q", p, b)
		}
	}
	// Writing: an entry under the link lands in the tree's /etc.
	name := "berth-tree-test-" + filepath.Base(root)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "abs/" + name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 2})
	tw.Write([]byte("x\n"))
	tw.Close()
	if err := tr.extract(&buf, "/", self); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat("/etc/" + name); err == nil {
		os.Remove("/etc/" + name)
		t.Fatal("extract through a link wrote the host's /etc")
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc", name)); string(b) != "x\n" {
		t.Fatalf("the tree's /etc/%s: %q", name, b)
	}
	// An entry with "..": refused.
	buf.Reset()
	tw = tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "../../x", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	if err := tr.extract(&buf, "/etc", self); err == nil || !strings.Contains(err.Error(), "leads out") {
		t.Fatalf("an entry with ..: %v", err)
	}
	// A directory is not replaced by a file, nor a file by a directory.
	buf.Reset()
	tw = tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "etc", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	if err := tr.extract(&buf, "/", self); err == nil {
		t.Fatal("a file replaced a directory")
	}
}

func TestCpPaths(t *testing.T) {
	for given, want := range map[string]cpPath{
		"/etc/":    {p: "/etc", slash: true},
		"etc/.":    {p: "/etc", dot: true},
		".":        {p: "/", dot: true},
		"a/../b/c": {p: "/b/c"},
	} {
		got := containerPath(given)
		if got.p != want.p || got.slash != want.slash || got.dot != want.dot {
			t.Errorf("%q: %+v, want %+v", given, got, want)
		}
	}
}
