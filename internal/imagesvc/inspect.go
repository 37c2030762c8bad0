package imagesvc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/reference"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImageInfo is what `berth image inspect` shows of a stored image, in
// podman's field names.
type ImageInfo struct {
	ID           string            `json:"Id"`
	Digest       digest.Digest     `json:"Digest"`
	RepoTags     []string          `json:"RepoTags"`
	RepoDigests  []string          `json:"RepoDigests"`
	Created      *time.Time        `json:"Created,omitempty"`
	Author       string            `json:"Author,omitempty"`
	Architecture string            `json:"Architecture"`
	Os           string            `json:"Os"`
	Variant      string            `json:"Variant,omitempty"`
	Size         int64             `json:"Size"`
	Labels       map[string]string `json:"Labels"`
	Config       v1.ImageConfig    `json:"Config"`
	RootFS       v1.RootFS         `json:"RootFS"`
	History      []v1.History      `json:"History,omitempty"`
	MediaType    string            `json:"ManifestType"`
	// NamesHistory is empty; kept for podman's shape.
	NamesHistory []string `json:"NamesHistory"`
	// Record is the store's own entry for the name looked up.
	Record metadata.Image `json:"-"`
}

// Inspect reads what a stored image is: its config, every name it has, and
// its unpacked size.
func (s *Service) Inspect(ctx context.Context, rec metadata.Image) (ImageInfo, error) {
	info := ImageInfo{ID: rec.Config.Encoded(), Digest: rec.Target.Digest, MediaType: rec.Target.MediaType, Record: rec,
		RepoTags: []string{}, RepoDigests: []string{}, NamesHistory: []string{}}
	cfg, err := s.config(ctx, rec)
	if err != nil {
		return info, err
	}
	info.Created, info.Author = cfg.Created, cfg.Author
	info.Architecture, info.Os, info.Variant = cfg.Architecture, cfg.OS, cfg.Variant
	info.Config, info.RootFS, info.History, info.Labels = cfg.Config, cfg.RootFS, cfg.History, cfg.Config.Labels
	all, err := s.Meta.ListImages(ctx, func(i metadata.Image) bool { return i.Config == rec.Config })
	if err != nil {
		return info, err
	}
	for _, i := range all {
		n, err := reference.Parse(i.Name)
		if err != nil {
			continue // stored under its ID only
		}
		if n.Tag() != "" {
			info.RepoTags = append(info.RepoTags, n.String())
		}
		if d, err := n.NameOnly().WithDigest(i.Target.Digest); err == nil && !slices.Contains(info.RepoDigests, d.String()) {
			info.RepoDigests = append(info.RepoDigests, d.String())
		}
	}
	info.Size, err = s.chainSize(ctx, rec.SnapshotKey)
	return info, err
}

// Config reads and parses a stored image's config.
func (s *Service) Config(ctx context.Context, rec metadata.Image) (v1.Image, error) {
	return s.config(ctx, rec)
}

// config reads and parses a stored image's config.
func (s *Service) config(ctx context.Context, rec metadata.Image) (v1.Image, error) {
	var cfg v1.Image
	data, err := s.rawBlob(ctx, rec.Config, maxConfig)
	if err != nil {
		return cfg, fmt.Errorf("image %s: config: %w", rec.Name, err)
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return cfg, fmt.Errorf("image %s: config: %v: %w", rec.Name, err, errdefs.ErrInvalidArgument)
	}
	return cfg, nil
}

// rawBlob reads a small stored blob whole (at most limit bytes).
func (s *Service) rawBlob(ctx context.Context, d digest.Digest, limit int64) ([]byte, error) {
	rc, err := s.localBlob(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("blob %s: more than %d bytes: %w", d, limit, errdefs.ErrInvalidArgument)
	}
	return data, nil
}

// chainSize is the unpacked size of a layer chain.
func (s *Service) chainSize(ctx context.Context, key string) (int64, error) {
	var n int64
	for i := 0; key != "" && i < 1000; i++ {
		sn, err := s.Meta.GetSnapshot(ctx, key)
		if err != nil {
			return n, err
		}
		n += sn.Size
		key = sn.Parent
	}
	return n, nil
}

// Usage is what `berth system df` shows for images.
type Usage struct {
	Images      int   // distinct images (image IDs)
	Names       int   // names pointing at them
	BlobBytes   int64 // compressed blobs stored
	LayerBytes  int64 // unpacked layers (committed snapshots)
	Reclaimable int64 // blob and layer bytes no image refers to
}

// DiskUsage adds up the store.
func (s *Service) DiskUsage(ctx context.Context) (Usage, error) {
	var u Usage
	imgs, err := s.Meta.ListImages(ctx, nil)
	if err != nil {
		return u, err
	}
	ids := map[digest.Digest]bool{}
	for _, i := range imgs {
		ids[i.Config] = true
	}
	u.Images, u.Names = len(ids), len(imgs)
	var all []digest.Digest
	sizes := map[digest.Digest]int64{}
	if err := s.Content.Walk(ctx, func(i content.Info) error {
		all = append(all, i.Digest)
		sizes[i.Digest] = i.Size
		u.BlobBytes += i.Size
		return nil
	}); err != nil {
		return u, err
	}
	var keys []string
	snapSize := map[string]int64{}
	if err := s.Meta.WalkSnapshots(ctx, func(sn metadata.Snapshot) error {
		keys = append(keys, sn.Key)
		snapSize[sn.Key] = sn.Size
		if sn.Kind == metadata.KindCommitted {
			u.LayerBytes += sn.Size
		}
		return nil
	}); err != nil {
		return u, err
	}
	deadBlobs, deadSnaps, err := s.Meta.Unreferenced(ctx, s.children, all, keys)
	if err != nil {
		return u, err
	}
	for _, d := range deadBlobs {
		u.Reclaimable += sizes[d]
	}
	for _, k := range deadSnaps {
		u.Reclaimable += snapSize[k]
	}
	return u, nil
}
