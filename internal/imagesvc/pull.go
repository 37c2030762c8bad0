// Package imagesvc moves images between transports (registries, OCI
// layouts, archives) and the local store (content, snapshots, metadata),
// and keeps that store: names, removal, garbage collection, checks.
package imagesvc

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

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

// Service moves images into and out of one local store.
type Service struct {
	// Root is the store's directory; scratch space (an unpacked archive)
	// goes below it, on the same file system.
	Root      string
	Registry  *registry.Client
	Content   content.Store
	Snapshots *snapshot.Overlay
	Meta      *metadata.DB
	// Parallel is how many layers download and unpack at once (default 3).
	Parallel int
	// Progress, if set, is told how each layer's transfer goes; it is
	// called from several goroutines at once.
	Progress func(Event)
}

// Docker's schema2 media types, the same shapes as OCI's.
const (
	dockerLayer    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	dockerTarLayer = "application/vnd.docker.image.rootfs.diff.tar"
)

// Pull fetches ref for platform (nil: the host's) from its registry (or a
// mirror) and records it under its canonical name.
func (s *Service) Pull(ctx context.Context, ref string, platform *v1.Platform) (metadata.Image, error) {
	r, img, err := s.remoteImage(ctx, ref, gPlatform(platform), true)
	if err != nil {
		return metadata.Image{}, err
	}
	from := func(ctx context.Context, l v1.Descriptor, offset int64) (io.ReadCloser, error) {
		h, err := gv1.NewHash(l.Digest.String())
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
		}
		return s.Registry.BlobFrom(ctx, r, gv1.Descriptor{MediaType: types.MediaType(l.MediaType), Digest: h, Size: l.Size}, offset)
	}
	return s.importImage(ctx, r.Ref.String(), img, from)
}

// rangeOpener opens a layer from an offset on, for sources that can
// resume (a registry answers Range requests).
type rangeOpener func(ctx context.Context, l v1.Descriptor, offset int64) (io.ReadCloser, error)

