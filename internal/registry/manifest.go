package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"runtime"
	"slices"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/reference"
	"github.com/berthdev/berth/internal/registries"
)

// allManifestTypes is what we ask for by tag: anything we can pull.
var allManifestTypes = []string{
	string(types.OCIImageIndex), string(types.DockerManifestList),
	string(types.OCIManifestSchema1), string(types.DockerManifestSchema2),
}

var imageManifestTypes = []string{string(types.OCIManifestSchema1), string(types.DockerManifestSchema2)}

// checkMediaType refuses what berth cannot pull, with the reason.
func checkMediaType(what string, mt types.MediaType, accept []string) error {
	switch mt {
	case types.DockerManifestSchema1, types.DockerManifestSchema1Signed:
		return fmt.Errorf("%s: Docker schema 1 manifest (%s) is deprecated and not supported; push the image again with a current tool: %w", what, mt, errdefs.ErrNotImplemented)
	}
	if !slices.Contains(accept, string(mt)) {
		if mt == "" {
			return fmt.Errorf("%s: the registry gave no manifest media type: %w", what, errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("%s: unsupported manifest media type %q (want one of %s): %w", what, mt, strings.Join(accept, ", "), errdefs.ErrInvalidArgument)
	}
	return nil
}

// fetchManifest gets ref (a tag or digest) from ep, capped, type-checked and
// digest-verified: against ref when it is a digest, else against the digest
// the registry announced, if it did.
func (c *Client) fetchManifest(ctx context.Context, ep registries.Endpoint, ref string, accept []string) ([]byte, v1.Descriptor, error) {
	what := "manifest " + ep.Ref.Name() + refSep(ref) + ref
	fe, err := c.fetcher.Manifest(ctx, repoOf(ep), ref, accept)
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	defer fe.Body.Close()
	if fe.Size > c.manifestLimit {
		return nil, v1.Descriptor{}, tooBig(what, fe.Size, c.manifestLimit)
	}
	raw, err := io.ReadAll(io.LimitReader(fe.Body, c.manifestLimit+1))
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("%s from %s: %v: %w", what, ep.Ref.Domain(), err, errdefs.ErrUnavailable)
	}
	if int64(len(raw)) > c.manifestLimit {
		return nil, v1.Descriptor{}, tooBig(what, -1, c.manifestLimit)
	}
	got := digest.FromBytes(raw)
	for _, want := range []digest.Digest{digest.Digest(ref), fe.Digest} {
		if want.Validate() == nil && want.Algorithm() == digest.SHA256 && want != got {
			return nil, v1.Descriptor{}, fmt.Errorf("%s from %s: content has digest %s, want %s: %w", what, ep.Ref.Domain(), got, want, errdefs.ErrInvalidArgument)
		}
	}
	mt := mediaType(fe.MediaType, raw)
	if err := checkMediaType(what, mt, accept); err != nil {
		return nil, v1.Descriptor{}, err
	}
	h, _ := v1.NewHash(got.String())
	return raw, v1.Descriptor{MediaType: mt, Size: int64(len(raw)), Digest: h}, nil
}

func tooBig(what string, size, limit int64) error {
	if size > 0 {
		return fmt.Errorf("%s is %d bytes, more than the %d allowed for a manifest: %w", what, size, limit, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("%s is more than the %d bytes allowed for a manifest: %w", what, limit, errdefs.ErrInvalidArgument)
}

func refSep(ref string) string {
	if strings.Contains(ref, ":") {
		return "@"
	}
	return ":"
}

// mediaType is the Content-Type, or the document's own mediaType field when
// the registry sent none or a generic one (some do for OCI content).
func mediaType(header string, raw []byte) types.MediaType {
	if mt, _, err := mime.ParseMediaType(header); err == nil && mt != "application/json" && mt != "text/plain" && mt != "application/octet-stream" {
		return types.MediaType(mt)
	}
	var doc struct {
		MediaType     string `json:"mediaType"`
		SchemaVersion int    `json:"schemaVersion"`
	}
	if json.Unmarshal(raw, &doc) == nil {
		if doc.MediaType == "" && doc.SchemaVersion == 1 {
			return types.DockerManifestSchema1
		}
		return types.MediaType(doc.MediaType)
	}
	return ""
}

// HostPlatform is the platform this binary runs on.
func HostPlatform() v1.Platform {
	p := v1.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	if runtime.GOARCH == "arm64" {
		p.Variant = "v8"
	}
	return p
}

// choosePlatform picks want's manifest from an index.
func choosePlatform(ref reference.Named, raw []byte, want v1.Platform) (v1.Descriptor, error) {
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("index %s: malformed: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	var have []string
	for _, m := range idx.Manifests {
		if m.Platform == nil || !slices.Contains(imageManifestTypes, string(m.MediaType)) {
			continue // attestations, nested indexes, unknown kinds
		}
		if platformMatches(*m.Platform, want) {
			return m, nil
		}
		if s := m.Platform.String(); !slices.Contains(have, s) && m.Platform.OS != "unknown" {
			have = append(have, s)
		}
	}
	return v1.Descriptor{}, fmt.Errorf("image %s has no manifest for platform %s; available: %s: %w",
		ref, want.String(), orNone(have), errdefs.ErrNotFound)
}

// platformMatches compares what matters for running: OS, architecture, and
// the variant when one is asked for (arm64 without a variant is v8).
func platformMatches(have, want v1.Platform) bool {
	if have.OS != want.OS || have.Architecture != want.Architecture {
		return false
	}
	if want.Variant == "" {
		return true
	}
	hv := have.Variant
	if hv == "" && have.Architecture == "arm64" {
		hv = "v8"
	}
	return hv == want.Variant
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// Manifest returns r's image manifest (the platform's one for an index),
// verified against r.Manifest.
func (c *Client) Manifest(ctx context.Context, r *Resolved) ([]byte, v1.Descriptor, error) {
	if r.Manifest.Digest == r.Descriptor.Digest {
		return r.Raw(), r.Manifest, nil
	}
	if r.Manifest.Size > c.manifestLimit {
		return nil, v1.Descriptor{}, tooBig("manifest "+r.Ref.Name()+"@"+r.Manifest.Digest.String(), r.Manifest.Size, c.manifestLimit)
	}
	raw, desc, err := c.fetchManifest(ctx, r.Endpoint, r.Manifest.Digest.String(), imageManifestTypes)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("image %s: %w", r.Ref, err)
	}
	if desc.Size != r.Manifest.Size && r.Manifest.Size > 0 {
		return nil, v1.Descriptor{}, fmt.Errorf("image %s: manifest %s is %d bytes, the index says %d: %w", r.Ref, desc.Digest, desc.Size, r.Manifest.Size, errdefs.ErrInvalidArgument)
	}
	out := r.Manifest
	out.MediaType = desc.MediaType
	return raw, out, nil
}

// ManifestAt fetches the manifest or index d that r's index names (a
// child of Descriptor), from the endpoint that answered, verified against
// d's digest and size.
func (c *Client) ManifestAt(ctx context.Context, r *Resolved, d v1.Descriptor) ([]byte, v1.Descriptor, error) {
	if d.Size > c.manifestLimit {
		return nil, v1.Descriptor{}, tooBig("manifest "+r.Ref.Name()+"@"+d.Digest.String(), d.Size, c.manifestLimit)
	}
	raw, desc, err := c.fetchManifest(ctx, r.Endpoint, d.Digest.String(), allManifestTypes)
	if err != nil {
		return nil, v1.Descriptor{}, fmt.Errorf("image %s: %w", r.Ref, err)
	}
	if d.Size > 0 && desc.Size != d.Size {
		return nil, v1.Descriptor{}, fmt.Errorf("image %s: manifest %s is %d bytes, the index says %d: %w", r.Ref, desc.Digest, desc.Size, d.Size, errdefs.ErrInvalidArgument)
	}
	return raw, desc, nil
}
