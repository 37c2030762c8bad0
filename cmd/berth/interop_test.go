package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// podmanCLI runs the real podman on a private store.
func podmanCLI(t *testing.T) func(args ...string) string {
	t.Helper()
	podman, err := exec.LookPath("podman")
	if err != nil {
		t.Skip("podman not installed")
	}
	dir := t.TempDir()
	// The host's RLIMIT_NOFILE hard limit is below podman's default nofile
	// ulimit: a containers.conf of the test's own drops it.
	conf := filepath.Join(dir, "containers.conf")
	os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = []\n[engine]\nlock_type = \"file\"\n"), 0o644)
	// Locks in files of the test's own (--tmpdir), not podman's shared
	// memory segment, which every podman on the host uses whatever its
	// --root: two tests' podmans at once took each other's lock 0.
	base := []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "runroot"), "--tmpdir", filepath.Join(dir, "tmp"),
		"--cgroup-manager", "cgroupfs", "--events-backend", "file"}
	pm := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, podman, append(append([]string{}, base...), args...)...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		cmd := exec.Command(podman, append(append([]string{}, base...), "system", "reset", "-f")...)
		cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+conf)
		cmd.Run()
	})
	return pm
}

// runtimeBin is the berth-runtime that `make test` built.
func runtimeBin(t *testing.T) string {
	t.Helper()
	rt := os.Getenv("BERTH_TEST_RUNTIME")
	if rt == "" {
		t.Skip("BERTH_TEST_RUNTIME is not set (make test sets it)")
	}
	return rt
}

// TestPodmanInterop: an image podman pushed is pulled by berth and runs
// (berth-runtime on berth's mounted image); an image berth pushed is
// pulled by podman and runs there with the layers' whiteouts applied.
func TestPodmanInterop(t *testing.T) {
	reg := testRegistry(t)
	rt := runtimeBin(t)
	pm := podmanCLI(t)
	c := newCLI(t)

	// podman -> registry -> berth.
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	var rootfs bytes.Buffer
	tw := tar.NewWriter(&rootfs)
	for _, d := range []string{"bin/", "proc/", "dev/", "sys/", "tmp/"} { // mount points: the rootfs is read-only
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	tw.WriteHeader(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox"})
	tw.Close()
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	os.WriteFile(tarPath, rootfs.Bytes(), 0o644)
	fromPodman := reg + "/berth-test/from-podman-" + randomSuffix() + ":1"
	pm("import", "-q", tarPath, "localhost/bb:1")
	pm("push", "-q", "--tls-verify=false", "localhost/bb:1", "docker://"+fromPodman)
	c.must("pull", "-q", fromPodman)
	mnt := strings.TrimSpace(c.must("image", "mount", fromPodman))
	bundle := t.TempDir()
	mustRun(t, rt, "spec", "--bundle", bundle)
	cfgPath := filepath.Join(bundle, "config.json")
	var spec map[string]any
	data, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(data, &spec); err != nil {
		t.Fatal(err)
	}
	spec["root"] = map[string]any{"path": mnt, "readonly": true}
	proc := spec["process"].(map[string]any)
	proc["terminal"] = false
	proc["args"] = []string{"/bin/sh", "-c", "echo ran-by-berth"}
	data, _ = json.Marshal(spec)
	os.WriteFile(cfgPath, data, 0o644)
	id := "berth-interop-" + randomSuffix()
	out := mustRun(t, rt, "run", "--bundle", bundle, id)
	exec.Command(rt, "delete", "-f", id).Run()
	if strings.TrimSpace(out) != "ran-by-berth" {
		t.Errorf("running podman's image pulled by berth: %q", out)
	}
	c.must("image", "unmount", fromPodman)

	// berth -> registry -> podman.
	fixture := reg + "/berth-test/fixture-" + randomSuffix() + ":1"
	c.must("image", "copy", "-q", "oci-archive:"+writeFixtureArchive(t, c)+":v1", "local:"+fixture)
	c.must("push", "-q", fixture)
	pm("pull", "-q", "--tls-verify=false", fixture)
	out = pm("run", "--rm", "--network", "none", "--runtime", rt, fixture,
		"sh", "-c", "cat /data/a /data/dir/y; ls /data /data/dir")
	if !strings.Contains(out, "hello from layer 1") || !strings.Contains(out, "new in layer 2") ||
		strings.Contains(out, "gone") || strings.Contains(out, "x\n") {
		t.Errorf("podman running berth's push: %q", out)
	}
}

// writeFixtureArchive writes the fixture as an oci-archive with berth's
// own writer (from an image pulled nowhere: an OCI layout made here).
func writeFixtureArchive(t *testing.T, c *cli) string {
	t.Helper()
	reg := testRegistry(t)
	repo := reg + "/berth-test/seed-" + randomSuffix() + ":1"
	pushImage(t, repo, fixtureImage(t, "amd64"))
	out := filepath.Join(t.TempDir(), "fixture.tar")
	c.must("image", "copy", "-q", "docker://"+repo, "oci-archive:"+out+":v1")
	return out
}
