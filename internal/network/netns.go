package network

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// NewNetNS makes a network namespace with its loopback up and pins it
// at path (a bind mount of the namespace onto an empty file), so it
// lives without a process until RemoveNetNS. The container's runtime
// joins it through the spec's namespace path.
func NewNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o400)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	// A thread of its own leaves for the new namespace and never comes
	// back: it stays locked, so the Go runtime ends it with the goroutine.
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind %s: %w", self, err)
			return
		}
		errc <- loopbackUp()
	}()
	if err := <-errc; err != nil {
		RemoveNetNS(path)
		return fmt.Errorf("netns %s: %w", path, err)
	}
	return nil
}

// loopbackUp sets lo up in the calling thread's network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo up: %w", err)
	}
	return nil
}

// IsNetNS reports whether path is a pinned network namespace.
func IsNetNS(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// RemoveNetNS unpins a namespace made by NewNetNS (the kernel frees it,
// with its interfaces, once nothing else holds it). A missing one is no
// error.
func RemoveNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("netns %s: unmount: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// deleteLink removes a host interface (a network's bridge) if it exists.
func deleteLink(name string) {
	exec.Command("ip", "link", "delete", name).Run()
}

// InNetNS runs fn on a thread that joins the network namespace at nsPath
// and never comes back: it stays locked, so the Go runtime ends it with
// the goroutine instead of handing it, in the wrong namespace, to other
// goroutines. Sockets fn makes keep the namespace they were made in.
func InNetNS(nsPath string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := os.Open(nsPath)
		if err != nil {
			errc <- fmt.Errorf("network namespace: %w", err)
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("network namespace %s: setns: %w", nsPath, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// DialInNetNS dials addr on network ("tcp", "udp") from inside the
// network namespace at nsPath.
func DialInNetNS(nsPath, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := InNetNS(nsPath, func() (err error) {
		// A literal address: no resolver goroutine runs on another thread.
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}
