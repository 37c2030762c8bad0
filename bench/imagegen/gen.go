package main

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// Options shape the image.
type Options struct {
	Seed   uint64
	Layers int
	Size   int64
	Files  int
	Tag    string
}

// Result describes what was written.
type Result struct {
	Digest     digest.Digest
	Layers     []v1.Descriptor
	Unpacked   int64
	Compressed int64
}

var epoch = time.Unix(1700000000, 0)

// Generate writes the image as an OCI layout at dir.
func Generate(dir string, o Options) (*Result, error) {
	if o.Layers < 1 || o.Files < o.Layers || o.Size < int64(o.Files) {
		return nil, fmt.Errorf("need layers >= 1, files >= layers and size >= files")
	}
	if o.Tag == "" {
		o.Tag = "latest"
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x9e3779b97f4a7c15))
	res := &Result{}
	var diffIDs []digest.Digest
	for i := 0; i < o.Layers; i++ {
		files := o.Files / o.Layers
		size := o.Size / int64(o.Layers)
		desc, diffID, n, err := writeLayer(blobs, rng, i, files, size)
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		res.Layers = append(res.Layers, desc)
		res.Unpacked += n
		res.Compressed += desc.Size
		diffIDs = append(diffIDs, diffID)
	}
	cfg := v1.Image{
		Created:  &epoch,
		Platform: v1.Platform{Architecture: "amd64", OS: "linux"},
		Config:   v1.ImageConfig{Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, Cmd: []string{"/bin/sh"}},
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	cfgDesc, err := writeJSON(blobs, v1.MediaTypeImageConfig, cfg)
	if err != nil {
		return nil, err
	}
	man := v1.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageManifest,
		Config: cfgDesc, Layers: res.Layers}
	manDesc, err := writeJSON(blobs, v1.MediaTypeImageManifest, man)
	if err != nil {
		return nil, err
	}
	manDesc.Annotations = map[string]string{v1.AnnotationRefName: o.Tag}
	manDesc.Platform = &v1.Platform{Architecture: "amd64", OS: "linux"}
	idx := v1.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: v1.MediaTypeImageIndex, Manifests: []v1.Descriptor{manDesc}}
	data, _ := json.Marshal(idx)
	if err := os.WriteFile(filepath.Join(dir, "index.json"), data, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, v1.ImageLayoutFile), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return nil, err
	}
	res.Digest = manDesc.Digest
	return res, nil
}

func writeJSON(blobs, mediaType string, v any) (v1.Descriptor, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return v1.Descriptor{}, err
	}
	d := digest.FromBytes(data)
	if err := os.WriteFile(filepath.Join(blobs, d.Encoded()), data, 0o644); err != nil {
		return v1.Descriptor{}, err
	}
	return v1.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(data))}, nil
}

// counter counts bytes and hashes them.
type counter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.h.Write(p)
	c.n += int64(len(p))
	return c.w.Write(p)
}

