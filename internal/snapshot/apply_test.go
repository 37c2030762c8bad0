package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"golang.org/x/sys/unix"
)

// entry is one tar entry of a test layer.
type entry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
	uid, gid   int
	xattrs     map[string]string
	major      int64
}

func layer(t testing.TB, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			ModTime: mtime, Size: int64(len(e.body)), Devmajor: e.major, Format: tar.FormatPAX}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func requireRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: ownership, device nodes, whiteouts and trusted.* xattrs")
	}
}

// sandbox is a layer target inside a directory that also holds a file the
// layers must never reach.
func sandbox(t *testing.T) (target, outside string) {
	d := t.TempDir()
	target = filepath.Join(d, "upper")
	outside = filepath.Join(d, "outside")
	os.Mkdir(target, 0o755)
	os.Mkdir(outside, 0o755)
	os.WriteFile(filepath.Join(outside, "sentinel"), []byte("untouched"), 0o644)
	return target, outside
}

func checkOutside(t *testing.T, outside string) {
	t.Helper()
	ents, _ := os.ReadDir(outside)
	b, _ := os.ReadFile(filepath.Join(outside, "sentinel"))
	if len(ents) != 1 || string(b) != "untouched" {
		t.Fatalf("the layer reached outside its directory: %v, sentinel %q", ents, b)
	}
}

func TestApplyFiles(t *testing.T) {
	requireRoot(t)
	dir, outside := sandbox(t)
	data := layer(t,
		entry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		entry{name: "etc/passwd", typ: tar.TypeReg, body: "root:x:0:0::/root:/bin/sh\n", mode: 0o644},
		entry{name: "bin/tool", typ: tar.TypeReg, body: "#!/bin/sh\n", mode: 0o4755, uid: 1000, gid: 1000},
		entry{name: "bin/alias", typ: tar.TypeLink, link: "bin/tool"},
		entry{name: "bin/sh", typ: tar.TypeSymlink, link: "/bin/busybox"},
		entry{name: "usr/bin/ping", typ: tar.TypeReg, body: "x", mode: 0o755,
			xattrs: map[string]string{"security.capability": string([]byte{1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})}},
		entry{name: "dev/null", typ: tar.TypeChar, major: 1, mode: 0o666},
		entry{name: "run/fifo", typ: tar.TypeFifo, mode: 0o600},
		entry{name: "/abs/file", typ: tar.TypeReg, body: "abs"},
	)
	dgst, size, err := Apply(context.Background(), dir, bytes.NewReader(data), ApplyOptions{AllowDevices: true})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if want := "sha256:" + hex.EncodeToString(sum[:]); string(dgst) != want {
		t.Errorf("diffID %s, want %s", dgst, want)
	}
	if size != int64(len("root:x:0:0::/root:/bin/sh\n")+len("#!/bin/sh\n")+1+3) {
		t.Errorf("size %d", size)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "etc/passwd")); !strings.HasPrefix(string(b), "root:") {
		t.Errorf("etc/passwd: %q", b)
	}
	var st, st2 unix.Stat_t
	unix.Lstat(filepath.Join(dir, "bin/tool"), &st)
	unix.Lstat(filepath.Join(dir, "bin/alias"), &st2)
	if st.Mode&0o7777 != 0o4755 || st.Uid != 1000 || st.Gid != 1000 {
		t.Errorf("bin/tool mode %o owner %d:%d, want 4755 1000:1000", st.Mode&0o7777, st.Uid, st.Gid)
	}
	if st.Ino != st2.Ino || st.Nlink != 2 {
		t.Errorf("hard link: inodes %d/%d nlink %d", st.Ino, st2.Ino, st.Nlink)
	}
	if st.Mtim.Sec != 1700000000 {
		t.Errorf("mtime %d", st.Mtim.Sec)
	}
	if l, _ := os.Readlink(filepath.Join(dir, "bin/sh")); l != "/bin/busybox" {
		t.Errorf("symlink: %q", l)
	}
	if n, err := unix.Lgetxattr(filepath.Join(dir, "usr/bin/ping"), "security.capability", make([]byte, 64)); err != nil || n != 20 {
		t.Errorf("file capability: %d bytes, %v", n, err)
	}
	unix.Lstat(filepath.Join(dir, "dev/null"), &st)
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 {
		t.Errorf("dev/null: mode %o rdev %d", st.Mode, st.Rdev)
	}
	unix.Lstat(filepath.Join(dir, "run/fifo"), &st)
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		t.Errorf("fifo: mode %o", st.Mode)
	}
	if _, err := os.Stat(filepath.Join(dir, "abs/file")); err != nil {
		t.Errorf("absolute name not placed inside: %v", err)
	}
	unix.Lstat(filepath.Join(dir, "etc"), &st)
	if st.Mtim.Sec != 1700000000 {
		t.Errorf("directory mtime %d: set before its children were written?", st.Mtim.Sec)
	}
	checkOutside(t, outside)
}

