// Package contenttest is the shared test suite for content.Store
// implementations: every implementation runs TestSuite from its own tests,
// so they all keep one contract.
package contenttest

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/errdefs"
)

// BlobPather is implemented by stores that keep each blob in a file. The
// suite uses it to corrupt a blob behind the store's back; stores without
// it skip that test.
type BlobPather interface {
	BlobPath(dgst digest.Digest) (string, error)
}

// Option adds what some tests need beyond a fresh store.
type Option func(*config)

type config struct {
	open func(root string) (content.Store, error)
}

// WithOpen gives the suite a way to open the store kept under a directory,
// from this process or from a child one. With it the suite also runs the
// cross-process lock test and the crash test, which kill child processes
// in the middle of writes and then check the store; without it they skip.
func WithOpen(open func(root string) (content.Store, error)) Option {
	return func(c *config) { c.open = open }
}

// TestSuite runs the content.Store contract against stores from newStore,
// one fresh store per test.
func TestSuite(t *testing.T, newStore func(t *testing.T) content.Store, opts ...Option) {
	var cfg config
	for _, o := range opts {
		o(&cfg)
	}
	// A child process re-executed by the crash or lock test runs here, in
	// place of the tests.
	if mode := os.Getenv(envChild); mode != "" {
		if os.Getenv(envTest) != t.Name() {
			t.Skip("child process of another test")
		}
		runChild(t, cfg, mode)
		return
	}

	tests := []struct {
		name string
		fn   func(t *testing.T, s content.Store)
	}{
		{"WriteCommitRead", testWriteCommitRead},
		{"UnknownExpectations", testUnknownExpectations},
		{"EmptyBlob", testEmptyBlob},
		{"NotVisibleBeforeCommit", testNotVisibleBeforeCommit},
		{"DigestMismatch", testDigestMismatch},
		{"SizeMismatch", testSizeMismatch},
		{"SizeExceeded", testSizeExceeded},
		{"Copy", testCopy},
		{"AlreadyExists", testAlreadyExists},
		{"ConcurrentCommitSameContent", testConcurrentCommitSameContent},
		{"Resume", testResume},
		{"ResumeOtherExpectations", testResumeOtherExpectations},
		{"Truncate", testTruncate},
		{"ConcurrentWriters", testConcurrentWriters},
		{"LockChurn", testLockChurn},
		{"Abort", testAbort},
		{"CleanIngests", testCleanIngests},
		{"WalkDelete", testWalkDelete},
		{"Verify", testVerify},
		{"InvalidInput", testInvalidInput},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newStore(t)) })
	}
	t.Run("CrossProcessLock", func(t *testing.T) { testCrossProcessLock(t, cfg) })
	t.Run("Crash", func(t *testing.T) { testCrash(t, cfg) })
}

