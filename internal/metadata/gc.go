package metadata

// Garbage collection, mark phase only. The sweep (removing blobs and
// snapshot directories) belongs to the content store and snapshotter; this
// package only says what nothing refers to.
//
// Roots:
//   - every image: its target manifest, its config, and its SnapshotKey;
//   - every unexpired lease: its content digests and snapshot keys;
//   - every active or view snapshot: they are containers' root filesystems
//     or unpacks in progress, and containers are not recorded here yet.
//
// Live content is the roots plus whatever the caller's ChildrenFunc reaches
// from them (manifest -> config and layers, index -> manifests). Live
// snapshots are the roots plus their parent chains.

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// ChildrenFunc returns the blobs a blob refers to (none for a layer). Content
// parsing lives with the content store, not here. ErrNotFound for a missing
// blob means "no children": an image whose manifest is gone cannot keep
// layers alive that nothing can find.
type ChildrenFunc func(ctx context.Context, d digest.Digest) ([]digest.Digest, error)

// Roots is what the metadata keeps alive, read in one transaction.
type Roots struct {
	Content []digest.Digest
	// Snapshots holds root keys and, already, their parent chains.
	Snapshots []string
}

// GCRoots reads the roots and closes the snapshot set over parent links, all
// in one read transaction, so the result is one consistent moment of the
// store: a pull that moves its blobs from a lease to an image is seen in one
// or the other, never neither.
func (db *DB) GCRoots(ctx context.Context) (Roots, error) {
	var r Roots
	now := time.Now()
	err := db.view(ctx, func(b buckets) error {
		content := map[digest.Digest]bool{}
		var snapRoots []string
		err := b.images.ForEach(func(k, v []byte) error {
			var img Image
			if err := getJSON(v, &img, "image "+string(k)); err != nil {
				return err
			}
			content[img.Target.Digest] = true
			if img.Config != "" {
				content[img.Config] = true
			}
			if img.SnapshotKey != "" {
				snapRoots = append(snapRoots, img.SnapshotKey)
			}
			return nil
		})
		if err != nil {
			return err
		}
		err = b.leases.ForEach(func(k, v []byte) error {
			var l Lease
			if err := getJSON(v, &l, "lease "+string(k)); err != nil {
				return err
			}
			if l.expired(now) {
				return nil
			}
			for _, d := range l.Content {
				content[d] = true
			}
			snapRoots = append(snapRoots, l.Snapshots...)
			return nil
		})
		if err != nil {
			return err
		}
		err = b.snapshots.ForEachBucket(func(k []byte) error {
			s, _, err := getSnapshot(b, string(k))
			if err != nil {
				return err
			}
			if s.Kind == KindActive || s.Kind == KindView {
				snapRoots = append(snapRoots, s.Key)
			}
			return nil
		})
		if err != nil {
			return err
		}
		snaps := map[string]bool{}
		for _, key := range snapRoots {
			// Follow parents until one is already marked or missing. A
			// missing key (a lease taken before its snapshot exists) is
			// still kept, so its directory survives.
			for key != "" && !snaps[key] {
				snaps[key] = true
				s, _, err := getSnapshot(b, key)
				if errdefs.IsNotFound(err) {
					break
				}
				if err != nil {
					return err
				}
				key = s.Parent
			}
		}
		for d := range content {
			r.Content = append(r.Content, d)
		}
		for k := range snaps {
			r.Snapshots = append(r.Snapshots, k)
		}
		slices.Sort(r.Content) // deterministic, for callers that log or diff it
		slices.Sort(r.Snapshots)
		return nil
	})
	if err != nil {
		return Roots{}, fmt.Errorf("gc roots: %w", err)
	}
	return r, nil
}

// Unreferenced returns the members of allContent and allSnapshots (what the
// content store and snapshotter hold) that nothing keeps alive. children may
// be nil, then only the roots themselves are live.
//
// The metadata is read in one transaction (GCRoots); children is called
// after it, because blobs are immutable and holding the store lock while
// reading them from disk would stall other processes for nothing.
//
// What was written after allContent was listed is not in it, so it is never
// returned; the caller must still keep new writes under a lease.
func (db *DB) Unreferenced(ctx context.Context, children ChildrenFunc, allContent []digest.Digest, allSnapshots []string) ([]digest.Digest, []string, error) {
	roots, err := db.GCRoots(ctx)
	if err != nil {
		return nil, nil, err
	}
	live := map[digest.Digest]bool{}
	stack := append([]digest.Digest(nil), roots.Content...)
	for len(stack) > 0 {
		d := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if live[d] {
			continue
		}
		live[d] = true
		if children == nil {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, fmt.Errorf("gc mark: %w", err)
		}
		kids, err := children(ctx, d)
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, nil, fmt.Errorf("gc mark: children of %s: %w", d, err)
		}
		stack = append(stack, kids...)
	}
	var deadContent []digest.Digest
	for _, d := range allContent {
		if !live[d] {
			deadContent = append(deadContent, d)
		}
	}
	liveSnaps := map[string]bool{}
	for _, k := range roots.Snapshots {
		liveSnaps[k] = true
	}
	var deadSnaps []string
	for _, k := range allSnapshots {
		if !liveSnaps[k] {
			deadSnaps = append(deadSnaps, k)
		}
	}
	return deadContent, deadSnaps, nil
}
