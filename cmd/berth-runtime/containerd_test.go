package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestContainerd runs a private containerd whose runc shim calls
// berth-runtime (ctr's --runc-binary, the same setting as the CRI's
// BinaryName): run with an exit code, run -d, exec, kill, delete.
func TestContainerd(t *testing.T) {
	requireRoot(t)
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Skip("containerd not installed (../shared/peers/setup.sh install)")
	}
	ctrBin, err := exec.LookPath("ctr")
	if err != nil {
		t.Skip("ctr not installed")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "containerd.sock")
	cfg := fmt.Sprintf("version = 2\nroot = %q\nstate = %q\n[grpc]\n  address = %q\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    disable_cgroup = true\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock)
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, _ := os.Create(filepath.Join(dir, "containerd.log"))
	d := exec.Command(bin, "--config", filepath.Join(dir, "config.toml"))
	d.Stdout, d.Stderr = logf, logf
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait() })
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		if i == 100 {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("containerd did not start: %s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctr := func(args ...string) (string, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, ctrBin, append([]string{"--address", sock, "--namespace", "berthtest"}, args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		if ee, ok := err.(*exec.ExitError); ok {
			return out.String(), ee.ExitCode()
		} else if err != nil {
			t.Fatalf("ctr %s: %v", strings.Join(args, " "), err)
		}
		return out.String(), 0
	}
	archive := filepath.Join(dir, "image.tar")
	if err := writeOCIArchive(archive, rootfsTmpl); err != nil {
		t.Fatal(err)
	}
	if out, code := ctr("images", "import", "--base-name", "localhost/berth-busybox", archive); code != 0 {
		t.Fatalf("import: %s", out)
	}
	image := "localhost/berth-busybox:test"
	run := []string{"run", "--runc-binary", rtBin}
	if out, code := ctr(append(run, "--rm", image, "c1", "sh", "-c", "echo hello; exit 5")...); code != 5 || !strings.Contains(out, "hello") {
		t.Fatalf("run: exit %d, %q; want 5 and hello", code, out)
	}
	if out, code := ctr(append(run, "-d", image, "c2", "sleep", "600")...); code != 0 {
		t.Fatalf("run -d: %s", out)
	}
	if out, code := ctr("task", "exec", "--exec-id", "e1", "c2", "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; exit 2"); code != 2 || !strings.Contains(out, "sleep 600") {
		t.Fatalf("exec: exit %d, %q", code, out)
	}
	if out, code := ctr("task", "kill", "-s", "SIGKILL", "c2"); code != 0 {
		t.Fatalf("kill: %s", out)
	}
	for i := 0; ; i++ {
		out, _ := ctr("task", "ls")
		if strings.Contains(out, "STOPPED") {
			break
		}
		if i == 100 {
			t.Fatalf("task did not stop: %s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, code := ctr("task", "delete", "c2"); code != 0 {
		t.Fatalf("task delete: %s", out)
	}
	if out, code := ctr("container", "rm", "c2"); code != 0 {
		t.Fatalf("container rm: %s", out)
	}
}

// writeOCIArchive writes an OCI image layout tarball holding one image
// (tag "test") whose single uncompressed layer is the directory root.
func writeOCIArchive(path, root string) error {
	var layer bytes.Buffer
	if out, err := exec.Command("tar", "-C", root, "--numeric-owner", "-cf", "-", ".").Output(); err != nil {
		return fmt.Errorf("tar: %w", err)
	} else {
		layer.Write(out)
	}
	blobs := map[string][]byte{}
	add := func(b []byte) (string, int) {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return d, len(b)
	}
	layerDigest, layerSize := add(layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Env": []string{"PATH=/bin"}, "Cmd": []string{"sh"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	configDigest, configSize := add(config)
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": configDigest, "size": configSize},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layerDigest, "size": layerSize}},
	})
	manifestDigest, manifestSize := add(manifest)
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"manifests": []any{map[string]any{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifestDigest,
			"size": manifestSize, "annotations": map[string]string{"org.opencontainers.image.ref.name": "test"}}},
	})
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	put := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b))}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := put("index.json", index); err != nil {
		return err
	}
	for d, b := range blobs {
		if err := put("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b); err != nil {
			return err
		}
	}
	return tw.Close()
}
