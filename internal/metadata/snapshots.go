package metadata

import (
	"context"
	"fmt"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

// Kind is a snapshot's state, as in containerd's snapshotter model.
type Kind string

const (
	KindActive    Kind = "active"    // writable, being unpacked or a container's rootfs
	KindCommitted Kind = "committed" // read-only; the only kind that may be a parent
	KindView      Kind = "view"      // read-only mount of a committed chain
)

// Snapshot is the record of one snapshot directory; the directory itself is
// internal/snapshot's business.
type Snapshot struct {
	Key    string `json:"key"`
	Parent string `json:"parent,omitempty"` // a committed snapshot's key, "" for a base layer
	Kind   Kind   `json:"kind"`
	// ChainID identifies the layer stack up to this one; DiffID is this
	// layer's uncompressed digest. Both are empty for a container's rootfs.
	ChainID   digest.Digest     `json:"chainID,omitempty"`
	DiffID    digest.Digest     `json:"diffID,omitempty"`
	Size      int64             `json:"size"`
	CreatedAt time.Time         `json:"createdAt"`
	UpdatedAt time.Time         `json:"updatedAt"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// SnapshotStore is what callers that only handle snapshots depend on.
type SnapshotStore interface {
	CreateSnapshot(ctx context.Context, s Snapshot) (Snapshot, error)
	GetSnapshot(ctx context.Context, key string) (Snapshot, error)
	UpdateSnapshot(ctx context.Context, s Snapshot) (Snapshot, error)
	DeleteSnapshot(ctx context.Context, key string) error
	WalkSnapshots(ctx context.Context, fn func(Snapshot) error) error
}

var _ SnapshotStore = (*DB)(nil)

func validateSnapshot(s Snapshot) error {
	if s.Key == "" {
		return fmt.Errorf("snapshot: empty key: %w", errdefs.ErrInvalidArgument)
	}
	switch s.Kind {
	case KindActive, KindCommitted, KindView:
	default:
		return fmt.Errorf("snapshot %s: kind %q is not active, committed or view: %w", s.Key, s.Kind, errdefs.ErrInvalidArgument)
	}
	if s.Parent == s.Key {
		return fmt.Errorf("snapshot %s: is its own parent: %w", s.Key, errdefs.ErrInvalidArgument)
	}
	for what, d := range map[string]digest.Digest{"chain ID": s.ChainID, "diff ID": s.DiffID} {
		if d != "" {
			if err := d.Validate(); err != nil {
				return fmt.Errorf("snapshot %s: %s %q: %v: %w", s.Key, what, d, err, errdefs.ErrInvalidArgument)
			}
		}
	}
	return nil
}

func getSnapshot(b buckets, key string) (Snapshot, *bolt.Bucket, error) {
	sb := b.snapshots.Bucket([]byte(key))
	if sb == nil {
		return Snapshot{}, nil, fmt.Errorf("snapshot %s: %w", key, errdefs.ErrNotFound)
	}
	var s Snapshot
	if err := getJSON(sb.Get(keyInfo), &s, "snapshot "+key); err != nil {
		return Snapshot{}, nil, err
	}
	return s, sb, nil
}

// CreateSnapshot records a new snapshot. Its parent must exist and be
// committed (ErrNotFound, ErrFailedPrecond), since layers stack only on
// read-only layers; an existing key is ErrAlreadyExists.
func (db *DB) CreateSnapshot(ctx context.Context, s Snapshot) (Snapshot, error) {
	if err := validateSnapshot(s); err != nil {
		return Snapshot{}, err
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = time.Now().UTC()
	}
	if s.UpdatedAt.IsZero() {
		s.UpdatedAt = s.CreatedAt
	}
	err := db.updateBuckets(ctx, func(b buckets) error {
		if b.snapshots.Bucket([]byte(s.Key)) != nil {
			return fmt.Errorf("snapshot %s: %w", s.Key, errdefs.ErrAlreadyExists)
		}
		if s.Parent != "" {
			p, pb, err := getSnapshot(b, s.Parent)
			if err != nil {
				return fmt.Errorf("parent of snapshot %s: %w", s.Key, err)
			}
			if p.Kind != KindCommitted {
				return fmt.Errorf("snapshot %s: parent %s is %s, not committed: %w", s.Key, s.Parent, p.Kind, errdefs.ErrFailedPrecond)
			}
			children, err := pb.CreateBucketIfNotExists(bucketChildren)
			if err != nil {
				return fmt.Errorf("snapshot %s: link to parent %s: %w", s.Key, s.Parent, err)
			}
			if err := children.Put([]byte(s.Key), nil); err != nil {
				return fmt.Errorf("snapshot %s: link to parent %s: %w", s.Key, s.Parent, err)
			}
		}
		sb, err := b.snapshots.CreateBucket([]byte(s.Key))
		if err != nil {
			return fmt.Errorf("snapshot %s: create: %w", s.Key, err)
		}
		return putJSON(sb, keyInfo, s, "snapshot "+s.Key)
	})
	if err != nil {
		return Snapshot{}, err
	}
	return s, nil
}

// GetSnapshot returns the record for key, or ErrNotFound.
func (db *DB) GetSnapshot(ctx context.Context, key string) (Snapshot, error) {
	var s Snapshot
	err := db.view(ctx, func(b buckets) error {
		var err error
		s, _, err = getSnapshot(b, key)
		return err
	})
	return s, err
}

// UpdateSnapshot changes kind, IDs, size and labels of an existing
// snapshot. The parent link is fixed at creation (ErrInvalidArgument), and
// a snapshot with children must stay committed (ErrFailedPrecond).
func (db *DB) UpdateSnapshot(ctx context.Context, s Snapshot) (Snapshot, error) {
	if err := validateSnapshot(s); err != nil {
		return Snapshot{}, err
	}
	err := db.updateBuckets(ctx, func(b buckets) error {
		old, sb, err := getSnapshot(b, s.Key)
		if err != nil {
			return err
		}
		if old.Parent != s.Parent {
			return fmt.Errorf("snapshot %s: parent %q cannot change to %q: %w", s.Key, old.Parent, s.Parent, errdefs.ErrInvalidArgument)
		}
		if s.Kind != KindCommitted && hasChildren(sb) {
			return fmt.Errorf("snapshot %s: has children, must stay committed: %w", s.Key, errdefs.ErrFailedPrecond)
		}
		s.CreatedAt = old.CreatedAt
		s.UpdatedAt = time.Now().UTC()
		return putJSON(sb, keyInfo, s, "snapshot "+s.Key)
	})
	if err != nil {
		return Snapshot{}, err
	}
	return s, nil
}

func hasChildren(sb *bolt.Bucket) bool {
	c := sb.Bucket(bucketChildren)
	if c == nil {
		return false
	}
	k, _ := c.Cursor().First()
	return k != nil
}

// DeleteSnapshot removes a snapshot with no children; one with children is
// ErrFailedPrecond, so a chain is removed from the top down.
func (db *DB) DeleteSnapshot(ctx context.Context, key string) error {
	return db.updateBuckets(ctx, func(b buckets) error {
		s, sb, err := getSnapshot(b, key)
		if err != nil {
			return err
		}
		if hasChildren(sb) {
			return fmt.Errorf("snapshot %s: has children: %w", key, errdefs.ErrFailedPrecond)
		}
		if s.Parent != "" {
			if pb := b.snapshots.Bucket([]byte(s.Parent)); pb != nil {
				if c := pb.Bucket(bucketChildren); c != nil {
					if err := c.Delete([]byte(key)); err != nil {
						return fmt.Errorf("snapshot %s: unlink from parent %s: %w", key, s.Parent, err)
					}
				}
			}
		}
		if err := b.snapshots.DeleteBucket([]byte(key)); err != nil {
			return fmt.Errorf("snapshot %s: delete: %w", key, err)
		}
		return nil
	})
}

// WalkSnapshots calls fn for every snapshot, by key, in one read
// transaction; an error from fn stops the walk and is returned.
func (db *DB) WalkSnapshots(ctx context.Context, fn func(Snapshot) error) error {
	return db.view(ctx, func(b buckets) error {
		return b.snapshots.ForEachBucket(func(k []byte) error {
			s, _, err := getSnapshot(b, string(k))
			if err != nil {
				return err
			}
			return fn(s)
		})
	})
}
