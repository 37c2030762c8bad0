// Package metadata is berth's embedded, transactional metadata: images
// (and so tags), snapshots and leases, in one bbolt file, plus the mark
// phase of garbage collection.
//
// Several processes (the berth CLI and berthd) share one store. bbolt
// guards its file with an flock held for as long as it is open, so a DB here
// opens the file for each transaction and closes it after: a long-lived
// berthd then never locks the CLI out, and bbolt (through the flock)
// serialises writers across processes. A transaction that cannot get the
// lock within the bound (the context's deadline, else the lock timeout) fails
// with errdefs.ErrUnavailable naming the file. Reading opens the file
// read-only under a shared lock, so readers in several processes run at once.
//
// Every change is one bbolt transaction: a crash leaves the store as it was
// before or after, never between.
package metadata

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	bolt "go.etcd.io/bbolt"
)

// DefaultLockTimeout bounds the wait for another process's transaction.
// Transactions are short, so a wait this long means a stuck process.
const DefaultLockTimeout = 10 * time.Second

// Option changes how Open behaves.
type Option func(*DB)

// WithLockTimeout sets the bound on waiting for another process's lock.
func WithLockTimeout(d time.Duration) Option {
	return func(db *DB) {
		if d > 0 {
			db.lockTimeout = d
		}
	}
}

// DB is a handle on one metadata file. It is safe for concurrent use.
type DB struct {
	path        string
	lockTimeout time.Duration

	// mu orders this process's own transactions: the flock alone would do
	// it too, but by polling, which is slow within one process.
	mu     sync.RWMutex
	closed bool
}

// Open creates the store at path if it is missing, checks its schema
// version and returns a handle. The directory must exist.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	db := &DB{path: path, lockTimeout: DefaultLockTimeout}
	for _, o := range opts {
		o(db)
	}
	// A store that has its schema is only read (a write costs two
	// fsyncs, on every berth command); a new or older one is written.
	if _, err := os.Stat(path); err == nil {
		if err := db.view(ctx, func(buckets) error { return nil }); err == nil {
			return db, nil
		}
	}
	err := db.update(ctx, func(tx *bolt.Tx) error { return initSchema(tx, path) }, false)
	if err != nil {
		return nil, err
	}
	return db, nil
}

// Path is the file the store lives in.
func (db *DB) Path() string { return db.path }

// Close makes the handle unusable. No file stays open between transactions,
// so there is nothing else to release.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.closed = true
	return nil
}

// view runs fn in a read transaction.
func (db *DB) view(ctx context.Context, fn func(b buckets) error) error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	bdb, err := db.openBolt(ctx, true)
	if err != nil {
		return err
	}
	defer bdb.Close()
	return bdb.View(func(tx *bolt.Tx) error {
		b, err := getBuckets(tx, db.path)
		if err != nil {
			return err
		}
		return fn(b)
	})
}

// updateBuckets runs fn in one write transaction, committed if fn returns nil.
func (db *DB) updateBuckets(ctx context.Context, fn func(b buckets) error) error {
	return db.update(ctx, func(tx *bolt.Tx) error {
		b, err := getBuckets(tx, db.path)
		if err != nil {
			return err
		}
		return fn(b)
	}, true)
}

func (db *DB) update(ctx context.Context, fn func(tx *bolt.Tx) error, mustExist bool) error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if mustExist {
		// bbolt would silently create an empty file; a store removed
		// under us is an error, not a fresh start.
		if _, err := os.Stat(db.path); err != nil {
			return fmt.Errorf("metadata %s: %w", db.path, errdefs.ErrNotFound)
		}
	}
	bdb, err := db.openBolt(ctx, false)
	if err != nil {
		return err
	}
	if err := bdb.Update(fn); err != nil {
		bdb.Close()
		return err
	}
	if err := bdb.Close(); err != nil {
		return fmt.Errorf("metadata %s: close: %w", db.path, err)
	}
	return nil
}

func (db *DB) openBolt(ctx context.Context, readOnly bool) (*bolt.DB, error) {
	if db.closed {
		return nil, fmt.Errorf("metadata %s: closed: %w", db.path, errdefs.ErrFailedPrecond)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("metadata %s: %w", db.path, err)
	}
	timeout := db.lockTimeout
	if dl, ok := ctx.Deadline(); ok {
		if left := time.Until(dl); left < timeout {
			timeout = max(left, time.Millisecond) // 0 would mean wait forever
		}
	}
	bdb, err := bolt.Open(db.path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly})
	switch {
	case err == nil:
		return bdb, nil
	case errors.Is(err, bolt.ErrTimeout):
		return nil, fmt.Errorf("metadata %s: locked by another process for more than %s: %w",
			db.path, timeout, errdefs.ErrUnavailable)
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("metadata %s: %w", db.path, errdefs.ErrNotFound)
	default:
		return nil, fmt.Errorf("metadata %s: open: %w", db.path, err)
	}
}

// putJSON and getJSON keep the encoding in one place; what is decoded is
// named in errors, so a corrupt record can be found.
func putJSON(b *bolt.Bucket, key []byte, v any, what string) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s: encode: %w", what, err)
	}
	if err := b.Put(key, data); err != nil {
		return fmt.Errorf("%s: write: %w", what, err)
	}
	return nil
}

func getJSON(data []byte, v any, what string) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%s: decode stored record: %v: %w", what, err, errdefs.ErrFailedPrecond)
	}
	return nil
}
