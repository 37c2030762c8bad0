package metadata

import (
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	bolt "go.etcd.io/bbolt"
)

func newDB(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), filepath.Join(t.TempDir(), "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func dg(s string) digest.Digest { return digest.FromString(s) }

func testImage(name, manifest string) Image {
	return Image{
		Name:     name,
		Target:   ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: dg(manifest), Size: 123},
		Config:   dg(manifest + "-config"),
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
	}
}

func TestOpenReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateImage(ctx, testImage("docker.io/library/a:1", "m")); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := db.GetImage(ctx, "docker.io/library/a:1"); !errdefs.IsFailedPrecond(err) {
		t.Fatalf("use after close: got %v, want ErrFailedPrecond", err)
	}
	db2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db2.GetImage(ctx, "docker.io/library/a:1"); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
}

func TestOpenMissingDir(t *testing.T) {
	_, err := Open(context.Background(), filepath.Join(t.TempDir(), "no", "meta.db"))
	if err == nil {
		t.Fatal("open in a missing directory succeeded")
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	if _, err := Open(context.Background(), path); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bolt.Tx) error {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], schemaVersion+1)
		return tx.Bucket(bucketRoot).Put(keyVersion, b[:])
	})
	bdb.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(context.Background(), path)
	if !errdefs.IsFailedPrecond(err) {
		t.Fatalf("got %v, want ErrFailedPrecond", err)
	}
	t.Log(err)
}

// An flock is per open file, so holding the file open here stands in for
// another process.
func TestOpenLockedTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(context.Background(), path, WithLockTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	holder, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = Open(context.Background(), path, WithLockTimeout(300*time.Millisecond))
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("Open: got %v, want ErrUnavailable", err)
	}
	if time.Since(start) < 200*time.Millisecond {
		t.Fatalf("gave up after %s, before the bound", time.Since(start))
	}
	t.Log(err)

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := db.ListImages(ctx, nil); !errdefs.IsUnavailable(err) {
		t.Fatalf("ListImages: got %v, want ErrUnavailable", err)
	}

	// Once the holder lets go, a waiting transaction gets through.
	done := make(chan error, 1)
	go func() {
		_, err := db.CreateImage(context.Background(), testImage("x/y:z", "m"))
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	holder.Close()
	if err := <-done; err != nil {
		t.Fatalf("after release: %v", err)
	}
}

func TestCancelledContext(t *testing.T) {
	db := newDB(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := db.GetImage(ctx, "a"); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

// Each transaction opens the file; these show what that costs.
func BenchmarkGetImage(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "meta.db"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.CreateImage(ctx, testImage("a/b:c", "m")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := db.GetImage(ctx, "a/b:c"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUpdateImage(b *testing.B) {
	ctx := context.Background()
	db, err := Open(ctx, filepath.Join(b.TempDir(), "meta.db"))
	if err != nil {
		b.Fatal(err)
	}
	if _, err := db.CreateImage(ctx, testImage("a/b:c", "m")); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := db.UpdateImage(ctx, testImage("a/b:c", "m2")); err != nil {
			b.Fatal(err)
		}
	}
}
