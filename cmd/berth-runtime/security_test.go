package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func fileHash(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(b))
}

// TestRuntimeBinaryNotWritable is the CVE-2019-5736 class: a container
// that gets hold of the runtime's /proc/<pid>/exe must not be able to open
// the host binary for writing, even after the runtime process is gone.
func TestRuntimeBinaryNotWritable(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	before := fileHash(t, rtBin)
	c.mustCreate()
	pid := c.state().Pid
	exe := "/proc/" + strconv.Itoa(pid) + "/exe"
	// While created, the init is still the runtime.
	var st, bin unix.Stat_t
	if err := unix.Stat(exe, &st); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(rtBin, &bin); err != nil {
		t.Fatal(err)
	}
	if st.Ino != bin.Ino || st.Size != bin.Size {
		t.Logf("init's exe (ino %d) is not the runtime binary's inode (%d): a copy", st.Ino, bin.Ino)
	}
	fd, err := unix.Open(exe, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open %s O_PATH: %v", exe, err)
	}
	defer unix.Close(fd)
	if wfd, err := unix.Open(exe, unix.O_WRONLY|unix.O_CLOEXEC, 0); err == nil {
		unix.Close(wfd)
		t.Errorf("%s of a created container opens for writing", exe)
	}
	if r := c.rt("delete", "--force", c.id); r.code != 0 {
		t.Fatalf("delete --force: %v", r)
	}
	if alive(pid) {
		t.Fatalf("init %d still runs after delete", pid)
	}
	// No process runs the file any more: ETXTBSY no longer protects it.
	wfd, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fd), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err == nil {
		unix.Close(wfd)
		t.Errorf("the runtime binary behind the init's exe reopens O_WRONLY after the container is gone (CVE-2019-5736)")
	} else {
		t.Logf("reopen for writing refused: %v", err)
	}
	if after := fileHash(t, rtBin); after != before {
		t.Errorf("runtime binary changed")
	}
}

// fdList parses `ls -l /proc/self/fd` into fd -> link target.
func fdList(out string) map[string]string {
	m := map[string]string{}
	for _, l := range lines(out) {
		if !strings.HasPrefix(l, "l") {
			continue // "total 0", other output
		}
		// A link ls cannot read (its own, closed, directory fd) has no target.
		left, target, _ := strings.Cut(l, " -> ")
		f := strings.Fields(left)
		m[f[len(f)-1]] = target
	}
	return m
}

// TestNoLeakedFds is the CVE-2024-21626 class: the process gets stdio and
// nothing else of the runtime.
func TestNoLeakedFds(t *testing.T) {
	// "; true": sh must not exec the last ls in its own place.
	c := newCtr(t, sh("ls -l /proc/self/fd; echo; ls -l /proc/1/fd; true"))
	out := c.mustRun()
	self, init, _ := strings.Cut(out, "\n\n")
	fds := fdList(self)
	for _, want := range []string{"0", "1", "2", "3"} {
		if _, ok := fds[want]; !ok {
			t.Errorf("fd %s missing: %v", want, fds)
		}
	}
	if len(fds) != 4 {
		t.Errorf("the process has fds beyond stdio and ls's directory: %v", fds)
	}
	if fds["3"] != "" && !strings.HasPrefix(fds["3"], "/proc/") {
		t.Errorf("fd 3 is %q, want ls's own /proc/<pid>/fd", fds["3"])
	}
	// The container's init (sh) holds stdio only.
	ifds := fdList(init)
	for fd, target := range ifds {
		if fd != "0" && fd != "1" && fd != "2" {
			t.Errorf("init has fd %s -> %s", fd, target)
		}
	}
}

