package imagesvc

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/reference"
	"github.com/berthdev/berth/internal/registry"
	"github.com/google/go-containerregistry/pkg/name"
	gv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
)

// Transports, with skopeo's names and syntax.
const (
	Docker        = "docker"         // docker://REF: a registry
	OCI           = "oci"            // oci:DIR[:TAG]: an OCI image layout
	DockerArchive = "docker-archive" // docker-archive:FILE[:REF]: `docker save` format
	OCIArchive    = "oci-archive"    // oci-archive:FILE[:TAG]: a tar of an OCI layout
	Local         = "local"          // local:NAME, or a bare NAME: berth's store
)

// Location is where an image is read from or written to.
type Location struct {
	Transport string
	// Path is the directory or file of oci, docker-archive and oci-archive.
	Path string
	// Name is the reference (docker, local, docker-archive) or the tag
	// (oci, oci-archive); it may be empty where the transport allows.
	Name string
}

func (l Location) String() string {
	switch l.Transport {
	case Docker:
		return "docker://" + l.Name
	case Local:
		return "local:" + l.Name
	}
	if l.Name == "" {
		return l.Transport + ":" + l.Path
	}
	return l.Transport + ":" + l.Path + ":" + l.Name
}

// ParseLocation reads skopeo's syntax: docker://REF, oci:DIR[:TAG],
// docker-archive:FILE[:REF], oci-archive:FILE[:TAG], and local:NAME; a
// string with no known transport is a local name. As in skopeo, DIR and
// FILE cannot hold a ':'.
func ParseLocation(s string) (Location, error) {
	if rest, ok := strings.CutPrefix(s, "docker://"); ok {
		if rest == "" {
			return Location{}, fmt.Errorf("%q: docker:// needs a reference: %w", s, errdefs.ErrInvalidArgument)
		}
		return Location{Transport: Docker, Name: rest}, nil
	}
	t, rest, ok := strings.Cut(s, ":")
	switch {
	case ok && (t == OCI || t == DockerArchive || t == OCIArchive):
		path, ref, _ := strings.Cut(rest, ":")
		if path == "" {
			return Location{}, fmt.Errorf("%q: %s: needs a path: %w", s, t, errdefs.ErrInvalidArgument)
		}
		if (t == OCI || t == OCIArchive) && ref != "" && !ociTag.MatchString(ref) {
			return Location{}, fmt.Errorf("%q: %q is not a valid image reference name in an OCI layout: %w", s, ref, errdefs.ErrInvalidArgument)
		}
		return Location{Transport: t, Path: path, Name: ref}, nil
	case ok && t == Local:
		return Location{Transport: Local, Name: rest}, nil
	case ok && t == "docker":
		return Location{}, fmt.Errorf("%q: the registry transport is written docker://REF: %w", s, errdefs.ErrInvalidArgument)
	}
	return Location{Transport: Local, Name: s}, nil
}

// ociTag is what the image-spec allows in org.opencontainers.image.ref.name.
var ociTag = regexp.MustCompile(`^[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*(?:/[A-Za-z0-9]+(?:(?:[-._:@+]|--)[A-Za-z0-9]+)*)*$`)

// source is an image opened for reading.
type source struct {
	img  gv1.Image
	name string // its reference, when the transport gives one ("" if not)
	done func()
}

