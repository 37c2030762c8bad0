package metadata

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestLeaseCRUD(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	l, err := db.CreateLease(ctx, Lease{ID: "pull-1", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if l.CreatedAt.IsZero() {
		t.Fatal("CreatedAt not set")
	}
	if _, err := db.CreateLease(ctx, Lease{ID: "pull-1"}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("duplicate: got %v", err)
	}
	if _, err := db.CreateLease(ctx, Lease{}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("empty ID: got %v", err)
	}
	for _, r := range []Resource{{ResourceContent, dg("a").String()}, {ResourceContent, dg("a").String()}, {ResourceSnapshot, "s1"}} {
		if err := db.AddLeaseResource(ctx, "pull-1", r); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []Resource{{ResourceContent, "nope"}, {ResourceSnapshot, ""}, {"other", "x"}} {
		if err := db.AddLeaseResource(ctx, "pull-1", r); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("%+v: got %v, want ErrInvalidArgument", r, err)
		}
	}
	if err := db.AddLeaseResource(ctx, "nope", Resource{ResourceSnapshot, "s"}); !errdefs.IsNotFound(err) {
		t.Fatalf("missing lease: got %v", err)
	}
	ls, err := db.ListLeases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 1 || len(ls[0].Content) != 1 || len(ls[0].Snapshots) != 1 || ls[0].Expires.IsZero() {
		t.Fatalf("list: %+v", ls)
	}
	if err := db.DeleteLease(ctx, "pull-1"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteLease(ctx, "pull-1"); !errdefs.IsNotFound(err) {
		t.Fatalf("delete twice: got %v", err)
	}
}

// store is a fake content store: manifest -> config and layers.
type store map[digest.Digest][]digest.Digest

func (s store) children(_ context.Context, d digest.Digest) ([]digest.Digest, error) {
	kids, ok := s[d]
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
	}
	return kids, nil
}

func TestGCMarks(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)

	// Image app: manifest -> config, two layers; snapshot chain s1 <- s2.
	st := store{
		dg("app-m"):     {dg("app-c"), dg("layer1"), dg("layer2")},
		dg("app-c"):     nil,
		dg("layer1"):    nil,
		dg("layer2"):    nil,
		dg("old-m"):     {dg("old-c"), dg("layer1"), dg("old-layer")},
		dg("old-c"):     nil,
		dg("old-layer"): nil,
		dg("leased"):    nil,
		dg("stray"):     nil,
	}
	mustSnap(t, db, "s1", "", KindCommitted)
	mustSnap(t, db, "s2", "s1", KindCommitted)
	mustSnap(t, db, "old2", "s1", KindCommitted) // old image's top, image gone
	mustSnap(t, db, "orphan", "", KindCommitted)
	mustSnap(t, db, "ctr-rw", "s2", KindActive) // a container's rootfs
	mustSnap(t, db, "leased-base", "", KindCommitted)
	mustSnap(t, db, "leased-top", "leased-base", KindCommitted)

	app := testImage("docker.io/library/app:1", "app-m")
	app.Config = dg("app-c")
	app.SnapshotKey = "s2"
	if _, err := db.CreateImage(ctx, app); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateLease(ctx, Lease{ID: "pull", Content: []digest.Digest{dg("leased")}, Snapshots: []string{"leased-top", "not-yet"}}); err != nil {
		t.Fatal(err)
	}
	// An expired lease protects nothing.
	if _, err := db.CreateLease(ctx, Lease{ID: "dead", Expires: time.Now().Add(-time.Minute), Content: []digest.Digest{dg("stray")}}); err != nil {
		t.Fatal(err)
	}

	var allContent []digest.Digest
	for d := range st {
		allContent = append(allContent, d)
	}
	allSnaps := []string{"s1", "s2", "old2", "orphan", "ctr-rw", "leased-base", "leased-top", "not-yet", "untracked-dir"}

	deadC, deadS, err := db.Unreferenced(ctx, st.children, allContent, allSnaps)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(deadC)
	slices.Sort(deadS)
	wantC := []digest.Digest{dg("old-m"), dg("old-c"), dg("old-layer"), dg("stray")}
	slices.Sort(wantC)
	wantS := []string{"old2", "orphan", "untracked-dir"}
	if !slices.Equal(deadC, wantC) {
		t.Errorf("dead content %v, want %v", deadC, wantC)
	}
	if !slices.Equal(deadS, wantS) {
		t.Errorf("dead snapshots %v, want %v", deadS, wantS)
	}

	// Ending the pull's lease releases what it held.
	if err := db.DeleteLease(ctx, "pull"); err != nil {
		t.Fatal(err)
	}
	deadC, deadS, err = db.Unreferenced(ctx, st.children, allContent, allSnaps)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(deadC, dg("leased")) || !slices.Contains(deadS, "leased-top") || !slices.Contains(deadS, "leased-base") {
		t.Errorf("after lease delete: content %v snapshots %v", deadC, deadS)
	}

	// Removing the image frees its manifest, config and layers, but not
	// what the container's snapshot still stands on.
	if err := db.DeleteImage(ctx, app.Name); err != nil {
		t.Fatal(err)
	}
	deadC, deadS, err = db.Unreferenced(ctx, st.children, allContent, allSnaps)
	if err != nil {
		t.Fatal(err)
	}
	if len(deadC) != len(allContent) {
		t.Errorf("no image: %d dead blobs, want all %d", len(deadC), len(allContent))
	}
	for _, k := range []string{"ctr-rw", "s2", "s1"} {
		if slices.Contains(deadS, k) {
			t.Errorf("snapshot %s under an active snapshot collected", k)
		}
	}
}

func TestGCChildrenError(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	if _, err := db.CreateImage(ctx, testImage("a/b:c", "m")); err != nil {
		t.Fatal(err)
	}
	boom := fmt.Errorf("disk on fire")
	_, _, err := db.Unreferenced(ctx, func(context.Context, digest.Digest) ([]digest.Digest, error) { return nil, boom }, nil, nil)
	if err == nil {
		t.Fatal("a failing children walk must abort GC, not free what it could not see")
	}
	// Without a children func only the roots are live.
	dead, _, err := db.Unreferenced(ctx, nil, []digest.Digest{dg("m"), dg("m-config"), dg("x")}, nil)
	if err != nil || !slices.Equal(dead, []digest.Digest{dg("x")}) {
		t.Fatalf("roots only: %v %v", dead, err)
	}
}
