package libct

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// selfExe returns an open file of this binary that no process can write
// through, for exec'ing init (CVE-2019-5736: a container that reaches a
// runtime process's /proc/<pid>/exe must not be able to rewrite the host
// binary). The preferred way is a detached read-only bind mount of the binary
// (open_tree + mount_setattr: two system calls, no copy); kernels without the
// new mount API get a sealed memfd copy.
func selfExe() (*os.File, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, "/proc/self/exe", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err == nil {
		attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV}
		if err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, attr); err == nil {
			return os.NewFile(uintptr(fd), "berth-runtime"), nil
		}
		unix.Close(fd)
	}
	return sealedCopy()
}

func sealedCopy() (*os.File, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("berth-runtime", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd copy of the runtime binary: %w", err)
	}
	f := os.NewFile(uintptr(fd), "berth-runtime")
	if _, err := io.Copy(f, src); err != nil {
		f.Close()
		return nil, fmt.Errorf("memfd copy of the runtime binary: %w", err)
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal memfd copy of the runtime binary: %w", err)
	}
	return f, nil
}
