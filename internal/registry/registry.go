// Package registry is berth's distribution client: it turns a reference the
// user typed into an endpoint, a manifest chosen for a platform, and
// digest-verified streams of blobs, following registries.conf (short names,
// aliases, mirrors first, insecure registries).
//
// What is berth's own lives here: the order endpoints are tried in, which
// failures fall through to the next one, the platform choice, the size cap,
// the media types accepted and every digest check. Moving bytes is a
// Fetcher's job.
package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/reference"
	"github.com/berthdev/berth/internal/registries"
)

// ErrUnauthorized is a registry refusing us (HTTP 401 or 403). It is a
// failed precondition: logging in, not retrying, is what helps.
var ErrUnauthorized = fmt.Errorf("authentication: %w", errdefs.ErrFailedPrecond)

// Version is reported in the User-Agent; cmd/ sets it at link time.
var Version = "dev"

// DefaultManifestLimit caps a manifest or index read. Real ones are a few
// KiB; the cap keeps a hostile registry from making us buffer gigabytes.
const DefaultManifestLimit = 4 << 20

// Client resolves references and fetches manifests and blobs.
type Client struct {
	cfg           *registries.Config
	fetcher       Fetcher
	transport     http.RoundTripper
	userAgent     string
	retries       int
	manifestLimit int64
}

// Option configures a Client.
type Option func(*Client)

// WithUserAgent replaces the default "berth/<Version>".
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// WithTransport sets the HTTP transport (tests use it to reach httptest servers).
func WithTransport(rt http.RoundTripper) Option { return func(c *Client) { c.transport = rt } }

// WithRetries sets how many times a request that got no answer or a 5xx is
// retried (default 2).
func WithRetries(n int) Option { return func(c *Client) { c.retries = max(n, 0) } }

// WithManifestLimit changes DefaultManifestLimit.
func WithManifestLimit(n int64) Option { return func(c *Client) { c.manifestLimit = n } }

// WithFetcher replaces the protocol layer (the other transport options are
// then unused).
func WithFetcher(f Fetcher) Option { return func(c *Client) { c.fetcher = f } }

// New returns a Client that follows cfg (registries.Default() when nil).
func New(cfg *registries.Config, opts ...Option) *Client {
	if cfg == nil {
		cfg = registries.Default()
	}
	c := &Client{cfg: cfg, userAgent: "berth/" + Version, retries: 2, manifestLimit: DefaultManifestLimit}
	for _, o := range opts {
		o(c)
	}
	if c.fetcher == nil {
		c.fetcher = newHTTPFetcher(c.transport, c.userAgent, c.retries)
	}
	return c
}

// Resolved is a reference pinned to an endpoint and a manifest.
type Resolved struct {
	// Ref is the canonical reference, as the user would name it (never the
	// mirror's name), with the tag or digest asked for.
	Ref reference.Named
	// Endpoint is where the image was found (a mirror or the registry).
	Endpoint registries.Endpoint
	// Descriptor is what Ref names: an index or a manifest.
	Descriptor v1.Descriptor
	// Manifest is the image manifest to pull: the platform's entry of an
	// index, or Descriptor itself.
	Manifest v1.Descriptor

	raw      []byte // Descriptor's content, verified
	platform v1.Platform
}

// IsIndex reports whether Ref names an index or manifest list.
func (r *Resolved) IsIndex() bool { return r.Descriptor.MediaType.IsIndex() }

// Raw returns the verified content of Descriptor (the index, or the manifest).
func (r *Resolved) Raw() []byte { return append([]byte(nil), r.raw...) }

// Resolve finds ref: each candidate registries.conf gives for it, each
// through its endpoints (mirrors first). Not found, unreachable and refused
// endpoints fall through to the next; anything else (a corrupt or
// unsupported manifest, a platform missing from an index) stops the search.
// platform nil means the host's.
func (c *Client) Resolve(ctx context.Context, ref string, platform *v1.Platform) (*Resolved, error) {
	want := HostPlatform()
	if platform != nil {
		want = *platform
	}
	return firstEndpoint(c, ref, "image "+ref, func(cand reference.Named, ep registries.Endpoint) (*Resolved, error) {
		return c.resolveAt(ctx, cand, ep, want)
	})
}

