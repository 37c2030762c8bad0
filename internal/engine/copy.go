package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CopyOptions are cp's switches.
type CopyOptions struct {
	// Archive keeps the files' owners (docker's -a). Without it what is
	// copied in belongs to the container's root, what is copied out to
	// the caller.
	Archive bool
	// FollowLink copies what a symbolic link SRC points to, not the link
	// (-L); a SRC ending in "/" or "/." is followed anyway.
	FollowLink bool
}

// cpPath is one side of a copy, as given: the clean absolute path and
// what its end said ("dir/" must be a directory, "dir/." means what it
// holds).
type cpPath struct {
	given      string
	p          string
	slash, dot bool
}

func newCpPath(given, abs string) cpPath {
	return cpPath{given: given, p: path.Clean(abs),
		slash: strings.HasSuffix(given, "/"),
		dot:   given == "." || strings.HasSuffix(given, "/.")}
}

// containerPath is a path in a container as cp takes it: relative paths
// are from its root, as docker's.
func containerPath(p string) cpPath { return newCpPath(p, "/"+p) }

// hostPath is a path on the host: relative paths are from the working
// directory.
func hostPath(p string) (cpPath, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return cpPath{}, err
	}
	return newCpPath(p, abs), nil
}

// CopyToContainer copies src, a host path, to dst in c by docker's cp
// rules; with src "-", r is a tar stream to unpack into the directory dst.
func (e *Engine) CopyToContainer(ctx context.Context, c metadata.Container, src string, r io.Reader, dst string, o CopyOptions) error {
	own := func(uid, gid int) (int, int) {
		if o.Archive {
			return uid, gid
		}
		return 0, 0
	}
	d := containerPath(dst)
	dt, dp, release, err := e.containerTree(ctx, c, d.p, true)
	if err != nil {
		return err
	}
	defer release()
	d.p = dp
	if src == "-" {
		p, err := dt.resolve(d.p, true)
		if err != nil {
			return err
		}
		if st, err := dt.lstat(p); err != nil || !isDir(st) {
			return fmt.Errorf("%s:%s: a tar stream is unpacked into a directory, and this is none: %w", c.Name, dst, errdefs.ErrInvalidArgument)
		}
		if err := dt.extract(r, p, own); err != nil {
			return cpError(c.Name+":"+dst, err)
		}
		return nil
	}
	s, err := hostPath(src)
	if err != nil {
		return err
	}
	host, err := openTree("/")
	if err != nil {
		return err
	}
	defer host.Close()
	return copyPath(host, s, dt, d, own, o, "", c.Name+":")
}

// CopyFromContainer copies src in c to dst, a host path, by docker's cp
// rules; with dst "-" it writes a tar stream of src to w.
func (e *Engine) CopyFromContainer(ctx context.Context, c metadata.Container, src, dst string, w io.Writer, o CopyOptions) error {
	s := containerPath(src)
	st, sp, release, err := e.containerTree(ctx, c, s.p, false)
	if err != nil {
		return err
	}
	defer release()
	s.p = sp
	if dst == "-" {
		p, name, _, err := source(st, s, o, c.Name+":")
		if err != nil {
			return err
		}
		if s.dot || p == "/" {
			name = ""
		}
		if err := st.archive(w, p, name); err != nil {
			return cpError(c.Name+":"+src, err)
		}
		return nil
	}
	d, err := hostPath(dst)
	if err != nil {
		return err
	}
	host, err := openTree("/")
	if err != nil {
		return err
	}
	defer host.Close()
	uid, gid := os.Getuid(), os.Getgid()
	own := func(u, g int) (int, int) {
		if o.Archive {
			return u, g
		}
		return uid, gid
	}
	return copyPath(st, s, host, d, own, o, c.Name+":", "")
}

// source resolves what a copy reads and checks that it is there; it
// returns its path, its name in the archive and whether it is a
// directory.
func source(t *tree, s cpPath, o CopyOptions, prefix string) (string, string, bool, error) {
	p, err := t.resolve(s.p, o.FollowLink || s.slash || s.dot)
	if err != nil {
		return "", "", false, err
	}
	st, err := t.lstat(p)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return "", "", false, fmt.Errorf("%s%s: no such file or directory: %w", prefix, s.given, errdefs.ErrNotFound)
	}
	if err != nil {
		return "", "", false, fmt.Errorf("%s%s: %w", prefix, s.given, err)
	}
	if (s.slash || s.dot) && !isDir(st) {
		return "", "", false, fmt.Errorf("%s%s: not a directory: %w", prefix, s.given, errdefs.ErrInvalidArgument)
	}
	return p, path.Base(p), isDir(st), nil
}