// open reads the image at loc; platform chooses from an index (nil: the
// host's). reuse, for a local image, names the layers whose original blob
// the destination holds already (see localImage). verified asks a registry
// source to check digests as blobs stream; a destination that checks them
// itself (the local store, an OCI layout, a registry) does not need it.
func (s *Service) open(ctx context.Context, loc Location, platform *gv1.Platform, reuse func(v1.Descriptor) bool, verified bool) (*source, error) {
	switch loc.Transport {
	case Docker:
		r, img, err := s.remoteImage(ctx, loc.Name, platform, !verified)
		if err != nil {
			return nil, err
		}
		return &source{img: img, name: r.Ref.String(), done: func() {}}, nil
	case Local:
		rec, err := s.LookupOne(ctx, loc.Name)
		if err != nil {
			return nil, err
		}
		img, done, err := s.localImage(ctx, rec, reuse)
		if err != nil {
			done()
			return nil, err
		}
		return &source{img: img, name: rec.Name, done: done}, nil
	case OCI:
		img, name, err := fromLayout(loc.Path, loc.Name, platform)
		if err != nil {
			return nil, err
		}
		return &source{img: img, name: name, done: func() {}}, nil
	case OCIArchive:
		dir, err := s.tempDir()
		if err != nil {
			return nil, err
		}
		if err := untarLayout(ctx, loc.Path, dir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		img, name, err := fromLayout(dir, loc.Name, platform)
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		return &source{img: img, name: name, done: func() { os.RemoveAll(dir) }}, nil
	case DockerArchive:
		var tag *name.Tag
		if loc.Name != "" {
			t, err := name.NewTag(loc.Name)
			if err != nil {
				return nil, fmt.Errorf("%s: %v: %w", loc, err, errdefs.ErrInvalidArgument)
			}
			tag = &t
		}
		img, err := tarball.ImageFromPath(loc.Path, tag)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", loc, archiveError(err))
		}
		nm := loc.Name
		if nm == "" {
			if m, err := tarball.LoadManifest(fileOpener(loc.Path)); err == nil && len(m) == 1 && len(m[0].RepoTags) > 0 {
				nm = m[0].RepoTags[0]
			}
		}
		return &source{img: img, name: nm, done: func() {}}, nil
	}
	return nil, fmt.Errorf("transport %q: %w", loc.Transport, errdefs.ErrInvalidArgument)
}

func fileOpener(path string) tarball.Opener {
	return func() (io.ReadCloser, error) { return os.Open(path) }
}

func archiveError(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%v: %w", err, errdefs.ErrNotFound)
	}
	return fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
}

// tempDir is a scratch directory on the store's file system, named after
// this process (pid and start time) so that GC removes it once the process
// is gone, however it ended.
func (s *Service) tempDir() (string, error) {
	dir := filepath.Join(s.Root, "tmp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	return os.MkdirTemp(dir, fmt.Sprintf("%d-%s.", os.Getpid(), startTime(os.Getpid())))
}

// cleanTemp removes the scratch directories of processes that are gone.
func (s *Service) cleanTemp() ([]string, error) {
	dir := filepath.Join(s.Root, "tmp")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, e := range entries {
		owner, _, _ := strings.Cut(e.Name(), ".")
		pid, start, _ := strings.Cut(owner, "-")
		if n, err := strconv.Atoi(pid); err == nil && start != "" && startTime(n) == start {
			continue // its process still runs
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return removed, err
		}
		removed = append(removed, e.Name())
	}
	return removed, nil
}

const refNameAnnotation = v1.AnnotationRefName

// fromLayout opens the image tagged tag (the only one when tag is "") in
// the OCI layout at dir, choosing platform from an index.
func fromLayout(dir, tag string, platform *gv1.Platform) (gv1.Image, string, error) {
	idx, im, err := readLayout(dir)
	if err != nil {
		return nil, "", err
	}
	var found []gv1.Descriptor
	for _, d := range im.Manifests {
		if tag == "" || d.Annotations[refNameAnnotation] == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && tag != "":
		return nil, "", fmt.Errorf("oci:%s: no image tagged %q: %w", dir, tag, errdefs.ErrNotFound)
	case len(found) == 0:
		return nil, "", fmt.Errorf("oci:%s: the layout holds no image: %w", dir, errdefs.ErrNotFound)
	case len(found) > 1:
		return nil, "", fmt.Errorf("oci:%s: %d images, name one with oci:%s:TAG: %w", dir, len(found), dir, errdefs.ErrInvalidArgument)
	}
	img, err := layoutImage(idx, found[0], platform)
	if err != nil {
		return nil, "", fmt.Errorf("oci:%s: %w", dir, err)
	}
	return img, layoutName(found[0]), nil
}

// readLayout opens the OCI layout at dir and reads its index.json.
func readLayout(dir string) (gv1.ImageIndex, *gv1.IndexManifest, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("oci:%s: not an OCI layout: %w", dir, archiveError(err))
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, nil, fmt.Errorf("oci:%s: %w", dir, archiveError(err))
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, nil, fmt.Errorf("oci:%s: index.json: %w", dir, archiveError(err))
	}
	return idx, im, nil
}

// layoutName is the full image name an index entry carries, if any.
func layoutName(d gv1.Descriptor) string {
	if nm := d.Annotations[containerdName]; nm != "" {
		return nm
	}
	if n, err := reference.Parse(d.Annotations[refNameAnnotation]); err == nil && !n.IsShort() {
		return n.String()
	}
	return ""
}

