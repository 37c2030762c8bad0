package metadata

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// Lease protects what an unfinished operation (a pull, an import) has
// written but not yet referenced from an image, so GC leaves it alone. A
// pull creates the lease before its first blob and deletes it after the
// image record is committed; at every instant one of the two is a root.
type Lease struct {
	ID        string            `json:"id"`
	CreatedAt time.Time         `json:"createdAt"`
	Expires   time.Time         `json:"expires,omitzero"` // zero: never; past: no longer protects
	Labels    map[string]string `json:"labels,omitempty"`
	Content   []digest.Digest   `json:"content,omitempty"`
	Snapshots []string          `json:"snapshots,omitempty"`
}

// ResourceKind names what a lease resource is.
type ResourceKind string

const (
	ResourceContent  ResourceKind = "content"  // ID is a blob digest
	ResourceSnapshot ResourceKind = "snapshot" // ID is a snapshot key
)

// Resource is one thing a lease protects.
type Resource struct {
	Kind ResourceKind
	ID   string
}

// LeaseStore is what callers that only handle leases depend on.
type LeaseStore interface {
	CreateLease(ctx context.Context, l Lease) (Lease, error)
	DeleteLease(ctx context.Context, id string) error
	AddLeaseResource(ctx context.Context, id string, r Resource) error
	ListLeases(ctx context.Context) ([]Lease, error)
}

var _ LeaseStore = (*DB)(nil)

// expired reports whether the lease no longer protects anything, so a
// crashed pull cannot pin its blobs forever.
func (l Lease) expired(now time.Time) bool {
	return !l.Expires.IsZero() && !now.Before(l.Expires)
}

// CreateLease stores a new lease; an existing ID is ErrAlreadyExists.
func (db *DB) CreateLease(ctx context.Context, l Lease) (Lease, error) {
	if l.ID == "" {
		return Lease{}, fmt.Errorf("lease: empty ID: %w", errdefs.ErrInvalidArgument)
	}
	if l.CreatedAt.IsZero() {
		l.CreatedAt = time.Now().UTC()
	}
	for _, d := range l.Content {
		if err := d.Validate(); err != nil {
			return Lease{}, fmt.Errorf("lease %s: content digest %q: %v: %w", l.ID, d, err, errdefs.ErrInvalidArgument)
		}
	}
	err := db.updateBuckets(ctx, func(b buckets) error {
		if b.leases.Get([]byte(l.ID)) != nil {
			return fmt.Errorf("lease %s: %w", l.ID, errdefs.ErrAlreadyExists)
		}
		return putJSON(b.leases, []byte(l.ID), l, "lease "+l.ID)
	})
	if err != nil {
		return Lease{}, err
	}
	return l, nil
}

// DeleteLease removes a lease; what it protected is left to GC.
func (db *DB) DeleteLease(ctx context.Context, id string) error {
	return db.updateBuckets(ctx, func(b buckets) error {
		if b.leases.Get([]byte(id)) == nil {
			return fmt.Errorf("lease %s: %w", id, errdefs.ErrNotFound)
		}
		if err := b.leases.Delete([]byte(id)); err != nil {
			return fmt.Errorf("lease %s: delete: %w", id, err)
		}
		return nil
	})
}

// AddLeaseResource adds r to lease id (adding it twice is harmless). A
// blob need not exist yet: the lease is taken before the write starts.
func (db *DB) AddLeaseResource(ctx context.Context, id string, r Resource) error {
	switch r.Kind {
	case ResourceContent:
		if err := digest.Digest(r.ID).Validate(); err != nil {
			return fmt.Errorf("lease %s: content digest %q: %v: %w", id, r.ID, err, errdefs.ErrInvalidArgument)
		}
	case ResourceSnapshot:
		if r.ID == "" {
			return fmt.Errorf("lease %s: empty snapshot key: %w", id, errdefs.ErrInvalidArgument)
		}
	default:
		return fmt.Errorf("lease %s: resource kind %q is not content or snapshot: %w", id, r.Kind, errdefs.ErrInvalidArgument)
	}
	return db.updateBuckets(ctx, func(b buckets) error {
		data := b.leases.Get([]byte(id))
		if data == nil {
			return fmt.Errorf("lease %s: %w", id, errdefs.ErrNotFound)
		}
		var l Lease
		if err := getJSON(data, &l, "lease "+id); err != nil {
			return err
		}
		switch r.Kind {
		case ResourceContent:
			if slices.Contains(l.Content, digest.Digest(r.ID)) {
				return nil
			}
			l.Content = append(l.Content, digest.Digest(r.ID))
		case ResourceSnapshot:
			if slices.Contains(l.Snapshots, r.ID) {
				return nil
			}
			l.Snapshots = append(l.Snapshots, r.ID)
		}
		return putJSON(b.leases, []byte(id), l, "lease "+id)
	})
}

// ListLeases returns every lease, expired ones included, by ID.
func (db *DB) ListLeases(ctx context.Context) ([]Lease, error) {
	var out []Lease
	err := db.view(ctx, func(b buckets) error {
		return b.leases.ForEach(func(k, v []byte) error {
			var l Lease
			if err := getJSON(v, &l, "lease "+string(k)); err != nil {
				return err
			}
			out = append(out, l)
			return nil
		})
	})
	return out, err
}
