package engine

import (
	"archive/tar"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// tree is a directory tree cp reads or writes: a container's root (a
// running one's is /proc/PID/root, volumes included), a volume's host
// directory, or the host's "/". Every file is reached from an O_PATH handle
// of the root with openat2(RESOLVE_IN_ROOT) and then *at calls that follow
// no symbolic link, so a link in the tree (to /etc, to ../../..) resolves
// as it would inside the tree, never to the host's files, even while the
// container's processes change the tree under the copy.
type tree struct {
	root *os.File // O_PATH
	dir  string   // the root's path, for SecureJoin's resolution of names
}

func openTree(dir string) (*tree, error) {
	f, err := os.OpenFile(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &tree{root: f, dir: dir}, nil
}

func (t *tree) Close() { t.root.Close() }

// resolve turns p (absolute and clean, in the tree) into the path it names
// with no symbolic link in its directories, nor in its last component
// with follow (docker's cp resolves both sides so, inside the container).
// The result names a place only: every access resolves it again below the
// root, so a link changed in between cannot lead out.
func (t *tree) resolve(p string, follow bool) (string, error) {
	if p == "/" {
		return p, nil
	}
	dir, base := path.Dir(p), path.Base(p)
	if follow {
		dir, base = p, ""
	}
	full, err := securejoin.SecureJoin(t.dir, dir)
	if err != nil {
		return "", err
	}
	rel, err := filepath.Rel(t.dir, full)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("%s: resolves outside the container's root: %w", p, errdefs.ErrInvalidArgument)
	}
	return path.Join("/", rel, base), nil
}

// parent opens p's directory (O_PATH) below the root and returns it with
// p's last component ("" for the root itself).
func (t *tree) parent(p string) (*os.File, string, error) {
	if p == "/" {
		h, err := pathrs.OpenatInRoot(t.root, "/")
		return h, "", err
	}
	h, err := pathrs.OpenatInRoot(t.root, path.Dir(p))
	if err != nil {
		return nil, "", err
	}
	return h, path.Base(p), nil
}

// lstat stats p, not following its last component.
func (t *tree) lstat(p string) (unix.Stat_t, error) {
	var st unix.Stat_t
	h, base, err := t.parent(p)
	if err != nil {
		return st, err
	}
	defer h.Close()
	return st, fstatat(int(h.Fd()), base, &st)
}

func fstatat(dirfd int, base string, st *unix.Stat_t) error {
	if base == "" {
		return unix.Fstat(dirfd, st)
	}
	return unix.Fstatat(dirfd, base, st, unix.AT_SYMLINK_NOFOLLOW)
}

func isDir(st unix.Stat_t) bool { return st.Mode&unix.S_IFMT == unix.S_IFDIR }

// archive writes p to w as a tar stream whose top entry is named name; an
// empty name writes only what the directory p holds (SRC/. in cp).
// Symbolic links are stored as links; sockets are left out.
func (t *tree) archive(w io.Writer, p, name string) error {
	h, base, err := t.parent(p)
	if err != nil {
		return err
	}
	defer h.Close()
	a := &archiver{tw: tar.NewWriter(w), links: map[[2]uint64]string{}}
	if err := a.add(int(h.Fd()), base, name); err != nil {
		return err
	}
	return a.tw.Close()
}

type archiver struct {
	tw    *tar.Writer
	links map[[2]uint64]string // device and inode -> the first name of a file with hard links
}

func (a *archiver) add(dirfd int, base, name string) error {
	var st unix.Stat_t
	if err := fstatat(dirfd, base, &st); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	hdr := &tar.Header{Name: name, Mode: int64(st.Mode & 0o7777), Uid: int(st.Uid), Gid: int(st.Gid),
		ModTime: time.Unix(st.Mtim.Unix()).Truncate(time.Second)}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return a.addDir(dirfd, base, hdr)
	case unix.S_IFREG:
		return a.addFile(dirfd, base, hdr, st)
	case unix.S_IFLNK:
		target, err := readlinkat(dirfd, base)
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // a socket: tar has no such thing
	}
	return a.tw.WriteHeader(hdr)
}

func (a *archiver) addDir(dirfd int, base string, hdr *tar.Header) error {
	fd, err := unix.Openat(dirfd, cmp.Or(base, "."), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	d := os.NewFile(uintptr(fd), hdr.Name)
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	slices.Sort(names)
	if hdr.Name != "" {
		hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		if err := a.tw.WriteHeader(hdr); err != nil {
			return err
		}
	}
	for _, n := range names {
		if err := a.add(fd, n, path.Join(hdr.Name, n)); err != nil {
			return err
		}
	}
	return nil
}

func (a *archiver) addFile(dirfd int, base string, hdr *tar.Header, st unix.Stat_t) error {
	// O_NOFOLLOW and the inode check: what is read is what was stat'ed,
	// not a link or a FIFO put there in between.
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	f := os.NewFile(uintptr(fd), hdr.Name)
	defer f.Close()
	var now unix.Stat_t
	if err := unix.Fstat(fd, &now); err != nil || now.Ino != st.Ino || now.Dev != st.Dev {
		return fmt.Errorf("%s: changed while it was copied: %w", hdr.Name, errdefs.ErrUnavailable)
	}
	if st.Nlink > 1 {
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := a.links[key]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return a.tw.WriteHeader(hdr)
		}
		a.links[key] = hdr.Name
	}
	hdr.Typeflag, hdr.Size = tar.TypeReg, now.Size
	if err := a.tw.WriteHeader(hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(a.tw, f, now.Size); err != nil {
		return fmt.Errorf("%s: %w", hdr.Name, err)
	}
	return nil
}

func readlinkat(dirfd int, base string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, base, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}

// owner maps an archived owner to the one a file gets.
type owner func(uid, gid int) (int, int)

// extract unpacks the tar stream r into dir, a directory of the tree.
// Entries may not climb out of dir (".."); directories named in it that
// are links resolve below the root, as in the container. A directory is
// not replaced with a file, nor a file with a directory (docker's rule).
func (t *tree) extract(r io.Reader, dir string, own owner) error {
	tr := tar.NewReader(r)
	x := &extractor{t: t, own: own}
	defer x.closeParent()
	var dirs []*tar.Header // their times are set last: entries in them change them
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("tar stream: %v: %w", err, errdefs.ErrInvalidArgument)
		}
		name, err := entryName(hdr.Name)
		if err != nil {
			return err
		}
		if name == "." {
			continue // the destination itself ("./" in `tar -C dir .`): left as it is
		}
		p := path.Join(dir, name)
		if err := x.create(p, dir, hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if hdr.Typeflag == tar.TypeDir {
			h := *hdr
			h.Name = p
			dirs = append(dirs, &h)
		}
	}
	x.closeParent()
	for _, h := range slices.Backward(dirs) {
		if ph, base, err := t.parent(h.Name); err == nil {
			setTimes(int(ph.Fd()), base, h)
			ph.Close()
		}
	}
	return nil
}

