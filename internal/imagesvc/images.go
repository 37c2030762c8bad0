package imagesvc

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/reference"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Lookup finds the local images a user means by s, as docker and podman
// read it: an image ID (the config digest, full or a prefix of at least 3
// hex digits, with or without "sha256:") gives every name of that image;
// anything else is a reference, normalised (busybox is
// docker.io/library/busybox:latest), then tried as localhost/NAME, then
// as the one stored name whose repository ends in NAME ("quay.io/x/busybox"
// for "busybox"). It returns ErrNotFound when nothing matches.
func (s *Service) Lookup(ctx context.Context, q string) ([]metadata.Image, error) {
	all, err := s.Meta.ListImages(ctx, nil)
	if err != nil {
		return nil, err
	}
	if id, ok := imageIDPrefix(q); ok {
		var out []metadata.Image
		configs := map[digest.Digest]bool{}
		for _, img := range all {
			if strings.HasPrefix(img.Config.Encoded(), id) {
				out = append(out, img)
				configs[img.Config] = true
			}
		}
		if len(configs) > 1 {
			return nil, fmt.Errorf("image ID %s is ambiguous: %d images start with it: %w", q, len(configs), errdefs.ErrInvalidArgument)
		}
		if len(out) > 0 {
			return out, nil
		}
		if _, err := reference.ParseNormalized(q); err != nil {
			return nil, fmt.Errorf("image %s: %w", q, errdefs.ErrNotFound)
		}
	}
	n, err := reference.ParseNormalized(q)
	if err != nil {
		return nil, err
	}
	if n.Tag() == "" && n.Digest() == "" {
		n = reference.TagOrLatest(n)
	}
	byName := map[string]metadata.Image{}
	for _, img := range all {
		byName[img.Name] = img
	}
	if img, ok := byName[n.String()]; ok {
		return []metadata.Image{img}, nil
	}
	if n.Digest() != "" {
		// repo@digest names the manifest of any stored tag of repo.
		for _, img := range all {
			if img.Target.Digest == n.Digest() && sameRepo(img.Name, n) {
				return []metadata.Image{img}, nil
			}
		}
	}
	if !n.IsShort() {
		return nil, fmt.Errorf("image %s: %w", n, errdefs.ErrNotFound)
	}
	// A short name: localhost first (what `berth tag x y` makes), then a
	// unique name elsewhere whose path ends with it.
	if l, err := reference.ParseNormalized("localhost/" + q); err == nil {
		if img, ok := byName[reference.TagOrLatest(l).String()]; ok {
			return []metadata.Image{img}, nil
		}
	}
	short, _ := strings.CutPrefix(n.Path(), "library/")
	var matches []metadata.Image
	for _, img := range all {
		m, err := reference.Parse(img.Name)
		if err != nil || m.Tag() != n.Tag() || m.Digest() != n.Digest() {
			continue
		}
		if m.Path() == short || strings.HasSuffix(m.Path(), "/"+short) {
			matches = append(matches, img)
		}
	}
	switch len(matches) {
	case 0:
		return nil, fmt.Errorf("image %s: %w", q, errdefs.ErrNotFound)
	case 1:
		return matches, nil
	}
	names := make([]string, len(matches))
	for i, m := range matches {
		names[i] = m.Name
	}
	return nil, fmt.Errorf("image %s is ambiguous (%s): give the full name: %w", q, strings.Join(names, ", "), errdefs.ErrInvalidArgument)
}

func sameRepo(name string, n reference.Named) bool {
	m, err := reference.Parse(name)
	return err == nil && m.Name() == n.Name()
}

// imageIDPrefix reports whether s can be an image ID and returns its hex.
func imageIDPrefix(s string) (string, bool) {
	s, _ = strings.CutPrefix(s, "sha256:")
	if len(s) < 3 || len(s) > 64 {
		return "", false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return "", false
		}
	}
	return s, true
}

// LookupOne is Lookup for commands that act on one image.
func (s *Service) LookupOne(ctx context.Context, q string) (metadata.Image, error) {
	imgs, err := s.Lookup(ctx, q)
	if err != nil {
		return metadata.Image{}, err
	}
	return imgs[0], nil // names of one image ID all point at the same image
}

