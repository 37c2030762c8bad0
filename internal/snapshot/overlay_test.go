package snapshot

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// applyLayer unpacks entries into the active snapshot key and commits it
// as name.
func applyLayer(t *testing.T, o *Overlay, key, name string, entries ...entry) {
	t.Helper()
	d, _, err := Apply(context.Background(), o.UpperDir(key), bytes.NewReader(layer(t, entries...)), ApplyOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Commit(context.Background(), name, key, d, d); err != nil {
		t.Fatal(err)
	}
}

func mountAt(t *testing.T, ms []Mount) string {
	t.Helper()
	target := t.TempDir()
	if len(ms) != 1 {
		t.Fatalf("mounts %v", ms)
	}
	if err := ms[0].Mount(target); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	return target
}

// TestOverlayChain: two layers applied and committed, a whiteout in the
// second; a view sees the merged tree read-only, an active snapshot on top
// writes into its own upper directory, and parents cannot go while they
// have children.
func TestOverlayChain(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	db, err := metadata.Open(ctx, filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	o, err := NewOverlay(filepath.Join(root, "snapshots"), db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Prepare(ctx, "extract-1", "", nil); err != nil {
		t.Fatal(err)
	}
	applyLayer(t, o, "extract-1", "l1",
		entry{name: "etc/gone", typ: tar.TypeReg, body: "old"},
		entry{name: "etc/kept", typ: tar.TypeReg, body: "kept"})
	if _, err := o.Prepare(ctx, "extract-2", "l1", nil); err != nil {
		t.Fatal(err)
	}
	applyLayer(t, o, "extract-2", "l2",
		entry{name: "etc/.wh.gone", typ: tar.TypeReg},
		entry{name: "etc/new", typ: tar.TypeReg, body: "new"})

	ms, err := o.View(ctx, "view", "l2")
	if err != nil {
		t.Fatal(err)
	}
	v := mountAt(t, ms)
	if _, err := os.Stat(filepath.Join(v, "etc/gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("whited-out file visible: %v", err)
	}
	for f, want := range map[string]string{"etc/kept": "kept", "etc/new": "new"} {
		if b, err := os.ReadFile(filepath.Join(v, f)); err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", f, b, err)
		}
	}
	if err := os.WriteFile(filepath.Join(v, "x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into a view: %v, want EROFS", err)
	}

	ms, err = o.Prepare(ctx, "rootfs", "l2", nil)
	if err != nil {
		t.Fatal(err)
	}
	rw := mountAt(t, ms)
	if err := os.WriteFile(filepath.Join(rw, "etc/kept"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(o.UpperDir("rootfs"), "etc/kept")); string(b) != "changed" {
		t.Errorf("copy-up did not land in the active snapshot: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(o.UpperDir("l1"), "etc/kept")); string(b) != "kept" {
		t.Errorf("a committed layer changed: %q", b)
	}
	unix.Unmount(rw, unix.MNT_DETACH)
	unix.Unmount(v, unix.MNT_DETACH)

	if err := o.Remove(ctx, "l1"); !errdefs.IsFailedPrecond(err) {
		t.Errorf("removing a parent: %v, want failed precondition", err)
	}
	for _, k := range []string{"rootfs", "view", "l2", "l1"} {
		if err := o.Remove(ctx, k); err != nil {
			t.Fatalf("remove %s: %v", k, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "snapshots", "s")); len(ents) != 0 {
		t.Errorf("directories left: %v", ents)
	}
	if _, err := o.Prepare(ctx, "x", "missing", nil); !errdefs.IsNotFound(err) {
		t.Errorf("parent missing: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(root, "snapshots", "s")); len(ents) != 0 {
		t.Errorf("a failed prepare left %v", ents)
	}
}

// TestCrashLeftovers: a directory a crash left without its record neither
// blocks making that snapshot again nor survives a sweep; a live staging
// directory does survive.
func TestCrashLeftovers(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	db, err := metadata.Open(ctx, filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	o, err := NewOverlay(filepath.Join(root, "snapshots"), db)
	if err != nil {
		t.Fatal(err)
	}
	// As if a process died between mkdir and record, twice.
	for _, k := range []string{"layer", "orphan"} {
		if err := os.MkdirAll(filepath.Join(o.dir(k), "fs", "junk"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	staged, err := o.Staging("pull1")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(staged, "fs", "f"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(staged, "meta"), []byte("kept"), 0o644)
	d := digest.FromString("layer")
	if err := o.Adopt(ctx, "layer", "", staged, d, d, map[string]string{"k": "v"}); err != nil {
		t.Fatalf("adopt over a leftover directory: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(o.Dir("layer"), "meta")); string(b) != "kept" {
		t.Error("a file staged next to fs/ is not with the snapshot")
	}
	if sn, err := db.GetSnapshot(ctx, "layer"); err != nil || sn.Labels["k"] != "v" {
		t.Errorf("labels: %+v %v", sn, err)
	}
	if _, err := os.Stat(filepath.Join(o.UpperDir("layer"), "junk")); err == nil {
		t.Error("the leftover's files are in the new snapshot")
	}
	again, _ := o.Staging("pull1")
	if err := o.Adopt(ctx, "layer", "", again, d, d, nil); !errdefs.IsAlreadyExists(err) {
		t.Errorf("adopt of a recorded snapshot: %v", err)
	}
	live, err := o.Staging("pull2")
	if err != nil {
		t.Fatal(err)
	}
	dead, err := o.Staging("pull3")
	if err != nil {
		t.Fatal(err)
	}
	removed, err := o.Sweep(ctx, func(context.Context) (Live, error) {
		return Live{Snapshots: map[string]bool{"layer": true}, Owners: map[string]bool{"pull2": true}}, nil
	})
	if err != nil || len(removed) != 0 {
		t.Fatalf("sweep: %v %v", removed, err)
	}
	for p, want := range map[string]bool{o.dir("layer"): true, o.dir("orphan"): false, live: true, dead: false} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", p, err == nil, want)
		}
	}
}