// copyPath copies s in st to d in dt (the prefixes name the container
// in messages), by docker's rules:
//   - a file to an existing directory goes into it, to an existing file
//     replaces it, to a new name is written as it (whose directory must
//     exist; "new/" is an error then);
//   - a directory to a new name is created with what s holds; to an
//     existing directory it goes into it, or, for "s/.", what it holds
//     does; to a file it is an error.
//
// A symbolic link at d is followed (inside its tree); one at s is copied
// as a link unless followed (see CopyOptions.FollowLink).
func copyPath(st *tree, s cpPath, dt *tree, d cpPath, own owner, o CopyOptions, srcPrefix, dstPrefix string) error {
	sp, name, srcDir, err := source(st, s, o, srcPrefix)
	if err != nil {
		return err
	}
	dp, err := dt.resolve(d.p, true)
	if err != nil {
		return err
	}
	var dir string
	dstSt, err := dt.lstat(dp)
	switch {
	case err == nil && isDir(dstSt):
		dir = dp
		if s.dot || sp == "/" {
			name = ""
		}
	case err == nil:
		if srcDir {
			return fmt.Errorf("%s%s: cannot copy a directory to a file: %w", dstPrefix, d.given, errdefs.ErrInvalidArgument)
		}
		dir, name = path.Dir(dp), path.Base(dp)
	case errors.Is(err, unix.ENOENT):
		if (d.slash || d.dot) && !srcDir {
			return fmt.Errorf("%s%s: the destination directory must exist: %w", dstPrefix, d.given, errdefs.ErrNotFound)
		}
		dir, name = path.Dir(dp), path.Base(dp)
		if pst, err := dt.lstat(dir); err != nil || !isDir(pst) {
			return fmt.Errorf("%s%s: no such directory: %w", dstPrefix, path.Dir(d.p), errdefs.ErrNotFound)
		}
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s%s: a part of the path is not a directory: %w", dstPrefix, d.given, errdefs.ErrInvalidArgument)
	default:
		return fmt.Errorf("%s%s: %w", dstPrefix, d.given, err)
	}
	pr, pw := io.Pipe()
	archived := make(chan error, 1)
	go func() {
		err := st.archive(pw, sp, name)
		pw.CloseWithError(err)
		archived <- err
	}()
	err = dt.extract(pr, dir, own)
	pr.CloseWithError(cmp.Or(err, errExtracted)) // stops the writer if extract ended first
	// Which side failed: the reader's error is the writer's when the
	// writer failed first, and the writer's is the reader's otherwise.
	aerr := <-archived
	if aerr != nil && !errors.Is(aerr, errExtracted) && (err == nil || !errors.Is(aerr, err)) {
		return cpError(srcPrefix+s.given, aerr)
	}
	if err != nil {
		return cpError(dstPrefix+d.given, err)
	}
	return nil
}

var errExtracted = errors.New("the archive was read to its end")

// cpError names the side of a copy that failed and says what the
// usual system errors mean for it.
func cpError(what string, err error) error {
	var hint string
	class := errdefs.ErrFailedPrecond
	switch {
	case errors.Is(err, unix.EROFS):
		hint = "a read-only mount (a --read-only container's root, a :ro volume, a read-only host directory): copy to a writable place"
	case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
	case errors.Is(err, unix.ENOSPC), errors.Is(err, unix.EDQUOT):
		hint, class = "no space left: free some, or copy less", errdefs.ErrUnavailable
	case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENOTDIR):
		class = errdefs.ErrNotFound
	case errors.Is(err, unix.ELOOP):
		class = errdefs.ErrInvalidArgument
	default:
		return fmt.Errorf("%s: %w", what, err)
	}
	if hint == "" {
		return fmt.Errorf("%s: %v: %w", what, err, class)
	}
	return fmt.Errorf("%s: %v: %s: %w", what, err, hint, class)
}

