package imagesvc

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/reference"
	"github.com/google/go-containerregistry/pkg/name"
	gv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Archive formats of save and load, podman's names.
const (
	FormatDockerArchive = "docker-archive"
	FormatOCIArchive    = "oci-archive"
	FormatOCIDir        = "oci-dir"
)

// containerdName is the annotation containerd and berth put the full image
// name in; org.opencontainers.image.ref.name holds the tag.
const containerdName = "io.containerd.image.name"

// Save writes the local images qs to out: a docker-archive (every name of
// each image in its RepoTags), an oci-archive or an oci-dir (each image's
// full name in io.containerd.image.name, its tag in the ref.name
// annotation). A file is written atomically.
func (s *Service) Save(ctx context.Context, qs []string, format, out string) error {
	var imgs []namedImage
	for _, q := range qs {
		rec, err := s.LookupOne(ctx, q)
		if err != nil {
			return err
		}
		img, done, err := s.localImage(ctx, rec, nil)
		defer done()
		if err != nil {
			return err
		}
		nm := rec.Name
		if n, err := reference.Parse(q); err == nil && n.Tag() == "" && n.Digest() == "" {
			// Saved by ID: podman keeps no name then.
			if _, isID := imageIDPrefix(q); isID {
				nm = ""
			}
		}
		imgs = append(imgs, namedImage{nm, img})
	}
	switch format {
	case FormatDockerArchive, "":
		return s.writeDockerArchive(out, imgs)
	case FormatOCIDir:
		return saveLayout(ctx, out, imgs)
	case FormatOCIArchive:
		dir, err := s.tempDir()
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := saveLayout(ctx, dir, imgs); err != nil {
			return err
		}
		return tarLayout(ctx, dir, out)
	}
	return fmt.Errorf("format %q: docker-archive, oci-archive or oci-dir: %w", format, errdefs.ErrInvalidArgument)
}

func saveLayout(ctx context.Context, dir string, imgs []namedImage) error {
	for _, ni := range imgs {
		img, err := asOCI(ctx, ni.img)
		if err != nil {
			return fmt.Errorf("oci:%s: %w", dir, err)
		}
		tag := "latest"
		ann := map[string]string{}
		if n, err := reference.Parse(ni.name); err == nil {
			ann[containerdName] = n.String()
			if n.Tag() != "" {
				tag = n.Tag()
			}
		}
		if len(imgs) > 1 {
			tag = ann[containerdName] // tags of several images would clash
		}
		p, err := layout.FromPath(dir)
		if err != nil {
			if p, err = layout.Write(dir, empty.Index); err != nil {
				return fmt.Errorf("oci:%s: %w", dir, err)
			}
		}
		ann[refNameAnnotation] = tag
		if err := p.ReplaceImage(img, matchRefName(tag), layout.WithAnnotations(ann)); err != nil {
			return fmt.Errorf("oci:%s: %w", dir, err)
		}
	}
	return nil
}

func matchRefName(tag string) func(gv1.Descriptor) bool {
	return func(d gv1.Descriptor) bool { return d.Annotations[refNameAnnotation] == tag }
}

// Load imports every image of a docker-archive or oci-archive file (the
// format is read from the file) and returns the names it stored. An image
// with no name is stored under its ID.
func (s *Service) Load(ctx context.Context, file string) ([]string, error) {
	format, err := archiveFormat(file)
	if err != nil {
		return nil, err
	}
	var loaded []string
	store := func(nm string, img gv1.Image) error {
		if nm == "" {
			cfg, err := img.ConfigName()
			if err != nil {
				return err
			}
			nm = cfg.String()
		} else if n, err := reference.ParseNormalized(nm); err != nil {
			return err
		} else {
			nm = reference.TagOrLatest(n).String()
		}
		rec, err := s.Import(ctx, nm, img)
		if err != nil {
			return err
		}
		loaded = append(loaded, rec.Name)
		return nil
	}
	if format == FormatDockerArchive {
		m, err := tarball.LoadManifest(fileOpener(file))
		if err != nil {
			return nil, fmt.Errorf("docker-archive:%s: %w", file, archiveError(err))
		}
		for _, d := range m {
			tags := d.RepoTags
			if len(tags) == 0 {
				tags = []string{""}
			}
			for _, t := range tags {
				var tag *name.Tag
				if t != "" {
					nt, err := name.NewTag(t)
					if err != nil {
						return loaded, fmt.Errorf("docker-archive:%s: RepoTag %q: %v: %w", file, t, err, errdefs.ErrInvalidArgument)
					}
					tag = &nt
				} else if len(m) > 1 {
					return loaded, fmt.Errorf("docker-archive:%s: an image without a name among %d: %w", file, len(m), errdefs.ErrNotImplemented)
				}
				img, err := tarball.ImageFromPath(file, tag)
				if err != nil {
					return loaded, fmt.Errorf("docker-archive:%s: %w", file, archiveError(err))
				}
				if err := store(t, img); err != nil {
					return loaded, err
				}
			}
		}
		return loaded, nil
	}
	dir, err := s.tempDir()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if err := untarLayout(ctx, file, dir); err != nil {
		return nil, err
	}
	idx, im, err := readLayout(dir)
	if err != nil {
		return nil, fmt.Errorf("oci-archive:%s: %w", file, err)
	}
	for _, d := range im.Manifests {
		img, err := layoutImage(idx, d, nil)
		if err != nil {
			return loaded, fmt.Errorf("oci-archive:%s: %w", file, err)
		}
		nm := layoutName(d)
		if nm == "" && d.Annotations[refNameAnnotation] != "" {
			// A bare tag names a local image, as podman loads it.
			if n, err := reference.ParseNormalized("localhost/" + d.Annotations[refNameAnnotation]); err == nil {
				nm = n.String()
			}
		}
		if err := store(nm, img); err != nil {
			return loaded, err
		}
	}
	return loaded, nil
}

// archiveFormat tells a docker-archive (manifest.json) from an OCI layout
// tar (index.json) by its entries.
func archiveFormat(file string) (string, error) {
	f, err := os.Open(file)
	if err != nil {
		return "", fmt.Errorf("load %s: %w", file, archiveError(err))
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("load %s: not a tar archive: %v: %w", file, err, errdefs.ErrInvalidArgument)
		}
		switch h.Name {
		case "manifest.json", "./manifest.json":
			return FormatDockerArchive, nil
		case "index.json", "./index.json":
			return FormatOCIArchive, nil
		}
	}
	return "", fmt.Errorf("load %s: neither a docker-archive (manifest.json) nor an oci-archive (index.json): %w", file, errdefs.ErrInvalidArgument)
}