// remoteImage resolves ref through registries.conf and returns the image
// chosen for platform (nil: the host's), whose blobs stream from the
// endpoint that answered, digest-checked unless sizeOnly: an import checks
// every digest itself, and hashing the stream twice costs a pull time.
func (s *Service) remoteImage(ctx context.Context, ref string, platform *gv1.Platform, sizeOnly bool) (*registry.Resolved, gv1.Image, error) {
	r, err := s.Registry.Resolve(ctx, ref, platform)
	if err != nil {
		return nil, nil, err
	}
	raw, gdesc, err := s.Registry.Manifest(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	img, err := newBlobImage(ctx, raw, gdesc.MediaType, func(ctx context.Context, d gv1.Descriptor) (io.ReadCloser, error) {
		if sizeOnly {
			return s.Registry.BlobFrom(ctx, r, d, 0)
		}
		return s.Registry.Blob(ctx, r, d)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("image %s: %w", r.Ref, err)
	}
	return r, img, nil
}

// gPlatform converts an OCI platform to go-containerregistry's.
func gPlatform(p *v1.Platform) *gv1.Platform {
	if p == nil {
		return nil
	}
	return &gv1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}

// Import stores img under name, from any source. Each layer streams once
// from the source into the content store and, at the same time, through
// its decompressor into a staged snapshot; digests and diffIDs are checked
// before anything is committed. Everything it writes is leased before it is
// written and the image record comes last, so an interrupted import leaves
// no image half there and nothing GC would keep forever.
func (s *Service) Import(ctx context.Context, name string, img gv1.Image) (metadata.Image, error) {
	return s.importImage(ctx, name, img, nil)
}

// importImage is Import; from, if not nil, resumes partial downloads.
func (s *Service) importImage(ctx context.Context, name string, img gv1.Image, from rangeOpener) (metadata.Image, error) {
	raw, mt, err := manifestOf(img)
	if err != nil {
		return metadata.Image{}, fmt.Errorf("image %s: %w", name, err)
	}
	p, err := parseImage(name, raw, mt, img.RawConfigFile)
	if err != nil {
		return metadata.Image{}, err
	}
	desc, man, cfg, cfgRaw, chain := p.desc, p.man, p.cfg, p.cfgRaw, p.chain
	blobs := []digest.Digest{desc.Digest, man.Config.Digest}
	keys := make([]string, len(chain))
	for i, l := range man.Layers {
		blobs = append(blobs, l.Digest)
		keys[i] = chain[i].String()
	}
	leaseID, release, err := s.lease(ctx, "import", blobs, keys)
	if err != nil {
		return metadata.Image{}, err
	}
	defer release()
	if err := s.putBytes(ctx, desc, raw); err != nil {
		return metadata.Image{}, err
	}
	if err := s.putBytes(ctx, man.Config, cfgRaw); err != nil {
		return metadata.Image{}, err
	}

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
	g.SetLimit(cmp.Or(max(s.Parallel, 0), 3))
	for i, l := range man.Layers {
		if _, err := s.Meta.GetSnapshot(ctx, keys[i]); err == nil {
			s.progress(Event{Digest: l.Digest, Size: l.Size, Done: l.Size, State: BlobExists})
			continue
		}
		g.Go(func() error {
			dir, err := s.Snapshots.Staging(leaseID)
			if err != nil {
				return err
			}
			staged[i] = dir
			return s.unpack(gctx, img, from, l, cfg.RootFS.DiffIDs[i], dir)
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
			parent = keys[i-1]
		}
		l := man.Layers[i]
		labels := map[string]string{labelLayer: l.Digest.String(), labelLayerSize: strconv.FormatInt(l.Size, 10), labelLayerMedia: l.MediaType}
		err := s.Snapshots.Adopt(ctx, keys[i], parent, staged[i], cfg.RootFS.DiffIDs[i], chain[i], labels)
		if err != nil && !errdefs.IsAlreadyExists(err) { // another pull got there first
			return metadata.Image{}, err
		}
		staged[i] = ""
	}
	rec := metadata.Image{Name: name, Target: desc, Config: man.Config.Digest,
		Platform: v1.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}}
	if len(keys) > 0 {
		rec.SnapshotKey = keys[len(keys)-1]
	}
	out, err := s.Meta.CreateImage(ctx, rec)
	if errdefs.IsAlreadyExists(err) {
		out, err = s.Meta.UpdateImage(ctx, rec)
	}
	return out, err
}

// parsed is an image's manifest and config, checked.
type parsed struct {
	desc   v1.Descriptor
	man    v1.Manifest
	cfg    v1.Image
	cfgRaw []byte
	chain  []digest.Digest
}

// parseImage checks what a source says an image is before anything is
// stored: the manifest's media type and digests, every layer's media type,
// the config against the manifest's digest and size, and one diffID per
// layer. Everything here comes from outside (FuzzParseImage).
func parseImage(name string, raw []byte, mt types.MediaType, config func() ([]byte, error)) (*parsed, error) {
	switch mt {
	case types.OCIManifestSchema1, types.DockerManifestSchema2:
	default:
		return nil, fmt.Errorf("image %s: manifest media type %q is not an image manifest berth reads (%s, %s): %w",
			name, mt, types.OCIManifestSchema1, types.DockerManifestSchema2, errdefs.ErrInvalidArgument)
	}
	p := &parsed{desc: v1.Descriptor{MediaType: string(mt), Digest: digest.FromBytes(raw), Size: int64(len(raw))}}
	if err := json.Unmarshal(raw, &p.man); err != nil {
		return nil, fmt.Errorf("manifest of %s: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	if p.man.MediaType != "" && p.man.MediaType != string(mt) {
		return nil, fmt.Errorf("manifest of %s: says it is %q, served as %q: %w", name, p.man.MediaType, mt, errdefs.ErrInvalidArgument)
	}
	if err := p.man.Config.Digest.Validate(); err != nil {
		return nil, fmt.Errorf("manifest of %s: config digest: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	if p.man.Config.Size < 0 || p.man.Config.Size > maxConfig {
		return nil, fmt.Errorf("manifest of %s: config size %d (at most %d): %w", name, p.man.Config.Size, maxConfig, errdefs.ErrInvalidArgument)
	}
	for _, l := range p.man.Layers {
		if err := l.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("manifest of %s: layer digest: %v: %w", name, err, errdefs.ErrInvalidArgument)
		}
		if l.Size < 0 {
			return nil, fmt.Errorf("manifest of %s: layer %s: size %d: %w", name, l.Digest, l.Size, errdefs.ErrInvalidArgument)
		}
		if _, err := decompress(l.MediaType, nil); err != nil {
			return nil, fmt.Errorf("manifest of %s: layer %s: %w", name, l.Digest, err)
		}
	}
	var err error
	if p.cfgRaw, err = config(); err != nil {
		return nil, fmt.Errorf("config of %s: %w", name, err)
	}
	if got := digest.FromBytes(p.cfgRaw); got != p.man.Config.Digest || int64(len(p.cfgRaw)) != p.man.Config.Size {
		return nil, fmt.Errorf("config of %s: %d bytes with digest %s, the manifest says %d bytes, %s: %w",
			name, len(p.cfgRaw), got, p.man.Config.Size, p.man.Config.Digest, errdefs.ErrInvalidArgument)
	}
	if err := json.Unmarshal(p.cfgRaw, &p.cfg); err != nil {
		return nil, fmt.Errorf("config of %s: %v: %w", name, err, errdefs.ErrInvalidArgument)
	}
	if len(p.cfg.RootFS.DiffIDs) != len(p.man.Layers) {
		return nil, fmt.Errorf("image %s: %d layers but %d diffIDs in its config: %w",
			name, len(p.man.Layers), len(p.cfg.RootFS.DiffIDs), errdefs.ErrInvalidArgument)
	}
	for _, d := range p.cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil {
			return nil, fmt.Errorf("config of %s: diffID: %v: %w", name, err, errdefs.ErrInvalidArgument)
		}
	}
	p.chain = chainIDs(p.cfg.RootFS.DiffIDs)
	return p, nil
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

// unpack streams one layer from the source, through the content store's
// ingest (which keeps a partial download for a later resume), its
// decompressor into the applier (which keeps the layer record), which writes dir/fs.
// The compressed digest is checked at the end of the stream and the
// diffID once the tar is applied; then the ingest is dropped: the layer is
// kept unpacked, with its record to rebuild it. A partial
// download is resumed through from when the source can: its bytes are
// replayed from the ingest, and only the rest is fetched. A blob the
// content store holds (loaded from an archive by an earlier berth) is
// read from there.
func (s *Service) unpack(ctx context.Context, img gv1.Image, from rangeOpener, l v1.Descriptor, diffID digest.Digest, dir string) error {
	w, err := s.writer(ctx, l)
	stored := errdefs.IsAlreadyExists(err)
	if err != nil && !stored {
		return err
	}
	var src io.Reader
	if stored {
		body, err := s.localBlob(ctx, l.Digest)
		if err != nil {
			return fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		defer body.Close()
		src = body
		s.progress(Event{Digest: l.Digest, Size: l.Size, Done: l.Size, State: BlobExists})
	} else {
		defer w.Close()
		have := w.Status().Offset
		var body io.ReadCloser
		if have > 0 && from != nil {
			if body, err = from(ctx, l, have); err != nil {
				body = nil // start over below
			}
		}
		if body != nil {
			s.progress(Event{Digest: l.Digest, Size: l.Size, Done: have, State: BlobStart})
			net := &counter{r: body, ev: Event{Digest: l.Digest, Size: l.Size, Done: have, State: BlobBytes}, emit: s.progress}
			src = io.MultiReader(io.NewSectionReader(w, 0, have), io.TeeReader(net, w))
		} else {
			if have > 0 {
				if err := w.Truncate(0); err != nil {
					return err
				}
			}
			if body, err = openLayer(img, l.Digest); err != nil {
				return fmt.Errorf("layer %s: %w", l.Digest, err)
			}
			s.progress(Event{Digest: l.Digest, Size: l.Size, State: BlobStart})
			net := &counter{r: body, ev: Event{Digest: l.Digest, Size: l.Size, State: BlobBytes}, emit: s.progress}
			src = io.TeeReader(net, w)
		}
		defer body.Close()
	}
	// Read the stream in large pieces: the decompressor asks for a few KiB
	// at a time, and each read of the tee is a write into the ingest.
	src = bufio.NewReaderSize(src, 1<<20)
	dec, err := decompress(l.MediaType, src)
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	rec, err := createRecord(filepath.Join(dir, layerRecordFile))
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	got, _, err := snapshot.Apply(ctx, filepath.Join(dir, "fs"), dec, snapshot.ApplyOptions{AllowDevices: os.Geteuid() == 0, Record: rec})
	if cerr := rec.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	// Drain what the decompressor did not need, so the blob is whole.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return fmt.Errorf("layer %s: %w", l.Digest, err)
	}
	if !stored {
		if n, d := w.Status().Offset, w.Digest(); n != l.Size || d != l.Digest {
			w.Truncate(0) // never resume bad data
			return fmt.Errorf("layer %s: got %d bytes with digest %s, the manifest says %d bytes: %w", l.Digest, n, d, l.Size, errdefs.ErrInvalidArgument)
		}
	}
	if got != diffID {
		return fmt.Errorf("layer %s: uncompressed digest %s, config says %s: %w", l.Digest, got, diffID, errdefs.ErrFailedPrecond)
	}
	if !stored {
		w.Close()
		// Another pull of the same layer may hold the ingest by now: it
		// drops the download itself when it is done with it.
		if err := s.Content.Abort(ctx, l.Digest.String()); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsUnavailable(err) {
			return err
		}
	}
	s.progress(Event{Digest: l.Digest, Size: l.Size, Done: l.Size, State: BlobDone})
	return nil
}

func (s *Service) writer(ctx context.Context, l v1.Descriptor) (content.Writer, error) {
	wait := 20 * time.Millisecond
	for {
		w, err := s.Content.Writer(ctx, l.Digest.String(), l.Size, l.Digest)
		if !errdefs.IsUnavailable(err) {
			return w, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("layer %s: waiting for another download of it: %w", l.Digest, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

func openLayer(img gv1.Image, d digest.Digest) (io.ReadCloser, error) {
	h, err := gv1.NewHash(d.String())
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	layer, err := img.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return layer.Compressed()
}

// localBlob streams a stored blob.
func (s *Service) localBlob(ctx context.Context, d digest.Digest) (io.ReadCloser, error) {
	ra, err := s.Content.ReaderAt(ctx, d)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{io.NewSectionReader(ra, 0, ra.Size()), ra}, nil
}

// decompress returns the tar stream of a layer of mediaType read from r;
// with r nil it only checks that the media type is one berth reads.
func decompress(mediaType string, r io.Reader) (io.Reader, error) {
	switch mediaType {
	case v1.MediaTypeImageLayerGzip, dockerLayer, v1.MediaTypeImageLayerZstd, v1.MediaTypeImageLayer, dockerTarLayer:
		if r == nil {
			return nil, nil
		}
	}
	switch mediaType {
	case v1.MediaTypeImageLayerGzip, dockerLayer:
		return gzip.NewReader(r)
	case v1.MediaTypeImageLayerZstd:
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case v1.MediaTypeImageLayer, dockerTarLayer:
		return r, nil
	}
	return nil, fmt.Errorf("unknown layer media type %q: %w", mediaType, errdefs.ErrInvalidArgument)
}

func (s *Service) putBytes(ctx context.Context, d v1.Descriptor, data []byte) error {
	d.Size = int64(len(data))
	w, err := s.writer(ctx, d)
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
