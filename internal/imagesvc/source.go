package imagesvc

import (
	"bytes"
	"context"
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
