package registry

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/reference"
)

// PushTarget is where ref is pushed: the registry itself (its configured
// location, never a mirror), with a tag ("latest" when none is given).
func (c *Client) PushTarget(ref string) (name.Tag, error) {
	n, err := reference.ParseNormalized(ref)
	if err != nil {
		return name.Tag{}, err
	}
	if n.Digest() != "" {
		return name.Tag{}, fmt.Errorf("push %s: a destination names a tag, not a digest: %w", ref, errdefs.ErrInvalidArgument)
	}
	n = reference.TagOrLatest(n)
	eps, err := c.cfg.Endpoints(n)
	if err != nil {
		return name.Tag{}, err
	}
	ep := eps[len(eps)-1] // mirrors come first; the registry is last
	var opts []name.Option
	if ep.Insecure {
		opts = append(opts, name.Insecure)
	}
	t, err := name.NewTag(ep.Ref.String(), opts...)
	if err != nil {
		return name.Tag{}, fmt.Errorf("push %s: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return t, nil
}

// Push uploads img as ref through go-containerregistry (blobs the registry
// has already are skipped, uploads run jobs at a time), with the
// credentials of the podman and docker auth files (see AuthFiles). progress, if not nil,
// receives updates and is closed by the push.
func (c *Client) Push(ctx context.Context, ref string, img v1.Image, jobs int, progress chan<- v1.Update) (name.Tag, error) {
	t, err := c.PushTarget(ref)
	if err != nil {
		return t, err
	}
	opts := append(c.remoteOptions(ctx), remote.WithJobs(max(jobs, 1)))
	if progress != nil {
		opts = append(opts, remote.WithProgress(progress))
	}
	if err := remote.Write(t, img, opts...); err != nil {
		return t, pushError(t, err)
	}
	return t, nil
}

func (c *Client) remoteOptions(ctx context.Context) []remote.Option {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(Keychain(nil)),
		remote.WithUserAgent(c.userAgent),
	}
	if c.transport != nil {
		opts = append(opts, remote.WithTransport(c.transport))
	}
	return opts
}

// HasBlob reports whether the repository ref would be pushed to holds the
// blob d already.
func (c *Client) HasBlob(ctx context.Context, ref string, d v1.Hash) (bool, error) {
	t, err := c.PushTarget(ref)
	if err != nil {
		return false, err
	}
	l, err := remote.Layer(t.Context().Digest(d.String()), c.remoteOptions(ctx)...)
	if err != nil {
		return false, pushError(t, err)
	}
	e, ok := l.(interface{ Exists() (bool, error) })
	if !ok {
		return false, nil
	}
	found, err := e.Exists()
	if err != nil {
		return false, pushError(t, err)
	}
	return found, nil
}

// pushError classes go-containerregistry's errors as the fetcher's are.
func pushError(t name.Tag, err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		switch {
		case terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden:
			return fmt.Errorf("push %s: authentication failed or required (HTTP %d): log in with `berth login %s`: %w",
				t, terr.StatusCode, t.RegistryStr(), ErrUnauthorized)
		case terr.StatusCode == http.StatusNotFound:
			return fmt.Errorf("push %s: %v: %w", t, err, errdefs.ErrNotFound)
		case terr.StatusCode == http.StatusTooManyRequests || terr.StatusCode >= 500:
			return fmt.Errorf("push %s: %v: %w", t, err, errdefs.ErrUnavailable)
		}
		return fmt.Errorf("push %s: %v: %w", t, err, errdefs.ErrFailedPrecond)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return fmt.Errorf("push %s: %v: %w", t, err, errdefs.ErrUnavailable)
}

// PushIndex uploads a whole index (every platform's image) as ref.
func (c *Client) PushIndex(ctx context.Context, ref string, idx v1.ImageIndex, jobs int) (name.Tag, error) {
	t, err := c.PushTarget(ref)
	if err != nil {
		return t, err
	}
	if err := remote.WriteIndex(t, idx, append(c.remoteOptions(ctx), remote.WithJobs(max(jobs, 1)))...); err != nil {
		return t, pushError(t, err)
	}
	return t, nil
}