// randBytes is deterministic so that a child process can rebuild the
// parent's data from a seed.
func randBytes(seed1, seed2 uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed1, seed2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// writeAll writes b in uneven chunks, as a network stream would arrive.
func writeAll(t *testing.T, w content.Writer, b []byte) {
	t.Helper()
	for len(b) > 0 {
		n := min(len(b), 1+len(b)%7919)
		if _, err := w.Write(b[:n]); err != nil {
			t.Fatalf("write: %v", err)
		}
		b = b[n:]
	}
}

func mustWriter(t *testing.T, s content.Store, ref string, size int64, dgst digest.Digest) content.Writer {
	t.Helper()
	w, err := s.Writer(context.Background(), ref, size, dgst)
	if err != nil {
		t.Fatalf("Writer(%q): %v", ref, err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// put stores b and returns its digest.
func put(t *testing.T, s content.Store, ref string, b []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(b)
	w := mustWriter(t, s, ref, int64(len(b)), d)
	writeAll(t, w, b)
	if err := w.Commit(context.Background(), int64(len(b)), d); err != nil {
		t.Fatalf("commit %s: %v", d, err)
	}
	return d
}

// readBlob reads a whole blob through ReaderAt.
func readBlob(t *testing.T, s content.Store, d digest.Digest) []byte {
	t.Helper()
	ra, err := s.ReaderAt(context.Background(), d)
	if err != nil {
		t.Fatalf("ReaderAt(%s): %v", d, err)
	}
	defer ra.Close()
	b, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	if err != nil {
		t.Fatalf("read %s: %v", d, err)
	}
	return b
}

func wantErr(t *testing.T, what string, err error, is func(error) bool, class string) {
	t.Helper()
	if err == nil || !is(err) {
		t.Fatalf("%s: got error %v, want %s", what, err, class)
	}
}

func wantMention(t *testing.T, err error, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

func testWriteCommitRead(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(1, 1, 300_000)
	d := digest.FromBytes(b)
	w := mustWriter(t, s, "ref-1", int64(len(b)), d)
	writeAll(t, w, b)
	if got := w.Digest(); got != d {
		t.Fatalf("Digest() = %s, want %s", got, d)
	}
	if st := w.Status(); st.Offset != int64(len(b)) || st.Total != int64(len(b)) || st.Expected != d || st.Ref != "ref-1" {
		t.Fatalf("Status() = %+v", st)
	}
	before := time.Now().Add(-time.Second)
	if err := w.Commit(ctx, int64(len(b)), d); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close after commit: %v", err)
	}
	if _, err := w.Write([]byte("x")); err == nil {
		t.Fatal("write after commit succeeded")
	}
	info, err := s.Info(ctx, d)
	if err != nil {
		t.Fatalf("info: %v", err)
	}
	if info.Digest != d || info.Size != int64(len(b)) || info.CreatedAt.Before(before) || info.CreatedAt.After(time.Now().Add(time.Second)) {
		t.Fatalf("Info = %+v", info)
	}
	if got := readBlob(t, s, d); !bytes.Equal(got, b) {
		t.Fatal("read back differs from what was written")
	}
	ra, err := s.ReaderAt(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	defer ra.Close()
	p := make([]byte, 1000)
	if _, err := ra.ReadAt(p, 123_456); err != nil || !bytes.Equal(p, b[123_456:124_456]) {
		t.Fatalf("ReadAt in the middle: %v", err)
	}
	if _, err := s.Status(ctx, "ref-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("Status after commit: %v, want NotFound", err)
	}
	if err := s.Verify(ctx, d); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func testUnknownExpectations(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(2, 1, 10_000)
	w := mustWriter(t, s, "ref", content.SizeUnknown, "")
	writeAll(t, w, b)
	if st := w.Status(); st.Total != content.SizeUnknown || st.Expected != "" {
		t.Fatalf("Status() = %+v", st)
	}
	d := w.Digest()
	if d != digest.FromBytes(b) {
		t.Fatalf("Digest() = %s", d)
	}
	if err := w.Commit(ctx, content.SizeUnknown, ""); err != nil {
		t.Fatalf("commit: %v", err)
	}
	if got := readBlob(t, s, d); !bytes.Equal(got, b) {
		t.Fatal("read back differs")
	}
}

func testEmptyBlob(t *testing.T, s content.Store) {
	d := put(t, s, "empty", nil)
	if d != digest.FromBytes(nil) {
		t.Fatal(d)
	}
	if info, err := s.Info(context.Background(), d); err != nil || info.Size != 0 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	if err := s.Verify(context.Background(), d); err != nil {
		t.Fatal(err)
	}
}

func testNotVisibleBeforeCommit(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(3, 1, 50_000)
	d := digest.FromBytes(b)
	w := mustWriter(t, s, "ref", int64(len(b)), d)
	writeAll(t, w, b)
	if _, err := s.Info(ctx, d); !errdefs.IsNotFound(err) {
		t.Fatalf("Info before commit: %v, want NotFound", err)
	}
	if _, err := s.ReaderAt(ctx, d); !errdefs.IsNotFound(err) {
		t.Fatalf("ReaderAt before commit: %v, want NotFound", err)
	}
	n := 0
	s.Walk(ctx, func(content.Info) error { n++; return nil })
	if n != 0 {
		t.Fatalf("Walk saw %d blobs before commit", n)
	}
}

func testDigestMismatch(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(4, 1, 20_000)
	actual := digest.FromBytes(b)
	claimed := digest.FromString("something else")
	w := mustWriter(t, s, "ref", int64(len(b)), claimed)
	writeAll(t, w, b)
	err := w.Commit(ctx, int64(len(b)), claimed)
	wantErr(t, "commit with wrong digest", err, errdefs.IsFailedPrecond, "FailedPrecond")
	wantMention(t, err, string(claimed), string(actual), "ref")
	for _, d := range []digest.Digest{claimed, actual} {
		if _, err := s.Info(ctx, d); !errdefs.IsNotFound(err) {
			t.Fatalf("Info(%s) after a failed commit: %v, want NotFound", d, err)
		}
	}
	n := 0
	s.Walk(ctx, func(content.Info) error { n++; return nil })
	if n != 0 {
		t.Fatalf("Walk saw %d blobs after a failed commit", n)
	}
	// The bad bytes must not be resumed from.
	if st := w.Status(); st.Offset != 0 {
		t.Fatalf("offset after digest mismatch = %d, want 0", st.Offset)
	}
	w.Close()
	w = mustWriter(t, s, "ref", int64(len(b)), claimed)
	if st := w.Status(); st.Offset != 0 {
		t.Fatalf("reopened offset after digest mismatch = %d, want 0", st.Offset)
	}
}

func testSizeMismatch(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(5, 1, 20_000)
	d := digest.FromBytes(b)
	w := mustWriter(t, s, "ref", int64(len(b)), d)
	writeAll(t, w, b[:15_000])
	err := w.Commit(ctx, int64(len(b)), d)
	wantErr(t, "commit of a short blob", err, errdefs.IsFailedPrecond, "FailedPrecond")
	wantMention(t, err, "20000", "15000")
	if _, err := s.Info(ctx, d); !errdefs.IsNotFound(err) {
		t.Fatalf("Info after a short commit: %v", err)
	}
	// Short is not wrong: the rest may still come.
	writeAll(t, w, b[15_000:])
	if err := w.Commit(ctx, int64(len(b)), d); err != nil {
		t.Fatalf("commit after writing the rest: %v", err)
	}
}

func testSizeExceeded(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(6, 1, 1000)
	d := digest.FromBytes(b)
	w := mustWriter(t, s, "ref", int64(len(b)), d)
	writeAll(t, w, b[:900])
	n, err := w.Write(make([]byte, 101))
	wantErr(t, "write past the expected size", err, errdefs.IsFailedPrecond, "FailedPrecond")
	wantMention(t, err, "1000", "900")
	if n != 0 || w.Status().Offset != 900 {
		t.Fatalf("a refused write wrote %d bytes, offset %d", n, w.Status().Offset)
	}
	if _, err := w.Write(b[900:]); err != nil {
		t.Fatalf("write up to the size: %v", err)
	}
	if _, err := w.Write([]byte{0}); !errdefs.IsFailedPrecond(err) {
		t.Fatalf("one byte past the size: %v", err)
	}
	if err := w.Commit(ctx, int64(len(b)), d); err != nil {
		t.Fatalf("commit: %v", err)
	}
	// One write far larger than promised, as from a decompression bomb.
	w = mustWriter(t, s, "bomb", 10, "")
	if n, err := w.Write(make([]byte, 1<<20)); !errdefs.IsFailedPrecond(err) || n != 0 {
		t.Fatalf("1 MiB into a 10-byte ingest: n=%d err=%v", n, err)
	}
}

// testCopy feeds the writer as a pull does, through io.Copy (which uses
// the writer's ReadFrom if it has one) from a reader giving small pieces.
func testCopy(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(6, 2, 3<<20+17)
	d := digest.FromBytes(b)
	w := mustWriter(t, s, "ref", int64(len(b)), d)
	if n, err := io.Copy(w, iotest.HalfReader(bytes.NewReader(b))); err != nil || n != int64(len(b)) {
		t.Fatalf("io.Copy: %d, %v", n, err)
	}
	if err := w.Commit(ctx, content.SizeUnknown, ""); err != nil {
		t.Fatal(err)
	}
	if got := readBlob(t, s, d); !bytes.Equal(got, b) {
		t.Fatal("copied blob differs")
	}

	// A stream longer than promised fails and leaves no more than promised.
	w = mustWriter(t, s, "long", 1<<20, "")
	_, err := io.Copy(w, bytes.NewReader(make([]byte, 3<<20)))
	wantErr(t, "io.Copy of 3 MiB into a 1 MiB ingest", err, errdefs.IsFailedPrecond, "FailedPrecond")
	if st := w.Status(); st.Offset > 1<<20 {
		t.Fatalf("offset %d past the expected size", st.Offset)
	}

	// A read error keeps what came before it, for a resume.
	w = mustWriter(t, s, "broken", content.SizeUnknown, "")
	r := io.MultiReader(bytes.NewReader(b[:100_000]), iotest.ErrReader(errors.New("connection reset")))
	if _, err := io.Copy(w, r); err == nil || !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("io.Copy from a failing reader: %v", err)
	}
	if got := w.Status().Offset; got != 100_000 {
		t.Fatalf("after a read error the ingest has %d bytes, want 100000", got)
	}
}

func testAlreadyExists(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(7, 1, 5000)
	d := put(t, s, "first", b)
	_, err := s.Writer(ctx, "second", int64(len(b)), d)
	wantErr(t, "Writer for a stored digest", err, errdefs.IsAlreadyExists, "AlreadyExists")
	wantMention(t, err, string(d))

	// Without expectations the store learns the digest only at commit.
	w := mustWriter(t, s, "third", content.SizeUnknown, "")
	writeAll(t, w, b)
	err = w.Commit(ctx, content.SizeUnknown, "")
	wantErr(t, "commit of stored content", err, errdefs.IsAlreadyExists, "AlreadyExists")
	if _, err := s.Status(ctx, "third"); !errdefs.IsNotFound(err) {
		t.Fatalf("ingest kept after AlreadyExists: %v", err)
	}
	if got := readBlob(t, s, d); !bytes.Equal(got, b) {
		t.Fatal("stored blob changed")
	}
}

func testConcurrentCommitSameContent(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(8, 1, 100_000)
	d := digest.FromBytes(b)
	const n = 6
	ws := make([]content.Writer, n)
	for i := range ws {
		ws[i] = mustWriter(t, s, "ref-"+string(rune('a'+i)), int64(len(b)), d)
		writeAll(t, ws[i], b)
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range ws {
		wg.Go(func() { errs[i] = ws[i].Commit(ctx, int64(len(b)), d) })
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errdefs.IsAlreadyExists(err):
			t.Errorf("commit %d: %v", i, err)
		}
	}
	if ok == 0 {
		t.Fatal("no commit succeeded")
	}
	if err := s.Verify(ctx, d); err != nil {
		t.Fatal(err)
	}
}

func testWalkDelete(t *testing.T, s content.Store) {
	ctx := context.Background()
	want := map[digest.Digest]int64{}
	for i := range 3 {
		b := randBytes(12, uint64(i), 1000*(i+1))
		want[put(t, s, "ref", b)] = int64(len(b))
	}
	walk := func() map[digest.Digest]int64 {
		got := map[digest.Digest]int64{}
		if err := s.Walk(ctx, func(i content.Info) error { got[i.Digest] = i.Size; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := walk(); len(got) != 3 {
		t.Fatalf("Walk: %v, want %v", got, want)
	}
	for d, size := range walk() {
		if want[d] != size {
			t.Fatalf("Walk: %s has size %d, want %d", d, size, want[d])
		}
	}
	stop := errors.New("stop")
	if err := s.Walk(ctx, func(content.Info) error { return stop }); err != stop {
		t.Fatalf("Walk did not return fn's error: %v", err)
	}
	var victim digest.Digest
	for d := range want {
		victim = d
		break
	}
	if err := s.Delete(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if got := walk(); len(got) != 2 || got[victim] != 0 {
		t.Fatalf("Walk after Delete: %v", got)
	}
	wantErr(t, "Delete twice", s.Delete(ctx, victim), errdefs.IsNotFound, "NotFound")
	_, err := s.Info(ctx, victim)
	wantErr(t, "Info of a deleted blob", err, errdefs.IsNotFound, "NotFound")
	_, err = s.ReaderAt(ctx, victim)
	wantErr(t, "ReaderAt of a deleted blob", err, errdefs.IsNotFound, "NotFound")
}

func testVerify(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(13, 1, 64_000)
	d := put(t, s, "ref", b)
	if err := s.Verify(ctx, d); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "Verify of a missing blob", s.Verify(ctx, digest.FromString("missing")), errdefs.IsNotFound, "NotFound")
	bp, ok := s.(BlobPather)
	if !ok {
		t.Skip("store does not implement BlobPather: cannot corrupt a blob behind its back")
	}
	path, err := bp.BlobPath(d)
	if err != nil {
		t.Fatal(err)
	}
	flipByte(t, path, 31_337)
	err = s.Verify(ctx, d)
	var ce *content.CorruptError
	if !errors.As(err, &ce) || !errdefs.IsFailedPrecond(err) {
		t.Fatalf("Verify of a flipped byte: %v, want a CorruptError", err)
	}
	if ce.Digest != d || ce.Path != path {
		t.Fatalf("CorruptError names %s at %s, want %s at %s", ce.Digest, ce.Path, d, path)
	}
	wantMention(t, err, string(d), path)

	// A truncated blob, the other thing a crash could do to a careless store.
	d2 := put(t, s, "ref2", randBytes(13, 2, 64_000))
	path2, _ := bp.BlobPath(d2)
	os.Chmod(path2, 0o644)
	if err := os.Truncate(path2, 1000); err != nil {
		t.Fatal(err)
	}
	if err := s.Verify(ctx, d2); !errors.As(err, &ce) {
		t.Fatalf("Verify of a truncated blob: %v", err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	// Blobs may be read-only; as non-root the mode must change first.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := make([]byte, 1)
	if _, err := f.ReadAt(p, off); err != nil {
		t.Fatal(err)
	}
	p[0] ^= 0xff
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
}

func testInvalidInput(t *testing.T, s content.Store) {
	ctx := context.Background()
	bad := []digest.Digest{"sha256:xyz", "sha256:../../../etc/passwd", "nonsense", "md5:d41d8cd98f00b204e9800998ecf8427e"}
	for _, d := range bad {
		_, err := s.Writer(ctx, "ref", 1, d)
		wantErr(t, "Writer with digest "+string(d), err, errdefs.IsInvalidArgument, "InvalidArgument")
		_, err = s.Info(ctx, d)
		wantErr(t, "Info of "+string(d), err, errdefs.IsInvalidArgument, "InvalidArgument")
		_, err = s.ReaderAt(ctx, d)
		wantErr(t, "ReaderAt of "+string(d), err, errdefs.IsInvalidArgument, "InvalidArgument")
		wantErr(t, "Delete of "+string(d), s.Delete(ctx, d), errdefs.IsInvalidArgument, "InvalidArgument")
		wantErr(t, "Verify of "+string(d), s.Verify(ctx, d), errdefs.IsInvalidArgument, "InvalidArgument")
	}
	_, err := s.Writer(ctx, "", 1, "")
	wantErr(t, "Writer with an empty ref", err, errdefs.IsInvalidArgument, "InvalidArgument")
	_, err = s.Writer(ctx, "ref", -7, "")
	wantErr(t, "Writer with size -7", err, errdefs.IsInvalidArgument, "InvalidArgument")

	w := mustWriter(t, s, "ref", 3, digest.FromString("abc"))
	writeAll(t, w, []byte("abc"))
	err = w.Commit(ctx, 4, "")
	wantErr(t, "Commit with another size than opened", err, errdefs.IsInvalidArgument, "InvalidArgument")
	err = w.Commit(ctx, 3, digest.FromString("abd"))
	wantErr(t, "Commit with another digest than opened", err, errdefs.IsInvalidArgument, "InvalidArgument")
	if err := w.Commit(ctx, 3, digest.FromString("abc")); err != nil {
		t.Fatalf("commit after refused commits: %v", err)
	}
}
