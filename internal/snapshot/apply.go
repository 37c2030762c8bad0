// Package snapshot holds layer snapshots: the tar applier that turns an OCI
// layer into an overlay upper directory, and (later) the snapshotter.
package snapshot

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// ApplyOptions bound what a layer may do.
type ApplyOptions struct {
	// MaxSize caps the bytes of file content (a decompression bomb ends
	// here); 0 means DefaultMaxSize.
	MaxSize int64
	// MaxEntries caps the number of entries; 0 means DefaultMaxEntries.
	MaxEntries int
	// Record, if set, receives the layer record: with the files written,
	// what Rebuild needs to give back the same tar stream.
	Record io.Writer
	// AllowDevices lets character and block device nodes be created
	// (whiteouts are always allowed); otherwise a layer with one is refused.
	AllowDevices bool
}

const (
	DefaultMaxSize    = 64 << 30
	DefaultMaxEntries = 4 << 20
	whiteoutPrefix    = ".wh."
	opaqueMarker      = ".wh..wh..opq"
	xattrPAXPrefix    = "SCHILY.xattr."
)

func badLayer(entry, format string, args ...any) error {
	return fmt.Errorf("layer entry %q: %s: %w", entry, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// Apply unpacks the uncompressed layer tar r into dir, an overlay upper
// directory, and returns the layer's diffID (the sha256 of the whole stream)
// and the bytes of file content written. OCI whiteouts become overlay
// whiteouts (0:0 character devices) and opaque directories get
// trusted.overlay.opaque. No entry can write outside dir: names are cleaned
// below it, and every lookup refuses symlinks, so a link planted by the
// layer is never written through.
func Apply(ctx context.Context, dir string, r io.Reader, o ApplyOptions) (digest.Digest, int64, error) {
	if o.MaxSize == 0 {
		o.MaxSize = DefaultMaxSize
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	rootFd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", 0, fmt.Errorf("layer target %s: %w", dir, err)
	}
	a := &applier{root: rootFd, opts: o, parents: map[string]int{}}
	defer a.close()
	h := sha256.New()
	var src io.Reader = io.TeeReader(r, h)
	if o.Record != nil {
		a.rec = newRecorder(src, o.Record)
		src = a.rec
	}
	tr := tar.NewReader(src)
	for n := 0; ; n++ {
		if n%1024 == 0 && ctx.Err() != nil {
			return "", 0, ctx.Err()
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", 0, fmt.Errorf("layer: malformed tar after %d entries: %v: %w", n, err, errdefs.ErrInvalidArgument)
		}
		if n >= o.MaxEntries {
			return "", 0, fmt.Errorf("layer: more than %d entries: %w", o.MaxEntries, errdefs.ErrInvalidArgument)
		}
		if err := a.entry(hdr, tr); err != nil {
			return "", 0, err
		}
	}
	// The digest (and the record) cover the stream to its end, padding
	// included.
	if _, err := io.Copy(io.Discard, src); err != nil {
		return "", 0, fmt.Errorf("layer: %w", err)
	}
	if a.rec != nil {
		if err := a.rec.close(); err != nil {
			return "", 0, fmt.Errorf("layer record: %w", err)
		}
	}
	if err := a.finishDirs(); err != nil {
		return "", 0, err
	}
	return digest.NewDigest(digest.SHA256, h), a.written, nil
}

type applier struct {
	rec     *recorder // nil: no record kept
	root    int
	opts    ApplyOptions
	written int64
	parents map[string]int // directory (cleaned, relative) -> O_PATH fd
	dirs    []dirTimes     // set last: creating children changes mtime
}

type dirTimes struct {
	name  string
	atime time.Time
	mtime time.Time
}

func (a *applier) close() {
	for _, fd := range a.parents {
		unix.Close(fd)
	}
	unix.Close(a.root)
}

// clean makes a tar name relative to the layer root, or refuses it.
func clean(name string) (string, error) {
	p := path.Clean("/" + name)
	if p == "/" {
		return ".", nil
	}
	return p[1:], nil
}

// dirFd opens (creating as needed) the directory rel below the root, each
// component without following symlinks.
func (a *applier) dirFd(rel, entry string) (int, error) {
	if rel == "." {
		return a.root, nil
	}
	if fd, ok := a.parents[rel]; ok {
		return fd, nil
	}
	parent, err := a.dirFd(path.Dir(rel), entry)
	if err != nil {
		return -1, err
	}
	base := path.Base(rel)
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(parent, base, how)
	if errors.Is(err, unix.ENOENT) {
		if err = unix.Mkdirat(parent, base, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("layer entry %q: create %s: %w", entry, rel, err)
		}
		fd, err = unix.Openat2(parent, base, how)
	}
	if err != nil {
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.EXDEV) {
			return -1, badLayer(entry, "%s is not a directory (a symlink or file): the layer would write through it", rel)
		}
		return -1, fmt.Errorf("layer entry %q: open %s: %w", entry, rel, err)
	}
	a.parents[rel] = fd
	return fd, nil
}

func (a *applier) entry(hdr *tar.Header, tr io.Reader) error {
	name, err := clean(hdr.Name)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader, tar.TypeXHeader:
		return nil
	}
	if name == "." {
		return nil // the root's own attributes belong to the snapshot
	}
	dir, base := path.Dir(name), path.Base(name)
	pfd, err := a.dirFd(dir, hdr.Name)
	if err != nil {
		return err
	}
	if base == opaqueMarker {
		if err := setXattr(pfd, ".", overlayXattr+"opaque", []byte("y")); err != nil {
			return fmt.Errorf("layer entry %q: opaque directory: %w", hdr.Name, err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutPrefix) {
		target := base[len(whiteoutPrefix):]
		if target == "" || target == "." || target == ".." {
			return badLayer(hdr.Name, "whiteout without a name")
		}
		if err := a.replace(pfd, path.Join(dir, target), false); err != nil {
			return err
		}
		if err := unix.Mknodat(pfd, target, unix.S_IFCHR, 0); err != nil {
			return fmt.Errorf("layer entry %q: whiteout: %w", hdr.Name, err)
		}
		return nil
	}
	if err := a.replace(pfd, name, hdr.Typeflag == tar.TypeDir); err != nil {
		return err
	}
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		a.dirs = append(a.dirs, dirTimes{name, hdr.AccessTime, hdr.ModTime})
	case tar.TypeReg, tar.TypeRegA:
		if hdr.Size < 0 || hdr.Size > a.opts.MaxSize-a.written {
			return badLayer(hdr.Name, "%d bytes would exceed the layer limit of %d", hdr.Size, a.opts.MaxSize)
		}
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
		f := os.NewFile(uintptr(fd), name)
		recorded := a.rec != nil && !sparse(hdr)
		if recorded {
			a.rec.startFile()
		}
		n, err := io.Copy(f, io.LimitReader(tr, hdr.Size))
		cerr := f.Close()
		a.written += n
		if err == nil && n != hdr.Size {
			err = io.ErrUnexpectedEOF
		}
		if err == nil {
			err = cerr
		}
		if err == nil && recorded {
			err = a.rec.endFile(name, n)
		}
		if err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	case tar.TypeSymlink:
		// Stored as is: the applier never follows it.
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	case tar.TypeLink:
		target, _ := clean(hdr.Linkname)
		if target == "." {
			return badLayer(hdr.Name, "hard link to the layer root")
		}
		tfd, err := a.dirFd(path.Dir(target), hdr.Name)
		if err != nil {
			return err
		}
		if err := unix.Linkat(tfd, path.Base(target), pfd, base, 0); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return badLayer(hdr.Name, "hard link target %q is not in this layer", hdr.Linkname)
			}
			return fmt.Errorf("layer entry %q: hard link: %w", hdr.Name, err)
		}
		return nil // a hard link shares its target's inode and attributes
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		typ := uint32(unix.S_IFIFO)
		if hdr.Typeflag != tar.TypeFifo {
			if !a.opts.AllowDevices {
				return badLayer(hdr.Name, "device nodes are not allowed here")
			}
			typ = unix.S_IFCHR
			if hdr.Typeflag == tar.TypeBlock {
				typ = unix.S_IFBLK
			}
		}
		dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
		if err := unix.Mknodat(pfd, base, typ|mode, int(dev)); err != nil {
			return fmt.Errorf("layer entry %q: %w", hdr.Name, err)
		}
	default:
		return badLayer(hdr.Name, "unsupported tar entry type %q", hdr.Typeflag)
	}
	return a.attrs(pfd, base, hdr, mode)
}

