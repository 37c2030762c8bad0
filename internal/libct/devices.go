package libct

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func mode(m os.FileMode) *os.FileMode { return &m }

// defaultDevices are the nodes every container gets (runtime spec, "Default Devices").
var defaultDevices = []specs.LinuxDevice{
	{Path: "/dev/null", Type: "c", Major: 1, Minor: 3, FileMode: mode(0o666)},
	{Path: "/dev/zero", Type: "c", Major: 1, Minor: 5, FileMode: mode(0o666)},
	{Path: "/dev/full", Type: "c", Major: 1, Minor: 7, FileMode: mode(0o666)},
	{Path: "/dev/random", Type: "c", Major: 1, Minor: 8, FileMode: mode(0o666)},
	{Path: "/dev/urandom", Type: "c", Major: 1, Minor: 9, FileMode: mode(0o666)},
	{Path: "/dev/tty", Type: "c", Major: 5, Minor: 0, FileMode: mode(0o666)},
}

// devices returns the spec's devices plus the defaults it does not override.
func devices(l *specs.Linux) []specs.LinuxDevice {
	out := append([]specs.LinuxDevice(nil), l.Devices...)
	for _, d := range defaultDevices {
		found := false
		for _, x := range l.Devices {
			if filepath.Clean(x.Path) == d.Path {
				found = true
			}
		}
		if !found {
			out = append(out, d)
		}
	}
	return out
}

// createDevices makes the device nodes. In a user namespace mknod is not
// allowed, so the host's node is bind mounted instead.
func (r *rootfs) createDevices() error {
	if r.devBind {
		return nil
	}
	for i, d := range devices(r.cfg.Spec.Linux) {
		if err := r.createDevice(d); err != nil {
			return fmt.Errorf("linux.devices[%d] %s: %w", i, d.Path, err)
		}
	}
	return nil
}

func (r *rootfs) createDevice(d specs.LinuxDevice) error {
	dir, err := pathrs.MkdirAllHandle(r.root, filepath.Dir(d.Path), 0o755)
	if err != nil {
		return err
	}
	defer dir.Close()
	name := filepath.Base(d.Path)
	if r.userns {
		fd, err := unix.Openat(int(dir.Fd()), name, unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		unix.Close(fd)
		t, err := pathrs.OpenatInRoot(r.root, d.Path)
		if err != nil {
			return err
		}
		defer t.Close()
		return unix.Mount(d.Path, procFd(t), "", unix.MS_BIND, "")
	}
	var typ uint32
	switch d.Type {
	case "c", "u":
		typ = unix.S_IFCHR
	case "b":
		typ = unix.S_IFBLK
	case "p":
		typ = unix.S_IFIFO
	}
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(*d.FileMode & 0o7777)
	}
	if err := unix.Unlinkat(int(dir.Fd()), name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	if err := unix.Mknodat(int(dir.Fd()), name, typ|perm, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor)))); err != nil {
		return err
	}
	// mknod is subject to the umask; the spec's mode is exact.
	if err := unix.Fchmodat(int(dir.Fd()), name, perm, 0); err != nil {
		return err
	}
	uid, gid := 0, 0
	if d.UID != nil {
		uid = int(*d.UID)
	}
	if d.GID != nil {
		gid = int(*d.GID)
	}
	return unix.Fchownat(int(dir.Fd()), name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
}

// devSymlinks creates the /dev links of the spec's runtime environment.
func (r *rootfs) devSymlinks() error {
	links := [][2]string{{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}}
	if _, err := os.Stat("/proc/kcore"); err == nil {
		links = append(links, [2]string{"/proc/kcore", "core"})
	}
	dev, err := pathrs.MkdirAllHandle(r.root, "/dev", 0o755)
	if err != nil {
		return err
	}
	defer dev.Close()
	for _, l := range links {
		if err := unix.Symlinkat(l[0], int(dev.Fd()), l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("/dev/%s: %w", l[1], err)
		}
	}
	// /dev/ptmx must be the container's own devpts instance.
	var st unix.Stat_t
	if unix.Fstatat(int(dev.Fd()), "pts/ptmx", &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		if err := unix.Unlinkat(int(dev.Fd()), "ptmx", 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		if err := unix.Symlinkat("pts/ptmx", int(dev.Fd()), "ptmx"); err != nil {
			return fmt.Errorf("/dev/ptmx: %w", err)
		}
	}
	return nil
}
