// Package fsutil holds the file system helpers every store needs: crash-safe
// writes and locks.
package fsutil

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// WriteFileAtomic replaces path with data so that a crash leaves either the
// old or the new content: write a temporary file, fsync, rename, fsync dir.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, data, perm, true)
}

// ReplaceFile replaces path with data atomically for readers and against a
// crash of the writing process, without fsync: for state that does not
// outlive a reboot (a runtime's state under /run), where a sync costs time on
// every container start and buys nothing.
func ReplaceFile(path string, data []byte, perm os.FileMode) error {
	return writeAtomic(path, data, perm, false)
}

// WriteAtomic is WriteFileAtomic for content written by fill as a stream
// (an archive): path appears whole, or not at all.
func WriteAtomic(path string, perm os.FileMode, fill func(io.Writer) error) error {
	return writeStream(path, perm, true, fill)
}

func writeAtomic(path string, data []byte, perm os.FileMode, durable bool) error {
	return writeStream(path, perm, durable, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

func writeStream(path string, perm os.FileMode, durable bool, fill func(io.Writer) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := fill(f); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			return fmt.Errorf("sync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	if !durable {
		return nil
	}
	return SyncDir(dir)
}

// SyncDir makes a rename or create in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Lock is an exclusive flock held on an open file or directory.
type Lock struct{ f *os.File }

// LockPath takes an exclusive lock on path (a file or directory), waiting for
// other holders.
func LockPath(path string) (*Lock, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return &Lock{f: f}, nil
}

// Unlock releases the lock; it is safe on a nil Lock.
func (l *Lock) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
