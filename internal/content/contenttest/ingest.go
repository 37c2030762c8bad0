package contenttest

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/errdefs"
)

// Tests of the ingest life cycle: resume, truncate, locking, abort, clean.

func testResume(t *testing.T, s content.Store) {
	ctx := context.Background()
	b := randBytes(9, 1, 200_000)
	d := digest.FromBytes(b)
	w := mustWriter(t, s, "ref", int64(len(b)), d)
	writeAll(t, w, b[:77_777])
	if err := w.Close(); err != nil { // abandoned mid-way
		t.Fatal(err)
	}
	st, err := s.Status(ctx, "ref")
	if err != nil {
		t.Fatalf("Status of an abandoned ingest: %v", err)
	}
	if st.Offset != 77_777 || st.Total != int64(len(b)) || st.Expected != d || st.Ref != "ref" {
		t.Fatalf("Status = %+v", st)
	}
	w = mustWriter(t, s, "ref", int64(len(b)), d)
	if got := w.Status().Offset; got != 77_777 {
		t.Fatalf("resumed at %d, want 77777", got)
	}
	if got, want := w.Digest(), digest.FromBytes(b[:77_777]); got != want {
		t.Fatalf("resumed digest %s, want %s", got, want)
	}
	writeAll(t, w, b[77_777:])
	if err := w.Commit(ctx, int64(len(b)), d); err != nil {
		t.Fatalf("commit after resume: %v", err)
	}
	if got := readBlob(t, s, d); !bytes.Equal(got, b) {
		t.Fatal("resumed blob differs")
	}
}

func testResumeOtherExpectations(t *testing.T, s content.Store) {
	b := randBytes(10, 1, 10_000)
	w := mustWriter(t, s, "ref", int64(len(b)), digest.FromBytes(b))
	writeAll(t, w, b[:5000])
	w.Close()
	other := randBytes(10, 2, 8000)
	w = mustWriter(t, s, "ref", int64(len(other)), digest.FromBytes(other))
	if got := w.Status().Offset; got != 0 {
		t.Fatalf("ingest reopened for another blob starts at %d, want 0", got)
	}
	writeAll(t, w, other)
	if err := w.Commit(context.Background(), content.SizeUnknown, ""); err != nil {
		t.Fatal(err)
	}
}

func testTruncate(t *testing.T, s content.Store) {
	b := randBytes(11, 1, 4000)
	d := digest.FromBytes(b)
	w := mustWriter(t, s, "ref", int64(len(b)), d)
	writeAll(t, w, b[:3000])
	if err := w.Truncate(3001); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("truncate past the offset: %v", err)
	}
	if err := w.Truncate(1000); err != nil {
		t.Fatal(err)
	}
	if w.Status().Offset != 1000 || w.Digest() != digest.FromBytes(b[:1000]) {
		t.Fatalf("after truncate: %+v %s", w.Status(), w.Digest())
	}
	writeAll(t, w, b[1000:])
	if err := w.Commit(context.Background(), content.SizeUnknown, ""); err != nil {
		t.Fatal(err)
	}
}

func testConcurrentWriters(t *testing.T, s content.Store) {
	ctx := context.Background()
	w1 := mustWriter(t, s, "shared", content.SizeUnknown, "")
	_, err := s.Writer(ctx, "shared", content.SizeUnknown, "")
	wantErr(t, "second writer on a ref", err, errdefs.IsUnavailable, "Unavailable")
	wantMention(t, err, "shared")
	wantErr(t, "Abort of a held ref", s.Abort(ctx, "shared"), errdefs.IsUnavailable, "Unavailable")
	w1.Close()
	w2 := mustWriter(t, s, "shared", content.SizeUnknown, "")
	w2.Close()

	// Many at once: exactly one wins while the others try.
	const n = 8
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []content.Writer
		start   = make(chan struct{})
	)
	for range n {
		wg.Go(func() {
			<-start
			w, err := s.Writer(ctx, "race", content.SizeUnknown, "")
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				winners = append(winners, w)
			case !errdefs.IsUnavailable(err):
				t.Errorf("racing writer: %v", err)
			}
		})
	}
	close(start)
	wg.Wait()
	for _, w := range winners {
		w.Close()
	}
	if len(winners) != 1 {
		t.Fatalf("%d writers held one ref at once", len(winners))
	}
}

func testAbort(t *testing.T, s content.Store) {
	ctx := context.Background()
	w := mustWriter(t, s, "ref", content.SizeUnknown, "")
	writeAll(t, w, []byte("partial"))
	w.Close()
	if err := s.Abort(ctx, "ref"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Status(ctx, "ref"); !errdefs.IsNotFound(err) {
		t.Fatalf("Status after Abort: %v", err)
	}
	wantErr(t, "Abort twice", s.Abort(ctx, "ref"), errdefs.IsNotFound, "NotFound")
}

func testCleanIngests(t *testing.T, s content.Store) {
	ctx := context.Background()
	idle := mustWriter(t, s, "idle", content.SizeUnknown, "")
	writeAll(t, idle, []byte("idle data"))
	idle.Close()
	held := mustWriter(t, s, "held", content.SizeUnknown, "")
	writeAll(t, held, []byte("held data"))
	if got, err := s.CleanIngests(ctx, time.Hour); err != nil || len(got) != 0 {
		t.Fatalf("CleanIngests(1h) removed %v, %v", got, err)
	}
	time.Sleep(50 * time.Millisecond)
	got, err := s.CleanIngests(ctx, 10*time.Millisecond)
	if err != nil || len(got) != 1 || got[0] != "idle" {
		t.Fatalf("CleanIngests(10ms) removed %v, %v; want [idle]", got, err)
	}
	if _, err := s.Status(ctx, "idle"); !errdefs.IsNotFound(err) {
		t.Fatalf("idle ingest still there: %v", err)
	}
	if st, err := s.Status(ctx, "held"); err != nil || st.Offset != 9 {
		t.Fatalf("held ingest: %+v, %v", st, err)
	}
	writeAll(t, held, []byte("!"))
	if err := held.Commit(ctx, content.SizeUnknown, ""); err != nil {
		t.Fatal(err)
	}
}

// testLockChurn races writers on one ref while each winner commits, which
// removes the ingest under the losers' feet: a loser that opened the old
// ingest must not count as holding the new one.
func testLockChurn(t *testing.T, s content.Store) {
	ctx := context.Background()
	var (
		wg      sync.WaitGroup
		holders atomic.Int32
		commits atomic.Int32
	)
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				w, err := s.Writer(ctx, "churn", content.SizeUnknown, "")
				if errdefs.IsUnavailable(err) {
					continue
				}
				if err != nil {
					t.Errorf("Writer: %v", err)
					return
				}
				if n := holders.Add(1); n != 1 {
					t.Errorf("%d writers hold one ref", n)
				}
				w.Write([]byte{byte(g), byte(i)})
				holders.Add(-1)
				if err := w.Commit(ctx, content.SizeUnknown, ""); err != nil && !errdefs.IsAlreadyExists(err) {
					t.Errorf("commit: %v", err)
				}
				commits.Add(1)
			}
		})
	}
	wg.Wait()
	if commits.Load() == 0 {
		t.Fatal("no writer ever got the ref")
	}
}
