package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// mountEntry is one line of /proc/self/mounts.
type mountEntry struct {
	source, fstype string
	opts           map[string]bool
}

// parseMounts reads /proc/self/mounts text into mount point -> entry (the
// last mount on a point wins, as in the file system view).
func parseMounts(s string) map[string]mountEntry {
	m := map[string]mountEntry{}
	for _, l := range lines(s) {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		opts := map[string]bool{}
		for _, o := range strings.Split(f[3], ",") {
			opts[o] = true
		}
		m[f[1]] = mountEntry{source: f[0], fstype: f[2], opts: opts}
	}
	return m
}

func addMount(dst, typ, src string, opts ...string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		s.Mounts = append(s.Mounts, specs.Mount{Destination: dst, Type: typ, Source: src, Options: opts})
	}
}

func TestReadonlyRoot(t *testing.T) {
	c := newCtr(t, sh(`touch /newfile 2>&1; echo "root-rc=$?"; touch /tmp/ok && echo tmp-writable; grep ' / ' /proc/self/mounts`),
		addMount("/tmp", "tmpfs", "tmpfs", "nosuid", "nodev"),
		func(s *specs.Spec) { s.Root.Readonly = true })
	out := c.mustRun()
	wantContains(t, "read-only root", out, "Read-only file system", "tmp-writable")
	wantNotContains(t, "read-only root", out, "root-rc=0")
	if root, ok := parseMounts(out)["/"]; !ok || !root.opts["ro"] {
		t.Errorf("/ is not mounted ro:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(c.rootfs, "newfile")); err == nil {
		t.Errorf("the container wrote into its read-only root")
	}
}

func TestNoPivot(t *testing.T) {
	c := newCtr(t, sh("cat /marker; ls /; readlink /proc/1/root"))
	os.WriteFile(filepath.Join(c.rootfs, "marker"), []byte("inside-rootfs\n"), 0o644)
	out := c.mustRun("--no-pivot")
	l := lines(out)
	if len(l) == 0 || l[0] != "inside-rootfs" {
		t.Fatalf("--no-pivot: want the rootfs's /marker, got %q", out)
	}
	wantContains(t, "ls / with --no-pivot", out, "bin\n", "proc\n", "marker\n")
	if l[len(l)-1] != "/" {
		t.Errorf("--no-pivot: init's root is %q, want /", l[len(l)-1])
	}
}

func TestMountKinds(t *testing.T) {
	c := newCtr(t,
		addMount("/mnt/ro", "tmpfs", "tmpfs", "nosuid", "nodev", "noexec", "ro", "size=1m"),
		addMount("/mnt/noexec", "tmpfs", "tmpfs", "noexec", "mode=1777"),
		addMount("/mnt/exec", "tmpfs", "tmpfs", "mode=755"),
		sh(`cat /proc/self/mounts; echo ---
touch /mnt/ro/x 2>/dev/null || echo ro-enforced
cp /bin/busybox /mnt/noexec/echo && { /mnt/noexec/echo noexec-broken 2>/dev/null || echo noexec-enforced; }
cp /bin/busybox /mnt/exec/echo && /mnt/exec/echo exec-works
ls /sys/fs/cgroup/memory/memory.limit_in_bytes >/dev/null && echo cgroup-files
echo > /sys/fs/cgroup/memory/x 2>/dev/null || echo cgroup-ro`))
	out := c.mustRun()
	mounts, checks, _ := strings.Cut(out, "---")
	m := parseMounts(mounts)
	want := []struct {
		dst, fstype string
		opts        []string
		notOpts     []string
	}{
		{"/proc", "proc", nil, nil},
		{"/sys", "sysfs", []string{"ro", "nosuid", "nodev", "noexec"}, nil},
		{"/dev", "tmpfs", []string{"nosuid"}, nil},
		{"/dev/pts", "devpts", []string{"nosuid", "noexec"}, nil},
		{"/dev/shm", "tmpfs", []string{"nosuid", "nodev", "noexec"}, nil},
		{"/dev/mqueue", "mqueue", []string{"nosuid", "nodev", "noexec"}, nil},
		{"/sys/fs/cgroup/memory", "cgroup", []string{"ro", "memory"}, nil},
		{"/mnt/ro", "tmpfs", []string{"ro", "nosuid", "nodev", "noexec"}, nil},
		{"/mnt/noexec", "tmpfs", []string{"rw", "noexec"}, []string{"ro"}},
		{"/mnt/exec", "tmpfs", []string{"rw"}, []string{"ro", "noexec"}},
	}
	for _, w := range want {
		e, ok := m[w.dst]
		if !ok {
			t.Errorf("no mount on %s in:\n%s", w.dst, mounts)
			continue
		}
		if e.fstype != w.fstype {
			t.Errorf("%s: type %s, want %s", w.dst, e.fstype, w.fstype)
		}
		for _, o := range w.opts {
			if !e.opts[o] {
				t.Errorf("%s: option %s missing: %v", w.dst, o, e.opts)
			}
		}
		for _, o := range w.notOpts {
			if e.opts[o] {
				t.Errorf("%s: unexpected option %s: %v", w.dst, o, e.opts)
			}
		}
	}
	wantNotContains(t, "mount behaviour", checks, "noexec-broken")
	wantContains(t, "mount behaviour", checks, "ro-enforced", "noexec-enforced", "exec-works", "cgroup-files", "cgroup-ro")
}

// hostTmpfs mounts a tmpfs on dir for the test and makes it shared.
func hostTmpfs(t *testing.T, dir string, shared bool) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	if shared {
		if err := unix.Mount("", dir, "", unix.MS_SHARED, ""); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBindMounts(t *testing.T) {
	requireRoot(t)
	host := t.TempDir()
	os.Chmod(host, 0o755)
	os.WriteFile(filepath.Join(host, "hello"), []byte("hello-from-host\n"), 0o644)
	hostTmpfs(t, filepath.Join(host, "sub"), false)
	os.WriteFile(filepath.Join(host, "sub", "subfile"), []byte("in-submount\n"), 0o644)
	file := filepath.Join(t.TempDir(), "single.txt")
	os.WriteFile(file, []byte("single-file\n"), 0o644)

	c := newCtr(t,
		addMount("/mnt/bind", "bind", host, "bind", "ro"),
		addMount("/mnt/rbind", "bind", host, "rbind", "ro"),
		addMount("/mnt/rw", "none", host, "bind"),
		addMount("/mnt/rro", "bind", host, "rbind", "rro"),
		addMount("/etc/single.txt", "bind", file, "bind", "ro"),
		sh(`cat /mnt/bind/hello /mnt/rbind/hello
ls /mnt/bind/sub | wc -l
cat /mnt/rbind/sub/subfile
touch /mnt/bind/x 2>/dev/null || echo bind-ro
touch /mnt/rbind/x 2>/dev/null || echo rbind-ro
touch /mnt/rbind/sub/y && echo rbind-sub-rw
touch /mnt/rro/sub/z 2>/dev/null || echo rro-sub-ro
touch /mnt/rw/written && echo rw-ok
cat /etc/single.txt; [ -f /etc/single.txt ] && echo is-file
echo x >> /etc/single.txt 2>/dev/null || echo file-ro`))
	out := c.mustRun()
	got := lines(out)
	// "ro" is the mount's alone (runc's reading); "rro" reaches submounts.
	want := []string{"hello-from-host", "hello-from-host", "0", "in-submount", "bind-ro", "rbind-ro", "rbind-sub-rw", "rro-sub-ro",
		"rw-ok", "single-file", "is-file", "file-ro"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("bind mounts:\n got %q\nwant %q", got, want)
	}
	if _, err := os.Stat(filepath.Join(host, "written")); err != nil {
		t.Errorf("write through the rw bind mount not on the host: %v", err)
	}
	if b, _ := os.ReadFile(file); string(b) != "single-file\n" {
		t.Errorf("read-only file bind mount changed the host file: %q", b)
	}
}

func TestMountPropagation(t *testing.T) {
	requireRoot(t)
	host := filepath.Join(t.TempDir(), "shared")
	hostTmpfs(t, host, true)
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} },
		addMount("/mnt/slave", "bind", host, "rbind", "rslave"),
		addMount("/mnt/shared", "bind", host, "rbind", "rshared"),
		addMount("/mnt/private", "bind", host, "rbind", "rprivate"))
	c.mustCreate()
	pid := c.state().Pid
	// A mount made on the host after create reaches the slave and the shared
	// copy, not the private one.
	late := filepath.Join(host, "late")
	hostTmpfs(t, late, false)
	mi := readFile(t, "/proc/"+strconv.Itoa(pid)+"/mountinfo")
	opt := map[string]string{}
	for _, l := range lines(mi) {
		f := strings.Fields(l)
		if len(f) < 7 {
			continue
		}
		var tags []string
		for _, x := range f[6:] {
			if x == "-" {
				break
			}
			tags = append(tags, strings.Split(x, ":")[0])
		}
		opt[f[4]] = strings.Join(tags, ",")
	}
	if o := opt["/mnt/slave"]; o != "master" {
		t.Errorf("rslave mount: propagation %q, want master only", o)
	}
	if o := opt["/mnt/shared"]; !strings.Contains(o, "shared") {
		t.Errorf("rshared mount: propagation %q, want shared", o)
	}
	if o, ok := opt["/mnt/private"]; !ok || o != "" {
		t.Errorf("rprivate mount: propagation %q (present %v), want none", o, ok)
	}
	for _, mp := range []string{"/mnt/slave/late", "/mnt/shared/late"} {
		if _, ok := opt[mp]; !ok {
			t.Errorf("host mount after create did not propagate to %s", mp)
		}
	}
	if _, ok := opt["/mnt/private/late"]; ok {
		t.Errorf("host mount propagated into the rprivate mount")
	}
}

