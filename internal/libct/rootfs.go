package libct

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/libct/cgroups"
	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// rootfs sets up a container's file system view; every destination is
// resolved inside root without following a symlink out of it.
type rootfs struct {
	path    string
	root    *os.File // O_PATH handle of path: the anchor of every lookup
	cfg     *initConfig
	userns  bool
	devBind bool // /dev comes from a bind mount: leave its nodes alone
}

func procFd(f *os.File) string { return "/proc/self/fd/" + strconv.Itoa(int(f.Fd())) }

// prepare makes the rootfs a mount point whose mounts do not propagate back
// to the host, as pivot_root needs.
func (r *rootfs) prepare() error {
	flag := uintptr(unix.MS_SLAVE | unix.MS_REC)
	shared := false
	switch r.cfg.Spec.Linux.RootfsPropagation {
	case "private", "rprivate":
		flag = unix.MS_PRIVATE | unix.MS_REC
	case "shared", "rshared":
		// Mounts stay peers of the host's, so that a bidirectional
		// volume's mounts propagate both ways.
		flag, shared = unix.MS_SHARED|unix.MS_REC, true
	}
	if err := unix.Mount("", "/", "", flag, ""); err != nil {
		return fmt.Errorf("make / %s: %w", r.cfg.Spec.Linux.RootfsPropagation, err)
	}
	if shared {
		// pivot_root refuses a new root whose parent mount is shared:
		// that one mount (not its children) goes private.
		ms, err := mountinfo.GetMounts(mountinfo.ParentsFilter(r.path))
		if err != nil || len(ms) == 0 {
			return fmt.Errorf("the mount holding %s: %v", r.path, err)
		}
		parent := ms[0]
		for _, m := range ms {
			if len(m.Mountpoint) > len(parent.Mountpoint) {
				parent = m
			}
		}
		if err := unix.Mount("", parent.Mountpoint, "", unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("make %s private: %w", parent.Mountpoint, err)
		}
	}
	if err := unix.Mount(r.path, r.path, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", r.path, err)
	}
	return nil
}

func (r *rootfs) open() error {
	f, err := os.OpenFile(r.path, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	r.root = f
	return nil
}

// mountAll performs the spec's mounts in order.
func (r *rootfs) mountAll() error {
	for i, m := range r.cfg.Spec.Mounts {
		if m.Destination == "/dev" && (m.Type == "bind" || hasOpt(m.Options, "bind") || hasOpt(m.Options, "rbind")) {
			r.devBind = true
		}
		if err := r.mount(m); err != nil {
			return fmt.Errorf("mounts[%d] (%s on %s): %w", i, m.Type, m.Destination, err)
		}
	}
	return nil
}

func hasOpt(opts []string, o string) bool {
	for _, x := range opts {
		if x == o {
			return true
		}
	}
	return false
}

// target creates the destination (a file when a file is bind mounted) and
// returns an O_PATH handle to it.
func (r *rootfs) target(dest string, file bool) (*os.File, error) {
	// Symlinks on the way resolve inside the rootfs, dangling ones too (a
	// link to /x means <rootfs>/x, created here), as runc does; the
	// handle-based calls below then refuse any race that swaps a link in.
	if joined, err := securejoin.SecureJoin(r.path, dest); err == nil {
		if rel, err := filepath.Rel(r.path, joined); err == nil {
			dest = "/" + rel
		}
	}
	if file {
		dir, err := pathrs.MkdirAllHandle(r.root, filepath.Dir(dest), 0o755)
		if err != nil {
			return nil, err
		}
		defer dir.Close()
		name := filepath.Base(dest)
		fd, err := unix.Openat(int(dir.Fd()), name, unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(fd)
		} else if !errors.Is(err, unix.EISDIR) && !errors.Is(err, unix.EROFS) && !errors.Is(err, unix.EEXIST) {
			return nil, err
		}
		return pathrs.OpenatInRoot(r.root, dest)
	}
	return pathrs.MkdirAllHandle(r.root, dest, 0o755)
}

func (r *rootfs) mount(m specs.Mount) error {
	o := parseMountOpts(m.Type, m.Options)
	if m.Type == "cgroup" || m.Type == "cgroup2" {
		return r.mountCgroup(m, o)
	}
	src := m.Source
	isFile := false
	if o.bind {
		if !filepath.IsAbs(src) {
			src = filepath.Join(r.cfg.Bundle, src)
		}
		fi, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("bind source: %w", err)
		}
		isFile = !fi.IsDir()
	}
	t, err := r.target(m.Destination, isFile)
	if err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	defer t.Close()
	dst := procFd(t)
	if o.bind {
		flags := uintptr(unix.MS_BIND)
		if o.recursive {
			flags |= unix.MS_REC
		}
		if err := unix.Mount(src, dst, "", flags, ""); err != nil {
			return err
		}
	} else {
		if m.Type == "" {
			return fmt.Errorf("type missing")
		}
		if err := unix.Mount(m.Source, dst, m.Type, o.flags, o.dataString()); err != nil {
			// sysfs of a net namespace we do not own is refused in a
			// user namespace: the host's, bound, is what runc gives too.
			if !(m.Type == "sysfs" && errors.Is(err, unix.EPERM) && r.userns) {
				return err
			}
			if err := unix.Mount("/sys", dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return err
			}
			o.bind = true
		}
	}
	if !o.bind && len(o.propagate) == 0 {
		return nil
	}
	// The new mount sits on top of the handle's: look it up again.
	t2, err := pathrs.OpenatInRoot(r.root, m.Destination)
	if err != nil {
		return err
	}
	defer t2.Close()
	dst = procFd(t2)
	if o.bind && (o.flags&^(unix.MS_REMOUNT|unix.MS_BIND|unix.MS_REC) != 0 || o.clear != 0) {
		if err := remount(dst, o.flags&^unix.MS_REMOUNT, o.recursive && o.recursiveRO); err != nil {
			return err
		}
	}
	for _, p := range o.propagate {
		if err := unix.Mount("", dst, "", p, ""); err != nil {
			return fmt.Errorf("propagation: %w", err)
		}
	}
	return nil
}

