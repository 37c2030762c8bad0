package content

import (
	"context"
	"encoding"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
)

type localWriter struct {
	s        *LocalStore
	ref      string
	dir      string
	lock     *os.File // the flock on dir; closing it releases the ref
	data     *os.File
	alg      digest.Algorithm
	h        hash.Hash
	offset   int64
	total    int64
	expected digest.Digest
	started  time.Time
	updated  time.Time
	closed   bool
	flushed  int64 // writeback started up to here (see startWriteback)
}

// writebackChunk is how much data collects before its writeback starts.
const writebackChunk = 8 << 20

// Writer implements Ingester.
func (s *LocalStore) Writer(ctx context.Context, ref string, size int64, expected digest.Digest) (Writer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkRef(ref); err != nil {
		return nil, err
	}
	if size < SizeUnknown {
		return nil, fmt.Errorf("ingest %q: size %d: %w", ref, size, errdefs.ErrInvalidArgument)
	}
	alg := digest.Canonical
	if expected != "" {
		target, err := s.BlobPath(expected)
		if err != nil {
			return nil, fmt.Errorf("ingest %q: %w", ref, err)
		}
		if _, err := os.Stat(target); err == nil {
			s.discardIngest(ref)
			return nil, fmt.Errorf("blob %s: %w", expected, errdefs.ErrAlreadyExists)
		}
		alg = expected.Algorithm()
	}

	lock, dir, err := s.lockIngest(ref, true)
	if err != nil {
		return nil, err
	}
	w := &localWriter{s: s, ref: ref, dir: dir, lock: lock, alg: alg, h: alg.Hash(), total: size, expected: expected}
	if err := w.open(ctx); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// open resumes the ingest when it was started with the same expectations
// and starts it over otherwise: data written for another size or digest is
// of no use to this one.
func (w *localWriter) open(ctx context.Context) error {
	path := filepath.Join(w.dir, dataFile)
	// A crash inside Commit can leave data read-only (see Commit).
	if err := os.Chmod(path, 0o600); err != nil && !errors.Is(err, os.ErrNotExist) {
		return w.errf("%w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return w.errf("%w", err)
	}
	w.data = f
	fi, err := f.Stat()
	if err != nil {
		return w.errf("%w", err)
	}
	m, ok := readMeta(w.dir)
	resume := ok && m.Ref == w.ref && m.Size == w.total && m.Expected == w.expected &&
		(w.total < 0 || fi.Size() <= w.total)
	if resume {
		w.started, w.updated = m.StartedAt, fi.ModTime()
		return w.rehash(ctx, fi.Size())
	}
	if err := f.Truncate(0); err != nil {
		return w.errf("%w", err)
	}
	w.started = time.Now().UTC()
	w.updated = w.started
	m = ingestMeta{Ref: w.ref, Size: w.total, Expected: w.expected, StartedAt: w.started}
	if err := writeMeta(w.dir, m); err != nil {
		return w.errf("%w", err)
	}
	return nil
}

// rehash sets the hash and offset to the first n bytes of data.
func (w *localWriter) rehash(ctx context.Context, n int64) error {
	w.h.Reset()
	w.offset, w.flushed = 0, 0
	got, err := io.CopyBuffer(w.h, ctxReader{ctx, io.NewSectionReader(w.data, 0, n)}, make([]byte, 1<<20))
	if err != nil {
		return w.errf("re-reading %d bytes to resume: %w", n, err)
	}
	if got != n {
		return w.errf("re-reading to resume: got %d of %d bytes", got, n)
	}
	w.offset = n
	return nil
}

// errf names the ingest (and its blob when known) in every error.
func (w *localWriter) errf(format string, args ...any) error {
	name := fmt.Sprintf("ingest %q", w.ref)
	if w.expected != "" {
		name += " (blob " + string(w.expected) + ")"
	}
	return fmt.Errorf("%s: "+format, append([]any{name}, args...)...)
}

func (w *localWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, w.errf("write after close or commit: %w", errdefs.ErrFailedPrecond)
	}
	if w.total >= 0 && int64(len(p)) > w.total-w.offset {
		return 0, w.errf("writing %d bytes at offset %d would exceed the expected size of %d bytes: %w",
			len(p), w.offset, w.total, errdefs.ErrFailedPrecond)
	}
	if err := w.writeAndHash(p); err != nil {
		return 0, w.errf("%w", err)
	}
	w.updated = time.Now().UTC()
	if w.offset-w.flushed >= writebackChunk {
		w.startWriteback()
	}
	return len(p), nil
}

// parallelMin is the chunk size from which Write hashes while a second
// goroutine copies into the page cache: below it, starting the goroutine
// costs more than the overlap saves.
const parallelMin = 256 << 10

// writeAndHash writes all of p at the offset, adds it to the hash and
// moves the offset past it, or on failure changes none of the three.
// Hashing is most of a write's cost, so big chunks overlap the two.
func (w *localWriter) writeAndHash(p []byte) error {
	if len(p) < parallelMin {
		if _, err := w.data.WriteAt(p, w.offset); err != nil {
			return w.undoWrite(err, nil)
		}
		w.h.Write(p)
		w.offset += int64(len(p))
		return nil
	}
	saved, err := w.h.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		_, err := w.data.WriteAt(p, w.offset)
		done <- err
	}()
	w.h.Write(p)
	if err := <-done; err != nil {
		return w.undoWrite(err, saved)
	}
	w.offset += int64(len(p))
	return nil
}

