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
	"github.com/berthdev/berth/internal/snapshot"
	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
)

// Layers are kept unpacked only, as podman keeps them: the compressed blob
// is verified while it streams, then dropped. The layer record (see
// snapshot.Apply: every byte of the tar but file contents) is kept next to
// the snapshot, so push and save rebuild the same tar, and so the same
// diffID, and compress it again. The original compressed digest is kept in
// the snapshot's labels, so a push to a registry that has the blob sends
// nothing.
const (
	layerRecordFile = "layer-record.gz"
	labelLayer      = "berth.layer.digest"
	labelLayerSize  = "berth.layer.size"
	labelLayerMedia = "berth.layer.mediatype"
)

// recordFile is where Apply writes a layer record, compressed.
type recordFile struct {
	f  *os.File
	zw *gzip.Writer
}

func createRecord(path string) (*recordFile, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	return &recordFile{f: f, zw: zw}, nil
}

func (r *recordFile) Write(p []byte) (int, error) { return r.zw.Write(p) }

func (r *recordFile) Close() error {
	err := r.zw.Close()
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// rebuildLayer writes the gzip-compressed tar of the snapshot in dir (fs/
// and its record) to out, checks it has diffID, and returns the compressed
// digest and size.
func rebuildLayer(ctx context.Context, dir string, diffID digest.Digest, out io.Writer) (digest.Digest, int64, error) {
	rec, err := os.Open(filepath.Join(dir, layerRecordFile))
	if errors.Is(err, os.ErrNotExist) {
		return "", 0, fmt.Errorf("layer %s: neither its blob nor a record to rebuild it is stored (`berth system check`): %w", diffID, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", 0, err
	}
	defer rec.Close()
	zr, err := gzip.NewReader(rec)
	if err != nil {
		return "", 0, fmt.Errorf("layer %s: record: %v: %w", diffID, err, errdefs.ErrInvalidArgument)
	}
	root, err := os.OpenRoot(filepath.Join(dir, "fs"))
	if err != nil {
		return "", 0, err
	}
	defer root.Close()
	uh, ch := sha256.New(), sha256.New()
	cw := &countWriter{w: io.MultiWriter(out, ch)}
	zw, _ := gzip.NewWriterLevel(cw, gzip.DefaultCompression)
	if err := snapshot.Rebuild(root, ctxReader{ctx, zr}, io.MultiWriter(zw, uh)); err != nil {
		return "", 0, fmt.Errorf("layer %s: %w", diffID, err)
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
