package metadata

import (
	"context"
	"errors"
	"testing"

	"github.com/berthdev/berth/internal/errdefs"
)

func mustSnap(t *testing.T, db *DB, key, parent string, kind Kind) Snapshot {
	t.Helper()
	s, err := db.CreateSnapshot(context.Background(), Snapshot{Key: key, Parent: parent, Kind: kind, ChainID: dg(key), Size: 10})
	if err != nil {
		t.Fatalf("create snapshot %s: %v", key, err)
	}
	return s
}

func TestSnapshotChain(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	mustSnap(t, db, "l1", "", KindCommitted)
	mustSnap(t, db, "l2", "l1", KindCommitted)
	mustSnap(t, db, "l3", "l2", KindCommitted)
	mustSnap(t, db, "rw", "l3", KindActive)

	if _, err := db.CreateSnapshot(ctx, Snapshot{Key: "l2", Kind: KindCommitted}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("duplicate: got %v, want ErrAlreadyExists", err)
	}
	if _, err := db.CreateSnapshot(ctx, Snapshot{Key: "x", Parent: "missing", Kind: KindActive}); !errdefs.IsNotFound(err) {
		t.Fatalf("missing parent: got %v, want ErrNotFound", err)
	}
	if _, err := db.CreateSnapshot(ctx, Snapshot{Key: "x", Parent: "rw", Kind: KindActive}); !errdefs.IsFailedPrecond(err) {
		t.Fatalf("active parent: got %v, want ErrFailedPrecond", err)
	}
	for _, s := range []Snapshot{{Kind: KindActive}, {Key: "k", Kind: "weird"}, {Key: "k", Parent: "k", Kind: KindActive}, {Key: "k", Kind: KindActive, DiffID: "bad"}} {
		if _, err := db.CreateSnapshot(ctx, s); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("%+v: got %v, want ErrInvalidArgument", s, err)
		}
	}

	// Follow the chain from the top.
	var chain []string
	for key := "rw"; key != ""; {
		s, err := db.GetSnapshot(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		chain = append(chain, s.Key)
		key = s.Parent
	}
	if len(chain) != 4 || chain[3] != "l1" {
		t.Fatalf("chain %v", chain)
	}

	for _, k := range []string{"l1", "l2", "l3"} {
		if err := db.DeleteSnapshot(ctx, k); !errdefs.IsFailedPrecond(err) {
			t.Fatalf("delete parent %s: got %v, want ErrFailedPrecond", k, err)
		}
	}
	// A parent cannot stop being committed while it has children, and
	// links are fixed.
	if _, err := db.UpdateSnapshot(ctx, Snapshot{Key: "l3", Parent: "l2", Kind: KindActive}); !errdefs.IsFailedPrecond(err) {
		t.Fatalf("uncommit parent: got %v, want ErrFailedPrecond", err)
	}
	if _, err := db.UpdateSnapshot(ctx, Snapshot{Key: "l3", Parent: "l1", Kind: KindCommitted}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("reparent: got %v, want ErrInvalidArgument", err)
	}
	if _, err := db.UpdateSnapshot(ctx, Snapshot{Key: "nope", Kind: KindCommitted}); !errdefs.IsNotFound(err) {
		t.Fatalf("update missing: got %v, want ErrNotFound", err)
	}
	u, err := db.UpdateSnapshot(ctx, Snapshot{Key: "rw", Parent: "l3", Kind: KindCommitted, Size: 99, Labels: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := db.GetSnapshot(ctx, "rw"); got.Kind != KindCommitted || got.Size != 99 || got.Labels["k"] != "v" || !got.CreatedAt.Equal(u.CreatedAt) {
		t.Fatalf("after update: %+v", got)
	}

	// Top down works, and each delete frees its parent.
	for _, k := range []string{"rw", "l3", "l2", "l1"} {
		if err := db.DeleteSnapshot(ctx, k); err != nil {
			t.Fatalf("delete %s: %v", k, err)
		}
	}
	if err := db.DeleteSnapshot(ctx, "l1"); !errdefs.IsNotFound(err) {
		t.Fatalf("delete twice: got %v, want ErrNotFound", err)
	}
}

func TestSnapshotWalk(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	mustSnap(t, db, "a", "", KindCommitted)
	mustSnap(t, db, "b", "a", KindCommitted)
	mustSnap(t, db, "c", "a", KindView)
	var keys []string
	err := db.WalkSnapshots(ctx, func(s Snapshot) error { keys = append(keys, s.Key); return nil })
	if err != nil || len(keys) != 3 || keys[0] != "a" || keys[2] != "c" {
		t.Fatalf("walk: %v %v", keys, err)
	}
	stop := errors.New("stop")
	n := 0
	err = db.WalkSnapshots(ctx, func(Snapshot) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("walk stop: n=%d err=%v", n, err)
	}
	// Two children: deleting one leaves the parent still pinned by the other.
	if err := db.DeleteSnapshot(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteSnapshot(ctx, "a"); !errdefs.IsFailedPrecond(err) {
		t.Fatalf("delete a with child c: got %v", err)
	}
}