// undoWrite puts file and hash back to the offset after a failed write.
// The file may hold part of p (a disk filling up): os.File.WriteAt then
// returns 0 with the error, so the file is cut back rather than the count
// trusted. If even that fails, the writer closes; a resume re-reads
// whatever the file holds, which is consistent by construction.
func (w *localWriter) undoWrite(err error, savedHash []byte) error {
	if terr := w.data.Truncate(w.offset); terr != nil {
		w.Close()
		return errors.Join(err, fmt.Errorf("undoing a failed write: %w; writer closed", terr))
	}
	if savedHash != nil {
		if uerr := w.h.(encoding.BinaryUnmarshaler).UnmarshalBinary(savedHash); uerr != nil {
			w.Close()
			return errors.Join(err, uerr)
		}
	}
	return err
}

var copyBuffers = sync.Pool{New: func() any { return new([copyBufferSize]byte) }}

const copyBufferSize = 1 << 20

// ReadFrom makes io.Copy into a writer use chunks big enough for the
// parallel path: a network or decompressor read gives 16-32 KiB, which
// would hash and write one after the other.
func (w *localWriter) ReadFrom(r io.Reader) (int64, error) {
	buf := copyBuffers.Get().(*[copyBufferSize]byte)
	defer copyBuffers.Put(buf)
	var total int64
	for {
		n, rerr := io.ReadFull(r, buf[:])
		if n > 0 {
			// Written before a read error is returned, so a resume has it.
			if _, err := w.Write(buf[:n]); err != nil {
				return total, err
			}
			total += int64(n)
		}
		switch rerr {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return total, nil
		default:
			return total, rerr
		}
	}
}

// startWriteback asks the kernel to start writing what has collected
// since the last call, without waiting. The disk then works while we hash
// and the caller downloads, and Commit's fsync finds little left to do.
// It is only a hint: errors are for the fsync in Commit to report.
func (w *localWriter) startWriteback() {
	unix.SyncFileRange(int(w.data.Fd()), w.flushed, w.offset-w.flushed, unix.SYNC_FILE_RANGE_WRITE)
	w.flushed = w.offset
}

func (w *localWriter) ReadAt(p []byte, off int64) (int, error) {
	if w.closed {
		return 0, w.errf("read after close or commit: %w", errdefs.ErrFailedPrecond)
	}
	if off >= w.offset {
		return 0, io.EOF
	}
	if rem := w.offset - off; int64(len(p)) > rem {
		n, err := w.data.ReadAt(p[:rem], off)
		if err == nil {
			err = io.EOF
		}
		return n, err
	}
	return w.data.ReadAt(p, off)
}

func (w *localWriter) Digest() digest.Digest { return digest.NewDigest(w.alg, w.h) }

func (w *localWriter) Status() Status {
	return Status{Ref: w.ref, Offset: w.offset, Total: w.total, Expected: w.expected, StartedAt: w.started, UpdatedAt: w.updated}
}

