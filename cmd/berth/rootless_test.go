package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/testbin"
)

// TestRootless runs berth as an unprivileged user the test makes (with a
// subordinate id range, as useradd gives): berth makes and joins the
// user's namespace itself; a layer file of uid 1234 lands as the mapped
// host uid; a container runs, detached too, across commands; a file a
// container's user writes to a volume belongs to the mapped host uid; a
// limit is refused naming the missing cgroup delegation, and holds once
// one is delegated; a bridge network is refused clearly.
func TestRootless(t *testing.T) {
	reg := testRegistry(t)
	u := newRootlessUser(t, "berth-rl-test", true)
	user, home, sub := u.name, u.home, u.sub
	img := fmt.Sprintf("%s/berth-test/rootless-%d:1", reg, time.Now().UnixNano()%1e9)
	pushImage(t, img, fixtureImage(t, "amd64"))
	run, must := u.run, u.must
	must("pull -q " + img)
	owned := ""
	filepath.Walk(filepath.Join(home, ".local/share/berth/snapshots"), func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, "/data/owned") {
			owned = p
		}
		return nil
	})
	var st syscall.Stat_t
	if owned == "" || syscall.Stat(owned, &st) != nil || int(st.Uid) != sub+1234-1 || int(st.Gid) != sub+5678-1 {
		t.Errorf("layer file of 1234:5678 on the host: %s %d:%d, want %d:%d", owned, st.Uid, st.Gid, sub+1233, sub+5677)
	}
	if out := must("run --rm " + img + " busybox cat /data/owned"); out != "owned\n" {
		t.Errorf("run: %q", out)
	}
	// The layers' whiteout and opaque directory hold under the user's overlay.
	if out := must("run --rm " + img + " sh -c 'busybox ls /data/dir; busybox ls /data/gone 2>&1 || echo gone'"); !strings.HasPrefix(out, "y\n") || !strings.Contains(out, "gone") {
		t.Errorf("whiteouts in the user's overlay: %q", out)
	}
	vol := filepath.Join(home, "vol")
	os.MkdirAll(vol, 0o755)
	os.Chown(vol, sub+1233, sub+1233) // the container's 1234 may write there
	must("run --rm -u 1234 -v " + vol + ":/out " + img + " sh -c 'echo x > /out/f'")
	if err := syscall.Stat(filepath.Join(vol, "f"), &st); err != nil || int(st.Uid) != sub+1233 {
		t.Errorf("a file the container's uid 1234 wrote: owner %d (%v), want %d", st.Uid, err, sub+1233)
	}
	// Escapes: a volume's symlink to a host file, and the host's root-only
	// files bound in, are out of reach.
	os.Symlink("/etc/shadow", filepath.Join(vol, "link"))
	if out, err := run("run --rm -v " + vol + ":/out " + img + " busybox cat /out/link"); err == nil || strings.Contains(out, "root:") {
		t.Errorf("a volume's symlink to /etc/shadow read the host's: %v %q", err, out)
	}
	// The link resolves in the container: a write lands in its own /etc.
	run("run --rm -v " + vol + ":/out " + img + " sh -c 'echo pwned > /out/link'")
	if b, _ := os.ReadFile("/etc/shadow"); strings.Contains(string(b), "pwned") {
		t.Fatal("the host's /etc/shadow was written through a volume's symlink")
	}
	for _, v := range []string{"/etc/shadow:/s", "/root:/r"} {
		if out, err := run("run --rm -v " + v + " " + img + " sh -c 'busybox cat /s || busybox ls /r'"); err == nil {
			t.Errorf("-v %s: a root-only host path was read: %q", v, out)
		}
	}
	id := strings.TrimSpace(must("run -d " + img + " busybox sleep 60"))
	if out := must("exec " + id + " busybox cat /proc/self/uid_map"); !strings.Contains(out, strconv.Itoa(sub)) {
		t.Errorf("the container's uid map: %q", out)
	}
	// No cgroup delegated: stats says what it cannot know, and the rest.
	if out := must("stats --no-stream --format '{{.MemUsage}} {{.PIDS}}' " + id); out != "-- / -- 1\n" {
		t.Errorf("stats of a container without a cgroup: %q", out)
	}
	must("rm -f " + id)
	if out, err := run("run --rm -m 20m " + img + " busybox true"); err == nil || !strings.Contains(out, "no memory cgroup delegated") {
		t.Errorf("a memory limit without a delegated cgroup: %v %q", err, out)
	}
	rootlessLimits(t, u, img)
	if out, err := run("run --rm --network bridge " + img + " busybox true"); err == nil || !strings.Contains(out, "no bridge networks") {
		t.Errorf("a bridge network: %v %q", err, out)
	}
	// A published port goes through berth's user-space proxy into the
	// container's namespace: loopback alone here, where /dev/net/tun is
	// 0600 (slirp4netns cannot run for a user), else slirp4netns's network.
	port := freeHostPort(t)
	out, err := run(fmt.Sprintf("run -d -p 127.0.0.1:%d:8080 %s sh -c 'echo hi-rootless > /data/i.html; exec busybox httpd -f -p 8080 -h /data'", port, img))
	if err != nil {
		t.Fatalf("run -d -p as %s: %v %s", user, err, out)
	}
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/i.html", port)); body != "hi-rootless\n" {
		t.Errorf("the published port from the host: %q", body)
	}
	must("rm -f " + strings.TrimSpace(out))
	// (-r: a killed one may wait a while for its reaping, a zombie.)
	if out, _ := exec.Command("pgrep", "-r", "DRST", "-u", user, "-f", "port-proxy|slirp4netns").Output(); len(out) > 0 {
		t.Errorf("the port's proxy left running after rm: %s", out)
	}
	rootlessSlirp(t, u, img)
	rootlessFuse(t, u, img)
}

