package registry

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/errdefs"
)

// Repo is one repository on one endpoint: what a Fetcher talks to.
type Repo struct {
	// Registry is host[:port] as the configuration names it ("docker.io"
	// is not rewritten to its API host here; a Fetcher does that).
	Registry string
	// Path is the repository path ("library/busybox").
	Path string
	// Insecure allows plain HTTP and unverified TLS.
	Insecure bool
}

func (r Repo) String() string { return r.Registry + "/" + r.Path }

// Fetched is a manifest or blob body with what the registry said about it.
type Fetched struct {
	Body io.ReadCloser
	// MediaType is the Content-Type the registry sent ("" if none).
	MediaType string
	// Digest is the Docker-Content-Digest the registry sent ("" if none).
	Digest digest.Digest
	// Size is the Content-Length, -1 when unknown.
	Size int64
	// Offset is where in the content Body starts (a range answered).
	Offset int64
}

// Fetcher speaks the distribution protocol for the Client. The Client does
// everything that is berth's own (which endpoint, which platform, size caps,
// media types, digest checks) above it, so a Fetcher only moves bytes.
// Errors wrap errdefs.ErrNotFound (404), errdefs.ErrUnavailable (no answer,
// 5xx) or ErrUnauthorized (401, 403).
type Fetcher interface {
	Manifest(ctx context.Context, repo Repo, ref string, accept []string) (*Fetched, error)
	// Blob fetches a blob from offset on (0: all of it). A registry that
	// ignores the range answers with the whole blob: Fetched.Offset says
	// where the body starts.
	Blob(ctx context.Context, repo Repo, d digest.Digest, offset int64) (*Fetched, error)
	Tags(ctx context.Context, repo Repo) ([]string, error)
}

// httpFetcher speaks the distribution protocol over net/http, with
// go-containerregistry's transport below each repository for the
// registry's authentication (anonymous, basic, or bearer tokens) with the
// credentials of the podman and docker auth files (see AuthFiles).
type httpFetcher struct {
	client    *http.Client
	insecure  *http.Client // TLS without verification, for Insecure endpoints
	userAgent string
	retries   int
	schemes   sync.Map // registry -> "https" or "http" that answered
	keychain  authn.Keychain
	auth      sync.Map // scheme://host/path -> http.RoundTripper with auth
}

