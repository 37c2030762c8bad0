package imagesvc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	digest "github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Problem is one inconsistency Check found.
type Problem struct {
	Kind     string `json:"kind"` // blob, snapshot or image
	ID       string `json:"id"`
	Detail   string `json:"detail"`
	Repaired bool   `json:"repaired"`
}

// CheckOptions control Check.
type CheckOptions struct {
	// Quick skips re-hashing every blob.
	Quick bool
	// Repair removes what is damaged (a corrupt blob, a snapshot whose
	// directory or parent is gone, an image that lost a part: pulling it
	// again restores it) and then collects garbage.
	Repair bool
}

// CheckReport is what Check found and, when repairing, what GC removed.
type CheckReport struct {
	Problems []Problem `json:"problems"`
	GC       *GCResult `json:"gc,omitempty"`
}

// Check verifies the store: every blob's content against its digest,
// every snapshot's directory and parent, and every image's manifest,
// config, layer blobs and snapshot.
func (s *Service) Check(ctx context.Context, opts CheckOptions) (CheckReport, error) {
	var rep CheckReport
	add := func(p Problem) { rep.Problems = append(rep.Problems, p) }

	// Blobs.
	blobs := map[digest.Digest]bool{}
	err := s.Content.Walk(ctx, func(i content.Info) error {
		blobs[i.Digest] = true
		return nil
	})
	if err != nil {
		return rep, err
	}
	if !opts.Quick {
		for d := range blobs {
			err := s.Content.Verify(ctx, d)
			var ce *content.CorruptError
			if errors.As(err, &ce) {
				p := Problem{Kind: "blob", ID: d.String(), Detail: ce.Error()}
				if opts.Repair {
					if err := s.Content.Delete(ctx, d); err != nil && !errdefs.IsNotFound(err) {
						return rep, err
					}
					p.Repaired = true
				}
				delete(blobs, d)
				add(p)
			} else if err != nil && !errdefs.IsNotFound(err) {
				return rep, err
			}
		}
	}

	// Snapshots: a missing directory breaks the snapshot and all above it.
	var snaps []metadata.Snapshot
	if err := s.Meta.WalkSnapshots(ctx, func(sn metadata.Snapshot) error {
		snaps = append(snaps, sn)
		return nil
	}); err != nil {
		return rep, err
	}
	byKey := map[string]metadata.Snapshot{}
	for _, sn := range snaps {
		byKey[sn.Key] = sn
	}
	why := map[string]string{}
	for _, sn := range snaps {
		if err := s.Snapshots.CheckDir(sn.Key); err != nil {
			why[sn.Key] = err.Error()
		} else if _, ok := byKey[sn.Parent]; sn.Parent != "" && !ok {
			why[sn.Key] = "parent " + sn.Parent + " is not recorded"
		}
	}
	broken := func(key string) string {
		for k, n := key, 0; k != "" && n <= len(byKey); n++ {
			if w, ok := why[k]; ok {
				if k == key {
					return w
				}
				return "parent " + k + ": " + w
			}
			k = byKey[k].Parent
		}
		return ""
	}
	depth := func(key string) int {
		n := 0
		for k := byKey[key].Parent; k != "" && n <= len(byKey); k = byKey[k].Parent {
			n++
		}
		return n
	}
	slices.SortFunc(snaps, func(a, b metadata.Snapshot) int { return depth(b.Key) - depth(a.Key) })
	brokenSnap := map[string]bool{}
	for _, sn := range snaps {
		w := broken(sn.Key)
		if w == "" {
			continue
		}
		brokenSnap[sn.Key] = true
		p := Problem{Kind: "snapshot", ID: sn.Key, Detail: w}
		if opts.Repair {
			if err := s.Snapshots.Remove(ctx, sn.Key); err != nil && !errdefs.IsNotFound(err) {
				return rep, fmt.Errorf("repair snapshot %s: %w", sn.Key, err)
			}
			p.Repaired = true
		}
		add(p)
	}

	// Images.
	imgs, err := s.Meta.ListImages(ctx, nil)
	if err != nil {
		return rep, err
	}
	for _, img := range imgs {
		detail := s.imageDamage(ctx, img, blobs, byKey, brokenSnap)
		if detail == "" {
			continue
		}
		p := Problem{Kind: "image", ID: img.Name, Detail: detail + ": pull it again"}
		if opts.Repair {
			if err := s.Meta.DeleteImage(ctx, img.Name); err != nil && !errdefs.IsNotFound(err) {
				return rep, err
			}
			p.Repaired = true
		}
		add(p)
	}
	if opts.Repair {
		gc, err := s.GC(ctx)
		rep.GC = &gc
		if err != nil {
			return rep, err
		}
	}
	return rep, nil
}

// imageDamage names what img lacks, or returns "".
func (s *Service) imageDamage(ctx context.Context, img metadata.Image, blobs map[digest.Digest]bool,
	snaps map[string]metadata.Snapshot, broken map[string]bool) string {
	if !blobs[img.Target.Digest] {
		return "manifest " + img.Target.Digest.String() + " is missing"
	}
	if img.Config != "" && !blobs[img.Config] {
		return "config " + img.Config.String() + " is missing"
	}
	man, err := s.manifest(ctx, img)
	if err != nil {
		return err.Error()
	}
	cfg, err := s.config(ctx, img)
	if err != nil {
		return err.Error()
	}
	if len(cfg.RootFS.DiffIDs) != len(man.Layers) {
		return fmt.Sprintf("%d layers but %d diffIDs", len(man.Layers), len(cfg.RootFS.DiffIDs))
	}
	// A layer is kept as its blob, or unpacked with the record to rebuild it.
	for i, key := range chainIDs(cfg.RootFS.DiffIDs) {
		d := man.Layers[i].Digest
		if blobs[d] {
			continue
		}
		if _, err := os.Stat(filepath.Join(s.Snapshots.Dir(key.String()), layerRecordFile)); err != nil {
			return "layer " + d.String() + ": neither its blob nor its layer record is stored"
		}
	}
	if img.SnapshotKey != "" {
		if _, ok := snaps[img.SnapshotKey]; !ok || broken[img.SnapshotKey] {
			return "layer snapshot " + img.SnapshotKey + " is missing or damaged"
		}
	}
	return ""
}

// manifest reads and parses a stored image's manifest.
func (s *Service) manifest(ctx context.Context, rec metadata.Image) (v1.Manifest, error) {
	var man v1.Manifest
	data, err := s.rawBlob(ctx, rec.Target.Digest, maxManifestBlob)
	if err != nil {
		return man, fmt.Errorf("manifest %s: %w", rec.Target.Digest, err)
	}
	if err := json.Unmarshal(data, &man); err != nil {
		return man, fmt.Errorf("manifest %s: %v: %w", rec.Target.Digest, err, errdefs.ErrInvalidArgument)
	}
	return man, nil
}