// TestRootlessNoSubIDs: a user without subordinate ids gets root alone in
// its namespace, with a warning saying so; root-owned images run, and an
// image with files of other owners fails to unpack with a clear error.
func TestRootlessNoSubIDs(t *testing.T) {
	reg := testRegistry(t)
	run := newRootlessUser(t, "berth-rl-nosub", false).run
	_, app := testbin.PushBusybox(t, reg)
	out, err := run("run --rm " + app + " busybox cat /proc/self/uid_map")
	if err != nil || !strings.Contains(out, "no subordinate ids") || !strings.Contains(out, "1\n") {
		t.Fatalf("run without subordinate ids: %v %q", err, out)
	}
	id := strings.TrimSpace(func() string { o, _ := run("run -d " + app + " sh -c 'echo logged; busybox sleep 60'"); return o }())
	if out, _ := run("ps --format {{.ID}}"); !strings.HasPrefix(id, strings.TrimSpace(out)) || out == "" {
		t.Errorf("ps: %q (started %q)", out, id)
	}
	time.Sleep(300 * time.Millisecond)
	if out, _ := run("logs " + id); out != "logged\n" {
		t.Errorf("logs: %q", out)
	}
	run("rm -f " + id)
	img := fmt.Sprintf("%s/berth-test/rootless-nosub-%d:1", reg, time.Now().UnixNano()%1e9)
	pushImage(t, img, fixtureImage(t, "amd64"))
	if out, err := run("pull -q " + img); err == nil || !strings.Contains(out, "data/owned") {
		t.Errorf("a layer with a file of uid 1234 and no subordinate ids: %v %q", err, out)
	}
}

// rootlessUser is a user a test made, with berth's binaries where it may
// run them.
type rootlessUser struct {
	t    *testing.T
	name string
	home string
	sub  int // the first subordinate uid (0: none)
	bin  string
}

// newRootlessUser makes the user name (a previous run's is removed first),
// with useradd's subordinate id ranges if subIDs, and removes it, its
// processes and its home at the end of the test.
func newRootlessUser(t *testing.T, name string, subIDs bool) *rootlessUser {
	t.Helper()
	runtimeBin(t)
	for _, tool := range []string{"useradd", "userdel", "nsenter", "newuidmap", "su"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	exec.Command("pkill", "-KILL", "-u", name).Run()
	exec.Command("userdel", "-r", name).Run()
	if out, err := exec.Command("useradd", "-m", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("pkill", "-KILL", "-u", name).Run() // the namespace's holder
		time.Sleep(100 * time.Millisecond)
		exec.Command("userdel", "-r", name).Run()
	})
	u := &rootlessUser{t: t, name: name, home: "/home/" + name}
	if !subIDs {
		for _, f := range []string{"/etc/subuid", "/etc/subgid"} { // useradd's ranges go
			exec.Command("sed", "-i", "/^"+name+":/d", f).Run()
		}
	} else if data, err := os.ReadFile("/etc/subuid"); err == nil {
		for line := range strings.Lines(string(data)) {
			if p := strings.Split(strings.TrimSpace(line), ":"); len(p) == 3 && p[0] == name {
				u.sub, _ = strconv.Atoi(p[1])
			}
		}
		if u.sub == 0 {
			t.Skip("useradd gave no /etc/subuid range")
		}
	}
	// The binaries where the user may run them (t.TempDir's parent is root's alone).
	var err error
	if u.bin, err = os.MkdirTemp("", "berth-rl-bin-"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(u.bin) })
	os.Chmod(u.bin, 0o755)
	for _, b := range []string{"berth", "berth-monitor", "berth-runtime"} {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(berthBin), b))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(u.bin, b), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return u
}

