package content_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/content/contenttest"
	"github.com/berthdev/berth/internal/errdefs"
)

func newLocal(t *testing.T) content.Store {
	s, err := content.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLocalStore(t *testing.T) {
	contenttest.TestSuite(t, newLocal, contenttest.WithOpen(func(root string) (content.Store, error) {
		return content.NewStore(root)
	}))
}

func TestLocalLayout(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := content.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("layout")
	d := digest.FromBytes(b)
	w, err := s.Writer(ctx, "../../escape", int64(len(b)), d)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	// The ref names a directory only through its hash.
	dirs, _ := os.ReadDir(filepath.Join(root, "ingest"))
	if len(dirs) != 1 || len(dirs[0].Name()) != 64 || strings.Contains(dirs[0].Name(), ".") {
		t.Fatalf("ingest dirs: %v", dirs)
	}
	if err := w.Commit(ctx, content.SizeUnknown, ""); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(root, "blobs", "sha256", d.Encoded())
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o444 {
		t.Errorf("blob mode %v, want read-only", fi.Mode())
	}
	if p, _ := s.BlobPath(d); p != path {
		t.Errorf("BlobPath = %s, want %s", p, path)
	}
	if dirs, _ := os.ReadDir(filepath.Join(root, "ingest")); len(dirs) != 0 {
		t.Errorf("ingest left after commit: %v", dirs)
	}
}

// TestLocalOtherAlgorithm: a descriptor may name sha512; the blob goes
// to blobs/sha512 and Walk finds it.
func TestLocalOtherAlgorithm(t *testing.T) {
	ctx := context.Background()
	s := newLocal(t)
	b := []byte("sha512 content")
	d := digest.SHA512.FromBytes(b)
	w, err := s.Writer(ctx, "ref", int64(len(b)), d)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	if err := w.Commit(ctx, content.SizeUnknown, ""); err != nil {
		t.Fatal(err)
	}
	var got []digest.Digest
	s.Walk(ctx, func(i content.Info) error { got = append(got, i.Digest); return nil })
	if len(got) != 1 || got[0] != d {
		t.Fatalf("Walk: %v", got)
	}
	if err := s.Verify(ctx, d); err != nil {
		t.Fatal(err)
	}
}

// TestLocalCrashLeftovers rebuilds by hand what a kill at the worst
// moments leaves behind, which the random crash test may not hit.
func TestLocalCrashLeftovers(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	s, err := content.NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte("complete data, killed in Commit after chmod")
	d := digest.FromBytes(b)
	w, err := s.Writer(ctx, "ref", int64(len(b)), d)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(b)
	w.Close()
	dirs, _ := os.ReadDir(filepath.Join(root, "ingest"))
	dir := filepath.Join(root, "ingest", dirs[0].Name())
	// Killed after making data read-only, before the rename.
	if err := os.Chmod(filepath.Join(dir, "data"), 0o444); err != nil {
		t.Fatal(err)
	}
	w, err = s.Writer(ctx, "ref", int64(len(b)), d)
	if err != nil {
		t.Fatalf("reopen a read-only ingest: %v", err)
	}
	if w.Status().Offset != int64(len(b)) {
		t.Fatalf("offset %d", w.Status().Offset)
	}
	if err := w.Commit(ctx, content.SizeUnknown, ""); err != nil {
		t.Fatal(err)
	}

	// Killed before meta.json was written: the ingest starts over.
	b2 := []byte("second")
	d2 := digest.FromBytes(b2)
	w, _ = s.Writer(ctx, "ref2", int64(len(b2)), d2)
	w.Write(b2[:3])
	w.Close()
	dirs, _ = os.ReadDir(filepath.Join(root, "ingest"))
	dir = filepath.Join(root, "ingest", dirs[0].Name())
	os.Remove(filepath.Join(dir, "meta.json"))
	w, err = s.Writer(ctx, "ref2", int64(len(b2)), d2)
	if err != nil || w.Status().Offset != 0 {
		t.Fatalf("reopen without meta: %v, offset %d", err, w.Status().Offset)
	}
	w.Close()

	// Killed after the rename, before the ingest was removed: a writer
	// for the same digest learns it exists and the leftover goes.
	os.Remove(filepath.Join(dir, "data"))
	if _, err := s.Writer(ctx, "ref", int64(len(b)), d); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("Writer for a committed blob: %v", err)
	}
}

// TestLocalShortWrite fills the "disk" (a file size limit) in the middle
// of a write, serial and parallel: the failed write must leave file, hash
// and offset as they were, and writing must go on after.
func TestLocalShortWrite(t *testing.T) {
	ctx := context.Background()
	s := newLocal(t)
	b := make([]byte, 3<<20)
	for i := range b {
		b[i] = byte(i * 7)
	}
	d := digest.FromBytes(b)
	w, err := s.Writer(ctx, "ref", int64(len(b)), d)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, chunk := range []int64{1000, 1 << 20} { // the serial path, then the parallel one
		var old unix.Rlimit
		if err := unix.Getrlimit(unix.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
		off := w.Status().Offset
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: uint64(off + chunk/2), Max: old.Max}); err != nil {
			t.Skipf("cannot lower RLIMIT_FSIZE: %v", err)
		}
		n, err := w.Write(b[off : off+chunk])
		unix.Setrlimit(unix.RLIMIT_FSIZE, &old)
		if err == nil || n != 0 {
			t.Fatalf("write of %d into a full file: n=%d err=%v, want 0 and an error", chunk, n, err)
		}
		if got := w.Status().Offset; got != off {
			t.Fatalf("offset %d after a failed write, want %d", got, off)
		}
		if w.Digest() != digest.FromBytes(b[:off]) {
			t.Fatal("digest after a failed write is not that of the bytes before it")
		}
		if _, err := w.Write(b[off : off+chunk]); err != nil {
			t.Fatalf("write after the disk has room again: %v", err)
		}
	}
	if _, err := w.Write(b[w.Status().Offset:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(ctx, content.SizeUnknown, ""); err != nil {
		t.Fatal(err)
	}
}
