// Package content is berth's content-addressed blob store: layers, configs,
// manifests and indexes, each stored once under its digest.
//
// The contract every implementation keeps (contenttest.TestSuite checks it):
//
//   - A blob becomes visible only after its size and digest were verified
//     and the bytes are durable; a reader never sees a partial blob.
//   - Writes go to an ingest named by a caller's ref. One writer holds a ref
//     at a time, across processes; a second gets errdefs.ErrUnavailable.
//   - An ingest survives its writer (closed without commit, or killed) and is
//     resumed by opening the same ref with the same expectations.
//   - A write past the expected size fails at once and writes nothing, so a
//     decompression bomb or oversized manifest costs no more than was promised.
//
// Error classes: errdefs.ErrNotFound (no such blob or ingest),
// errdefs.ErrAlreadyExists (the blob is stored already: success for callers
// that only want it present), errdefs.ErrUnavailable (ref in use),
// errdefs.ErrInvalidArgument (a malformed digest, ref or size from the
// caller), errdefs.ErrFailedPrecond (content that is not what was promised:
// too long, wrong size or wrong digest at commit, or a corrupt stored blob).
package content

import (
	"context"
	"io"
	"time"

	"github.com/opencontainers/go-digest"
)

// SizeUnknown stands for a size the caller does not know. It is negative
// because zero is a real size (the empty blob).
const SizeUnknown int64 = -1

// Info describes a committed blob. Labels are not kept here: what refers to
// a blob, and why, is metadata's business, in one bbolt transaction.
type Info struct {
	Digest    digest.Digest
	Size      int64
	CreatedAt time.Time // when it was committed
}

// Status describes an ingest in progress.
type Status struct {
	Ref       string
	Offset    int64         // bytes written so far; a resume continues here
	Total     int64         // expected size, or SizeUnknown
	Expected  digest.Digest // expected digest, or ""
	StartedAt time.Time
	UpdatedAt time.Time
}

// ReaderAt reads one committed blob.
type ReaderAt interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Provider gives read access to committed blobs.
type Provider interface {
	// ReaderAt opens the blob dgst; errdefs.ErrNotFound if it is not stored.
	ReaderAt(ctx context.Context, dgst digest.Digest) (ReaderAt, error)
	// Info returns the blob's size and commit time; errdefs.ErrNotFound if
	// it is not stored.
	Info(ctx context.Context, dgst digest.Digest) (Info, error)
}

// Ingester adds blobs.
type Ingester interface {
	// Writer opens the ingest ref for a blob of the given size (or
	// SizeUnknown) and digest (or ""). Pass both whenever a descriptor gives
	// them: they are what lets the store refuse bad content early.
	//
	// If the ref has data from an earlier writer with the same expectations,
	// the writer resumes after it (see Writer.Status); with other
	// expectations the old data is discarded. If expected is stored already,
	// Writer returns an error wrapping errdefs.ErrAlreadyExists and no
	// writer. If another writer holds ref, in this process or another, it
	// returns an error wrapping errdefs.ErrUnavailable.
	Writer(ctx context.Context, ref string, size int64, expected digest.Digest) (Writer, error)
}

// Writer streams one blob into an ingest. It is not safe for concurrent use.
type Writer interface {
	// Write appends p. A write that would take the ingest past its expected
	// size fails with errdefs.ErrFailedPrecond and writes nothing.
	io.Writer
	// Close releases the ref and keeps its data for a later resume. It is
	// safe after Commit, and twice.
	io.Closer
	// ReadAt reads what has been written so far (below Status().Offset):
	// a resumed download replays it into its consumer.
	io.ReaderAt
	// Digest is the digest of everything written so far.
	Digest() digest.Digest
	// Status reports the ingest; Offset is where the next Write goes.
	Status() Status
	// Commit verifies the content against size and expected (SizeUnknown
	// and "" mean: use what Writer was given) and only then makes the blob
	// visible, durably. On success the ref is gone and the writer closed.
	//
	// If the verified blob is stored already, Commit discards the ingest and
	// returns an error wrapping errdefs.ErrAlreadyExists: callers that only
	// need the blob present treat that as success. On a digest mismatch
	// nothing becomes visible and the ingest is emptied, so a retry starts
	// over instead of resuming bad data; on a short size the data is kept
	// and writing may go on.
	Commit(ctx context.Context, size int64, expected digest.Digest) error
	// Truncate cuts the ingest back to size bytes (at most the current
	// offset), for a caller that knows the tail is bad.
	Truncate(size int64) error
}

// IngestManager inspects and removes ingests.
type IngestManager interface {
	// Status reports the ingest ref, held or not; errdefs.ErrNotFound if none.
	Status(ctx context.Context, ref string) (Status, error)
	// Abort removes the ingest ref and its data; errdefs.ErrUnavailable if a
	// writer holds it, errdefs.ErrNotFound if there is none.
	Abort(ctx context.Context, ref string) error
	// CleanIngests removes ingests not written to for olderThan and not held
	// by a writer, and returns their refs. Interrupted pulls leave these.
	CleanIngests(ctx context.Context, olderThan time.Duration) ([]string, error)
}

// Manager lists, checks and removes committed blobs: what GC and
// `berth system check` need.
type Manager interface {
	Info(ctx context.Context, dgst digest.Digest) (Info, error)
	// Walk calls fn for every committed blob, in no set order; an error from
	// fn stops the walk and is returned.
	Walk(ctx context.Context, fn func(Info) error) error
	// Delete removes a blob; errdefs.ErrNotFound if it is not stored.
	// Readers that have it open keep reading it.
	Delete(ctx context.Context, dgst digest.Digest) error
	// Verify re-hashes a stored blob; a blob whose content does not match
	// its name gives a *CorruptError.
	Verify(ctx context.Context, dgst digest.Digest) error
}

// Store is a whole content store.
type Store interface {
	Provider
	Ingester
	IngestManager
	Manager
}