// layoutImage opens the image an index entry names, choosing platform
// (nil: the host's) when the entry is itself an index.
func layoutImage(idx gv1.ImageIndex, d gv1.Descriptor, platform *gv1.Platform) (gv1.Image, error) {
	if !d.MediaType.IsIndex() {
		img, err := idx.Image(d.Digest)
		if err != nil {
			return nil, archiveError(err)
		}
		return img, nil
	}
	child, err := idx.ImageIndex(d.Digest)
	if err != nil {
		return nil, archiveError(err)
	}
	cm, err := child.IndexManifest()
	if err != nil {
		return nil, archiveError(err)
	}
	want := hostPlatform(platform)
	for _, m := range cm.Manifests {
		if m.Platform != nil && m.Platform.Satisfies(want) {
			img, err := child.Image(m.Digest)
			if err != nil {
				return nil, archiveError(err)
			}
			return img, nil
		}
	}
	return nil, fmt.Errorf("no image for %s in the index %s: %w", want, d.Digest, errdefs.ErrNotFound)
}

// untarLayout unpacks the OCI layout in the tar file into dir. It takes
// only what a layout holds (oci-layout, index.json, blobs/ALG/HEX) as
// plain files, so a hostile archive can write nothing else.
func untarLayout(ctx context.Context, file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("oci-archive:%s: %w", file, archiveError(err))
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("oci-archive:%s: %v: %w", file, err, errdefs.ErrInvalidArgument)
		}
		name := strings.TrimPrefix(filepath.ToSlash(filepath.Clean("/"+h.Name)), "/")
		if h.Typeflag != tar.TypeReg || !layoutFile(name) {
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
			return err
		}
		out, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("oci-archive:%s: %s: %w", file, name, err)
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("oci-archive:%s: %s: %w", file, name, err)
		}
	}
}

func layoutFile(name string) bool {
	if name == "oci-layout" || name == "index.json" {
		return true
	}
	parts := strings.Split(name, "/")
	return len(parts) == 3 && parts[0] == "blobs" && digest.Digest(parts[1]+":"+parts[2]).Validate() == nil
}

// tarLayout writes the layout in dir as a tar file, atomically.
func tarLayout(ctx context.Context, dir, file string) error {
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return err
	}
	slices.Sort(files)
	return fsutil.WriteAtomic(file, 0o644, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		for _, p := range files {
			if err := ctx.Err(); err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, p)
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			fi, _ := f.Stat()
			err = tw.WriteHeader(&tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg, Format: tar.FormatPAX})
			if err == nil {
				_, err = io.Copy(tw, f)
			}
			f.Close()
			if err != nil {
				return err
			}
		}
		return tw.Close()
	})
}

// toLayout adds img to the OCI layout at dir (made if missing) under tag,
// replacing an image of that tag.
func toLayout(ctx context.Context, dir, tag string, img gv1.Image) error {
	img, err := asOCI(ctx, img)
	if err != nil {
		return fmt.Errorf("oci:%s: %w", dir, err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("oci:%s: %w", dir, err)
		}
	}
	if tag == "" {
		tag = "latest"
	}
	if err := writeLayoutBlobs(ctx, dir, img); err != nil {
		return fmt.Errorf("oci:%s: %w", dir, err)
	}
	ann := layout.WithAnnotations(map[string]string{refNameAnnotation: tag})
	if err := p.ReplaceImage(img, match.Annotation(refNameAnnotation, tag), ann); err != nil {
		return fmt.Errorf("oci:%s:%s: %w", dir, tag, err)
	}
	return nil
}

var copyBuffers = sync.Pool{New: func() any { return new([1 << 20]byte) }}

