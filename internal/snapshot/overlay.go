package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/moby/sys/userns"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Mount is one mount(2) that makes a snapshot's file system.
type Mount struct {
	Type    string
	Source  string
	Options []string
	// Program mounts an overlay in user space instead of the kernel
	// (fuse-overlayfs); "" for the kernel's, with fuse-overlayfs as the
	// fallback where the kernel refuses overlay in a user namespace.
	Program string
}

// FuseOverlay is fuse-overlayfs, the overlay in user space for kernels
// that do not let a user namespace mount overlayfs (before Linux 5.11).
const FuseOverlay = "fuse-overlayfs"

// Mount mounts m at target.
func (m Mount) Mount(target string) error {
	if m.Type == "overlay" && m.Program != "" {
		return m.mountProgram(m.Program, target)
	}
	err := m.mount(target)
	if m.Type == "overlay" && errors.Is(err, unix.EPERM) && userns.RunningInUserNS() {
		prog, lerr := exec.LookPath(FuseOverlay)
		if lerr != nil {
			return fmt.Errorf("%w: the kernel refuses overlayfs in this user namespace, and %s is not installed (Debian: apt-get install fuse-overlayfs)", err, FuseOverlay)
		}
		return m.mountProgram(prog, target)
	}
	return err
}

// mountProgram mounts an overlay with prog (fuse-overlayfs), which stays
// as the file system's server until it is unmounted. Without an upper
// directory it is read-only; the kernel-only options are left out.
func (m Mount) mountProgram(prog, target string) error {
	var opts []string
	for _, o := range m.Options {
		if k, _, _ := strings.Cut(o, "="); k == "lowerdir" || k == "upperdir" || k == "workdir" {
			opts = append(opts, o)
		}
	}
	cmd := exec.Command(prog, "-o", strings.Join(opts, ","), target)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("mount overlay on %s with %s: %v: %s", target, prog, err, bytes.TrimSpace(out))
	}
	return nil
}

func (m Mount) mount(target string) error {
	var flags uintptr
	var data []string
	for _, o := range m.Options {
		switch o {
		case "ro":
			flags |= unix.MS_RDONLY
		case "bind":
			flags |= unix.MS_BIND
		case "rbind":
			flags |= unix.MS_BIND | unix.MS_REC
		default:
			data = append(data, o)
		}
	}
	if err := unix.Mount(m.Source, target, m.Type, flags&^unix.MS_RDONLY, strings.Join(data, ",")); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.Type, target, err)
	}
	if flags&unix.MS_BIND != 0 && flags&unix.MS_RDONLY != 0 {
		// A bind mount takes its read-only flag only on a remount.
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			unix.Unmount(target, unix.MNT_DETACH)
			return fmt.Errorf("remount %s read-only: %w", target, err)
		}
	}
	return nil
}

// Overlay keeps snapshots as overlay layers: one directory per snapshot
// (fs: the layer's files, work: overlay's work directory), the chain of
// parents in the metadata store. A committed snapshot is a lower layer of
// its children; an active one is the upper layer of its mount.
type Overlay struct {
	root string
	db   metadata.SnapshotStore
	// MountProgram mounts its overlays in user space (fuse-overlayfs);
	// "" for the kernel's overlayfs.
	MountProgram string
}

// NewOverlay keeps snapshots below root.
func NewOverlay(root string, db metadata.SnapshotStore) (*Overlay, error) {
	for _, d := range []string{"s", "staging"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("snapshot root %s: %w", root, err)
		}
	}
	f, err := os.OpenFile(filepath.Join(root, "lock"), os.O_RDONLY|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("snapshot root %s: %w", root, err)
	}
	f.Close()
	return &Overlay{root: root, db: db}, nil
}

// lock holds the store's lock (one for all processes) while a directory
// is made and recorded, renamed and recorded, or swept. Each holder does
// only a few file system calls and one metadata transaction; under it, a
// directory without a record is a crash's leftover, never a snapshot
// another process is making.
func (o *Overlay) lock() (*fsutil.Lock, error) {
	return fsutil.LockPath(filepath.Join(o.root, "lock"))
}