// remount applies flags to a bind mount. Flags the kernel locked on the
// source (in a user namespace) are kept rather than refused.
func remount(dst string, flags uintptr, recursive bool) error {
	f := flags | unix.MS_BIND | unix.MS_REMOUNT
	err := unix.Mount("", dst, "", f, "")
	if errors.Is(err, unix.EPERM) {
		var st unix.Statfs_t
		if unix.Statfs(dst, &st) == nil {
			locked := uintptr(0)
			for _, p := range [][2]uintptr{{unix.ST_NOSUID, unix.MS_NOSUID}, {unix.ST_NODEV, unix.MS_NODEV},
				{unix.ST_NOEXEC, unix.MS_NOEXEC}, {unix.ST_RDONLY, unix.MS_RDONLY},
				{unix.ST_NOATIME, unix.MS_NOATIME}, {unix.ST_NODIRATIME, unix.MS_NODIRATIME},
				{unix.ST_RELATIME, unix.MS_RELATIME}} {
				if uint64(st.Flags)&uint64(p[0]) != 0 {
					locked |= p[1]
				}
			}
			err = unix.Mount("", dst, "", f|locked, "")
		}
	}
	if err != nil {
		return fmt.Errorf("remount: %w", err)
	}
	if recursive && flags&unix.MS_RDONLY != 0 {
		// "rro": submounts of an rbind get read-only too.
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(-1, dst, unix.AT_RECURSIVE, attr); err != nil && !errors.Is(err, unix.ENOSYS) {
			return fmt.Errorf("recursive read-only: %w", err)
		}
	}
	return nil
}

