package imagesvc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func passThrough(h http.Handler) http.Handler { return h }

// counts is what the store holds on disk and in its records.
type counts struct{ blobs, snapshots, dirs, staging int }

func storeCounts(t *testing.T, s *Service, root string) counts {
	t.Helper()
	ctx := context.Background()
	var c counts
	s.Content.Walk(ctx, func(content.Info) error { c.blobs++; return nil })
	s.Meta.WalkSnapshots(ctx, func(metadata.Snapshot) error { c.snapshots++; return nil })
	d, _ := os.ReadDir(filepath.Join(root, "snapshots", "s"))
	c.dirs = len(d)
	st, _ := os.ReadDir(filepath.Join(root, "snapshots", "staging"))
	c.staging = len(st)
	return c
}

func TestRemoveTagAndGC(t *testing.T) {
	root := t.TempDir()
	s := newServiceAt(t, root)
	ctx := context.Background()
	ref := pushRandom(t, passThrough)
	img, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tag(ctx, ref, "mine:v2"); err != nil {
		t.Fatal(err)
	}
	// A one-word name is local, as in podman.
	got, err := s.LookupOne(ctx, "mine:v2")
	if err != nil || got.Name != "localhost/mine:v2" || got.Target.Digest != img.Target.Digest {
		t.Fatalf("lookup of the new tag: %+v, %v", got, err)
	}
	// By ID prefix: both names; removing needs --force then.
	byID, err := s.Lookup(ctx, img.Config.Encoded()[:8])
	if err != nil || len(byID) != 2 {
		t.Fatalf("lookup by ID: %d images, %v", len(byID), err)
	}
	if _, err := s.Remove(ctx, img.Config.Encoded()[:8], RemoveOptions{}); !errdefs.IsFailedPrecond(err) {
		t.Fatalf("removing an ID with two names without force: %v", err)
	}
	// Removing one name keeps everything for the other.
	before := storeCounts(t, s, root)
	if _, err := s.Remove(ctx, "mine:v2", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	r, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Blobs)+len(r.Snapshots) != 0 || storeCounts(t, s, root) != before {
		t.Fatalf("GC removed what an image still uses: %+v", r)
	}
	// Removing the last name frees everything.
	if _, err := s.Remove(ctx, ref, RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if r, err = s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if len(r.Blobs) != 2 || len(r.Snapshots) != 3 || r.BlobBytes == 0 {
		t.Fatalf("GC after the last name: %+v", r)
	}
	if c := storeCounts(t, s, root); c != (counts{}) {
		t.Fatalf("store not empty after GC: %+v", c)
	}
	if _, err := s.Lookup(ctx, ref); !errdefs.IsNotFound(err) {
		t.Fatalf("lookup of a removed image: %v", err)
	}
}

func TestRemoveInUse(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	ref := pushRandom(t, passThrough)
	img, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshots.Prepare(ctx, "ctr-rootfs", img.SnapshotKey, nil); err != nil {
		t.Fatal(err)
	}
	_, err = s.Remove(ctx, ref, RemoveOptions{})
	if !errdefs.IsFailedPrecond(err) || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("removing an image a container uses: %v", err)
	}
	if _, err := s.Remove(ctx, ref, RemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	// The container's snapshot and its layers survive the image.
	if _, err := s.Snapshots.Mounts(ctx, "ctr-rootfs"); err != nil {
		t.Fatalf("the container's snapshot after rmi --force and GC: %v", err)
	}
}

// TestLeases: what a live process leased survives GC; a lease whose owner
// died protects nothing, and the directories its pull staged go too.
func TestLeases(t *testing.T) {
	root := t.TempDir()
	s := newServiceAt(t, root)
	ctx := context.Background()
	blob := []byte("a blob of an unfinished import")
	d := digest.FromBytes(blob)
	id, release, err := s.lease(ctx, "test", []digest.Digest{d}, []string{"sha256:layer"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.putBytes(ctx, v1.Descriptor{Digest: d, Size: int64(len(blob))}, blob); err != nil {
		t.Fatal(err)
	}
	staged, err := s.Snapshots.Staging(id)
	if err != nil {
		t.Fatal(err)
	}
	orphan, err := s.Snapshots.Staging("nobody")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Content.Info(ctx, d); err != nil {
		t.Fatalf("GC removed a leased blob: %v", err)
	}
	if _, err := os.Stat(staged); err != nil {
		t.Fatalf("GC removed a leased staging directory: %v", err)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("GC kept a staging directory nothing leases: %v", err)
	}
	release()

	// The same, leased by a process that is gone, with a staged unpack.
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	boot, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	dead := strings.TrimSpace(string(boot)) + "/" + strconv.Itoa(cmd.Process.Pid) + "/1"
	_, err = s.Meta.CreateLease(ctx, metadata.Lease{ID: "dead", Expires: time.Now().Add(time.Hour),
		Labels: map[string]string{ownerLabel: dead}, Content: []digest.Digest{d}, Snapshots: []string{"sha256:layer"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshots.Staging("dead"); err != nil {
		t.Fatal(err)
	}
	r, err := s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Leases) != 1 || len(r.Blobs) != 1 {
		t.Fatalf("GC with a dead owner's lease: %+v", r)
	}
	if c := storeCounts(t, s, root); c != (counts{}) {
		t.Fatalf("store not empty: %+v", c)
	}
	// Scratch space: this process's stays, a dead one's goes.
	mine, err := s.tempDir()
	if err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(root, "tmp", strconv.Itoa(cmd.Process.Pid)+"-1.12345")
	os.MkdirAll(theirs, 0o700)
	if r, err = s.GC(ctx); err != nil || len(r.Scratch) != 1 {
		t.Fatalf("GC of scratch space: %+v %v", r, err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Fatalf("GC removed a live process's scratch space: %v", err)
	}
	if !ownerAlive(self()) || ownerAlive(dead) || ownerAlive("garbage") {
		t.Fatal("ownerAlive is wrong")
	}
}

func TestCheckRepairs(t *testing.T) {
	root := t.TempDir()
	s := newServiceAt(t, root)
	ctx := context.Background()
	ref := pushRandom(t, passThrough)
	img, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := s.Check(ctx, CheckOptions{})
	if err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check of a sound store: %+v, %v", rep, err)
	}
	// A corrupt config blob, and a crash's leftover directory.
	p, err := s.Content.(*content.LocalStore).BlobPath(img.Config)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(p, 0o600)
	if err := os.WriteFile(p, []byte(`{"not":"the config"}`), 0o400); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "snapshots", "s", "0123456789abcdef", "fs"), 0o755); err != nil {
		t.Fatal(err)
	}
	// --quick does not re-hash blobs, but still finds the image's config
	// unusable.
	if rep, err = s.Check(ctx, CheckOptions{Quick: true}); err != nil || len(rep.Problems) != 1 || rep.Problems[0].Kind != "image" {
		t.Fatalf("quick check: %+v, %v", rep, err)
	}
	rep, err = s.Check(ctx, CheckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]bool{}
	for _, p := range rep.Problems {
		kinds[p.Kind] = p.Repaired
	}
	if !kinds["blob"] || !kinds["image"] || len(rep.Problems) != 2 {
		t.Fatalf("problems found: %+v", rep.Problems)
	}
	if c := storeCounts(t, s, root); c != (counts{}) {
		t.Fatalf("after repair the store still holds %+v", c)
	}
	// The next pull restores the image, and the store checks clean.
	if _, err := s.Pull(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	// A snapshot directory lost under a pulled image.
	if err := os.RemoveAll(filepath.Join(root, "snapshots", "s", dirOf(img.SnapshotKey))); err != nil {
		t.Fatal(err)
	}
	rep, err = s.Check(ctx, CheckOptions{Repair: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Problems) != 2 || rep.Problems[0].Kind != "snapshot" || rep.Problems[1].Kind != "image" {
		t.Fatalf("problems found: %+v", rep.Problems)
	}
	if _, err := s.Pull(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	if rep, err = s.Check(ctx, CheckOptions{}); err != nil || len(rep.Problems) != 0 {
		t.Fatalf("check after the pull: %+v, %v", rep, err)
	}
}

// dirOf is the overlay snapshotter's directory name for key.
func dirOf(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}