func TestApplyWhiteouts(t *testing.T) {
	requireRoot(t)
	dir, _ := sandbox(t)
	data := layer(t,
		entry{name: "etc/.wh.hosts", typ: tar.TypeReg},
		entry{name: "var/cache/.wh..wh..opq", typ: tar.TypeReg},
	)
	if _, _, err := Apply(context.Background(), dir, bytes.NewReader(data), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "etc/hosts"), &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Errorf("whiteout: %v mode %o rdev %d, want a 0:0 character device", err, st.Mode, st.Rdev)
	}
	if _, err := os.Lstat(filepath.Join(dir, "etc/.wh.hosts")); err == nil {
		t.Errorf("the .wh. marker itself was written")
	}
	buf := make([]byte, 8)
	if n, err := unix.Lgetxattr(filepath.Join(dir, "var/cache"), "trusted.overlay.opaque", buf); err != nil || string(buf[:n]) != "y" {
		t.Errorf("opaque: %q, %v", buf[:n], err)
	}
}

func TestApplyReplaces(t *testing.T) {
	requireRoot(t)
	dir, _ := sandbox(t)
	data := layer(t,
		entry{name: "a/b/c", typ: tar.TypeReg, body: "old"},
		entry{name: "a", typ: tar.TypeReg, body: "now a file"},
		entry{name: "x", typ: tar.TypeReg, body: "1"},
		entry{name: "x", typ: tar.TypeReg, body: "2"},
	)
	if _, _, err := Apply(context.Background(), dir, bytes.NewReader(data), ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "a")); string(b) != "now a file" {
		t.Errorf("a: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "x")); string(b) != "2" {
		t.Errorf("x: %q (the last entry wins)", b)
	}
}

