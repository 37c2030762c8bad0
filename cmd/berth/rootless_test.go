package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthdev/berth/internal/testbin"
)

// TestUserNamespace runs berth as an unprivileged user inside a user and
// mount namespace of its own (unshare --map-root-user; berth will make
// and join its namespace itself, issue 6): a pull unpacks, a container
// runs without a cgroup (none is delegated), and a limit is refused
// naming the missing delegation.
func TestUserNamespace(t *testing.T) {
	reg := testRegistry(t)
	runtimeBin(t)
	for _, tool := range []string{"useradd", "userdel", "unshare", "su"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	const user = "berth-ns-test"
	exec.Command("userdel", "-r", user).Run() // a previous run's
	if out, err := exec.Command("useradd", "-m", user).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	defer exec.Command("userdel", "-r", user).Run()
	// The binaries where the user may run them.
	bin, err := os.MkdirTemp("", "berth-ns-bin-") // t.TempDir's parent is root's alone
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(bin)
	os.Chmod(bin, 0o755)
	for _, b := range []string{"berth", "berth-monitor", "berth-runtime"} {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(berthBin), b))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, b), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Its files are all root's: without subuid ranges (unshare maps one
	// id) layers with other owners cannot unpack.
	_, img := testbin.PushBusybox(t, reg)
	run := func(args string) (string, error) {
		script := "export XDG_RUNTIME_DIR=$HOME/run; mkdir -p $XDG_RUNTIME_DIR; " +
			"exec unshare --user --map-root-user --mount " + filepath.Join(bin, "berth") +
			" --root $HOME/store --runroot $HOME/run/berth --registries-conf /dev/null " + args
		out, err := exec.Command("su", "-", user, "-c", script).CombinedOutput()
		return string(out), err
	}
	if out, err := run("pull -q " + img); err != nil {
		t.Fatalf("pull as %s: %v %s", user, err, out)
	}
	if out, err := run("run --rm --network none " + img + " busybox head -1 /etc/passwd"); err != nil || out != "root:x:0:0:root:/root:/bin/sh\n" {
		t.Fatalf("run as %s: %v %q", user, err, out)
	}
	if out, err := run("run --rm --network none -m 20m " + img + " busybox true"); err == nil || !strings.Contains(out, "no cgroup delegated") {
		t.Errorf("a memory limit without a delegated cgroup: %v %q", err, out)
	}
}