func TestDefaultDevices(t *testing.T) {
	c := newCtr(t, sh(`stat -c '%n %F %t:%T %a' /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty
echo data > /dev/null && head -c 5 /dev/zero | wc -c && head -c 3 /dev/urandom | wc -c
head -c 1 /dev/sda 2>/dev/null || echo no-host-disks`))
	out := c.mustRun()
	for _, w := range []string{"/dev/null character special file 1:3 666", "/dev/zero character special file 1:5 666",
		"/dev/full character special file 1:7 666", "/dev/random character special file 1:8 666",
		"/dev/urandom character special file 1:9 666", "/dev/tty character special file 5:0 666"} {
		wantContains(t, "default devices", out, w+"\n")
	}
	got := lines(out)
	if len(got) < 9 || got[6] != "5" || got[7] != "3" || got[8] != "no-host-disks" {
		t.Errorf("using the devices: %q", got[6:])
	}
}

func TestLinuxDevice(t *testing.T) {
	c := newCtr(t, sh("stat -c '%F %t:%T %a %u:%g' /dev/mynull; ls -ln /dev/mynull"), func(s *specs.Spec) {
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/mynull", Type: "c", Major: 1, Minor: 3,
			FileMode: ptr(os.FileMode(0o600)), UID: ptr(uint32(1000)), GID: ptr(uint32(1000))})
	})
	out := c.mustRun()
	l := lines(out)
	if len(l) != 2 || l[0] != "character special file 1:3 600 1000:1000" {
		t.Fatalf("/dev/mynull: %q, want a char device 1:3 mode 600 owned by 1000:1000", l)
	}
	if f := strings.Fields(l[1]); len(f) < 6 || f[0] != "crw-------" || f[2] != "1000" || f[3] != "1000" || f[4] != "1," || f[5] != "3" {
		t.Errorf("ls -ln /dev/mynull: %q", l[1])
	}
}