func (w *localWriter) Truncate(size int64) error {
	if w.closed {
		return w.errf("truncate after close or commit: %w", errdefs.ErrFailedPrecond)
	}
	if size < 0 || size > w.offset {
		return w.errf("truncate to %d: only 0 to the offset %d: %w", size, w.offset, errdefs.ErrInvalidArgument)
	}
	if err := w.data.Truncate(size); err != nil {
		return w.errf("%w", err)
	}
	return w.rehash(context.Background(), size)
}

func (w *localWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	var err error
	if w.data != nil {
		err = w.data.Close()
	}
	w.lock.Close()
	return err
}

// discard removes the ingest while still holding its lock, then closes.
func (w *localWriter) discard() {
	os.RemoveAll(w.dir)
	w.Close()
}

func (w *localWriter) Commit(ctx context.Context, size int64, expected digest.Digest) error {
	if w.closed {
		return w.errf("commit after close or commit: %w", errdefs.ErrFailedPrecond)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	switch {
	case size < SizeUnknown:
		return w.errf("commit size %d: %w", size, errdefs.ErrInvalidArgument)
	case size == SizeUnknown:
		size = w.total
	case w.total >= 0 && size != w.total:
		return w.errf("commit size %d differs from the size %d the ingest was opened with: %w", size, w.total, errdefs.ErrInvalidArgument)
	}
	switch {
	case expected == "":
		expected = w.expected
	case w.expected != "" && expected != w.expected:
		return w.errf("commit digest %s differs from the digest the ingest was opened with: %w", expected, errdefs.ErrInvalidArgument)
	default:
		if err := validDigest(expected); err != nil {
			return w.errf("%w", err)
		}
		if expected.Algorithm() != w.alg {
			return w.errf("commit digest %s: this ingest hashes with %s: %w", expected, w.alg, errdefs.ErrInvalidArgument)
		}
	}

	if size >= 0 && w.offset != size {
		return w.errf("size mismatch: expected %d bytes, got %d: %w", size, w.offset, errdefs.ErrFailedPrecond)
	}
	actual := w.Digest()
	if expected != "" && actual != expected {
		// The bytes are wrong somewhere; resuming them could never succeed.
		err := w.errf("digest mismatch: expected %s, got %s (%d bytes); ingest emptied: %w",
			expected, actual, w.offset, errdefs.ErrFailedPrecond)
		return errors.Join(err, w.Truncate(0))
	}

	target, err := w.s.BlobPath(actual)
	if err != nil {
		return w.errf("%w", err)
	}
	algDir, err := w.s.ensureAlgDir(actual.Algorithm())
	if err != nil {
		return w.errf("%w", err)
	}
	// Read-only so that nothing writing through a stray path edits a blob
	// in place; mtime set to now because CreatedAt is read from it (a GC
	// grace period counts from the commit, not the last write).
	src := w.data.Name()
	now := time.Now()
	if err := w.data.Chmod(0o444); err != nil {
		return w.errf("%w", err)
	}
	if err := os.Chtimes(src, now, now); err != nil {
		return w.errf("%w", err)
	}
	if err := w.data.Sync(); err != nil {
		return w.errf("sync: %w", err)
	}
	if err := renameNoReplace(src, target); err != nil {
		if errors.Is(err, os.ErrExist) {
			// Someone committed the same bytes first (we verified ours).
			w.discard()
			return fmt.Errorf("blob %s: %w", actual, errdefs.ErrAlreadyExists)
		}
		return w.errf("%w", err)
	}
	if err := fsutil.SyncDir(algDir); err != nil {
		// The blob is visible but may not survive a power cut; say so
		// rather than claim a durable commit.
		w.discard()
		return fmt.Errorf("blob %s: sync %s: %w", actual, algDir, err)
	}
	w.discard()
	return nil
}

// renameNoReplace moves src to dst unless dst exists (os.ErrExist). Plain
// rename would keep the store correct, since equal names mean equal bytes,
// but would swap the winner's file for the loser's and tell both "created".
func renameNoReplace(src, dst string) error {
	err := unix.Renameat2(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, unix.RENAME_NOREPLACE)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EEXIST) {
		return os.ErrExist
	}
	if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOSYS) {
		return &os.LinkError{Op: "rename", Old: src, New: dst, Err: err}
	}
	// File systems without RENAME_NOREPLACE: check, then rename. The
	// window only lets two equal blobs replace one another.
	if _, err := os.Lstat(dst); err == nil {
		return os.ErrExist
	}
	return os.Rename(src, dst)
}