// writeLayoutBlobs writes img's config and layers into the layout at dir,
// in parallel, each to a temporary file renamed into place only once its
// digest and size are checked: go-containerregistry's layout writer
// writes straight to the final name, unchecked, and takes a blob of the
// right size as present, so an interrupted or corrupt copy would stay.
func writeLayoutBlobs(ctx context.Context, dir string, img gv1.Image) error {
	man, err := img.Manifest()
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, d := range append([]gv1.Descriptor{man.Config}, man.Layers...) {
		g.Go(func() error {
			blobDir := filepath.Join(dir, "blobs", d.Digest.Algorithm)
			final := filepath.Join(blobDir, d.Digest.Hex)
			if fi, err := os.Stat(final); err == nil && fi.Size() == d.Size {
				return nil
			}
			if err := os.MkdirAll(blobDir, 0o755); err != nil {
				return err
			}
			var rc io.ReadCloser
			if d.Digest == man.Config.Digest {
				raw, err := img.RawConfigFile()
				if err != nil {
					return err
				}
				rc = io.NopCloser(bytes.NewReader(raw))
			} else if rc, err = openLayer(img, digest.Digest(d.Digest.String())); err != nil {
				return err
			}
			defer rc.Close()
			tmp, err := os.CreateTemp(blobDir, "."+d.Digest.Hex+".tmp-")
			if err != nil {
				return err
			}
			defer os.Remove(tmp.Name())
			h := sha256.New()
			buf := copyBuffers.Get().(*[1 << 20]byte)
			n, err := io.CopyBuffer(io.MultiWriter(tmp, h), ctxReader{gctx, rc}, buf[:])
			copyBuffers.Put(buf)
			if cerr := tmp.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("blob %s: %w", d.Digest, err)
			}
			if got := digest.NewDigest(digest.SHA256, h); n != d.Size || got.String() != d.Digest.String() {
				return fmt.Errorf("blob %s: got %d bytes with digest %s, want %d: %w", d.Digest, n, got, d.Size, errdefs.ErrInvalidArgument)
			}
			return os.Rename(tmp.Name(), final)
		})
	}
	return g.Wait()
}

