package imagesvc

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
)

// Layers are kept unpacked only, as podman keeps them: the compressed blob
// is verified while it streams, then dropped. What is needed to rebuild
// the layer's tar bit for bit (headers, padding, file order; not the file
// contents, which are in the snapshot) is recorded next to the snapshot
// with tar-split, so push and save rebuild the same diffID, and compress
// it again. The original compressed digest is kept in the snapshot's
// labels, so a push to a registry that has the blob sends nothing.
const (
	tarSplitFile    = "tar-split.json.gz"
	labelLayer      = "berth.layer.digest"
	labelLayerSize  = "berth.layer.size"
	labelLayerMedia = "berth.layer.mediatype"
)

// splitRecorder passes a layer's tar through while recording its tar-split.
type splitRecorder struct {
	f  *os.File
	zw *gzip.Writer
	r  io.Reader
}

func recordSplit(tarStream io.Reader, path string) (*splitRecorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	r, err := asm.NewInputTarStream(tarStream, storage.NewJSONPacker(zw), storage.NewDiscardFilePutter())
	if err != nil {
		f.Close()
		return nil, err
	}
	return &splitRecorder{f: f, zw: zw, r: r}, nil
}

// finish flushes the record once the stream was read to its end.
func (s *splitRecorder) finish() error {
	err := s.zw.Close()
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rootGetter reads file contents for tar-split from a snapshot's fs/
// through os.Root, so that no name (or symlink in the layer) reaches out.
type rootGetter struct{ root *os.Root }

func (g rootGetter) Get(name string) (io.ReadCloser, error) { return g.root.Open(name) }

// rebuildLayer writes the gzip-compressed tar of the snapshot in dir (fs/
// and its tar-split record) to out, checks it has diffID, and returns the
// compressed digest and size.
func rebuildLayer(ctx context.Context, dir string, diffID digest.Digest, out io.Writer) (digest.Digest, int64, error) {
	rec, err := os.Open(filepath.Join(dir, tarSplitFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", 0, fmt.Errorf("layer %s: neither its blob nor a record to rebuild it is stored (`berth system check`): %w", diffID, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", 0, err
	}
	defer rec.Close()
	zr, err := gzip.NewReader(rec)
	if err != nil {
		return "", 0, fmt.Errorf("layer %s: tar-split record: %w", diffID, err)
	}
	root, err := os.OpenRoot(filepath.Join(dir, "fs"))
	if err != nil {
		return "", 0, err
	}
	defer root.Close()
	tarStream := asm.NewOutputTarStream(rootGetter{root}, storage.NewJSONUnpacker(zr))
	defer tarStream.Close()
	uh, ch := sha256.New(), sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, ch)}
	zw, _ := gzip.NewWriterLevel(cw, gzip.DefaultCompression)
	if _, err := io.Copy(zw, io.TeeReader(ctxReader{ctx, tarStream}, uh)); err != nil {
		return "", 0, fmt.Errorf("layer %s: rebuilding its tar: %w", diffID, err)
	}
	if err := zw.Close(); err != nil {
		return "", 0, err
	}
	if got := digest.NewDigest(digest.SHA256, uh); got != diffID {
		return "", 0, fmt.Errorf("layer %s: the rebuilt tar has digest %s (were the layer's files changed?): %w", diffID, got, errdefs.ErrFailedPrecond)
	}
	return digest.NewDigest(digest.SHA256, ch), cw.n, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
