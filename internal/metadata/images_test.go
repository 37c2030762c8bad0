package metadata

import (
	"context"
	"testing"

	"github.com/berthdev/berth/internal/errdefs"
)

func TestImageCRUD(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	img := testImage("docker.io/library/busybox:latest", "m1")
	img.Labels = map[string]string{"a": "b"}

	created, err := db.CreateImage(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	if created.CreatedAt.IsZero() || !created.UpdatedAt.Equal(created.CreatedAt) {
		t.Fatalf("times not set: %+v", created)
	}
	if _, err := db.CreateImage(ctx, img); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second create: got %v, want ErrAlreadyExists", err)
	}
	got, err := db.GetImage(ctx, img.Name)
	if err != nil {
		t.Fatal(err)
	}
	if got.Target.Digest != img.Target.Digest || got.Config != img.Config || got.Platform.Architecture != "amd64" || got.Labels["a"] != "b" {
		t.Fatalf("got %+v", got)
	}

	moved := testImage(img.Name, "m2")
	updated, err := db.UpdateImage(ctx, moved)
	if err != nil {
		t.Fatal(err)
	}
	if !updated.CreatedAt.Equal(created.CreatedAt) || !updated.UpdatedAt.After(created.UpdatedAt) {
		t.Fatalf("update times: created %v -> %v, updated %v -> %v", created.CreatedAt, updated.CreatedAt, created.UpdatedAt, updated.UpdatedAt)
	}
	if got, _ := db.GetImage(ctx, img.Name); got.Target.Digest != dg("m2") {
		t.Fatalf("update not stored: %s", got.Target.Digest)
	}
	if _, err := db.UpdateImage(ctx, testImage("docker.io/library/nope:1", "m")); !errdefs.IsNotFound(err) {
		t.Fatalf("update missing: got %v, want ErrNotFound", err)
	}

	if err := db.DeleteImage(ctx, img.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetImage(ctx, img.Name); !errdefs.IsNotFound(err) {
		t.Fatalf("get after delete: got %v, want ErrNotFound", err)
	}
	if err := db.DeleteImage(ctx, img.Name); !errdefs.IsNotFound(err) {
		t.Fatalf("second delete: got %v, want ErrNotFound", err)
	}
}

func TestImageInvalid(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	bad := []Image{
		{},
		{Name: "a", Target: testImage("a", "m").Target, Config: "sha256:short"},
		func() Image { i := testImage("a", "m"); i.Target.Digest = "nope"; return i }(),
		func() Image { i := testImage("a", "m"); i.Target.MediaType = ""; return i }(),
		func() Image { i := testImage("a", "m"); i.Target.Size = -1; return i }(),
	}
	for i, img := range bad {
		if _, err := db.CreateImage(ctx, img); !errdefs.IsInvalidArgument(err) {
			t.Errorf("case %d create: got %v, want ErrInvalidArgument", i, err)
		}
		if _, err := db.UpdateImage(ctx, img); !errdefs.IsInvalidArgument(err) {
			t.Errorf("case %d update: got %v, want ErrInvalidArgument", i, err)
		}
	}
	if imgs, _ := db.ListImages(ctx, nil); len(imgs) != 0 {
		t.Fatalf("invalid images stored: %v", imgs)
	}
}

// Tags are names: several names on one manifest, and removing one keeps
// the others.
func TestSeveralTagsOneDigest(t *testing.T) {
	ctx := context.Background()
	db := newDB(t)
	names := []string{"docker.io/library/busybox:latest", "docker.io/library/busybox:1.36", "localhost/mine:v1"}
	for _, n := range names {
		if _, err := db.CreateImage(ctx, testImage(n, "shared")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := db.CreateImage(ctx, testImage("docker.io/library/alpine:3", "other")); err != nil {
		t.Fatal(err)
	}
	same, err := db.ListImages(ctx, func(i Image) bool { return i.Target.Digest == dg("shared") })
	if err != nil {
		t.Fatal(err)
	}
	if len(same) != 3 {
		t.Fatalf("got %d names for the digest, want 3: %v", len(same), same)
	}
	all, _ := db.ListImages(ctx, nil)
	if len(all) != 4 || all[0].Name != "docker.io/library/alpine:3" {
		t.Fatalf("list all, by name: %v", all)
	}
	if err := db.DeleteImage(ctx, names[0]); err != nil {
		t.Fatal(err)
	}
	same, _ = db.ListImages(ctx, func(i Image) bool { return i.Target.Digest == dg("shared") })
	if len(same) != 2 {
		t.Fatalf("after untag: %d names, want 2", len(same))
	}
}