// run runs berth as the user, from a login shell.
func (u *rootlessUser) run(args string) (string, error) {
	out, err := exec.Command("su", "-", u.name, "-c", filepath.Join(u.bin, "berth")+" --registries-conf /dev/null "+args).CombinedOutput()
	return string(out), err
}

func (u *rootlessUser) must(args string) string {
	u.t.Helper()
	out, err := u.run(args)
	if err != nil {
		u.t.Fatalf("berth %s as %s: %v\n%s", args, u.name, err, out)
	}
	return out
}

// rootlessLimits delegates cgroups to u as an administrator does on cgroup
// v1 (a parent chowned to the user in each hierarchy, named in the user's
// berth.toml) and shows limits taking hold there: the files the runtime
// wrote, an allocation beyond the memory limit killed, pause through the
// delegated freezer, stats; a limit of a hierarchy not delegated (pids) is
// refused naming it; nothing is left under the parent at rm.
func rootlessLimits(t *testing.T, u *rootlessUser, img string) {
	uid, _ := strconv.Atoi(strings.TrimSpace(func() string { o, _ := exec.Command("id", "-u", u.name).Output(); return string(o) }()))
	parent := "/" + u.name
	dirs := map[string]string{}
	for _, ctrl := range []string{"memory", "cpu", "cpuacct", "freezer"} {
		mnt, _, ok := engine.V1Mount(ctrl)
		if !ok {
			t.Skipf("no cgroup v1 %s hierarchy: delegation by chown is cgroup v1's", ctrl)
		}
		d := filepath.Join(mnt, parent)
		if err := os.Mkdir(d, 0o755); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			exec.Command("pkill", "-KILL", "-u", u.name).Run()
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				if e.IsDir() {
					syscall.Rmdir(filepath.Join(d, e.Name()))
				}
			}
			syscall.Rmdir(d)
		})
		// The directory and the files through which it is used.
		for _, f := range []string{"", "cgroup.procs", "tasks"} {
			if err := os.Chown(filepath.Join(d, f), uid, uid); err != nil {
				t.Fatal(err)
			}
		}
		dirs[ctrl] = d
	}
	conf := filepath.Join(u.home, ".config/berth/berth.toml")
	os.MkdirAll(filepath.Dir(conf), 0o755)
	os.WriteFile(conf, []byte("[containers]\ncgroup_parent = \""+parent+"\"\n"), 0o644)
	exec.Command("chown", "-R", u.name+":", filepath.Join(u.home, ".config")).Run()

	if out, err := u.run("run --rm --pids-limit 10 " + img + " busybox true"); err == nil || !strings.Contains(out, "no pids cgroup delegated") {
		t.Errorf("a pids limit with pids not delegated: %v %q", err, out)
	}
	id := strings.TrimSpace(u.must("run -d -m 64m --cpus 0.5 " + img + " busybox sleep 60"))
	for ctrl, want := range map[string]string{"memory/memory.limit_in_bytes": "67108864", "cpu/cpu.cfs_quota_us": "50000"} {
		c, file, _ := strings.Cut(ctrl, "/")
		b, err := os.ReadFile(filepath.Join(dirs[c], id, file))
		if got := strings.TrimSpace(string(b)); err != nil || got != want {
			t.Errorf("%s of the container's delegated cgroup: %q (%v), want %s", file, got, err, want)
		}
	}
	pid := strings.TrimSpace(u.must("inspect --format {{.State.Pid}} " + id))
	if b, _ := os.ReadFile(filepath.Join(dirs["memory"], id, "cgroup.procs")); !strings.Contains(string(b), pid) {
		t.Errorf("the container's init %s is not in its memory cgroup: %q", pid, b)
	}
	u.must("pause " + id)
	if b, _ := os.ReadFile(filepath.Join(dirs["freezer"], id, "freezer.state")); strings.TrimSpace(string(b)) != "FROZEN" {
		t.Errorf("paused: freezer.state %q", b)
	}
	u.must("unpause " + id)
	if out := u.must("stats --no-stream " + id); !strings.Contains(out, "/ 67.1 MB") {
		t.Errorf("stats of a container with a delegated memory cgroup: %q", out)
	}
	u.must("rm -f " + id)
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, id)); err == nil {
			t.Errorf("the container's cgroup %s left after rm", filepath.Join(d, id))
		}
	}
	// The limit holds: 64 MiB in one buffer is more than 32m allows.
	if out, err := u.run("run --rm -m 32m " + img + " busybox dd if=/dev/zero of=/dev/null bs=64M count=1"); err == nil {
		t.Errorf("an allocation beyond the memory limit ran: %q", out)
	} else if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 137 {
		t.Errorf("an allocation beyond the memory limit: %v, want the OOM killer's 137: %q", err, out)
	}
}