// mountCgroup gives the container its cgroups: with a cgroup namespace a
// real cgroup mount (the namespace roots it at the container's cgroup),
// otherwise bind mounts of the container's own cgroup directories.
func (r *rootfs) mountCgroup(m specs.Mount, o mountOpts) error {
	cgroupns := hasNS(r.cfg.Spec.Linux, specs.CgroupNamespace)
	ro := o.flags & unix.MS_RDONLY
	base := o.flags &^ unix.MS_RDONLY
	t, err := r.target(m.Destination, false)
	if err != nil {
		return err
	}
	defer t.Close()
	if r.cfg.CgroupUnified {
		if cgroupns {
			return unix.Mount("cgroup2", procFd(t), "cgroup2", o.flags, o.dataString())
		}
		src := r.cfg.CgroupPaths[cgroups.UnifiedKey]
		if err := unix.Mount(src, procFd(t), "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		return r.remountAt(m.Destination, o.flags)
	}
	if err := unix.Mount("tmpfs", procFd(t), "tmpfs", base|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=755"); err != nil {
		return err
	}
	// The tmpfs is new and empty, so nothing in it can be a planted link:
	// its directories are made and used relative to its root directly
	// (a lookup inside the rootfs for each costs more than its mount).
	tmp, err := pathrs.OpenatInRoot(r.root, m.Destination)
	if err != nil {
		return err
	}
	defer tmp.Close()
	dirfd := int(tmp.Fd())
	for _, h := range r.cfg.CgroupMounts {
		if err := r.mountHierarchy(dirfd, h, base|ro|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, cgroupns); err != nil {
			return fmt.Errorf("cgroup %s: %w", h.Dir, err)
		}
		// cpu -> cpu,cpuacct and the like, as on the host.
		for _, link := range h.Links {
			if err := unix.Symlinkat(h.Dir, dirfd, link); err != nil && !errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("cgroup link %s: %w", link, err)
			}
		}
	}
	if ro != 0 {
		return r.remountAt(m.Destination, o.flags|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
	}
	return nil
}

// mountHierarchy mounts one cgroup hierarchy at dirfd/h.Dir: the real
// thing in a cgroup namespace (rooted at the container's cgroup), else a
// bind of the container's cgroup directory.
func (r *rootfs) mountHierarchy(dirfd int, h cgroupMount, flags uintptr, cgroupns bool) error {
	if err := unix.Mkdirat(dirfd, h.Dir, 0o755); err != nil {
		return err
	}
	at := func() (string, func(), error) {
		fd, err := unix.Openat(dirfd, h.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return "", nil, err
		}
		return "/proc/self/fd/" + strconv.Itoa(fd), func() { unix.Close(fd) }, nil
	}
	dst, done, err := at()
	if err != nil {
		return err
	}
	defer done()
	if cgroupns {
		fstype, opts := "cgroup", h.Options
		if h.Dir == "unified" {
			fstype, opts = "cgroup2", ""
		}
		return unix.Mount("cgroup", dst, fstype, flags, opts)
	}
	if err := unix.Mount(h.Path, dst, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	// The bind sits on top of dst's directory: remount through a new handle.
	dst2, done2, err := at()
	if err != nil {
		return err
	}
	defer done2()
	return remount(dst2, flags, false)
}

func (r *rootfs) remountAt(dest string, flags uintptr) error {
	t, err := pathrs.OpenatInRoot(r.root, dest)
	if err != nil {
		return err
	}
	defer t.Close()
	return remount(procFd(t), flags, false)
}

// pivot makes the rootfs the root; the old root is detached without its
// unmount propagating anywhere.
func pivot(rootfs string) error {
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return err
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return err
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// moveRoot is --no-pivot: for a rootfs on a ramdisk, where pivot_root fails.
func moveRoot(rootfs string) error {
	if err := unix.Chdir(rootfs); err != nil {
		return err
	}
	if err := unix.Mount(rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move rootfs to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// maskPaths hides paths from the container: directories under an empty
// read-only tmpfs, files under /dev/null.
func maskPaths(paths []string) error {
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("linux.maskedPaths %s: %w", p, err)
		}
		if fi.IsDir() {
			err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0k,mode=555")
		} else {
			err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("linux.maskedPaths %s: %w", p, err)
		}
	}
	return nil
}

func readonlyPaths(paths []string) error {
	for _, p := range paths {
		if err := unix.Mount(p, p, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue
			}
			return fmt.Errorf("linux.readonlyPaths %s: %w", p, err)
		}
		if err := remount(p, unix.MS_RDONLY, false); err != nil {
			return fmt.Errorf("linux.readonlyPaths %s: %w", p, err)
		}
	}
	return nil
}

func readonlyRoot() error {
	return remount("/", unix.MS_RDONLY, false)
}

func writeSysctls(sysctl map[string]string) error {
	for k, v := range sysctl {
		p := "/proc/sys/" + strings.ReplaceAll(k, ".", "/")
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			return fmt.Errorf("linux.sysctl.%s: %w", k, err)
		}
	}
	return nil
}