func TestDevSymlinks(t *testing.T) {
	c := newCtr(t, sh("for l in fd stdin stdout stderr ptmx; do echo $l=$(readlink /dev/$l); done; ls /dev/pts/ptmx"))
	out := c.mustRun()
	for _, w := range []string{"fd=/proc/self/fd", "stdin=/proc/self/fd/0", "stdout=/proc/self/fd/1",
		"stderr=/proc/self/fd/2", "ptmx=pts/ptmx", "/dev/pts/ptmx"} {
		wantContains(t, "/dev links", out, w+"\n")
	}
}

func TestMaskedPaths(t *testing.T) {
	c := newCtr(t, sh(`ls -A /secretdir | wc -l; cat /secretfile | wc -c; cat /proc/timer_list | wc -c
touch /secretdir/x 2>/dev/null || echo dir-ro; ls /visible`), func(s *specs.Spec) {
		s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/secretdir", "/secretfile", "/does/not/exist")
	})
	os.MkdirAll(filepath.Join(c.rootfs, "secretdir"), 0o755)
	os.WriteFile(filepath.Join(c.rootfs, "secretdir", "key"), []byte("dir-secret"), 0o644)
	os.WriteFile(filepath.Join(c.rootfs, "secretfile"), []byte("file-secret"), 0o644)
	os.WriteFile(filepath.Join(c.rootfs, "visible"), nil, 0o644)
	got := lines(c.mustRun())
	want := []string{"0", "0", "0", "dir-ro", "/visible"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("masked paths:\n got %q\nwant %q", got, want)
	}
}

func TestReadonlyPaths(t *testing.T) {
	c := newCtr(t, sh(`cat /rodir/f; touch /rodir/x 2>/dev/null || echo rodir-ro
echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null || echo procsys-ro
touch /tmp/x && echo tmp-rw; grep -E ' /(rodir|proc/sys) ' /proc/self/mounts`), func(s *specs.Spec) {
		s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/rodir", "/not/there")
	})
	os.MkdirAll(filepath.Join(c.rootfs, "rodir"), 0o755)
	os.WriteFile(filepath.Join(c.rootfs, "rodir", "f"), []byte("readable\n"), 0o644)
	out := c.mustRun()
	wantContains(t, "read-only paths", out, "readable\n", "rodir-ro\n", "procsys-ro\n", "tmp-rw\n")
	m := parseMounts(out)
	for _, p := range []string{"/rodir", "/proc/sys"} {
		if !m[p].opts["ro"] {
			t.Errorf("%s is not a ro mount: %v", p, m[p].opts)
		}
	}
}

