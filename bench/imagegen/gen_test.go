package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestGenerateDeterministic: one seed, one image, byte for byte; the
// layout is complete (every blob named by its digest, with the size the
// descriptors give).
func TestGenerateDeterministic(t *testing.T) {
	o := Options{Seed: 7, Layers: 2, Size: 2 << 20, Files: 300}
	a, err := Generate(t.TempDir(), o)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	b, err := Generate(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Fatalf("same seed, different images: %s vs %s", a.Digest, b.Digest)
	}
	if c, _ := Generate(t.TempDir(), Options{Seed: 8, Layers: 2, Size: 2 << 20, Files: 300}); c.Digest == a.Digest {
		t.Fatalf("another seed gave the same image")
	}
	if b.Unpacked < 2<<20-300 || b.Unpacked > 2<<20 {
		t.Errorf("unpacked %d bytes, want about %d", b.Unpacked, 2<<20)
	}
	var idx v1.Index
	readJSON(t, filepath.Join(dir, "index.json"), &idx)
	var man v1.Manifest
	readJSON(t, blobPath(t, dir, idx.Manifests[0]), &man)
	var cfg v1.Image
	readJSON(t, blobPath(t, dir, man.Config), &cfg)
	if len(man.Layers) != 2 || len(cfg.RootFS.DiffIDs) != 2 {
		t.Fatalf("manifest layers %d, config diffIDs %d", len(man.Layers), len(cfg.RootFS.DiffIDs))
	}
	for _, l := range man.Layers {
		blobPath(t, dir, l)
	}
}

func blobPath(t *testing.T, dir string, d v1.Descriptor) string {
	t.Helper()
	p := filepath.Join(dir, "blobs", "sha256", d.Digest.Encoded())
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if hex.EncodeToString(sum[:]) != d.Digest.Encoded() || int64(len(data)) != d.Size {
		t.Fatalf("blob %s: content does not match its descriptor", d.Digest)
	}
	return p
}

func readJSON(t *testing.T, p string, v any) {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}
