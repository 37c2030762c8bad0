// Package imagesvc moves images: pull from a registry into the local store
// (content, snapshots, metadata); push and copy come later.
package imagesvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/registry"
	"github.com/berthdev/berth/internal/snapshot"
	gv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Service pulls images into one local store.
type Service struct {
	Registry  *registry.Client
	Content   content.Store
	Snapshots *snapshot.Overlay
	Meta      *metadata.DB
	// Parallel is how many layers download and unpack at once (default 3).
	Parallel int
}

// Docker's schema2 media types, the same shapes as OCI's.
const (
	dockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	dockerConfig   = "application/vnd.docker.container.image.v1+json"
	dockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// Pull fetches ref for platform (nil: the host's) and records it. Each
// layer streams once from the registry into the content store and, at the
// same time, through its decompressor into a staged snapshot; digests and
// diffIDs are checked before anything is committed, and the image record
// is written last, so an interrupted pull leaves no image half there.
func (s *Service) Pull(ctx context.Context, ref string, platform *v1.Platform) (metadata.Image, error) {
	var want *gv1.Platform
	if platform != nil {
		want = &gv1.Platform{OS: platform.OS, Architecture: platform.Architecture, Variant: platform.Variant}
	}
	r, err := s.Registry.Resolve(ctx, ref, want)
	if err != nil {
		return metadata.Image{}, err
	}
	raw, gdesc, err := s.Registry.Manifest(ctx, r)
	if err != nil {
		return metadata.Image{}, err
	}
	desc := v1.Descriptor{MediaType: string(gdesc.MediaType), Digest: digest.Digest(gdesc.Digest.String()), Size: gdesc.Size}
	var man v1.Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		return metadata.Image{}, fmt.Errorf("manifest of %s: %v: %w", r.Ref, err, errdefs.ErrInvalidArgument)
	}
	if err := s.putBytes(ctx, desc, raw); err != nil {
		return metadata.Image{}, err
	}
	cfgRaw, err := s.fetchSmall(ctx, r, man.Config, 16<<20)
	if err != nil {
		return metadata.Image{}, err
	}
	var cfg v1.Image
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return metadata.Image{}, fmt.Errorf("config of %s: %v: %w", r.Ref, err, errdefs.ErrInvalidArgument)
	}
	if len(cfg.RootFS.DiffIDs) != len(man.Layers) {
		return metadata.Image{}, fmt.Errorf("image %s: %d layers but %d diffIDs in its config: %w",
			r.Ref, len(man.Layers), len(cfg.RootFS.DiffIDs), errdefs.ErrInvalidArgument)
	}
	chain := chainIDs(cfg.RootFS.DiffIDs)

	// Unpack what is missing, in parallel, each into its own staging dir.
	staged := make([]string, len(man.Layers))
	defer func() {
		for _, d := range staged {
			if d != "" {
				os.RemoveAll(d)
			}
		}
	}()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(1, s.Parallel, 3))
	for i, l := range man.Layers {
		if _, err := s.Meta.GetSnapshot(ctx, chain[i].String()); err == nil {
			continue
		}
		g.Go(func() error {
			dir, err := s.Snapshots.Staging()
			if err != nil {
				return err
			}
			staged[i] = dir
			return s.unpack(gctx, r, l, cfg.RootFS.DiffIDs[i], dir)
		})
	}
	if err := g.Wait(); err != nil {
		return metadata.Image{}, err
	}
	// Commit in chain order: a snapshot's parent must exist first.
	for i := range man.Layers {
		if staged[i] == "" {
			continue
		}
		parent := ""
		if i > 0 {
			parent = chain[i-1].String()
		}
		err := s.Snapshots.Adopt(ctx, chain[i].String(), parent, staged[i], cfg.RootFS.DiffIDs[i], chain[i])
		if err != nil && !errdefs.IsAlreadyExists(err) { // another pull got there first
			return metadata.Image{}, err
		}
		staged[i] = ""
	}
	img := metadata.Image{Name: r.Ref.String(), Target: desc, Config: man.Config.Digest,
		Platform: v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}}
	if len(chain) > 0 {
		img.SnapshotKey = chain[len(chain)-1].String()
	}
	out, err := s.Meta.CreateImage(ctx, img)
	if errdefs.IsAlreadyExists(err) {
		out, err = s.Meta.UpdateImage(ctx, img)
	}
	return out, err
}