func TestPreserveFds(t *testing.T) {
	dir := t.TempDir()
	kept, dropped := filepath.Join(dir, "kept.txt"), filepath.Join(dir, "dropped.txt")
	os.WriteFile(kept, []byte("preserved-content\n"), 0o644)
	os.WriteFile(dropped, []byte("must-not-see\n"), 0o644)
	f1, err := os.Open(kept)
	if err != nil {
		t.Fatal(err)
	}
	defer f1.Close()
	f2, err := os.Open(dropped)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	c := newCtr(t, sh("ls -l /proc/self/fd; cat <&3"))
	// fds 3 and 4 reach create; only 3 is to be preserved.
	if r := c.createWith(runOpts{extra: []*os.File{f1, f2}}, "--preserve-fds", "1"); r.code != 0 {
		t.Fatalf("create --preserve-fds 1: %v", r)
	}
	c.mustStart()
	c.waitStatus("stopped")
	out := c.output()
	fds := fdList(out)
	if fds["3"] != kept {
		t.Errorf("fd 3 is %q, want the preserved %s", fds["3"], kept)
	}
	if len(fds) != 5 || fds["4"] != "" && !strings.HasPrefix(fds["4"], "/proc/") {
		t.Errorf("want fds 0-3 and ls's directory as 4, got %v", fds)
	}
	wantContains(t, "reading fd 3", out, "preserved-content")
	wantNotContains(t, "fds", out, dropped, "must-not-see")
}

// TestCwdLeakedFd: a cwd through /proc/self/fd/N must not put the process
// in a directory the runtime held open on the host.
func TestCwdLeakedFd(t *testing.T) {
	for n := 3; n <= 9; n++ {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			c := newCtr(t, sh("echo cwd=$(pwd); sleep 100"), func(s *specs.Spec) { s.Process.Cwd = "/proc/self/fd/" + strconv.Itoa(n) })
			if r := c.create(); r.code != 0 {
				return // refused: fine
			}
			pid := c.state().Pid
			if r := c.rt("start", c.id); r.code != 0 {
				return // refused: fine
			}
			if !alive(pid) {
				return
			}
			cwd, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/cwd")
			if err != nil {
				return // gone meanwhile: it never ran with that cwd
			}
			root, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/root")
			if cwd != c.rootfs && !strings.HasPrefix(cwd, c.rootfs+"/") {
				t.Errorf("process runs with cwd %s outside its rootfs %s (root %s)", cwd, c.rootfs, root)
			}
		})
	}
}

// TestHostileRootfsSymlinks: mount destinations through symlinks that point
// at a host path must resolve inside the rootfs.
func TestHostileRootfsSymlinks(t *testing.T) {
	requireRoot(t)
	host := t.TempDir() // an absolute host path, /tmp/...
	rel := strings.Repeat("../", 12) + strings.TrimPrefix(host, "/")
	c := newCtr(t, func(s *specs.Spec) {
		s.Process.Args = []string{"sleep", "100"}
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/evil/mnt", Type: "tmpfs", Source: "tmpfs"},
			specs.Mount{Destination: "/evil2/mnt2", Type: "tmpfs", Source: "tmpfs"},
			specs.Mount{Destination: "/evil/file", Type: "bind", Source: "/etc/hostname", Options: []string{"bind", "ro"}})
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/evil/devnull", Type: "c", Major: 1, Minor: 3})
	})
	if err := os.Symlink(host, filepath.Join(c.rootfs, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(rel, filepath.Join(c.rootfs, "evil2")); err != nil {
		t.Fatal(err)
	}
	r := c.create()
	if r.code == 0 {
		pid := c.state().Pid
		mi := readFile(t, "/proc/"+strconv.Itoa(pid)+"/mountinfo")
		// Seen from the container, the mounts are at the link's target
		// inside its own root.
		mps := strings.Join(mountPoints(mi), "\n") + "\n"
		wantContains(t, "container mount points", mps, host+"/mnt\n", host+"/mnt2\n")
		for _, p := range []string{"mnt", "mnt2", "file", "devnull"} {
			if _, err := os.Lstat(filepath.Join(c.rootfs, host, p)); err != nil {
				t.Errorf("%s: not created inside the rootfs: %v", p, err)
			}
		}
	} else {
		// Safe, but runc (1.1, and 1.2+ again) resolves such targets inside
		// the rootfs and creates them there.
		t.Errorf("create refused mount targets behind symlinks that resolve inside the rootfs: %s", r.err)
	}
	ents, _ := os.ReadDir(host)
	for _, e := range ents {
		t.Errorf("the container created %s in the host directory %s", e.Name(), host)
	}
	for _, mp := range mountPoints(hostMountinfo(t)) {
		if strings.HasPrefix(mp, host) {
			t.Errorf("host mount %s made by the container", mp)
		}
	}
}
