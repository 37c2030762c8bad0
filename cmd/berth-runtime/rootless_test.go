package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRootlessRuntime: berth-runtime run by an unprivileged user (a user
// the test makes) on a `spec --rootless` bundle: the container runs in
// its own user namespace with the user as its root, the state is under
// $XDG_RUNTIME_DIR, no cgroup is needed, and a limit is refused naming
// the missing delegation.
func TestRootlessRuntime(t *testing.T) {
	requireRoot(t)
	for _, tool := range []string{"useradd", "userdel", "su"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	const user = "berth-rt-rl-test"
	exec.Command("userdel", "-r", user).Run()
	if out, err := exec.Command("useradd", "-m", user).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	defer exec.Command("userdel", "-r", user).Run()
	home := "/home/" + user
	rt := filepath.Join(home, "berth-runtime")
	data, err := os.ReadFile(rtBin)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(rt, data, 0o755)
	os.MkdirAll(filepath.Join(home, "b", "rootfs", "bin"), 0o755)
	os.WriteFile(filepath.Join(home, "b", "rootfs", "bin", "busybox"), bb, 0o755)
	os.Symlink("busybox", filepath.Join(home, "b", "rootfs", "bin", "sh"))
	exec.Command("chown", "-R", user+":"+user, home).Run()
	as := func(script string) (string, error) {
		out, err := exec.Command("su", "-", user, "-c", "export XDG_RUNTIME_DIR=$HOME/xdg; mkdir -p $XDG_RUNTIME_DIR; cd b; "+script).CombinedOutput()
		return string(out), err
	}
	if out, err := as(rt + ` spec --rootless && sed -i 's/"terminal": true/"terminal": false/; s/^\t\t\t"sh"$/\t\t\t"sh", "-c", "busybox id -u; busybox cat \/proc\/self\/uid_map"/' config.json`); err != nil {
		t.Fatalf("spec --rootless: %v %s", err, out)
	}
	out, err := as(rt + " run rl")
	uid := strings.TrimSpace(func() string { b, _ := exec.Command("id", "-u", user).Output(); return string(b) }())
	if err != nil || !strings.HasPrefix(out, "0\n") || !strings.Contains(out, " "+uid+" ") {
		t.Fatalf("run as %s: %v %q (want root in the container, mapped to %s)", user, err, out, uid)
	}
	if _, err := os.Stat(filepath.Join(home, "xdg", "berth-runtime")); err != nil {
		t.Errorf("no state directory under $XDG_RUNTIME_DIR: %v", err)
	}
	if out, err := as(`sed -i 's/"linux": {/"linux": {"resources": {"memory": {"limit": 20000000}},/' config.json && ` + rt + " run rl2"); err == nil || !strings.Contains(out, "no memory cgroup delegated") {
		t.Errorf("a memory limit without a delegated cgroup: %v %q", err, out)
	}
}