// containerTree is the tree in which c's path p is, and p in it. A running
// container's is its root as its processes see it (/proc/PID/root: its
// volumes and tmpfs mounts are there). A stopped one's is its root file
// system, mounted for the copy if need be, or, for a path in one of its
// bind mounts, the mount's source on the host (write: not if it is
// read-only in the container).
func (e *Engine) containerTree(ctx context.Context, c metadata.Container, p string, write bool) (*tree, string, func(), error) {
	st, err := e.State(ctx, c)
	if err != nil {
		return nil, "", nil, err
	}
	if st.Status == StatusRunning && st.Pid > 0 {
		t, err := openProcRoot(st.Pid, c.ID)
		if err != nil {
			return nil, "", nil, fmt.Errorf("container %s: %w", c.Name, err)
		}
		return t, p, t.Close, nil
	}
	spec, err := e.Spec(c)
	if err != nil {
		return nil, "", nil, err
	}
	target := filepath.Join(e.dir(c.ID), "rootfs")
	wasMounted, _ := mountinfo.Mounted(target)
	rootfs, err := e.mountRootfs(ctx, c)
	if err != nil {
		return nil, "", nil, fmt.Errorf("container %s: mount its root file system: %w", c.Name, err)
	}
	release := func() {
		// Left as it was found, unless it was started meanwhile.
		if st, err := e.State(context.WithoutCancel(ctx), c); !wasMounted && err == nil && st.Status == StatusExited {
			unix.Unmount(rootfs, unix.MNT_DETACH)
		}
	}
	t, err := openTree(rootfs)
	if err != nil {
		release()
		return nil, "", nil, err
	}
	rp, err := t.resolve(p, false)
	if err != nil {
		t.Close()
		release()
		return nil, "", nil, err
	}
	mounts := slices.Clone(spec.Mounts)
	slices.SortFunc(mounts, func(a, b specs.Mount) int { return len(b.Destination) - len(a.Destination) })
	for _, m := range mounts {
		dest := path.Clean(m.Destination)
		rel, ok := strings.CutPrefix(rp, dest)
		if !ok || dest == "/" || rel != "" && !strings.HasPrefix(rel, "/") {
			continue
		}
		t.Close()
		if m.Type != "bind" {
			release()
			return nil, "", nil, fmt.Errorf("container %s: %s is on its %s mount at %s, which is there only while it runs: start it first: %w",
				c.Name, p, m.Type, dest, errdefs.ErrFailedPrecond)
		}
		if write && slices.Contains(m.Options, "ro") {
			release()
			return nil, "", nil, fmt.Errorf("container %s: %s is on its read-only mount at %s: %w", c.Name, p, dest, errdefs.ErrFailedPrecond)
		}
		// A bind mount: its source on the host, as the tree's root (a
		// mounted file is the only name in its directory's tree).
		src, sub := m.Source, "/"+strings.TrimPrefix(rel, "/")
		if fi, err := os.Stat(src); err == nil && !fi.IsDir() {
			if rel != "" {
				release()
				return nil, "", nil, fmt.Errorf("container %s: %s: not a directory: %w", c.Name, p, errdefs.ErrInvalidArgument)
			}
			src, sub = filepath.Dir(src), "/"+filepath.Base(src)
		}
		bt, err := openTree(src)
		if err != nil {
			release()
			return nil, "", nil, fmt.Errorf("container %s: the source of its mount at %s: %w", c.Name, dest, err)
		}
		return bt, path.Clean(sub), func() { bt.Close(); release() }, nil
	}
	if write && spec.Root != nil && spec.Root.Readonly {
		t.Close()
		release()
		return nil, "", nil, fmt.Errorf("container %s: its root file system is read-only (--read-only): copy into one of its volumes: %w", c.Name, errdefs.ErrFailedPrecond)
	}
	return t, p, func() { t.Close(); release() }, nil
}

// openProcRoot opens /proc/PID/root of a container's init: the pid is
// held (a pidfd) and checked to be in the container's cgroup before the
// root is opened, and to be alive after, so a pid reused by a host process
// cannot make a copy land in the host's root.
func openProcRoot(pid int, id string) (*tree, error) {
	pfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("its process %d: %w: %w", pid, err, errdefs.ErrFailedPrecond)
	}
	defer unix.Close(pfd)
	cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil || !strings.Contains(string(cg), id) {
		return nil, fmt.Errorf("its process %d is gone: %w", pid, errdefs.ErrFailedPrecond)
	}
	t, err := openTree("/proc/" + strconv.Itoa(pid) + "/root")
	if err != nil {
		return nil, err
	}
	if err := unix.PidfdSendSignal(pfd, 0, nil, 0); err != nil {
		t.Close()
		return nil, fmt.Errorf("its process %d is gone: %w", pid, errdefs.ErrFailedPrecond)
	}
	return t, nil
}
