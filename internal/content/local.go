package content

import (
	"context"
	_ "crypto/sha256" // registers the hash go-digest needs for sha256
	_ "crypto/sha512" // and for sha384, sha512
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
)

// LocalStore keeps blobs as files on one file system:
//
//	<root>/blobs/<alg>/<hex>        committed, read-only, complete
//	<root>/ingest/<sha256(ref)>/    one ingest: meta.json, data
//
// Commit renames data into blobs/, so both trees must stay on one file
// system; keeping them under one root ensures it. A LocalStore holds no
// state of its own beyond root: several handles, in one process or many,
// share a root safely.
type LocalStore struct {
	root string
}

var _ Store = (*LocalStore)(nil)

// NewStore opens (creating if needed) a local store under root.
func NewStore(root string) (*LocalStore, error) {
	if root == "" {
		return nil, fmt.Errorf("content store root: empty path: %w", errdefs.ErrInvalidArgument)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("content store root %s: %w", root, err)
	}
	s := &LocalStore{root: abs}
	for _, dir := range []string{abs, filepath.Join(abs, "blobs"), filepath.Join(abs, "blobs", string(digest.Canonical)), s.ingestRoot()} {
		if err := mkdirDurable(dir); err != nil {
			return nil, fmt.Errorf("content store %s: %w", abs, err)
		}
	}
	return s, nil
}

// mkdirDurable makes dir (its parent must exist) and syncs the parent, so
// that a blob committed into it cannot outlive the directory after a
// power cut.
func mkdirDurable(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return err
		}
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	}
	return fsutil.SyncDir(filepath.Dir(dir))
}

// Root is the directory the store lives in.
func (s *LocalStore) Root() string { return s.root }

// BlobPath is where the blob dgst is (or would be) stored. It exists so
// that `berth system check` can name the file it found corrupt and so that
// tests can corrupt one; everyone else reads through ReaderAt.
func (s *LocalStore) BlobPath(dgst digest.Digest) (string, error) {
	if err := validDigest(dgst); err != nil {
		return "", err
	}
	return filepath.Join(s.root, "blobs", string(dgst.Algorithm()), dgst.Encoded()), nil
}

// validDigest refuses what cannot name a blob. Validate checks the hex
// against the algorithm's pattern, which also keeps a digest from ever
// reaching outside blobs/ as a path.
func validDigest(dgst digest.Digest) error {
	if err := dgst.Validate(); err != nil {
		return fmt.Errorf("digest %q: %v: %w", string(dgst), err, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Info implements Provider and Manager.
func (s *LocalStore) Info(ctx context.Context, dgst digest.Digest) (Info, error) {
	if err := ctx.Err(); err != nil {
		return Info{}, err
	}
	p, err := s.BlobPath(dgst)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return Info{}, blobErr(dgst, err)
	}
	return Info{Digest: dgst, Size: fi.Size(), CreatedAt: fi.ModTime()}, nil
}

func blobErr(dgst digest.Digest, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	return fmt.Errorf("blob %s: %w", dgst, err)
}

type fileReaderAt struct {
	*os.File
	size int64
}

func (r *fileReaderAt) Size() int64 { return r.size }

// ReaderAt implements Provider.
func (s *LocalStore) ReaderAt(ctx context.Context, dgst digest.Digest) (ReaderAt, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := s.BlobPath(dgst)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, blobErr(dgst, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, blobErr(dgst, err)
	}
	return &fileReaderAt{File: f, size: fi.Size()}, nil
}

// Walk implements Manager. Names that are not a valid digest of their
// directory's algorithm are skipped: they are not blobs this store made.
func (s *LocalStore) Walk(ctx context.Context, fn func(Info) error) error {
	blobs := filepath.Join(s.root, "blobs")
	algs, err := os.ReadDir(blobs)
	if err != nil {
		return fmt.Errorf("content store %s: %w", s.root, err)
	}
	for _, a := range algs {
		alg := digest.Algorithm(a.Name())
		if !a.IsDir() || !alg.Available() {
			continue
		}
		dir := filepath.Join(blobs, a.Name())
		entries, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("content store %s: %w", s.root, err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			dgst := digest.NewDigestFromEncoded(alg, e.Name())
			if !e.Type().IsRegular() || dgst.Validate() != nil {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while we walked
			}
			if err != nil {
				return blobErr(dgst, err)
			}
			if err := fn(Info{Digest: dgst, Size: fi.Size(), CreatedAt: fi.ModTime()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete implements Manager. It does not sync the directory: a delete lost
// to a power cut only brings back a complete, valid blob, which the next GC
// removes again.
func (s *LocalStore) Delete(ctx context.Context, dgst digest.Digest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := s.BlobPath(dgst)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil {
		return blobErr(dgst, err)
	}
	return nil
}

// CorruptError reports a stored blob whose content does not match its name.
// It wraps errdefs.ErrFailedPrecond.
type CorruptError struct {
	Digest digest.Digest // the blob's name
	Path   string        // where it is stored
	Actual digest.Digest // what its content hashes to
	Size   int64
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("blob %s is corrupt: its content (%d bytes at %s) hashes to %s", e.Digest, e.Size, e.Path, e.Actual)
}

func (e *CorruptError) Unwrap() error { return errdefs.ErrFailedPrecond }

// Verify implements Manager.
func (s *LocalStore) Verify(ctx context.Context, dgst digest.Digest) error {
	p, err := s.BlobPath(dgst)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		return blobErr(dgst, err)
	}
	defer f.Close()
	h := dgst.Algorithm().Hash()
	n, err := io.CopyBuffer(h, ctxReader{ctx, f}, make([]byte, 1<<20))
	if err != nil {
		return blobErr(dgst, err)
	}
	if actual := digest.NewDigest(dgst.Algorithm(), h); actual != dgst {
		return &CorruptError{Digest: dgst, Path: p, Actual: actual, Size: n}
	}
	return nil
}

// ctxReader lets a long hash of a large blob be cancelled between reads.
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

// ensureAlgDir makes blobs/<alg> for algorithms other than sha256, which
// NewStore made.
func (s *LocalStore) ensureAlgDir(alg digest.Algorithm) (string, error) {
	dir := filepath.Join(s.root, "blobs", string(alg))
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	return dir, mkdirDurable(dir)
}
