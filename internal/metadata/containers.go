package metadata

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
)

// Container is one container's record. Its run state (running, exited,
// exit code) is not here: the container's monitor writes it next to the
// bundle, so no transaction is needed when a container exits.
type Container struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Image string `json:"image"` // the image's name when the container was made
	// ImageID is the image's config digest.
	ImageID digest.Digest `json:"imageID"`
	// Snapshot is the key of the container's active rootfs snapshot.
	Snapshot string `json:"snapshot"`
	// Runtime is the OCI runtime binary's path.
	Runtime   string            `json:"runtime"`
	Labels    map[string]string `json:"labels,omitempty"`
	CreatedAt time.Time         `json:"createdAt"`
	// Config is the engine's own description (command, tty, mounts, ...).
	Config json.RawMessage `json:"config,omitempty"`
}

// ContainerStore is what callers that only handle containers depend on.
type ContainerStore interface {
	CreateContainer(ctx context.Context, c Container) (Container, error)
	GetContainer(ctx context.Context, ref string) (Container, error)
	ListContainers(ctx context.Context) ([]Container, error)
	RenameContainer(ctx context.Context, id, name string) error
	DeleteContainer(ctx context.Context, id string) error
}

var _ ContainerStore = (*DB)(nil)

// CreateContainer records c; its ID and its name must both be new
// (ErrAlreadyExists names which is taken).
func (db *DB) CreateContainer(ctx context.Context, c Container) (Container, error) {
	if c.ID == "" || c.Name == "" {
		return Container{}, fmt.Errorf("container: empty ID or name: %w", errdefs.ErrInvalidArgument)
	}
	if c.CreatedAt.IsZero() {
		c.CreatedAt = time.Now().UTC()
	}
	err := db.updateBuckets(ctx, func(b buckets) error {
		if b.containers.Get([]byte(c.ID)) != nil {
			return fmt.Errorf("container %s: %w", c.ID, errdefs.ErrAlreadyExists)
		}
		if id := b.names.Get([]byte(c.Name)); id != nil {
			return fmt.Errorf("the name %q is in use by container %s: remove or rename it first: %w", c.Name, shortID(string(id)), errdefs.ErrAlreadyExists)
		}
		if err := b.names.Put([]byte(c.Name), []byte(c.ID)); err != nil {
			return err
		}
		return putJSON(b.containers, []byte(c.ID), c, "container "+c.ID)
	})
	return c, err
}

// GetContainer finds a container by ID, name, or a unique ID prefix.
func (db *DB) GetContainer(ctx context.Context, ref string) (Container, error) {
	var c Container
	err := db.view(ctx, func(b buckets) error {
		if v := b.containers.Get([]byte(ref)); v != nil {
			return getJSON(v, &c, "container "+ref)
		}
		if id := b.names.Get([]byte(ref)); id != nil {
			return getJSON(b.containers.Get(id), &c, "container "+string(id))
		}
		var found []byte
		cur := b.containers.Cursor()
		for k, v := cur.Seek([]byte(ref)); k != nil && strings.HasPrefix(string(k), ref) && ref != ""; k, v = cur.Next() {
			if found != nil {
				return fmt.Errorf("container %q: more than one ID starts with it: %w", ref, errdefs.ErrInvalidArgument)
			}
			found = v
		}
		if found == nil {
			return fmt.Errorf("no container with name or ID %q: %w", ref, errdefs.ErrNotFound)
		}
		return getJSON(found, &c, "container "+ref)
	})
	return c, err
}

// ListContainers returns every container, in ID order.
func (db *DB) ListContainers(ctx context.Context) ([]Container, error) {
	var out []Container
	err := db.view(ctx, func(b buckets) error {
		return b.containers.ForEach(func(k, v []byte) error {
			var c Container
			if err := getJSON(v, &c, "container "+string(k)); err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// RenameContainer gives container id the new, unused name.
func (db *DB) RenameContainer(ctx context.Context, id, name string) error {
	if name == "" {
		return fmt.Errorf("rename %s: empty name: %w", id, errdefs.ErrInvalidArgument)
	}
	return db.updateBuckets(ctx, func(b buckets) error {
		v := b.containers.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
		}
		if other := b.names.Get([]byte(name)); other != nil {
			return fmt.Errorf("the name %q is in use by container %s: %w", name, shortID(string(other)), errdefs.ErrAlreadyExists)
		}
		var c Container
		if err := getJSON(v, &c, "container "+id); err != nil {
			return err
		}
		if err := b.names.Delete([]byte(c.Name)); err != nil {
			return err
		}
		c.Name = name
		if err := b.names.Put([]byte(name), []byte(id)); err != nil {
			return err
		}
		return putJSON(b.containers, []byte(id), c, "container "+id)
	})
}

// DeleteContainer removes container id's record and frees its name.
func (db *DB) DeleteContainer(ctx context.Context, id string) error {
	return db.updateBuckets(ctx, func(b buckets) error {
		v := b.containers.Get([]byte(id))
		if v == nil {
			return fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
		}
		var c Container
		if err := getJSON(v, &c, "container "+id); err != nil {
			return err
		}
		if err := b.names.Delete([]byte(c.Name)); err != nil {
			return err
		}
		return b.containers.Delete([]byte(id))
	})
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