// TestFuseOverlay runs containers on fuse-overlayfs (berth.toml's
// storage.mount_program; berth's own fallback where the kernel refuses
// overlayfs in a user namespace): the layers' whiteouts and opaque
// directories hold, writes land in the container's upper directory, and
// the mount and its fuse-overlayfs process go at rm.
func TestFuseOverlay(t *testing.T) {
	prog, err := exec.LookPath("fuse-overlayfs")
	if err != nil {
		t.Skip("fuse-overlayfs not installed")
	}
	c := containerCLI(t)
	conf := filepath.Join(t.TempDir(), "berth.toml")
	os.WriteFile(conf, []byte("[storage]\nmount_program = \"/nonexistent/fuse-overlayfs\"\n"), 0o644)
	if out, err := c.run(append([]string{"--config", conf}, "ps")...); err == nil || !strings.Contains(out, "storage.mount_program") {
		t.Errorf("a mount_program that is not there: %v %q", err, out)
	}
	os.WriteFile(conf, []byte("[storage]\nmount_program = \""+prog+"\"\n"), 0o644)
	c.args = append(c.args, "--config", conf)
	if out := c.must("run", "--rm", fixture, "sh", "-c", "busybox ls /data/dir; busybox ls /data/gone 2>&1 || echo gone"); !strings.HasPrefix(out, "y\n") || !strings.Contains(out, "gone") {
		t.Errorf("whiteouts and opaque directories on fuse-overlayfs: %q", out)
	}
	id := strings.TrimSpace(c.must("run", "-d", fixture, "sh", "-c", "echo new > /data/new; busybox rm /data/owned; exec busybox sleep 60"))
	rootfs := filepath.Join(c.args[3], "containers", id, "rootfs")
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if !strings.Contains(string(mounts), " "+rootfs+" ") || !strings.Contains(string(mounts), "fuse.fuse-overlayfs") {
		t.Fatalf("the container's rootfs %s is not a fuse-overlayfs mount:\n%s", rootfs, mounts)
	}
	time.Sleep(200 * time.Millisecond)
	if out := c.must("exec", id, "sh", "-c", "busybox cat /data/new; busybox ls /data/owned >/dev/null 2>&1 || echo removed"); out != "new\nremoved\n" {
		t.Errorf("writes on fuse-overlayfs: %q", out)
	}
	c.must("rm", "-f", id)
	if mounts, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mounts), rootfs) {
		t.Errorf("the container's fuse-overlayfs mount left after rm")
	}
	time.Sleep(100 * time.Millisecond)
	if out, _ := exec.Command("pgrep", "-af", "fuse-overlayfs.*"+id).Output(); len(out) > 0 {
		t.Errorf("fuse-overlayfs left running after rm: %s", out)
	}
}