// authed returns the round tripper for repo over scheme, set up once per
// repository: go-containerregistry's transport asks the registry how it
// authenticates (a GET of /v2/) and fetches pull tokens as needed.
func (f *httpFetcher) authed(ctx context.Context, repo Repo, scheme string, base http.RoundTripper) (http.RoundTripper, error) {
	host := apiHost(repo.Registry)
	key := scheme + "://" + host + "/" + repo.Path
	given, hasGiven := ctx.Value(credsKey{}).(authn.AuthConfig)
	if rt, ok := f.auth.Load(key); ok && !hasGiven {
		return rt.(http.RoundTripper), nil
	}
	var opts []name.Option
	if scheme == "http" {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(host, opts...)
	if err != nil {
		return nil, fmt.Errorf("registry %s: %v: %w", repo.Registry, err, errdefs.ErrInvalidArgument)
	}
	// Credentials are filed under the name users log in to (docker.io).
	credReg, err := name.NewRegistry(repo.Registry, opts...)
	if err != nil {
		credReg = reg
	}
	authr, err := f.keychain.Resolve(credReg)
	if err != nil {
		return nil, fmt.Errorf("registry %s: credentials: %w", repo.Registry, err)
	}
	if hasGiven {
		authr = authn.FromConfig(given)
	}
	scope := transport.PullScope
	rt, err := transport.NewWithContext(ctx, reg, authr, base, []string{"repository:" + repo.Path + ":" + scope})
	if err != nil {
		var terr *transport.Error
		if errors.As(err, &terr) {
			switch terr.StatusCode {
			case http.StatusUnauthorized, http.StatusForbidden:
				return nil, fmt.Errorf("registry %s: authentication failed or required (HTTP %d) for %s: %w", repo.Registry, terr.StatusCode, repo.Path, ErrUnauthorized)
			case http.StatusNotFound:
				return nil, fmt.Errorf("registry %s: no distribution API (/v2/ answers 404): %w", repo.Registry, errdefs.ErrNotFound)
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("registry %s: %v: %w", repo.Registry, err, errdefs.ErrUnavailable)
	}
	if !hasGiven { // a request's own credentials are not kept for others
		f.auth.Store(key, rt)
	}
	return rt, nil
}

func newHTTPFetcher(rt http.RoundTripper, userAgent string, retries int) *httpFetcher {
	if rt == nil {
		rt = http.DefaultTransport
	}
	insecureRT := rt
	if t, ok := rt.(*http.Transport); ok {
		t = t.Clone()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // only for endpoints configured insecure
		insecureRT = t
	}
	return &httpFetcher{
		client:    &http.Client{Transport: rt},
		insecure:  &http.Client{Transport: insecureRT},
		userAgent: userAgent,
		retries:   retries,
		keychain:  Keychain(nil),
	}
}

// apiHost maps Docker Hub's name to the host that serves its API.
func apiHost(registry string) string {
	if registry == "docker.io" {
		return "registry-1.docker.io"
	}
	return registry
}

func (f *httpFetcher) Manifest(ctx context.Context, repo Repo, ref string, accept []string) (*Fetched, error) {
	return f.get(ctx, repo, "/manifests/"+ref, accept)
}

func (f *httpFetcher) Blob(ctx context.Context, repo Repo, d digest.Digest, offset int64) (*Fetched, error) {
	var hdr http.Header
	if offset > 0 {
		hdr = http.Header{"Range": {fmt.Sprintf("bytes=%d-", offset)}}
	}
	fe, _, err := f.do(ctx, repo, "/blobs/"+d.String(), nil, hdr)
	return fe, err
}

// maxTagPages bounds a tag listing, so a registry whose "next" links loop
// cannot keep us paging forever.
const maxTagPages = 1000

func (f *httpFetcher) Tags(ctx context.Context, repo Repo) ([]string, error) {
	var all []string
	next := "/tags/list"
	for page := 0; next != "" && page < maxTagPages; page++ {
		fe, link, err := f.do(ctx, repo, next, nil, nil)
		if err != nil {
			return nil, err
		}
		var body struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(fe.Body, 16<<20)).Decode(&body)
		fe.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("tag list of %s: malformed answer: %v: %w", repo, err, errdefs.ErrInvalidArgument)
		}
		all = append(all, body.Tags...)
		next = link
	}
	return all, nil
}

func (f *httpFetcher) get(ctx context.Context, repo Repo, suffix string, accept []string) (*Fetched, error) {
	fe, _, err := f.do(ctx, repo, suffix, accept, nil)
	return fe, err
}

// do sends one GET (retrying when there was no usable answer) and also
// returns the path+query of the page's rel="next" link, if any.
func (f *httpFetcher) do(ctx context.Context, repo Repo, suffix string, accept []string, hdr http.Header) (*Fetched, string, error) {
	var err error
	for attempt := 0; ; attempt++ {
		var fe *Fetched
		var next string
		fe, next, err = f.once(ctx, repo, suffix, accept, hdr)
		if err == nil || !errors.Is(err, errdefs.ErrUnavailable) || attempt >= f.retries {
			return fe, next, err
		}
		select {
		case <-ctx.Done():
			return nil, "", ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
}

func (f *httpFetcher) once(ctx context.Context, repo Repo, suffix string, accept []string, hdr http.Header) (*Fetched, string, error) {
	host := apiHost(repo.Registry)
	schemes := []string{"https"}
	if repo.Insecure {
		// Try TLS first, as docker does, and remember which one answered.
		if s, ok := f.schemes.Load(host); ok {
			schemes = []string{s.(string)}
		} else {
			schemes = []string{"https", "http"}
		}
	}
	var lastErr error
	for _, scheme := range schemes {
		target := suffix
		if !strings.HasPrefix(suffix, "/v2/") {
			target = "/v2/" + repo.Path + suffix
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+host+target, nil)
		if err != nil {
			return nil, "", fmt.Errorf("registry %s: %v: %w", repo.Registry, err, errdefs.ErrInvalidArgument)
		}
		if len(accept) > 0 {
			req.Header.Set("Accept", strings.Join(accept, ", "))
		}
		if f.userAgent != "" {
			req.Header.Set("User-Agent", f.userAgent)
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		client := f.client
		if repo.Insecure {
			client = f.insecure
		}
		rt, err := f.authed(ctx, repo, scheme, client.Transport)
		if err != nil {
			if errors.Is(err, ErrUnauthorized) || ctx.Err() != nil {
				return nil, "", err
			}
			lastErr = err
			continue
		}
		resp, err := (&http.Client{Transport: rt, Timeout: client.Timeout}).Do(req)
		if err != nil {
			if ctx.Err() != nil {
				return nil, "", ctx.Err()
			}
			lastErr = fmt.Errorf("registry %s: %v: %w", repo.Registry, err, errdefs.ErrUnavailable)
			continue
		}
		if repo.Insecure {
			f.schemes.Store(host, scheme)
		}
		var offset int64
		if resp.StatusCode == http.StatusPartialContent && hdr.Get("Range") != "" {
			// "bytes START-END/TOTAL": the body starts at START.
			var end, total int64
			if _, err := fmt.Sscanf(resp.Header.Get("Content-Range"), "bytes %d-%d/%d", &offset, &end, &total); err != nil {
				resp.Body.Close()
				return nil, "", fmt.Errorf("registry %s: malformed Content-Range %q for %s: %w",
					repo.Registry, resp.Header.Get("Content-Range"), target, errdefs.ErrInvalidArgument)
			}
			resp.StatusCode = http.StatusOK
		}
		if err := statusError(repo, target, resp); err != nil {
			return nil, "", err
		}
		fe := &Fetched{
			Body:      resp.Body,
			MediaType: resp.Header.Get("Content-Type"),
			Digest:    digest.Digest(resp.Header.Get("Docker-Content-Digest")),
			Size:      resp.ContentLength,
			Offset:    offset,
		}
		return fe, nextLink(resp), nil
	}
	return nil, "", lastErr
}

// statusError turns a non-200 answer into an error of the right class, and
// closes the body then.
func statusError(repo Repo, target string, resp *http.Response) error {
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	// The registry's own error text helps ("MANIFEST_UNKNOWN", "DENIED").
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	resp.Body.Close()
	detail := strings.TrimSpace(string(msg))
	if detail != "" {
		detail = ": " + detail
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("registry %s: %s (HTTP %d) for %s%s: %w", repo.Registry, "authentication failed or required", resp.StatusCode, repo.Path, detail, ErrUnauthorized)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("registry %s: %s%s: %w", repo.Registry, target, detail, errdefs.ErrNotFound)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return fmt.Errorf("registry %s: HTTP %d for %s%s: %w", repo.Registry, resp.StatusCode, target, detail, errdefs.ErrUnavailable)
	}
	return fmt.Errorf("registry %s: unexpected HTTP %d for %s%s: %w", repo.Registry, resp.StatusCode, target, detail, errdefs.ErrFailedPrecond)
}

// nextLink parses `Link: </v2/x/tags/list?n=100&last=b>; rel="next"`.
func nextLink(resp *http.Response) string {
	for _, l := range resp.Header.Values("Link") {
		target, params, ok := strings.Cut(l, ";")
		if !ok || !strings.Contains(params, `rel="next"`) {
			continue
		}
		target = strings.Trim(strings.TrimSpace(target), "<>")
		u, err := url.Parse(target)
		if err != nil {
			continue
		}
		// Only follow a link on the same registry, as a path.
		if u.Host != "" && u.Host != resp.Request.URL.Host {
			continue
		}
		if !strings.HasPrefix(u.Path, "/v2/") {
			continue
		}
		return u.RequestURI()
	}
	return ""
}