// firstEndpoint tries fn on each candidate registries.conf gives for ref,
// each through its endpoints in order, and returns the first success. Not
// found, unreachable and refused endpoints fall through; any other error
// stops the walk. what names the search in the error when all fail.
func firstEndpoint[T any](c *Client, ref, what string, fn func(reference.Named, registries.Endpoint) (T, error)) (T, error) {
	var zero T
	cands, err := c.cfg.Candidates(ref)
	if err != nil {
		return zero, err
	}
	var tried attempts
	for _, cand := range cands {
		eps, err := c.cfg.Endpoints(cand)
		if err != nil {
			return zero, err
		}
		for _, ep := range eps {
			v, err := fn(cand, ep)
			if err == nil {
				return v, nil
			}
			if !fallsThrough(err) {
				return zero, err
			}
			tried.add(ep, err)
		}
	}
	return zero, tried.err(what)
}

func (c *Client) resolveAt(ctx context.Context, cand reference.Named, ep registries.Endpoint, want v1.Platform) (*Resolved, error) {
	tagOrDigest := ep.Ref.Tag()
	if d := ep.Ref.Digest(); d != "" {
		tagOrDigest = d.String()
	}
	raw, desc, err := c.fetchManifest(ctx, ep, tagOrDigest, allManifestTypes)
	if err != nil {
		return nil, err
	}
	r := &Resolved{Ref: cand, Endpoint: ep, Descriptor: desc, Manifest: desc, raw: raw, platform: want}
	if desc.MediaType.IsIndex() {
		m, err := choosePlatform(cand, raw, want)
		if err != nil {
			return nil, err
		}
		r.Manifest = m
	}
	return r, nil
}

// fallsThrough: these mean "not here", so the next endpoint may have it.
func fallsThrough(err error) bool {
	return errdefs.IsNotFound(err) || errdefs.IsUnavailable(err) || errors.Is(err, ErrUnauthorized)
}

// attempts collects why each endpoint failed, for one error that says it all.
type attempts struct {
	msgs                  []string
	unauthorized, unavail bool
}

func (a *attempts) add(ep registries.Endpoint, err error) {
	where := ep.Ref.String()
	if ep.Mirror {
		where += " (mirror)"
	}
	a.msgs = append(a.msgs, where+": "+err.Error())
	a.unauthorized = a.unauthorized || errors.Is(err, ErrUnauthorized)
	a.unavail = a.unavail || errdefs.IsUnavailable(err)
}

// err picks the class that helps most: a refused login says what to do
// (log in) even when another endpoint simply lacked the image.
func (a *attempts) err(what string) error {
	class := errdefs.ErrNotFound
	switch {
	case a.unauthorized:
		class = ErrUnauthorized
	case a.unavail:
		class = errdefs.ErrUnavailable
	}
	return fmt.Errorf("%s: tried %s: %w", what, strings.Join(a.msgs, "; "), class)
}

// Tags lists the tags of repo (a name without tag or digest; a short name
// goes through registries.conf like an image), from the first endpoint that
// has it.
func (c *Client) Tags(ctx context.Context, repo string) ([]string, error) {
	if n, err := reference.Parse(repo); err == nil && (n.Tag() != "" || n.Digest() != "") {
		return nil, fmt.Errorf("listing tags of %q: give a repository without tag or digest: %w", repo, errdefs.ErrInvalidArgument)
	}
	return firstEndpoint(c, repo, "tags of "+repo, func(_ reference.Named, ep registries.Endpoint) ([]string, error) {
		return c.fetcher.Tags(ctx, repoOf(ep))
	})
}

func repoOf(ep registries.Endpoint) Repo {
	return Repo{Registry: ep.Ref.Domain(), Path: ep.Ref.Path(), Insecure: ep.Insecure}
}