func TestSysctls(t *testing.T) {
	hostFwd := readFile(t, "/proc/sys/net/ipv4/ip_forward")
	hostShm := readFile(t, "/proc/sys/kernel/shmmax")
	c := newCtr(t, sh("cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax"), func(s *specs.Spec) {
		s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1", "kernel.shmmax": "12345678"}
	})
	if got := lines(c.mustRun()); strings.Join(got, " ") != "1 12345678" {
		t.Errorf("sysctls inside: %q, want 1 12345678", got)
	}
	if readFile(t, "/proc/sys/net/ipv4/ip_forward") != hostFwd || readFile(t, "/proc/sys/kernel/shmmax") != hostShm {
		t.Errorf("the container's sysctls changed the host's")
	}
}

func TestSysctlNotNamespaced(t *testing.T) {
	host := readFile(t, "/proc/sys/vm/swappiness")
	c := newCtr(t, func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"vm.swappiness": "7"} })
	r := c.create()
	if r.code == 0 {
		t.Fatalf("create with vm.swappiness succeeded: %v", r)
	}
	wantContains(t, "create error", r.err, "linux.sysctl")
	noStateLeft(t, c.root)
	if readFile(t, "/proc/sys/vm/swappiness") != host {
		t.Errorf("vm.swappiness of the host changed")
	}
}

func TestRootfsPropagation(t *testing.T) {
	for _, tc := range []struct{ prop, want string }{{"rshared", "shared"}, {"rprivate", ""}} {
		t.Run(tc.prop, func(t *testing.T) {
			c := newCtr(t, sh(`awk '$5 == "/"' /proc/self/mountinfo`), func(s *specs.Spec) { s.Linux.RootfsPropagation = tc.prop })
			l := lines(c.mustRun())
			if len(l) != 1 {
				t.Fatalf("mountinfo of /: %q", l)
			}
			var tags []string
			for _, f := range strings.Fields(l[0])[6:] {
				if f == "-" {
					break
				}
				tags = append(tags, strings.Split(f, ":")[0])
			}
			if got := strings.Join(tags, ","); got != tc.want {
				t.Errorf("rootfsPropagation %s: / has propagation %q, want %q", tc.prop, got, tc.want)
			}
		})
	}
}

func TestNoPivotReadonly(t *testing.T) {
	c := newCtr(t, sh("touch /x 2>/dev/null || echo root-ro; cat /proc/self/mounts | grep -c ' / '"),
		func(s *specs.Spec) { s.Root.Readonly = true })
	out := c.mustRun("--no-pivot")
	wantContains(t, "--no-pivot with a read-only root", out, "root-ro")
}

// TestRootfsPropagationShared: with rootfsPropagation rshared (the CRI's
// bidirectional volumes) a mount made in the container's rshared volume
// reaches the host, as runc does; the default keeps it in the container.
func TestRootfsPropagationShared(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("nsenter"); err != nil {
		t.Skip("nsenter (util-linux) not installed")
	}
	for _, prop := range []string{"rshared", ""} {
		host := filepath.Join(t.TempDir(), "vol")
		hostTmpfs(t, host, true)
		os.MkdirAll(filepath.Join(host, "fromctr"), 0o755)
		c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"}; s.Linux.RootfsPropagation = prop },
			addMount("/mnt/vol", "bind", host, "rbind", "rshared"))
		c.mustCreate()
		pid := strconv.Itoa(c.state().Pid)
		if out, err := exec.Command("nsenter", "-t", pid, "-m", "mount", "-t", "tmpfs", "tmpfs", "/mnt/vol/fromctr").CombinedOutput(); err != nil {
			t.Fatalf("mount in the container: %v %s", err, out)
		}
		mounted := strings.Contains(readFile(t, "/proc/self/mountinfo"), filepath.Join(host, "fromctr")+" ")
		if prop == "rshared" && !mounted {
			t.Errorf("rootfsPropagation rshared: the container's mount did not reach the host")
		}
		if prop == "" && mounted {
			t.Errorf("default propagation: the container's mount reached the host")
		}
		syscall.Unmount(filepath.Join(host, "fromctr"), syscall.MNT_DETACH)
	}
}
