package imagesvc

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// RemoteInfo is `berth image inspect docker://REF`, in skopeo's shape.
type RemoteInfo struct {
	Name          string            `json:"Name"`
	Digest        string            `json:"Digest"`
	RepoTags      []string          `json:"RepoTags"`
	Created       *time.Time        `json:"Created,omitempty"`
	DockerVersion string            `json:"DockerVersion"`
	Labels        map[string]string `json:"Labels"`
	Architecture  string            `json:"Architecture"`
	Os            string            `json:"Os"`
	Variant       string            `json:"Variant,omitempty"`
	Layers        []string          `json:"Layers"`
	LayersData    []LayerData       `json:"LayersData"`
	Env           []string          `json:"Env"`
}

// LayerData describes one layer of a remote image.
type LayerData struct {
	MIMEType    string            `json:"MIMEType"`
	Digest      string            `json:"Digest"`
	Size        int64             `json:"Size"`
	Annotations map[string]string `json:"Annotations"`
}

// Remote is an image read from a registry without pulling it.
type Remote struct {
	Info RemoteInfo
	// Raw is what the reference names: an index or a manifest.
	Raw []byte
	// Manifest and Config are the chosen platform's.
	Manifest, Config []byte
}

// InspectRemote reads ref's manifest (for platform, nil: the host's) and
// config from its registry, and its repository's tags when tags is set.
func (s *Service) InspectRemote(ctx context.Context, ref string, platform *v1.Platform, tags bool) (*Remote, error) {
	r, img, err := s.remoteImage(ctx, ref, gPlatform(platform), false)
	if err != nil {
		return nil, err
	}
	raw, _, err := manifestOf(img)
	if err != nil {
		return nil, err
	}
	var man v1.Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		return nil, fmt.Errorf("manifest of %s: %v: %w", r.Ref, err, errdefs.ErrInvalidArgument)
	}
	cfgRaw, err := img.RawConfigFile() // digest-checked by the registry client
	if err != nil {
		return nil, fmt.Errorf("config of %s: %w", r.Ref, err)
	}
	var cfg v1.Image
	if err := json.Unmarshal(cfgRaw, &cfg); err != nil {
		return nil, fmt.Errorf("config of %s: %v: %w", r.Ref, err, errdefs.ErrInvalidArgument)
	}
	out := &Remote{Raw: r.Raw(), Manifest: raw, Config: cfgRaw}
	out.Info = RemoteInfo{
		Name: r.Ref.NameOnly().String(), Digest: r.Descriptor.Digest.String(), RepoTags: []string{},
		Created: cfg.Created, Labels: cfg.Config.Labels, Architecture: cfg.Architecture, Os: cfg.OS,
		Variant: cfg.Variant, Env: cfg.Config.Env, Layers: []string{}, LayersData: []LayerData{},
	}
	var docker struct {
		DockerVersion string `json:"docker_version"`
	}
	json.Unmarshal(cfgRaw, &docker)
	out.Info.DockerVersion = docker.DockerVersion
	for _, l := range man.Layers {
		out.Info.Layers = append(out.Info.Layers, l.Digest.String())
		out.Info.LayersData = append(out.Info.LayersData, LayerData{MIMEType: l.MediaType, Digest: l.Digest.String(), Size: l.Size, Annotations: l.Annotations})
	}
	if tags {
		t, err := s.Registry.Tags(ctx, r.Ref.NameOnly().String())
		if err != nil {
			return nil, err
		}
		out.Info.RepoTags = t
	}
	return out, nil
}