// chainIDs are the OCI chain IDs of a layer stack.
func chainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// blob opens a blob through the registry client, whose types are
// go-containerregistry's.
func (s *Service) blob(ctx context.Context, r *registry.Resolved, d v1.Descriptor) (io.ReadCloser, error) {
	h, err := gv1.NewHash(d.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("blob %q: %v: %w", d.Digest, err, errdefs.ErrInvalidArgument)
	}
	return s.Registry.Blob(ctx, r, gv1.Descriptor{MediaType: types.MediaType(d.MediaType), Digest: h, Size: d.Size})
}

// unpack streams one layer: the compressed bytes go to the content store
// (digest checked at commit) and through the decompressor to the applier
// (diffID checked at the end).
func (s *Service) unpack(ctx context.Context, r *registry.Resolved, l v1.Descriptor, diffID digest.Digest, dir string) error {
	body, err := s.blob(ctx, r, l)
	if err != nil {
		return err
	}
	defer body.Close()
	w, err := s.Content.Writer(ctx, l.Digest.String(), l.Size, l.Digest)
	stored := errdefs.IsAlreadyExists(err)
	if err != nil && !stored {
		return err
	}
	var src io.Reader = body
	if !stored {
		defer w.Close()
		if w.Status().Offset > 0 {
			// The stream starts over, so the partial ingest does too.
			if err := w.Truncate(0); err != nil {
				return err
			}
		}
		src = io.TeeReader(body, w)
	}
	dec, err := decompress(l.MediaType, src)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	got, _, err := snapshot.Apply(ctx, dir, dec, snapshot.ApplyOptions{AllowDevices: os.Geteuid() == 0})
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	// Drain what the decompressor did not need, so the blob is whole.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	if got != diffID {
		return fmt.Errorf("layer %s: uncompressed digest %s, config says %s: %w", l.Digest, got, diffID, errdefs.ErrFailedPrecond)
	}
	if !stored {
		if err := w.Commit(ctx, l.Size, l.Digest); err != nil && !errdefs.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

func decompress(mediaType string, r io.Reader) (io.Reader, error) {
	switch mediaType {
	case v1.MediaTypeImageLayerGzip, dockerLayer:
		return gzip.NewReader(r)
	case v1.MediaTypeImageLayerZstd:
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case v1.MediaTypeImageLayer:
		return r, nil
	}
	return nil, fmt.Errorf("unknown layer media type %q: %w", mediaType, errdefs.ErrInvalidArgument)
}

// fetchSmall reads a small blob (the config) and stores it.
func (s *Service) fetchSmall(ctx context.Context, r *registry.Resolved, d v1.Descriptor, limit int64) ([]byte, error) {
	if d.Size > limit {
		return nil, fmt.Errorf("blob %s: %d bytes, more than %d allowed: %w", d.Digest, d.Size, limit, errdefs.ErrInvalidArgument)
	}
	body, err := s.blob(ctx, r, d)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	data, err := io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, err
	}
	return data, s.putBytes(ctx, d, data)
}

func (s *Service) putBytes(ctx context.Context, d v1.Descriptor, data []byte) error {
	w, err := s.Content.Writer(ctx, d.Digest.String(), int64(len(data)), d.Digest)
	if errdefs.IsAlreadyExists(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer w.Close()
	if err := w.Truncate(0); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	if err := w.Commit(ctx, int64(len(data)), d.Digest); err != nil && !errors.Is(err, errdefs.ErrAlreadyExists) {
		return err
	}
	return nil
}