// rootlessSlirp runs u's containers on slirp4netns, as on a host where a
// user may open /dev/net/tun (Debian's usual 0666; the device's mode is
// set so for the test and put back): the user's default network then,
// with a published port through the proxy, and nothing left at rm.
func rootlessSlirp(t *testing.T, u *rootlessUser, img string) {
	_, restore := openToUsers(t, "slirp4netns", "/dev/net/tun")
	if restore == nil {
		return
	}
	defer restore()
	if out := u.must("run --rm " + img + " sh -c 'busybox ip -4 addr show tap0; busybox cat /etc/resolv.conf'"); !strings.Contains(out, "10.0.2.100/24") || !strings.Contains(out, "nameserver 10.0.2.3") {
		t.Errorf("the default network of a user who may open /dev/net/tun: %q", out)
	}
	port := freeHostPort(t)
	id := strings.TrimSpace(u.must(fmt.Sprintf("run -d -p 127.0.0.1:%d:8080 %s sh -c 'echo hi-slirp > /data/i.html; exec busybox httpd -f -p 8080 -h /data'", port, img)))
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/i.html", port)); body != "hi-slirp\n" {
		t.Errorf("a published port on slirp4netns: %q", body)
	}
	if out, _ := exec.Command("pgrep", "-u", u.name, "-f", "slirp4netns.*"+id).Output(); len(out) == 0 {
		t.Errorf("no slirp4netns serving the container")
	}
	u.must("rm -f " + id)
	if out, _ := exec.Command("pgrep", "-r", "DRST", "-u", u.name, "-f", "port-proxy|slirp4netns").Output(); len(out) > 0 {
		t.Errorf("slirp4netns or the proxy left running after rm: %s", out)
	}
}

// rootlessFuse runs u's containers on fuse-overlayfs inside its user
// namespace (storage.mount_program in the user's berth.toml; berth's own
// choice where the kernel refuses overlayfs there), as on a host where a
// user may open /dev/fuse (Debian's usual 0666; set so for the test and
// put back): the layers' whiteouts, opaque directories (user.overlay.*)
// and owners hold, a write lands, and nothing is left at rm.
func rootlessFuse(t *testing.T, u *rootlessUser, img string) {
	prog, restore := openToUsers(t, "fuse-overlayfs", "/dev/fuse")
	if restore == nil {
		return
	}
	defer restore()
	conf := filepath.Join(u.home, ".config/berth/berth.toml")
	old, _ := os.ReadFile(conf)
	os.MkdirAll(filepath.Dir(conf), 0o755)
	os.WriteFile(conf, append(append([]byte{}, old...), "\n[storage]\nmount_program = \""+prog+"\"\n"...), 0o644)
	defer os.WriteFile(conf, old, 0o644)
	id := strings.TrimSpace(u.must("run -d " + img + " sh -c 'echo new > /data/new; exec busybox sleep 60'"))
	time.Sleep(200 * time.Millisecond)
	if out := u.must("exec " + id + " sh -c 'busybox ls /data/dir; busybox ls /data/gone 2>/dev/null || echo gone; busybox stat -c %u /data/owned; busybox cat /data/new'"); out != "y\ngone\n1234\nnew\n" {
		t.Errorf("a user's container on fuse-overlayfs: %q", out)
	}
	if out, _ := exec.Command("pgrep", "-u", u.name, "-f", "fuse-overlayfs.*"+id).Output(); len(out) == 0 {
		t.Errorf("no fuse-overlayfs serving the container's rootfs")
	}
	u.must("rm -f " + id)
	if out, _ := exec.Command("pgrep", "-r", "DRST", "-u", u.name, "fuse-overlayfs").Output(); len(out) > 0 {
		t.Errorf("fuse-overlayfs left running after rm: %s", out)
	}
}

// openToUsers makes the device dev usable by every user (Debian's usual
// 0666; these machines make some root's alone) for the part of a test that
// needs tool. It returns the tool's path and what puts the device's mode
// back, or a nil func, the part skipped, when either is missing.
func openToUsers(t *testing.T, tool, dev string) (string, func()) {
	prog, err := exec.LookPath(tool)
	if err != nil {
		t.Logf("%s not installed: its part skipped", tool)
		return "", nil
	}
	st, err := os.Stat(dev)
	if err != nil {
		t.Logf("no %s: %s's part skipped", dev, tool)
		return "", nil
	}
	os.Chmod(dev, 0o666)
	return prog, func() { os.Chmod(dev, st.Mode().Perm()) }
}