// claim makes key's directory, with the lock held. A record means the
// snapshot exists (ErrAlreadyExists); a directory without one is a
// crash's leftover and is replaced.
func (o *Overlay) claim(ctx context.Context, key string) (string, error) {
	if _, err := o.db.GetSnapshot(ctx, key); err == nil {
		return "", fmt.Errorf("snapshot %s: %w", key, errdefs.ErrAlreadyExists)
	} else if !errdefs.IsNotFound(err) {
		return "", err
	}
	d := o.dir(key)
	err := os.Mkdir(d, 0o700)
	if errors.Is(err, os.ErrExist) {
		if err := os.RemoveAll(d); err != nil {
			return "", err
		}
		err = os.Mkdir(d, 0o700)
	}
	return d, err
}

// dirName is a key's directory name: short (overlay's mount options hold
// every lower directory of a chain in one page) and derived from the key,
// so it needs no record of its own.
func dirName(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:8])
}

func (o *Overlay) dir(key string) string { return filepath.Join(o.root, "s", dirName(key)) }

// UpperDir is where a layer is applied into an active snapshot.
func (o *Overlay) UpperDir(key string) string { return filepath.Join(o.dir(key), "fs") }

// Prepare makes a writable snapshot key on top of the committed parent
// ("" for none), recorded with labels, and returns its mounts.
func (o *Overlay) Prepare(ctx context.Context, key, parent string, labels map[string]string) ([]Mount, error) {
	return o.create(ctx, key, parent, metadata.KindActive, labels)
}

// View makes a read-only snapshot key of the committed parent.
func (o *Overlay) View(ctx context.Context, key, parent string) ([]Mount, error) {
	if parent == "" {
		return nil, fmt.Errorf("view %s: needs a parent: %w", key, errdefs.ErrInvalidArgument)
	}
	return o.create(ctx, key, parent, metadata.KindView, nil)
}

func (o *Overlay) create(ctx context.Context, key, parent string, kind metadata.Kind, labels map[string]string) (_ []Mount, retErr error) {
	lock, err := o.lock()
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	// The directory first: a crash then leaves an unrecorded directory,
	// which the collector removes, never a record without its files.
	d, err := o.claim(ctx, key)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(d)
		}
	}()
	for _, sub := range []string{"fs", "work"} {
		if err := os.Mkdir(filepath.Join(d, sub), 0o755); err != nil {
			return nil, err
		}
	}
	if _, err := o.db.CreateSnapshot(ctx, metadata.Snapshot{Key: key, Parent: parent, Kind: kind, Labels: labels}); err != nil {
		return nil, err
	}
	return o.Mounts(ctx, key)
}

// Mounts returns how to mount snapshot key.
func (o *Overlay) Mounts(ctx context.Context, key string) ([]Mount, error) {
	s, err := o.db.GetSnapshot(ctx, key)
	if err != nil {
		return nil, err
	}
	var lowers []string
	for p := s.Parent; p != ""; {
		lowers = append(lowers, filepath.Join(o.dir(p), "fs"))
		ps, err := o.db.GetSnapshot(ctx, p)
		if err != nil {
			return nil, fmt.Errorf("snapshot %s: parent chain: %w", key, err)
		}
		p = ps.Parent
	}
	upper := filepath.Join(o.dir(key), "fs")
	switch {
	case s.Kind == metadata.KindView && len(lowers) == 1:
		return []Mount{{Type: "bind", Source: lowers[0], Options: []string{"ro", "rbind"}}}, nil
	case s.Kind == metadata.KindView:
		return []Mount{{Type: "overlay", Source: "overlay", Program: o.MountProgram, Options: withUserXattr("ro", "lowerdir="+strings.Join(lowers, ":"))}}, nil
	case len(lowers) == 0:
		opts := []string{"rbind"}
		if s.Kind == metadata.KindCommitted {
			opts = append(opts, "ro")
		}
		return []Mount{{Type: "bind", Source: upper, Options: opts}}, nil
	case s.Kind == metadata.KindCommitted:
		return []Mount{{Type: "overlay", Source: "overlay", Program: o.MountProgram, Options: withUserXattr("ro", "lowerdir="+strings.Join(append([]string{upper}, lowers...), ":"))}}, nil
	}
	return []Mount{{Type: "overlay", Source: "overlay", Program: o.MountProgram, Options: withUserXattr("index=off", "lowerdir="+strings.Join(lowers, ":"),
		"upperdir="+upper, "workdir="+filepath.Join(o.dir(key), "work"))}}, nil
}

