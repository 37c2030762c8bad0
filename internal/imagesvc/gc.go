package imagesvc

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/snapshot"
	digest "github.com/opencontainers/go-digest"
)

// GCResult is what a collection removed.
type GCResult struct {
	Leases    []string        // dead leases (owner gone, or expired)
	Blobs     []digest.Digest // blobs nothing refers to
	BlobBytes int64
	Snapshots []string // snapshot keys nothing refers to
	Ingests   []string // partial downloads untouched for IngestMaxAge
	Scratch   []string // scratch directories of processes that are gone
}

// IngestMaxAge is how long a partial download is kept for a later pull to
// resume before GC removes it.
const IngestMaxAge = 24 * time.Hour

// GC removes the blobs and snapshots that no image, live lease or
// container's snapshot keeps alive, the directories a crash left without a
// record, and stale partial downloads. It is safe while other processes
// pull: what they write is leased first.
func (s *Service) GC(ctx context.Context) (GCResult, error) {
	var r GCResult
	var err error
	if r.Leases, err = s.dropDeadLeases(ctx); err != nil {
		return r, err
	}
	r.Snapshots, err = s.Snapshots.Sweep(ctx, func(ctx context.Context) (snapshot.Live, error) {
		live := snapshot.Live{Snapshots: map[string]bool{}, Owners: map[string]bool{}}
		roots, err := s.Meta.GCRoots(ctx)
		if err != nil {
			return live, err
		}
		for _, k := range roots.Snapshots {
			live.Snapshots[k] = true
		}
		leases, err := s.Meta.ListLeases(ctx)
		for _, l := range leases {
			live.Owners[l.ID] = true
		}
		return live, err
	})
	if err != nil {
		return r, err
	}
	// Blobs are listed before the roots are read: a blob committed after
	// the listing is not a candidate, and one committed before it was
	// leased before it was written.
	var all []digest.Digest
	sizes := map[digest.Digest]int64{}
	err = s.Content.Walk(ctx, func(i content.Info) error {
		all = append(all, i.Digest)
		sizes[i.Digest] = i.Size
		return nil
	})
	if err != nil {
		return r, err
	}
	dead, _, err := s.Meta.Unreferenced(ctx, s.children, all, nil)
	if err != nil {
		return r, err
	}
	for _, d := range dead {
		if err := s.Content.Delete(ctx, d); err != nil && !errdefs.IsNotFound(err) {
			return r, err
		}
		r.Blobs = append(r.Blobs, d)
		r.BlobBytes += sizes[d]
	}
	if r.Ingests, err = s.Content.CleanIngests(ctx, IngestMaxAge); err != nil {
		return r, err
	}
	r.Scratch, err = s.cleanTemp()
	return r, err
}

// maxManifestBlob bounds what children reads: manifests and indexes are
// small, and a layer is never parsed.
const maxManifestBlob = 4 << 20

// children returns the blobs a manifest or index refers to; a layer or a
// config has none. It is GC's view of content, so it errs on keeping: a
// blob that does not parse has no children, and is itself kept by
// whatever referred to it.
func (s *Service) children(ctx context.Context, d digest.Digest) ([]digest.Digest, error) {
	ra, err := s.Content.ReaderAt(ctx, d)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	if ra.Size() > maxManifestBlob || ra.Size() < 2 {
		return nil, nil
	}
	var first [1]byte
	if _, err := ra.ReadAt(first[:], 0); err != nil || first[0] != '{' {
		return nil, nil
	}
	data, err := io.ReadAll(io.NewSectionReader(ra, 0, ra.Size()))
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d, err)
	}
	var m struct {
		Config    *struct{ Digest digest.Digest }  `json:"config"`
		Layers    []struct{ Digest digest.Digest } `json:"layers"`
		Manifests []struct{ Digest digest.Digest } `json:"manifests"`
	}
	if json.Unmarshal(data, &m) != nil {
		return nil, nil
	}
	// An image config has a "config" object too, without a digest: only
	// well-formed digests count.
	var out []digest.Digest
	keep := func(d digest.Digest) {
		if d.Validate() == nil {
			out = append(out, d)
		}
	}
	if m.Config != nil {
		keep(m.Config.Digest)
	}
	for _, l := range m.Layers {
		keep(l.Digest)
	}
	for _, x := range m.Manifests {
		keep(x.Digest)
	}
	return out, nil
}