// entryName is a tar entry's name, relative and clean; one that climbs out
// with ".." is refused.
func entryName(n string) (string, error) {
	c := path.Clean(strings.TrimLeft(n, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("tar entry %q: leads out of the destination: %w", n, errdefs.ErrInvalidArgument)
	}
	return c, nil
}

type extractor struct {
	t   *tree
	own owner
	// The directory of the last entry, kept open: a tar stream lists a
	// directory's files one after another.
	parentPath string
	parent     *os.File
}

func (x *extractor) closeParent() {
	if x.parent != nil {
		x.parent.Close()
		x.parent, x.parentPath = nil, ""
	}
}

// parentOf opens p's directory, making the directories missing (as tar
// does when a stream lists a file before, or without, its directory).
func (x *extractor) parentOf(p string) (int, error) {
	dir := path.Dir(p)
	if x.parent != nil && x.parentPath == dir {
		return int(x.parent.Fd()), nil
	}
	x.closeParent()
	h, err := pathrs.MkdirAllHandle(x.t.root, dir, 0o755)
	if err != nil {
		return -1, err
	}
	x.parent, x.parentPath = h, dir
	return int(h.Fd()), nil
}

func (x *extractor) create(p, top string, hdr *tar.Header, r io.Reader) error {
	fd, err := x.parentOf(p)
	if err != nil {
		return err
	}
	base := path.Base(p)
	isDirEntry := hdr.Typeflag == tar.TypeDir
	var cur unix.Stat_t
	exists := unix.Fstatat(fd, base, &cur, unix.AT_SYMLINK_NOFOLLOW) == nil
	if exists {
		switch {
		case isDir(cur) && isDirEntry:
		case isDir(cur):
			return fmt.Errorf("cannot overwrite a directory with a non-directory: %w", errdefs.ErrFailedPrecond)
		case isDirEntry:
			return fmt.Errorf("cannot overwrite a non-directory with a directory: %w", errdefs.ErrFailedPrecond)
		default:
			if err := unix.Unlinkat(fd, base, 0); err != nil {
				return err
			}
		}
	}
	uid, gid := x.own(hdr.Uid, hdr.Gid)
	mode := uint32(hdr.Mode & 0o7777)
	switch hdr.Typeflag {
	case tar.TypeDir:
		if !exists {
			if err := unix.Mkdirat(fd, base, 0o700); err != nil {
				return err
			}
		}
		d, err := unix.Openat(fd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(d)
		// The owner first: chown clears set-id bits that chmod then sets.
		if err := unix.Fchown(d, uid, gid); err != nil {
			return err
		}
		return unix.Fchmod(d, mode)
	case tar.TypeReg:
		f, err := unix.Openat(fd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		file := os.NewFile(uintptr(f), p)
		_, err = io.Copy(file, r)
		if err == nil {
			err = unix.Fchown(f, uid, gid)
		}
		if err == nil {
			err = unix.Fchmod(f, mode)
		}
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := unix.Symlinkat(hdr.Linkname, fd, base); err != nil {
			return err
		}
		if err := unix.Fchownat(fd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
	case tar.TypeLink:
		// The target is another entry of the stream: below the top directory.
		target, err := entryName(hdr.Linkname)
		if err != nil {
			return err
		}
		th, tbase, err := x.t.parent(path.Join(top, target))
		if err != nil {
			return err
		}
		defer th.Close()
		return unix.Linkat(int(th.Fd()), tbase, fd, base, 0)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		if err := unix.Mknodat(fd, base, typ|mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
		if err := unix.Fchownat(fd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		// The umask took bits from mknod's mode (without fchmodat2, kept so).
		if err := unix.Fchmodat(fd, base, mode, unix.AT_SYMLINK_NOFOLLOW); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
			return err
		}
	default:
		return nil // PAX globals and the like: nothing to make
	}
	setTimes(fd, base, hdr)
	return nil
}

func setTimes(dirfd int, base string, hdr *tar.Header) {
	at := hdr.AccessTime
	if at.IsZero() {
		at = hdr.ModTime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(hdr.ModTime.UnixNano())}
	unix.UtimesNanoAt(dirfd, base, ts, unix.AT_SYMLINK_NOFOLLOW)
}