// Commit turns the active snapshot key into the committed snapshot name,
// a possible parent, recording the layer's diffID and chainID.
func (o *Overlay) Commit(ctx context.Context, name, key string, diffID, chainID digest.Digest) error {
	s, err := o.db.GetSnapshot(ctx, key)
	if err != nil {
		return err
	}
	if s.Kind != metadata.KindActive {
		return fmt.Errorf("commit %s: snapshot %s is %s, not active: %w", name, key, s.Kind, errdefs.ErrFailedPrecond)
	}
	size, err := dirSize(o.UpperDir(key))
	if err != nil {
		return err
	}
	lock, err := o.lock()
	if err != nil {
		return err
	}
	defer lock.Unlock()
	d, err := o.claim(ctx, name)
	if err != nil {
		return fmt.Errorf("commit %s: %w", name, err)
	}
	if err := os.Remove(d); err != nil {
		return err
	}
	if err := os.Rename(o.dir(key), d); err != nil {
		return err
	}
	os.RemoveAll(filepath.Join(o.dir(name), "work", "work")) // overlay's leftovers
	_, err = o.db.CreateSnapshot(ctx, metadata.Snapshot{Key: name, Parent: s.Parent, Kind: metadata.KindCommitted,
		DiffID: diffID, ChainID: chainID, Size: size, Labels: s.Labels})
	if err != nil {
		os.Rename(o.dir(name), o.dir(key))
		return err
	}
	return o.db.DeleteSnapshot(ctx, key)
}

// Staging returns a new directory D on the snapshots' file system, with an
// empty D/fs to unpack a layer into before its parent is committed (layers
// of one pull unpack in parallel); other files the caller puts in D stay
// with the snapshot. Adopt turns D into a snapshot. owner names what
// protects it (the pull's lease): Sweep removes staging directories whose
// owner it is not told is live.
func (o *Overlay) Staging(owner string) (string, error) {
	if owner == "" || strings.ContainsAny(owner, "./") {
		return "", fmt.Errorf("staging owner %q: %w", owner, errdefs.ErrInvalidArgument)
	}
	lock, err := o.lock()
	if err != nil {
		return "", err
	}
	defer lock.Unlock()
	d, err := os.MkdirTemp(filepath.Join(o.root, "staging"), owner+".")
	if err != nil {
		return "", err
	}
	return d, os.Mkdir(filepath.Join(d, "fs"), 0o755)
}

// Dir is snapshot key's directory: fs/ holds its files, work/ is
// overlay's; anything else was put there by the caller through Staging.
func (o *Overlay) Dir(key string) string { return o.dir(key) }

// Adopt commits the layer unpacked in staging (from Staging) as the
// snapshot name on top of the committed parent, with labels.
func (o *Overlay) Adopt(ctx context.Context, name, parent, staging string, diffID, chainID digest.Digest, labels map[string]string) (retErr error) {
	// Sized before the lock is taken: a walk of a large layer is slow.
	size, err := dirSize(filepath.Join(staging, "fs"))
	if err != nil {
		return err
	}
	lock, err := o.lock()
	if err != nil {
		return err
	}
	defer lock.Unlock()
	d, err := o.claim(ctx, name)
	if err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(d)
		}
	}()
	// The claimed directory is empty, and rename(2) replaces an empty
	// directory (os.Rename refuses to).
	if err := unix.Rename(staging, d); err != nil {
		return fmt.Errorf("adopt %s: %w", name, err)
	}
	if err := os.Mkdir(filepath.Join(d, "work"), 0o755); err != nil {
		return err
	}
	_, err = o.db.CreateSnapshot(ctx, metadata.Snapshot{Key: name, Parent: parent, Kind: metadata.KindCommitted,
		DiffID: diffID, ChainID: chainID, Size: size, Labels: labels})
	return err
}

// CheckDir reports whether snapshot key's files are there.
func (o *Overlay) CheckDir(key string) error {
	fi, err := os.Stat(filepath.Join(o.dir(key), "fs"))
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("directory %s: not a directory", filepath.Join(o.dir(key), "fs"))
	}
	return nil
}

