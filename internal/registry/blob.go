package registry

import (
	"context"
	"fmt"
	"hash"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/errdefs"
)

// Blob streams a layer or config of r. The reader checks size and digest as
// it goes: reading past desc.Size, or reaching EOF with other content, is an
// error naming the digest, so a caller that streams into the content store
// commits only when Read returned io.EOF.
func (c *Client) Blob(ctx context.Context, r *Resolved, desc v1.Descriptor) (io.ReadCloser, error) {
	d, err := digest.Parse(desc.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("blob of %s: descriptor digest %q: %v: %w", r.Ref, desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if desc.Size < 0 {
		return nil, fmt.Errorf("blob %s of %s: negative size %d: %w", d, r.Ref, desc.Size, errdefs.ErrInvalidArgument)
	}
	fe, err := c.fetcher.Blob(ctx, repoOf(r.Endpoint), d)
	if err != nil {
		return nil, fmt.Errorf("blob %s of %s: %w", d, r.Ref, err)
	}
	if fe.Size >= 0 && fe.Size != desc.Size {
		fe.Body.Close()
		return nil, fmt.Errorf("blob %s of %s: registry %s sends %d bytes, the manifest says %d: %w", d, r.Ref, r.Endpoint.Ref.Domain(), fe.Size, desc.Size, errdefs.ErrInvalidArgument)
	}
	return &verifier{body: fe.Body, want: d, size: desc.Size, h: d.Algorithm().Hash()}, nil
}

type verifier struct {
	body io.ReadCloser
	want digest.Digest
	size int64
	n    int64
	h    hash.Hash
	err  error // sticky: once wrong, always wrong
}

func (v *verifier) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	// Read one byte more than promised at most, to notice a longer body
	// without buffering it.
	if rem := v.size + 1 - v.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := v.body.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if v.n > v.size {
		v.err = fmt.Errorf("blob %s: more than the %d bytes the manifest says: %w", v.want, v.size, errdefs.ErrInvalidArgument)
		return 0, v.err
	}
	if err == io.EOF {
		if v.n != v.size {
			v.err = fmt.Errorf("blob %s: got %d bytes, the manifest says %d: %w", v.want, v.n, v.size, errdefs.ErrInvalidArgument)
			return n, v.err
		}
		if got := digest.NewDigest(v.want.Algorithm(), v.h); got != v.want {
			v.err = fmt.Errorf("blob %s: content has digest %s: %w", v.want, got, errdefs.ErrInvalidArgument)
			return n, v.err
		}
	}
	if err != nil && err != io.EOF {
		v.err = fmt.Errorf("blob %s: %v: %w", v.want, err, errdefs.ErrUnavailable)
		return n, v.err
	}
	return n, err
}

func (v *verifier) Close() error { return v.body.Close() }