// TestApplyHostile: layers that try to leave their directory are refused
// (or contained), and nothing outside changes.
func TestApplyHostile(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name    string
		entries func(outside string) []entry
		opts    ApplyOptions
		refused string // "" when the layer is contained instead
	}{
		{"dot-dot names stay inside", func(string) []entry {
			return []entry{{name: "../../outside/evil", typ: tar.TypeReg, body: "x"}}
		}, ApplyOptions{}, ""},
		{"write through an absolute symlink", func(o string) []entry {
			return []entry{{name: "link", typ: tar.TypeSymlink, link: o}, {name: "link/evil", typ: tar.TypeReg, body: "x"}}
		}, ApplyOptions{}, "not a directory"},
		{"write through a relative symlink", func(string) []entry {
			return []entry{{name: "up", typ: tar.TypeSymlink, link: "../outside"}, {name: "up/evil", typ: tar.TypeReg, body: "x"}}
		}, ApplyOptions{}, "not a directory"},
		{"symlink chain in a deeper path", func(o string) []entry {
			return []entry{{name: "a/b", typ: tar.TypeSymlink, link: o}, {name: "a/b/c/evil", typ: tar.TypeReg}}
		}, ApplyOptions{}, "not a directory"},
		{"hard link to a file outside", func(o string) []entry {
			return []entry{{name: "stolen", typ: tar.TypeLink, link: "../outside/sentinel"}}
		}, ApplyOptions{}, "not in this layer"},
		{"hard link through a symlink", func(o string) []entry {
			return []entry{{name: "l", typ: tar.TypeSymlink, link: o}, {name: "stolen", typ: tar.TypeLink, link: "l/sentinel"}}
		}, ApplyOptions{}, "not a directory"},
		{"whiteout through a symlink", func(o string) []entry {
			return []entry{{name: "l", typ: tar.TypeSymlink, link: o}, {name: "l/.wh.sentinel", typ: tar.TypeReg}}
		}, ApplyOptions{}, "not a directory"},
		{"device node not allowed", func(string) []entry {
			return []entry{{name: "dev/sda", typ: tar.TypeBlock, major: 8}}
		}, ApplyOptions{}, "device nodes are not allowed"},
		{"decompression bomb", func(string) []entry {
			return []entry{{name: "big", typ: tar.TypeReg, body: strings.Repeat("A", 4096)}}
		}, ApplyOptions{MaxSize: 1024}, "exceed the layer limit"},
		{"too many entries", func(string) []entry {
			return []entry{{name: "1", typ: tar.TypeReg}, {name: "2", typ: tar.TypeReg}, {name: "3", typ: tar.TypeReg}}
		}, ApplyOptions{MaxEntries: 2}, "more than 2 entries"},
		{"forged overlay metadata", func(string) []entry {
			return []entry{{name: "d", typ: tar.TypeDir, mode: 0o755, xattrs: map[string]string{"trusted.overlay.redirect": "/etc"}}}
		}, ApplyOptions{}, "overlay metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, outside := sandbox(t)
			_, _, err := Apply(context.Background(), dir, bytes.NewReader(layer(t, tc.entries(outside)...)), tc.opts)
			if tc.refused == "" && err != nil {
				t.Fatalf("contained layer refused: %v", err)
			}
			if tc.refused != "" {
				if err == nil || !strings.Contains(err.Error(), tc.refused) {
					t.Fatalf("err = %v, want one containing %q", err, tc.refused)
				}
				if !errdefs.IsInvalidArgument(err) {
					t.Errorf("err = %v: not an invalid-argument error", err)
				}
			}
			checkOutside(t, outside)
		})
	}
}

func TestApplyMalformed(t *testing.T) {
	requireRoot(t)
	dir, _ := sandbox(t)
	data := layer(t, entry{name: "f", typ: tar.TypeReg, body: strings.Repeat("x", 2000)})
	_, _, err := Apply(context.Background(), dir, bytes.NewReader(data[:1000]), ApplyOptions{})
	if err == nil {
		t.Fatal("a truncated layer was accepted")
	}
}

// FuzzApply: whatever the bytes, Apply neither panics nor writes outside.
func FuzzApply(f *testing.F) {
	f.Add(layer(f, entry{name: "a", typ: tar.TypeSymlink, link: "/x"}, entry{name: "a/b", typ: tar.TypeReg, body: "x"}))
	f.Add(layer(f, entry{name: "../x", typ: tar.TypeLink, link: "../../y"}))
	f.Add(layer(f, entry{name: "d/.wh..wh..opq", typ: tar.TypeReg}, entry{name: "d/.wh.e", typ: tar.TypeReg}))
	f.Fuzz(func(t *testing.T, data []byte) {
		if os.Geteuid() != 0 {
			t.Skip("needs root")
		}
		// tmpfs: the VM's ext4 discards blocks on every delete, which makes
		// thousands of sandboxes crawl.
		d, err := os.MkdirTemp("/dev/shm", "fuzzapply")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(d)
		dir, outside := filepath.Join(d, "upper"), filepath.Join(d, "outside")
		os.Mkdir(dir, 0o755)
		os.Mkdir(outside, 0o755)
		os.WriteFile(filepath.Join(outside, "sentinel"), []byte("untouched"), 0o644)
		Apply(context.Background(), dir, bytes.NewReader(data), ApplyOptions{MaxSize: 1 << 20, MaxEntries: 1000})
		checkOutside(t, outside)
	})
}
