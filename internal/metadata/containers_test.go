package metadata

import (
	"context"
	"testing"

	"github.com/berthdev/berth/internal/errdefs"
)

func TestContainers(t *testing.T) {
	db := newDB(t)
	ctx := context.Background()
	a := Container{ID: "abc111", Name: "web", Image: "busybox", Snapshot: "ctr-abc111"}
	if _, err := db.CreateContainer(ctx, a); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateContainer(ctx, Container{ID: "abc222", Name: "web"}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("a second container named web: %v", err)
	}
	if _, err := db.CreateContainer(ctx, Container{ID: "abc222", Name: "db"}); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]string{"abc111": "abc111", "web": "abc111", "abc2": "abc222", "db": "abc222"} {
		if c, err := db.GetContainer(ctx, ref); err != nil || c.ID != want {
			t.Errorf("get %q: %+v %v", ref, c, err)
		}
	}
	if _, err := db.GetContainer(ctx, "abc"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("an ambiguous prefix: %v", err)
	}
	if _, err := db.GetContainer(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("a missing container: %v", err)
	}
	if err := db.RenameContainer(ctx, "abc111", "db"); !errdefs.IsAlreadyExists(err) {
		t.Errorf("rename onto a used name: %v", err)
	}
	if err := db.RenameContainer(ctx, "abc111", "www"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetContainer(ctx, "web"); !errdefs.IsNotFound(err) {
		t.Errorf("the old name still finds the container: %v", err)
	}
	if err := db.DeleteContainer(ctx, "abc111"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.CreateContainer(ctx, Container{ID: "abc333", Name: "www"}); err != nil {
		t.Errorf("the name of a removed container: %v", err)
	}
	list, err := db.ListContainers(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
}