func writeLayer(blobs string, rng *rand.Rand, idx, files int, size int64) (v1.Descriptor, digest.Digest, int64, error) {
	tmp, err := os.CreateTemp(blobs, ".layer-*")
	if err != nil {
		return v1.Descriptor{}, "", 0, err
	}
	defer os.Remove(tmp.Name())
	compressed := &counter{w: tmp, h: sha256.New()}
	// BestSpeed: the benchmark measures pulls, not how hard the image was
	// squeezed; level 1 is about what registries see from fast pushers.
	gz, _ := gzip.NewWriterLevel(compressed, gzip.BestSpeed)
	uncompressed := &counter{w: gz, h: sha256.New()}
	tw := tar.NewWriter(uncompressed)
	var written int64
	sizes := fileSizes(rng, files, size)
	dirs := map[string]bool{}
	var regular []string
	for i, n := range sizes {
		dir := fmt.Sprintf("l%d/d%02d/s%02d", idx, rng.IntN(40), rng.IntN(25))
		for d := dir; d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
		}
		name := fmt.Sprintf("%s/f%06d", dir, i)
		hdr := &tar.Header{Name: name, Mode: 0o644, Size: n, ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
		if i%7 == 0 {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return v1.Descriptor{}, "", 0, err
		}
		if err := fill(tw, rng, n, i%3 != 0); err != nil {
			return v1.Descriptor{}, "", 0, err
		}
		written += n
		regular = append(regular, name)
	}
	// Links and, from the second layer on, whiteouts of the previous one.
	for i := 0; i < len(regular)/50; i++ {
		target := regular[rng.IntN(len(regular))]
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d/links/sym%05d", idx, i), Typeflag: tar.TypeSymlink,
			Linkname: "../" + strings.TrimPrefix(target, fmt.Sprintf("l%d/", idx)), ModTime: epoch, Format: tar.FormatPAX})
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d/links/hard%05d", idx, i), Typeflag: tar.TypeLink,
			Linkname: target, ModTime: epoch, Format: tar.FormatPAX})
	}
	if idx > 0 {
		for i := 0; i < 20; i++ {
			tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d/d%02d/s%02d/.wh.f%06d", idx-1, rng.IntN(40), rng.IntN(25), rng.IntN(files)),
				Typeflag: tar.TypeReg, ModTime: epoch, Format: tar.FormatPAX})
		}
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("l%d/d00/.wh..wh..opq", idx-1), Typeflag: tar.TypeReg, ModTime: epoch, Format: tar.FormatPAX})
	}
	if err := tw.Close(); err != nil {
		return v1.Descriptor{}, "", 0, err
	}
	if err := gz.Close(); err != nil {
		return v1.Descriptor{}, "", 0, err
	}
	if err := tmp.Close(); err != nil {
		return v1.Descriptor{}, "", 0, err
	}
	d := digest.NewDigest(digest.SHA256, compressed.h)
	if err := os.Rename(tmp.Name(), filepath.Join(blobs, d.Encoded())); err != nil {
		return v1.Descriptor{}, "", 0, err
	}
	return v1.Descriptor{MediaType: v1.MediaTypeImageLayerGzip, Digest: d, Size: compressed.n},
		digest.NewDigest(digest.SHA256, uncompressed.h), written, nil
}

// fileSizes draws a distribution-like mix (most files small, a few large)
// scaled to the total.
func fileSizes(rng *rand.Rand, n int, total int64) []int64 {
	raw := make([]float64, n)
	var sum float64
	for i := range raw {
		switch p := rng.Float64(); {
		case p < 0.55:
			raw[i] = 200 + rng.Float64()*4000
		case p < 0.90:
			raw[i] = 4096 + rng.Float64()*60000
		case p < 0.995:
			raw[i] = 65536 + rng.Float64()*2e6
		default:
			raw[i] = 4e6 + rng.Float64()*30e6
		}
		sum += raw[i]
	}
	out := make([]int64, n)
	for i, r := range raw {
		out[i] = max(1, int64(r/sum*float64(total)))
	}
	return out
}

var words = strings.Fields("the quick brown fox jumps over lazy dog container image layer registry pull push " +
	"config manifest digest kernel namespace cgroup mount overlay snapshot runtime process signal")

// fill writes n bytes: text-like (compressible) or random (like binaries).
func fill(w io.Writer, rng *rand.Rand, n int64, text bool) error {
	buf := make([]byte, 32<<10)
	for n > 0 {
		k := min(int64(len(buf)), n)
		b := buf[:k]
		if text {
			for i := 0; i < len(b); {
				word := words[rng.IntN(len(words))]
				i += copy(b[i:], word)
				if i < len(b) {
					b[i] = " \n"[rng.IntN(8)/7]
					i++
				}
			}
		} else {
			for i := 0; i+8 <= len(b); i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8; j++ {
					b[i+j] = byte(v >> (8 * j))
				}
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
		n -= k
	}
	return nil
}
