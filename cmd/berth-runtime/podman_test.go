package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestPodman drives the real podman with berth-runtime as its OCI runtime:
// run --rm, run -d, exec (plain and with a tty), stop and rm, with a busybox
// image imported from the test's rootfs into a private podman store.
func TestPodman(t *testing.T) {
	requireRoot(t)
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("podman not installed (../shared/peers/setup.sh install, or apt-get install podman)")
	}
	dir := t.TempDir()
	// The host's RLIMIT_NOFILE hard limit is below podman's default
	// nofile ulimit: a containers.conf of the test's own drops it.
	conf := filepath.Join(dir, "containers.conf")
	if err := os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n[engine]\nlock_type = \"file\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Locks in files of the test's own (--tmpdir), not podman's shared
	// memory segment, which every podman on the host uses whatever its
	// --root: two tests' podmans at once took each other's lock 0.
	base := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--runtime", rtBin, "--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	pm := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, podman, append(append([]string{}, base...), args...)...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("podman %s: %v", strings.Join(args, " "), err)
		}
		return out.String(), code
	}
	tarball := filepath.Join(dir, "rootfs.tar")
	if out, err := exec.Command("tar", "-C", rootfsTmpl, "-cf", tarball, ".").CombinedOutput(); err != nil {
		t.Fatalf("tar: %v: %s", err, out)
	}
	if out, code := pm("import", "-q", tarball, "localhost/berth-busybox:test"); code != 0 {
		t.Fatalf("podman import: %s", out)
	}
	t.Cleanup(func() { pm("rm", "-af"); pm("system", "reset", "-f") })

	if out, code := pm("run", "--rm", "--network", "none", "localhost/berth-busybox:test", "sh", "-c", "echo hello; exit 7"); code != 7 || !strings.Contains(out, "hello") {
		t.Fatalf("run --rm: exit %d, output %q; want 7 and hello", code, out)
	}
	if out, code := pm("run", "-d", "--name", "bt", "--network", "none", "localhost/berth-busybox:test", "sleep", "600"); code != 0 {
		t.Fatalf("run -d: %s", out)
	}
	if out, code := pm("exec", "bt", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"); code != 0 || !strings.Contains(out, "sleep 600") {
		t.Fatalf("exec: exit %d, %q", code, out)
	}
	if out, code := pm("exec", "-t", "bt", "tty"); code != 0 || !strings.Contains(out, "/dev/pts/") {
		t.Fatalf("exec -t: exit %d, %q", code, out)
	}
	if out, code := pm("exec", "bt", "sh", "-c", "exit 3"); code != 3 {
		t.Fatalf("exec exit code: %d, %q", code, out)
	}
	if out, code := pm("stop", "-t", "1", "bt"); code != 0 {
		t.Fatalf("stop: %s", out)
	}
	if out, _ := pm("ps", "-a", "--format", "{{.Names}} {{.Status}}"); !strings.Contains(out, "bt Exited") {
		t.Fatalf("after stop: %q", out)
	}
	if out, code := pm("rm", "bt"); code != 0 {
		t.Fatalf("rm: %s", out)
	}
	if out, _ := pm("ps", "-a", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("containers left: %q", out)
	}
}