// localImage is a stored image as a go-containerregistry image. A layer
// whose blob is not stored (the usual case: layers are kept unpacked) is
// rebuilt from its snapshot and compressed again into scratch space,
// unless reuse says the destination holds the original blob already; a
// rebuilt layer gives a new manifest (the config, and so the image ID,
// stay). done removes the scratch files.
func (s *Service) localImage(ctx context.Context, rec metadata.Image, reuse func(v1.Descriptor) bool) (img gv1.Image, done func(), err error) {
	done = func() {}
	man, err := s.manifest(ctx, rec)
	if err != nil {
		return nil, done, fmt.Errorf("image %s: %w", rec.Name, err)
	}
	raw, err := s.rawBlob(ctx, rec.Target.Digest, maxManifestBlob)
	if err != nil {
		return nil, done, err
	}
	cfg, err := s.config(ctx, rec)
	if err != nil {
		return nil, done, err
	}
	if len(cfg.RootFS.DiffIDs) != len(man.Layers) {
		return nil, done, fmt.Errorf("image %s: %d layers, %d diffIDs: %w", rec.Name, len(man.Layers), len(cfg.RootFS.DiffIDs), errdefs.ErrFailedPrecond)
	}
	chain := chainIDs(cfg.RootFS.DiffIDs)
	var mu sync.Mutex
	files := map[digest.Digest]string{}
	var scratch string
	done = func() {
		if scratch != "" {
			os.RemoveAll(scratch)
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(2)
	layerType := v1.MediaTypeImageLayerGzip
	if rec.Target.MediaType == string(types.DockerManifestSchema2) {
		layerType = dockerLayer
	}
	for i, l := range man.Layers {
		if _, err := s.Content.Info(ctx, l.Digest); err == nil || reuse != nil && reuse(l) {
			continue
		}
		if scratch == "" {
			if scratch, err = s.tempDir(); err != nil {
				return nil, done, err
			}
		}
		g.Go(func() error {
			path := filepath.Join(scratch, strconv.Itoa(i))
			f, err := os.Create(path)
			if err != nil {
				return err
			}
			d, n, err := rebuildLayer(gctx, s.Snapshots.Dir(chain[i].String()), cfg.RootFS.DiffIDs[i], f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("image %s: %w", rec.Name, err)
			}
			mu.Lock()
			files[d] = path
			man.Layers[i] = v1.Descriptor{MediaType: layerType, Digest: d, Size: n}
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, done, err
	}
	if len(files) > 0 {
		if raw, err = json.Marshal(man); err != nil {
			return nil, done, err
		}
	}
	img, err = newBlobImage(ctx, raw, types.MediaType(rec.Target.MediaType), func(ctx context.Context, d gv1.Descriptor) (io.ReadCloser, error) {
		if path, ok := files[digest.Digest(d.Digest.String())]; ok {
			return os.Open(path)
		}
		rc, err := s.localBlob(ctx, digest.Digest(d.Digest.String()))
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("image %s: blob %s is not stored (`berth system check`): %w", rec.Name, d.Digest, err)
		}
		return rc, err
	})
	return img, done, err
}

// CopyOptions control Copy.
type CopyOptions struct {
	// Platform chooses from an index (nil: the host's).
	Platform *v1.Platform
	// Jobs is how many blobs a push uploads at once (default 3).
	Jobs int
	// All copies every platform of an index (to a registry or an OCI
	// layout), not only Platform's image.
	All bool
}

// Copy reads the image at src and writes it to dst, and returns the
// destination's name for it. Writing into the local store is Import;
// a push goes to the registry itself, never a mirror.
func (s *Service) Copy(ctx context.Context, src, dst Location, opts CopyOptions) (string, error) {
	if opts.All {
		return s.copyAll(ctx, src, dst, opts)
	}
	var reuse func(v1.Descriptor) bool
	if dst.Transport == Docker {
		reuse = func(l v1.Descriptor) bool {
			h, err := gv1.NewHash(l.Digest.String())
			if err != nil {
				return false
			}
			ok, err := s.Registry.HasBlob(ctx, dst.Name, h)
			return err == nil && ok
		}
	}
	if src.Transport == Local && dst.Transport == Local {
		rec, err := s.Tag(ctx, src.Name, dst.Name)
		return rec.Name, err
	}
	in, err := s.open(ctx, src, gPlatform(opts.Platform), reuse, dst.Transport == DockerArchive)
	if err != nil {
		return "", err
	}
	defer in.done()
	switch dst.Transport {
	case Local:
		name := dst.Name
		if name == "" {
			name = in.name
		}
		if name == "" {
			return "", fmt.Errorf("copy %s: the source names no image: give one, local:NAME: %w", src, errdefs.ErrInvalidArgument)
		}
		n, err := reference.ParseNormalized(name)
		if err != nil {
			return "", err
		}
		if n.Digest() == "" {
			n = reference.TagOrLatest(n)
		}
		rec, err := s.Import(ctx, n.String(), in.img)
		return rec.Name, err
	case Docker:
		t, err := s.Registry.Push(ctx, dst.Name, in.img, max(opts.Jobs, 3), nil)
		return t.String(), err
	case OCI:
		return dst.String(), toLayout(ctx, dst.Path, dst.Name, in.img)
	case OCIArchive:
		dir, err := s.tempDir()
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		if err := toLayout(ctx, dir, dst.Name, in.img); err != nil {
			return "", err
		}
		return dst.String(), tarLayout(ctx, dir, dst.Path)
	case DockerArchive:
		ref := dst.Name
		if ref == "" {
			ref = in.name
		}
		return dst.String(), s.writeDockerArchive(dst.Path, []namedImage{{ref, in.img}})
	}
	return "", fmt.Errorf("transport %q: %w", dst.Transport, errdefs.ErrInvalidArgument)
}

type namedImage struct {
	name string
	img  gv1.Image
}

// writeDockerArchive writes images (with their names as RepoTags) as a
// `docker save` archive, atomically.
func (s *Service) writeDockerArchive(file string, imgs []namedImage) error {
	refs := map[name.Reference]gv1.Image{}
	for _, ni := range imgs {
		var ref name.Reference
		if ni.name != "" {
			n, err := reference.ParseNormalized(ni.name)
			if err == nil && n.Tag() != "" {
				ref, err = name.NewTag(n.Familiar())
			}
			if err != nil {
				return fmt.Errorf("docker-archive:%s: %s: %v: %w", file, ni.name, err, errdefs.ErrInvalidArgument)
			}
		}
		if ref == nil {
			h, err := ni.img.Digest()
			if err != nil {
				return err
			}
			if ref, err = name.NewDigest("unnamed@" + h.String()); err != nil {
				return err
			}
		}
		refs[ref] = ni.img
	}
	return fsutil.WriteAtomic(file, 0o644, func(w io.Writer) error {
		if err := tarball.MultiRefWrite(refs, w); err != nil {
			return fmt.Errorf("docker-archive:%s: %w", file, err)
		}
		return nil
	})
}

func hostPlatform(p *gv1.Platform) gv1.Platform {
	if p != nil {
		return *p
	}
	return registry.HostPlatform()
}

// openIndex opens the index loc names, for copy --all; nil (and no error)
// when loc names a single image.
func (s *Service) openIndex(ctx context.Context, loc Location) (gv1.ImageIndex, func(), error) {
	none := func() {}
	fromLayout := func(dir string) (gv1.ImageIndex, error) {
		idx, im, err := readLayout(dir)
		if err != nil {
			return nil, err
		}
		for _, d := range im.Manifests {
			if (loc.Name == "" && len(im.Manifests) == 1 || d.Annotations[refNameAnnotation] == loc.Name) && d.MediaType.IsIndex() {
				return idx.ImageIndex(d.Digest)
			}
		}
		return nil, nil
	}
	switch loc.Transport {
	case Docker:
		r, err := s.Registry.Resolve(ctx, loc.Name, nil)
		if err != nil || !r.IsIndex() {
			return nil, none, err
		}
		// Sizes only: a registry or a layout destination checks digests.
		idx, err := newBlobIndex(ctx, r.Raw(), r.Descriptor.MediaType,
			func(ctx context.Context, d gv1.Descriptor) ([]byte, gv1.Descriptor, error) {
				return s.Registry.ManifestAt(ctx, r, d)
			},
			func(ctx context.Context, d gv1.Descriptor) (io.ReadCloser, error) {
				return s.Registry.BlobFrom(ctx, r, d, 0)
			})
		return idx, none, err
	case OCI:
		idx, err := fromLayout(loc.Path)
		return idx, none, err
	case OCIArchive:
		dir, err := s.tempDir()
		if err != nil {
			return nil, none, err
		}
		done := func() { os.RemoveAll(dir) }
		if err := untarLayout(ctx, loc.Path, dir); err != nil {
			return nil, done, err
		}
		idx, err := fromLayout(dir)
		return idx, done, err
	}
	return nil, none, nil
}

// copyAll copies every platform of the index src names; a single image is
// copied as Copy does.
func (s *Service) copyAll(ctx context.Context, src, dst Location, opts CopyOptions) (string, error) {
	idx, done, err := s.openIndex(ctx, src)
	defer done()
	if err != nil {
		return "", err
	}
	if idx == nil {
		opts.All = false
		return s.Copy(ctx, src, dst, opts)
	}
	switch dst.Transport {
	case Docker:
		t, err := s.Registry.PushIndex(ctx, dst.Name, idx, max(opts.Jobs, 3))
		return t.String(), err
	case OCI:
		return dst.String(), indexToLayout(ctx, dst.Path, dst.Name, idx)
	case OCIArchive:
		dir, err := s.tempDir()
		if err != nil {
			return "", err
		}
		defer os.RemoveAll(dir)
		if err := indexToLayout(ctx, dir, dst.Name, idx); err != nil {
			return "", err
		}
		return dst.String(), tarLayout(ctx, dir, dst.Path)
	}
	return "", fmt.Errorf("copy --all to %s: the local store and docker archives keep one platform of an image; copy without --all (--platform chooses): %w",
		dst, errdefs.ErrInvalidArgument)
}

// indexToLayout writes every image of idx (as OCI manifests) and a new OCI
// index of them, tagged tag, into the layout at dir.
func indexToLayout(ctx context.Context, dir, tag string, idx gv1.ImageIndex) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	var adds []mutate.IndexAddendum
	for _, d := range im.Manifests {
		if d.MediaType.IsIndex() {
			return fmt.Errorf("oci:%s: an index inside the index (%s) is not copied: %w", dir, d.Digest, errdefs.ErrNotImplemented)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			return err
		}
		if img, err = asOCI(ctx, img); err != nil {
			return err
		}
		if err := writeLayoutBlobs(ctx, dir, img); err != nil {
			return fmt.Errorf("oci:%s: %w", dir, err)
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: gv1.Descriptor{Platform: d.Platform, Annotations: d.Annotations}})
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		if p, err = layout.Write(dir, empty.Index); err != nil {
			return fmt.Errorf("oci:%s: %w", dir, err)
		}
	}
	if tag == "" {
		tag = "latest"
	}
	out := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	ann := layout.WithAnnotations(map[string]string{refNameAnnotation: tag})
	if err := p.ReplaceIndex(out, match.Annotation(refNameAnnotation, tag), ann); err != nil {
		return fmt.Errorf("oci:%s:%s: %w", dir, tag, err)
	}
	return nil
}
