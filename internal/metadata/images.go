package metadata

import (
	"context"
	"fmt"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is one name in the store. A tag is an image name: several names may
// point at one manifest digest, and removing one leaves the others.
type Image struct {
	// Name is the canonical reference string (docker.io/library/busybox:latest
	// or repo@sha256:...); parsing is internal/reference's business.
	Name string `json:"name"`
	// Target is the manifest this name chose (after platform selection).
	Target ocispec.Descriptor `json:"target"`
	// Config is the image config's digest, kept so listing needs no content read.
	Config   digest.Digest    `json:"config,omitempty"`
	Platform ocispec.Platform `json:"platform"`
	// SnapshotKey is the committed snapshot of the top layer (its chain ID);
	// GC keeps it and its parents alive while the image exists.
	SnapshotKey string            `json:"snapshotKey,omitempty"`
	CreatedAt   time.Time         `json:"createdAt"`
	UpdatedAt   time.Time         `json:"updatedAt"`
	Labels      map[string]string `json:"labels,omitempty"`
}

// ImageStore is what callers that only handle images depend on.
type ImageStore interface {
	CreateImage(ctx context.Context, img Image) (Image, error)
	UpdateImage(ctx context.Context, img Image) (Image, error)
	GetImage(ctx context.Context, name string) (Image, error)
	ListImages(ctx context.Context, filter func(Image) bool) ([]Image, error)
	DeleteImage(ctx context.Context, name string) error
}

var _ ImageStore = (*DB)(nil)

func validateImage(img Image) error {
	if img.Name == "" {
		return fmt.Errorf("image: empty name: %w", errdefs.ErrInvalidArgument)
	}
	if err := img.Target.Digest.Validate(); err != nil {
		return fmt.Errorf("image %s: target digest %q: %v: %w", img.Name, img.Target.Digest, err, errdefs.ErrInvalidArgument)
	}
	if img.Target.MediaType == "" {
		return fmt.Errorf("image %s: target has no media type: %w", img.Name, errdefs.ErrInvalidArgument)
	}
	if img.Target.Size < 0 {
		return fmt.Errorf("image %s: target size %d: %w", img.Name, img.Target.Size, errdefs.ErrInvalidArgument)
	}
	if img.Config != "" {
		if err := img.Config.Validate(); err != nil {
			return fmt.Errorf("image %s: config digest %q: %v: %w", img.Name, img.Config, err, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// CreateImage stores a new name; an existing name is ErrAlreadyExists (use
// UpdateImage to move a tag). Zero times are set to now.
func (db *DB) CreateImage(ctx context.Context, img Image) (Image, error) {
	if err := validateImage(img); err != nil {
		return Image{}, err
	}
	now := time.Now().UTC()
	if img.CreatedAt.IsZero() {
		img.CreatedAt = now
	}
	if img.UpdatedAt.IsZero() {
		img.UpdatedAt = img.CreatedAt
	}
	err := db.updateBuckets(ctx, func(b buckets) error {
		if b.images.Get([]byte(img.Name)) != nil {
			return fmt.Errorf("image %s: %w", img.Name, errdefs.ErrAlreadyExists)
		}
		return putJSON(b.images, []byte(img.Name), img, "image "+img.Name)
	})
	if err != nil {
		return Image{}, err
	}
	return img, nil
}

// UpdateImage replaces an existing record, keeping its CreatedAt and
// setting UpdatedAt; a missing name is ErrNotFound.
func (db *DB) UpdateImage(ctx context.Context, img Image) (Image, error) {
	if err := validateImage(img); err != nil {
		return Image{}, err
	}
	err := db.updateBuckets(ctx, func(b buckets) error {
		data := b.images.Get([]byte(img.Name))
		if data == nil {
			return fmt.Errorf("image %s: %w", img.Name, errdefs.ErrNotFound)
		}
		var old Image
		if err := getJSON(data, &old, "image "+img.Name); err != nil {
			return err
		}
		img.CreatedAt = old.CreatedAt
		img.UpdatedAt = time.Now().UTC()
		return putJSON(b.images, []byte(img.Name), img, "image "+img.Name)
	})
	if err != nil {
		return Image{}, err
	}
	return img, nil
}

// GetImage returns the record for name, or ErrNotFound.
func (db *DB) GetImage(ctx context.Context, name string) (Image, error) {
	var img Image
	err := db.view(ctx, func(b buckets) error {
		data := b.images.Get([]byte(name))
		if data == nil {
			return fmt.Errorf("image %s: %w", name, errdefs.ErrNotFound)
		}
		return getJSON(data, &img, "image "+name)
	})
	return img, err
}

// ListImages returns the images filter accepts (all if filter is nil), by name.
func (db *DB) ListImages(ctx context.Context, filter func(Image) bool) ([]Image, error) {
	var out []Image
	err := db.view(ctx, func(b buckets) error {
		return b.images.ForEach(func(k, v []byte) error {
			var img Image
			if err := getJSON(v, &img, "image "+string(k)); err != nil {
				return err
			}
			if filter == nil || filter(img) {
				out = append(out, img)
			}
			return nil
		})
	})
	return out, err
}

// DeleteImage removes one name; other names for the same digest stay. What
// it referenced is left to GC.
func (db *DB) DeleteImage(ctx context.Context, name string) error {
	return db.updateBuckets(ctx, func(b buckets) error {
		if b.images.Get([]byte(name)) == nil {
			return fmt.Errorf("image %s: %w", name, errdefs.ErrNotFound)
		}
		if err := b.images.Delete([]byte(name)); err != nil {
			return fmt.Errorf("image %s: delete: %w", name, err)
		}
		return nil
	})
}