// Tag gives the image src another name, in one transaction; an existing
// name moves.
func (s *Service) Tag(ctx context.Context, src, name string) (metadata.Image, error) {
	img, err := s.LookupOne(ctx, src)
	if err != nil {
		return metadata.Image{}, err
	}
	n, err := reference.ParseNormalized(name)
	if err != nil {
		return metadata.Image{}, err
	}
	if n.Digest() != "" {
		return metadata.Image{}, fmt.Errorf("tag %s: a name with a digest cannot be given: %w", name, errdefs.ErrInvalidArgument)
	}
	if n.IsShort() && !strings.Contains(name, "/") {
		// podman's rule: a one-word name is local.
		if n, err = reference.ParseNormalized("localhost/" + name); err != nil {
			return metadata.Image{}, err
		}
	}
	img.Name = reference.TagOrLatest(n).String()
	img.CreatedAt, img.UpdatedAt = time.Time{}, time.Time{}
	out, err := s.Meta.CreateImage(ctx, img)
	if errdefs.IsAlreadyExists(err) {
		out, err = s.Meta.UpdateImage(ctx, img)
	}
	return out, err
}

// RemoveOptions control Remove.
type RemoveOptions struct {
	// Force removes every name of an image ID, and an image that a
	// container's snapshot is based on (the container keeps its layers).
	Force bool
}

// Remove deletes the names q means (see Lookup) and returns them. An image
// ID with several names, or an image a container uses, needs Force. The
// layers and blobs go with the next GC, which callers run after.
func (s *Service) Remove(ctx context.Context, q string, opts RemoveOptions) ([]string, error) {
	imgs, err := s.Lookup(ctx, q)
	if err != nil {
		return nil, err
	}
	if len(imgs) > 1 && !opts.Force {
		names := make([]string, len(imgs))
		for i, img := range imgs {
			names[i] = img.Name
		}
		return nil, fmt.Errorf("image %s has %d names (%s): remove them by name, or use --force: %w",
			q, len(imgs), strings.Join(names, ", "), errdefs.ErrFailedPrecond)
	}
	if !opts.Force {
		if err := s.checkUnused(ctx, imgs); err != nil {
			return nil, err
		}
	}
	var removed []string
	for _, img := range imgs {
		if err := s.Meta.DeleteImage(ctx, img.Name); err != nil && !errdefs.IsNotFound(err) {
			return removed, err
		}
		removed = append(removed, img.Name)
	}
	return removed, nil
}

// checkUnused refuses to remove the last name of an image whose top layer
// is the parent of an active or view snapshot: a container's root file
// system.
func (s *Service) checkUnused(ctx context.Context, imgs []metadata.Image) error {
	gone := map[string]bool{}
	for _, img := range imgs {
		gone[img.Name] = true
	}
	others, err := s.Meta.ListImages(ctx, func(img metadata.Image) bool { return !gone[img.Name] })
	if err != nil {
		return err
	}
	for _, img := range imgs {
		if img.SnapshotKey == "" || slices.ContainsFunc(others, func(o metadata.Image) bool { return o.SnapshotKey == img.SnapshotKey }) {
			continue
		}
		var user string
		err := s.Meta.WalkSnapshots(ctx, func(sn metadata.Snapshot) error {
			if sn.Kind != metadata.KindCommitted && sn.Parent == img.SnapshotKey && user == "" {
				user = sn.Key
				if c := sn.Labels["berth.container"]; c != "" {
					user = "container " + c
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		if user != "" {
			return fmt.Errorf("image %s is in use by %s: remove that first, or use --force: %w", img.Name, user, errdefs.ErrFailedPrecond)
		}
	}
	return nil
}

// Mount mounts a read-only view of a stored image at target (made if
// missing) and returns the view's key; Unmount undoes it. While mounted,
// the image's layers are in use and `rmi` refuses it.
func (s *Service) Mount(ctx context.Context, q, target string) (string, error) {
	img, err := s.LookupOne(ctx, q)
	if err != nil {
		return "", err
	}
	if img.SnapshotKey == "" {
		return "", fmt.Errorf("image %s has no layers to mount: %w", img.Name, errdefs.ErrFailedPrecond)
	}
	key := "mount:" + target
	ms, err := s.Snapshots.View(ctx, key, img.SnapshotKey)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		s.Snapshots.Remove(ctx, key)
		return "", err
	}
	for _, m := range ms {
		if err := m.Mount(target); err != nil {
			s.Snapshots.Remove(ctx, key)
			return "", err
		}
	}
	return key, nil
}

// Unmount unmounts target, mounted by Mount, and drops its view.
func (s *Service) Unmount(ctx context.Context, target string) error {
	// EINVAL: not mounted; ENOENT: never made (a crash before Mount).
	if err := unix.Unmount(target, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return s.Snapshots.Remove(ctx, "mount:"+target)
}
