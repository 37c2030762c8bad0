package cri

import (
	"context"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/imagesvc"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/registry"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/opencontainers/go-digest"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// imageID is the CRI's ID of an image: its config digest.
func imageID(img metadata.Image) string { return img.Config.String() }

// criImage describes the image whose names are imgs (one config).
func (s *Server) criImage(ctx context.Context, imgs []metadata.Image) (*runtime.Image, error) {
	info, err := s.eng.Images.Inspect(ctx, imgs[0])
	if err != nil {
		return nil, err
	}
	out := &runtime.Image{Id: imageID(imgs[0]), Size: uint64(info.Size), Spec: &runtime.ImageSpec{Image: imageID(imgs[0])}}
	digests := map[string]bool{}
	for _, img := range imgs {
		repo, _, isDigest := strings.Cut(img.Name, "@")
		if !isDigest {
			out.RepoTags = append(out.RepoTags, img.Name)
			if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
				repo = repo[:i]
			}
		}
		if d := repo + "@" + img.Target.Digest.String(); !digests[d] {
			digests[d] = true
			out.RepoDigests = append(out.RepoDigests, d)
		}
	}
	user, _, _ := strings.Cut(info.Config.User, ":")
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		out.Uid = &runtime.Int64Value{Value: uid}
	} else {
		out.Username = user
	}
	return out, nil
}

// byConfig groups image names by image (config digest), in list order.
func byConfig(imgs []metadata.Image) [][]metadata.Image {
	var order []digest.Digest
	groups := map[digest.Digest][]metadata.Image{}
	for _, img := range imgs {
		if _, ok := groups[img.Config]; !ok {
			order = append(order, img.Config)
		}
		groups[img.Config] = append(groups[img.Config], img)
	}
	out := make([][]metadata.Image, len(order))
	for i, d := range order {
		out[i] = groups[d]
	}
	return out
}

// lookupImage finds every name of the image spec names (an ID, a name or
// name@digest); nil when there is none.
func (s *Server) lookupImage(ctx context.Context, spec *runtime.ImageSpec) ([]metadata.Image, error) {
	if spec == nil || spec.Image == "" {
		return nil, fmt.Errorf("image: no name or ID: %w", errdefs.ErrInvalidArgument)
	}
	imgs, err := s.eng.Images.Lookup(ctx, spec.Image)
	if errdefs.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	all, err := s.eng.Meta.ListImages(ctx, func(i metadata.Image) bool { return i.Config == imgs[0].Config })
	if err != nil {
		return nil, err
	}
	return all, nil
}

// ListImages lists images, one entry per image ID.
func (s *Server) ListImages(ctx context.Context, req *runtime.ListImagesRequest) (*runtime.ListImagesResponse, error) {
	var imgs []metadata.Image
	var err error
	if f := req.GetFilter().GetImage(); f != nil && f.Image != "" {
		imgs, err = s.lookupImage(ctx, f)
	} else {
		imgs, err = s.eng.Meta.ListImages(ctx, nil)
	}
	if err != nil {
		return nil, err
	}
	resp := &runtime.ListImagesResponse{}
	for _, group := range byConfig(imgs) {
		img, err := s.criImage(ctx, group)
		if err != nil {
			if errdefs.IsNotFound(err) {
				continue // removed meanwhile
			}
			return nil, err
		}
		resp.Images = append(resp.Images, img)
	}
	return resp, nil
}

// ImageStatus describes one image; an unknown one is no error, just none.
func (s *Server) ImageStatus(ctx context.Context, req *runtime.ImageStatusRequest) (*runtime.ImageStatusResponse, error) {
	imgs, err := s.lookupImage(ctx, req.Image)
	if err != nil || len(imgs) == 0 {
		return &runtime.ImageStatusResponse{}, err
	}
	img, err := s.criImage(ctx, imgs)
	if err != nil {
		return nil, err
	}
	resp := &runtime.ImageStatusResponse{Image: img}
	if req.Verbose {
		if info, err := s.eng.Images.Inspect(ctx, imgs[0]); err == nil {
			resp.Info = map[string]string{"info": jsonString(info)}
		}
	}
	return resp, nil
}

// PullImage pulls through the store (registries.conf's mirrors apply),
// with the request's credentials when it has some.
func (s *Server) PullImage(ctx context.Context, req *runtime.PullImageRequest) (*runtime.PullImageResponse, error) {
	if req.Image == nil || req.Image.Image == "" {
		return nil, fmt.Errorf("pull: no image: %w", errdefs.ErrInvalidArgument)
	}
	if a := req.Auth; a != nil {
		cfg := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
		if a.Auth != "" && cfg.Username == "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			user, pass, ok := strings.Cut(string(raw), ":")
			if err != nil || !ok {
				return nil, fmt.Errorf("pull %s: auth is not base64 of user:password: %w", req.Image.Image, errdefs.ErrInvalidArgument)
			}
			cfg.Username, cfg.Password = user, pass
		}
		ctx = registry.WithCredentials(ctx, cfg)
	}
	img, err := s.eng.Images.Pull(ctx, req.Image.Image, nil)
	if err != nil {
		return nil, err
	}
	return &runtime.PullImageResponse{ImageRef: imageID(img)}, nil
}

// RemoveImage removes every name of the image; a missing one is no
// error (the kubelet retries removals). Containers keep their layers.
func (s *Server) RemoveImage(ctx context.Context, req *runtime.RemoveImageRequest) (*runtime.RemoveImageResponse, error) {
	imgs, err := s.lookupImage(ctx, req.Image)
	if err != nil || len(imgs) == 0 {
		return &runtime.RemoveImageResponse{}, err
	}
	for _, img := range imgs {
		if _, err := s.eng.Images.Remove(ctx, img.Name, imagesvc.RemoveOptions{Force: true}); err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	if _, err := s.eng.Images.GC(ctx); err != nil {
		return nil, err
	}
	return &runtime.RemoveImageResponse{}, nil
}

// ImageFsInfo is the store's use of its file system.
func (s *Server) ImageFsInfo(ctx context.Context, req *runtime.ImageFsInfoRequest) (*runtime.ImageFsInfoResponse, error) {
	u, err := s.eng.Images.DiskUsage(ctx)
	if err != nil {
		return nil, err
	}
	fs := &runtime.FilesystemUsage{Timestamp: time.Now().UnixNano(), FsId: &runtime.FilesystemIdentifier{Mountpoint: s.eng.Images.Root},
		UsedBytes: &runtime.UInt64Value{Value: uint64(u.BlobBytes + u.LayerBytes)}, InodesUsed: &runtime.UInt64Value{Value: inodesUsed(s.eng.Images.Root)}}
	return &runtime.ImageFsInfoResponse{ImageFilesystems: []*runtime.FilesystemUsage{fs}, ContainerFilesystems: []*runtime.FilesystemUsage{fs}}, nil
}

// inodesUsed is the file system's count (the store has no count of its own).
func inodesUsed(dir string) uint64 {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return 0
	}
	return st.Files - st.Ffree
}