// Remove deletes snapshot key; a committed snapshot with children is
// refused by the metadata store.
func (o *Overlay) Remove(ctx context.Context, key string) error {
	if err := o.db.DeleteSnapshot(ctx, key); err != nil {
		return err
	}
	return os.RemoveAll(o.dir(key))
}

// Live is what Sweep must keep.
type Live struct {
	// Snapshots are the live keys (GC roots and their parent chains).
	Snapshots map[string]bool
	// Owners are the live owners of staging directories.
	Owners map[string]bool
}

// Sweep removes what nothing keeps alive: every snapshot whose key is not
// live (live is read under the lock), children before parents; every
// snapshot directory with neither a record nor a live key (a crash between
// mkdir and record); every staging directory whose owner is not live (a
// pull that died). It holds the lock exclusively, so no snapshot or
// staging directory is half made meanwhile, and returns the keys removed.
func (o *Overlay) Sweep(ctx context.Context, live func(context.Context) (Live, error)) ([]string, error) {
	lock, err := o.lock()
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()
	l, err := live(ctx)
	if err != nil {
		return nil, err
	}
	alive := l.Snapshots
	parent := map[string]string{}
	err = o.db.WalkSnapshots(ctx, func(s metadata.Snapshot) error {
		parent[s.Key] = s.Parent
		return nil
	})
	if err != nil {
		return nil, err
	}
	depth := func(k string) int {
		n := 0
		for p, ok := parent[k]; ok && p != "" && n <= len(parent); p, ok = parent[p] {
			n++
		}
		return n
	}
	var dead []string
	for k := range parent {
		if !alive[k] {
			dead = append(dead, k)
		}
	}
	// Deepest first: a snapshot with children cannot go.
	slices.SortFunc(dead, func(a, b string) int { return depth(b) - depth(a) })
	var removed []string
	for _, k := range dead {
		if err := ctx.Err(); err != nil {
			return removed, err
		}
		if err := o.db.DeleteSnapshot(ctx, k); err != nil && !errdefs.IsNotFound(err) {
			return removed, fmt.Errorf("sweep %s: %w", k, err)
		}
		delete(parent, k)
		if err := os.RemoveAll(o.dir(k)); err != nil {
			return removed, fmt.Errorf("sweep %s: %w", k, err)
		}
		removed = append(removed, k)
	}
	keep := map[string]bool{}
	for k := range parent {
		keep[dirName(k)] = true
	}
	for k := range alive {
		keep[dirName(k)] = true
	}
	sweepDir := func(sub string, keep func(name string) bool) error {
		entries, err := os.ReadDir(filepath.Join(o.root, sub))
		if err != nil {
			return err
		}
		for _, e := range entries {
			if keep(e.Name()) {
				continue
			}
			if err := os.RemoveAll(filepath.Join(o.root, sub, e.Name())); err != nil {
				return fmt.Errorf("sweep %s: %w", e.Name(), err)
			}
		}
		return nil
	}
	if err := sweepDir("s", func(n string) bool { return keep[n] }); err != nil {
		return removed, err
	}
	err = sweepDir("staging", func(n string) bool {
		owner, _, _ := strings.Cut(n, ".")
		return l.Owners[owner]
	})
	if err != nil {
		return removed, err
	}
	return removed, nil
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n, err
}

// overlayXattr is the prefix of overlayfs's own attributes (opaque
// directories) in the layers this process unpacks: trusted.overlay.,
// which needs the host's CAP_SYS_ADMIN, or, in a user namespace (an
// unprivileged user's store), user.overlay., which overlayfs reads when
// mounted with "userxattr" (Linux 5.11).
var overlayXattr = func() string {
	if userns.RunningInUserNS() {
		return userOverlayXattr
	}
	return "trusted.overlay."
}()

const userOverlayXattr = "user.overlay."

// withUserXattr adds "userxattr" to an overlay's options in a user
// namespace, where the layers' overlay attributes are user.overlay.*.
func withUserXattr(opts ...string) []string {
	if overlayXattr == userOverlayXattr {
		opts = append(opts, "userxattr")
	}
	return opts
}
