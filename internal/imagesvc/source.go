package imagesvc

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/berthdev/berth/internal/errdefs"
	gv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Images move between transports as go-containerregistry v1.Images: its
// layout, tarball and remote packages read and write OCI layouts, docker
// archives and registries. blobImage makes one from a raw manifest and a
// way to open its blobs, for the two sources that are berth's own: the
// registry client (mirrors, short names, digest-verified streams) and the
// local store.

// maxConfig bounds an image config read into memory.
const maxConfig = 16 << 20

type blobOpener func(ctx context.Context, d gv1.Descriptor) (io.ReadCloser, error)

// blobImage implements partial.CompressedImageCore. go-containerregistry's
// interfaces take no context, so the one of the operation it serves is
// kept for its lifetime.
type blobImage struct {
	ctx  context.Context
	raw  []byte
	mt   types.MediaType
	man  *gv1.Manifest
	open blobOpener
}

// newBlobImage returns the image whose manifest is raw.
func newBlobImage(ctx context.Context, raw []byte, mt types.MediaType, open blobOpener) (gv1.Image, error) {
	if mt.IsIndex() {
		return nil, fmt.Errorf("%s is an index, not an image manifest: %w", mt, errdefs.ErrInvalidArgument)
	}
	man, err := gv1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("image manifest: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return partial.CompressedToImage(&blobImage{ctx: ctx, raw: raw, mt: mt, man: man, open: open})
}

func (b *blobImage) RawManifest() ([]byte, error)        { return b.raw, nil }
func (b *blobImage) MediaType() (types.MediaType, error) { return b.mt, nil }

func (b *blobImage) RawConfigFile() ([]byte, error) {
	c := b.man.Config
	if c.Size > maxConfig {
		return nil, fmt.Errorf("config %s: %d bytes, more than %d allowed: %w", c.Digest, c.Size, maxConfig, errdefs.ErrInvalidArgument)
	}
	rc, err := b.open(b.ctx, c)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(io.LimitReader(rc, maxConfig+1))
}

func (b *blobImage) LayerByDigest(h gv1.Hash) (partial.CompressedLayer, error) {
	if h == b.man.Config.Digest {
		return &blobLayer{b, b.man.Config}, nil
	}
	for _, l := range b.man.Layers {
		if l.Digest == h {
			return &blobLayer{b, l}, nil
		}
	}
	return nil, fmt.Errorf("blob %s: not in the manifest: %w", h, errdefs.ErrNotFound)
}

type blobLayer struct {
	img  *blobImage
	desc gv1.Descriptor
}

func (l *blobLayer) Digest() (gv1.Hash, error)           { return l.desc.Digest, nil }
func (l *blobLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *blobLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }
func (l *blobLayer) Compressed() (io.ReadCloser, error)  { return l.img.open(l.img.ctx, l.desc) }

// manifestOf returns an image's raw manifest and media type.
func manifestOf(img gv1.Image) (raw []byte, mt types.MediaType, err error) {
	if mt, err = img.MediaType(); err != nil {
		return nil, "", err
	}
	if raw, err = img.RawManifest(); err != nil {
		return nil, "", err
	}
	return raw, mt, nil
}

// asOCI returns img with an OCI manifest: what OCI layouts hold (skopeo
// and umoci read nothing else there). A Docker schema2 manifest is
// rewritten with the OCI media types; the config and layer blobs are the
// same bytes, so only the manifest digest changes, as with skopeo.
func asOCI(ctx context.Context, img gv1.Image) (gv1.Image, error) {
	raw, mt, err := manifestOf(img)
	if err != nil {
		return nil, err
	}
	if mt == types.OCIManifestSchema1 {
		return img, nil
	}
	if mt != types.DockerManifestSchema2 {
		return nil, fmt.Errorf("manifest media type %q cannot be written to an OCI layout: %w", mt, errdefs.ErrInvalidArgument)
	}
	man, err := gv1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("image manifest: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	man.MediaType = types.OCIManifestSchema1
	man.Config.MediaType = types.OCIConfigJSON
	for i, l := range man.Layers {
		switch l.MediaType {
		case types.DockerLayer:
			man.Layers[i].MediaType = types.OCILayer
		case types.DockerUncompressedLayer:
			man.Layers[i].MediaType = types.OCIUncompressedLayer
		default:
			return nil, fmt.Errorf("layer %s: media type %q has no OCI equivalent: %w", l.Digest, l.MediaType, errdefs.ErrInvalidArgument)
		}
	}
	out, err := json.Marshal(man)
	if err != nil {
		return nil, err
	}
	cfgName := man.Config.Digest
	return newBlobImage(ctx, out, types.OCIManifestSchema1, func(ctx context.Context, d gv1.Descriptor) (io.ReadCloser, error) {
		if d.Digest == cfgName {
			cfg, err := img.RawConfigFile()
			if err != nil {
				return nil, err
			}
			return io.NopCloser(bytes.NewReader(cfg)), nil
		}
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return nil, err
		}
		return l.Compressed()
	})
}

// manifestFetcher fetches a child manifest or index of an index.
type manifestFetcher func(ctx context.Context, d gv1.Descriptor) ([]byte, gv1.Descriptor, error)

// blobIndex is an index as a go-containerregistry ImageIndex, its
// children fetched through manifest and their blobs through open (the
// registry client's, for `copy --all`).
type blobIndex struct {
	ctx      context.Context
	raw      []byte
	mt       types.MediaType
	im       *gv1.IndexManifest
	manifest manifestFetcher
	open     blobOpener
}

func newBlobIndex(ctx context.Context, raw []byte, mt types.MediaType, manifest manifestFetcher, open blobOpener) (gv1.ImageIndex, error) {
	im, err := gv1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("index: %v: %w", err, errdefs.ErrInvalidArgument)
	}
	return &blobIndex{ctx: ctx, raw: raw, mt: mt, im: im, manifest: manifest, open: open}, nil
}

func (b *blobIndex) MediaType() (types.MediaType, error) { return b.mt, nil }
func (b *blobIndex) Digest() (gv1.Hash, error) {
	h, _, err := gv1.SHA256(bytes.NewReader(b.raw))
	return h, err
}
func (b *blobIndex) Size() (int64, error)                       { return int64(len(b.raw)), nil }
func (b *blobIndex) IndexManifest() (*gv1.IndexManifest, error) { return b.im.DeepCopy(), nil }
func (b *blobIndex) RawManifest() ([]byte, error)               { return b.raw, nil }

func (b *blobIndex) child(h gv1.Hash) ([]byte, gv1.Descriptor, error) {
	for _, d := range b.im.Manifests {
		if d.Digest == h {
			return b.manifest(b.ctx, d)
		}
	}
	return nil, gv1.Descriptor{}, fmt.Errorf("manifest %s: not in the index: %w", h, errdefs.ErrNotFound)
}

func (b *blobIndex) Image(h gv1.Hash) (gv1.Image, error) {
	raw, d, err := b.child(h)
	if err != nil {
		return nil, err
	}
	return newBlobImage(b.ctx, raw, d.MediaType, b.open)
}

func (b *blobIndex) ImageIndex(h gv1.Hash) (gv1.ImageIndex, error) {
	raw, d, err := b.child(h)
	if err != nil {
		return nil, err
	}
	return newBlobIndex(b.ctx, raw, d.MediaType, b.manifest, b.open)
}