// replace removes what a later entry overrides (an entry may repeat in a
// tar, the last one wins); a directory over a directory merges. name is
// the entry's path below the root, pfd its parent.
func (a *applier) replace(pfd int, name string, dir bool) error {
	base := path.Base(name)
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil
	}
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if isDir && dir {
		return nil
	}
	if !isDir {
		return unix.Unlinkat(pfd, base, 0)
	}
	// A directory replaced by something else: its cached handles go, then
	// the tree (RemoveAll does not follow symlinks inside it).
	for k, fd := range a.parents {
		if k == name || strings.HasPrefix(k, name+"/") {
			unix.Close(fd)
			delete(a.parents, k)
		}
	}
	return os.RemoveAll(procPath(pfd, base))
}

func procPath(fd int, base string) string {
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + base
}

func setXattr(pfd int, base, name string, value []byte) error {
	return unix.Lsetxattr(procPath(pfd, base), name, value, 0)
}

// attrs sets owner, mode, extended attributes and times, in that order:
// chown clears set-id bits, and file capabilities are an xattr.
func (a *applier) attrs(pfd int, base string, hdr *tar.Header, mode uint32) error {
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("layer entry %q: owner %d:%d: %w", hdr.Name, hdr.Uid, hdr.Gid, err)
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Fchmodat(pfd, base, mode, 0); err != nil {
			return fmt.Errorf("layer entry %q: mode %o: %w", hdr.Name, mode, err)
		}
	}
	for k, v := range hdr.PAXRecords {
		if !strings.HasPrefix(k, xattrPAXPrefix) {
			continue
		}
		name := k[len(xattrPAXPrefix):]
		// trusted.overlay.* (user.overlay.* in a user namespace) would let
		// a layer forge whiteouts and redirects.
		if strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "user.overlay.") {
			return badLayer(hdr.Name, "carries overlay metadata %s", name)
		}
		if err := setXattr(pfd, base, name, []byte(v)); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("layer entry %q: xattr %s: %w", hdr.Name, name, err)
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil
	}
	return setTimes(pfd, base, hdr.AccessTime, hdr.ModTime)
}

func setTimes(pfd int, base string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("times of %s: %w", base, err)
	}
	return nil
}

func (a *applier) finishDirs() error {
	for i := len(a.dirs) - 1; i >= 0; i-- {
		d := a.dirs[i]
		pfd, err := a.dirFd(path.Dir(d.name), d.name)
		if err != nil {
			return err
		}
		if err := setTimes(pfd, path.Base(d.name), d.atime, d.mtime); err != nil {
			return fmt.Errorf("layer entry %q: %w", d.name, err)
		}
	}
	return nil
}
