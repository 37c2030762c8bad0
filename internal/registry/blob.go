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
	fe, err := c.fetcher.Blob(ctx, repoOf(r.Endpoint), d, 0)
	if err != nil {
		return nil, fmt.Errorf("blob %s of %s: %w", d, r.Ref, err)
	}
	if fe.Size >= 0 && fe.Size != desc.Size {
		fe.Body.Close()
		return nil, fmt.Errorf("blob %s of %s: registry %s sends %d bytes, the manifest says %d: %w", d, r.Ref, r.Endpoint.Ref.Domain(), fe.Size, desc.Size, errdefs.ErrInvalidArgument)
	}
	return &verifier{body: fe.Body, want: d, size: desc.Size, h: d.Algorithm().Hash()}, nil
}

// BlobFrom streams blob desc of r from offset on, to resume a download.
// Only the size is checked: the digest covers the whole blob, so the
// caller, who holds the first offset bytes, checks it (the content store
// does, at commit). A registry that ignores the range costs the skipped
// bytes again, nothing else.
func (c *Client) BlobFrom(ctx context.Context, r *Resolved, desc v1.Descriptor, offset int64) (io.ReadCloser, error) {
	d, err := digest.Parse(desc.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("blob of %s: descriptor digest %q: %v: %w", r.Ref, desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if offset < 0 || offset > desc.Size {
		return nil, fmt.Errorf("blob %s of %s: offset %d outside its %d bytes: %w", d, r.Ref, offset, desc.Size, errdefs.ErrInvalidArgument)
	}
	fe, err := c.fetcher.Blob(ctx, repoOf(r.Endpoint), d, offset)
	if err != nil {
		return nil, fmt.Errorf("blob %s of %s: %w", d, r.Ref, err)
	}
	if fe.Offset > offset || fe.Size >= 0 && fe.Size != desc.Size-fe.Offset {
		fe.Body.Close()
		return nil, fmt.Errorf("blob %s of %s: registry %s answers a range from %d with %d bytes from %d: %w",
			d, r.Ref, r.Endpoint.Ref.Domain(), offset, fe.Size, fe.Offset, errdefs.ErrInvalidArgument)
	}
	if skip := offset - fe.Offset; skip > 0 {
		if _, err := io.CopyN(io.Discard, fe.Body, skip); err != nil {
			fe.Body.Close()
			return nil, fmt.Errorf("blob %s of %s: %v: %w", d, r.Ref, err, errdefs.ErrUnavailable)
		}
	}
	return &verifier{body: fe.Body, want: d, size: desc.Size - offset}, nil
}

type verifier struct {
	body io.ReadCloser
	want digest.Digest
	size int64
	n    int64
	h    hash.Hash // nil: the size only (a resumed tail)
	err  error     // sticky: once wrong, always wrong
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
	if v.h != nil {
		v.h.Write(p[:n])
	}
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
		if v.h == nil {
			return n, err
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
