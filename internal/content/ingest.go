package content

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
)

// An ingest directory holds:
//
//	meta.json  the ref and the expectations it was opened with
//	data       the bytes written so far; its length is the offset
//
// The offset is not recorded anywhere else, so no crash can make the two
// disagree. The running hash is not saved either: a resume re-reads data,
// which costs one hash pass over what is there and cannot go stale.
const (
	metaFile = "meta.json"
	dataFile = "data"
)

type ingestMeta struct {
	Ref       string        `json:"ref"`
	Size      int64         `json:"size"`
	Expected  digest.Digest `json:"expected,omitempty"`
	StartedAt time.Time     `json:"startedAt"`
}

func (s *LocalStore) ingestRoot() string { return filepath.Join(s.root, "ingest") }

// ingestDir names a ref's directory by a hash of it: refs are caller
// strings (often a descriptor or a URL) and must not become paths.
func (s *LocalStore) ingestDir(ref string) string {
	sum := sha256.Sum256([]byte(ref))
	return filepath.Join(s.ingestRoot(), hex.EncodeToString(sum[:]))
}

var errLocked = errors.New("locked")

// lockDir takes a non-blocking flock on dir, creating it if asked. The lock
// lives on the directory's inode, and holders remove the directory while
// holding it; so after locking, dir must still be the inode we locked, or
// we locked a removed directory and try again on the new one.
func lockDir(dir string, create bool) (*os.File, error) {
	for range 8 {
		if create {
			if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
				return nil, err
			}
		}
		f, err := os.Open(dir)
		if err != nil {
			if create && errors.Is(err, fs.ErrNotExist) {
				continue // removed between mkdir and open
			}
			return nil, err
		}
		if err := flockNB(f); err != nil {
			f.Close()
			return nil, err
		}
		var held, now unix.Stat_t
		if unix.Fstat(int(f.Fd()), &held) == nil && unix.Stat(dir, &now) == nil &&
			held.Dev == now.Dev && held.Ino == now.Ino {
			return f, nil
		}
		f.Close() // and look again: gone, or a new directory in its place
	}
	return nil, fmt.Errorf("%s keeps being replaced: %w", dir, errLocked)
}

func flockNB(f *os.File) error {
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return errLocked
		default:
			return fmt.Errorf("flock %s: %w", f.Name(), err)
		}
	}
}

// lockIngest locks ref's directory and turns lockDir's errors into the
// ones callers see.
func (s *LocalStore) lockIngest(ref string, create bool) (*os.File, string, error) {
	dir := s.ingestDir(ref)
	f, err := lockDir(dir, create)
	switch {
	case err == nil:
		return f, dir, nil
	case errors.Is(err, errLocked):
		return nil, "", fmt.Errorf("ingest %q: held by another writer (lock on %s): %w", ref, dir, errdefs.ErrUnavailable)
	case errors.Is(err, fs.ErrNotExist):
		return nil, "", fmt.Errorf("ingest %q: %w", ref, errdefs.ErrNotFound)
	default:
		return nil, "", fmt.Errorf("ingest %q: %w", ref, err)
	}
}

// readMeta returns the ingest's meta, or ok=false when it is missing or
// unreadable: a crash before the first ReplaceFile leaves no meta, and such
// an ingest is simply started over.
func readMeta(dir string) (m ingestMeta, ok bool) {
	b, err := os.ReadFile(filepath.Join(dir, metaFile))
	if err != nil || json.Unmarshal(b, &m) != nil {
		return ingestMeta{}, false
	}
	return m, true
}

// writeMeta does not sync: meta lost to a power cut only restarts an ingest.
func writeMeta(dir string, m ingestMeta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return fsutil.ReplaceFile(filepath.Join(dir, metaFile), b, 0o600)
}

func checkRef(ref string) error {
	if ref == "" {
		return fmt.Errorf("ingest ref: empty: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// Status implements IngestManager. It takes no lock: it reads what a
// writer, if any, has written so far.
func (s *LocalStore) Status(ctx context.Context, ref string) (Status, error) {
	if err := ctx.Err(); err != nil {
		return Status{}, err
	}
	if err := checkRef(ref); err != nil {
		return Status{}, err
	}
	dir := s.ingestDir(ref)
	di, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Status{}, fmt.Errorf("ingest %q: %w", ref, errdefs.ErrNotFound)
		}
		return Status{}, fmt.Errorf("ingest %q: %w", ref, err)
	}
	st := Status{Ref: ref, Total: SizeUnknown, StartedAt: di.ModTime(), UpdatedAt: di.ModTime()}
	if m, ok := readMeta(dir); ok && m.Ref == ref {
		st.Total, st.Expected, st.StartedAt = m.Size, m.Expected, m.StartedAt
	}
	if fi, err := os.Stat(filepath.Join(dir, dataFile)); err == nil {
		st.Offset, st.UpdatedAt = fi.Size(), fi.ModTime()
	}
	return st, nil
}

// Abort implements IngestManager.
func (s *LocalStore) Abort(ctx context.Context, ref string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkRef(ref); err != nil {
		return err
	}
	lock, dir, err := s.lockIngest(ref, false)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("ingest %q: %w", ref, err)
	}
	return nil
}

// discardIngest removes ref's ingest if no one holds it. It is tidying
// only, so every failure is ignored.
func (s *LocalStore) discardIngest(ref string) {
	lock, dir, err := s.lockIngest(ref, false)
	if err != nil {
		return
	}
	os.RemoveAll(dir)
	lock.Close()
}

// CleanIngests implements IngestManager. The age is the newest mtime of the
// directory and its files, read again once the lock is held, so an ingest
// a writer touched between our look and our lock is kept.
func (s *LocalStore) CleanIngests(ctx context.Context, olderThan time.Duration) ([]string, error) {
	entries, err := os.ReadDir(s.ingestRoot())
	if err != nil {
		return nil, fmt.Errorf("content store %s: %w", s.root, err)
	}
	cutoff := time.Now().Add(-olderThan)
	var removed []string
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(s.ingestRoot(), e.Name())
		if !lastChange(dir).Before(cutoff) {
			continue
		}
		lock, err := lockDir(dir, false)
		if err != nil {
			continue // held by a writer, or gone already
		}
		if lastChange(dir).Before(cutoff) {
			name := "(unknown ref, " + e.Name() + ")"
			if m, ok := readMeta(dir); ok {
				name = m.Ref
			}
			if err := os.RemoveAll(dir); err != nil {
				lock.Close()
				return removed, fmt.Errorf("ingest %s: %w", name, err)
			}
			removed = append(removed, name)
		}
		lock.Close()
	}
	return removed, nil
}

func lastChange(dir string) time.Time {
	var t time.Time
	for _, p := range []string{dir, filepath.Join(dir, metaFile), filepath.Join(dir, dataFile)} {
		if fi, err := os.Stat(p); err == nil && fi.ModTime().After(t) {
			t = fi.ModTime()
		}
	}
	return t
}
