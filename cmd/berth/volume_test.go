package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestVolumes: a named volume gets the image's content on first use
// (owners kept), outlives its containers, is shared between them, is
// refused removal while used; an anonymous one goes with --rm.
func TestVolumes(t *testing.T) {
	c := containerCLI(t)
	root := c.args[1]
	if out := c.must("volume", "create", "v1"); out != "v1\n" {
		t.Fatalf("volume create: %q", out)
	}
	if out, code := c.code("volume", "create", "v1"); code != 125 || !strings.Contains(out, "already exists") {
		t.Errorf("second create: %d %q", code, out)
	}
	if out := c.must("run", "--rm", "-v", "v1:/data", fixture, "sh", "-c", "cat /data/a; echo new > /data/b"); out != "hello from layer 1\n" {
		t.Fatalf("first use shows the image's content: %q", out)
	}
	mp := strings.TrimSpace(c.must("volume", "inspect", "--format", "{{.Mountpoint}}", "v1"))
	if mp != filepath.Join(root, "volumes", "v1", "_data") {
		t.Errorf("mountpoint %q", mp)
	}
	if fi, err := os.Stat(filepath.Join(mp, "owned")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1234 {
		t.Errorf("the copied file lost its owner: %v", err)
	}
	if out := c.must("run", "--rm", "-v", "v1:/elsewhere:ro", fixture, "sh", "-c", "cat /elsewhere/b; echo x > /elsewhere/c || echo refused"); !strings.HasPrefix(out, "new\n") ||
		!strings.Contains(out, "refused") {
		t.Errorf("second container, read-only: %q", out)
	}
	if _, err := os.Stat(filepath.Join(mp, "c")); err == nil {
		t.Error("a write through a read-only volume mount landed")
	}
	c.must("run", "-d", "--name", "user", "-v", "v1:/data", fixture, "busybox", "sleep", "60")
	if out := c.must("__complete", "volume", "rm", ""); !strings.HasPrefix(out, "v1\n") {
		t.Errorf("completion of volume rm: %q", out)
	}
	if out := c.must("__complete", "stop", ""); !strings.HasPrefix(out, "user\n") {
		t.Errorf("completion of stop: %q", out)
	}
	if out, code := c.code("volume", "rm", "v1"); code != 125 || !strings.Contains(out, "user") {
		t.Errorf("rm of a used volume: %d %q", code, out)
	}
	c.must("rm", "-f", "user")
	// Anonymous: made for the container, gone with --rm; kept without, until rm -v.
	c.must("run", "--rm", "-v", "/scratch", fixture, "sh", "-c", "echo x > /scratch/f")
	c.must("run", "--name", "keeper", "-v", "/scratch", fixture, "busybox", "true")
	if out := c.must("volume", "ls", "-q"); len(strings.Fields(out)) != 2 {
		t.Errorf("volumes: %q, want v1 and keeper's", out)
	}
	c.must("rm", "-v", "keeper")
	if out := c.must("volume", "ls", "-q"); out != "v1\n" {
		t.Errorf("after rm -v: %q", out)
	}
	for _, v := range []string{"rel/dir:/x", "v1:relative", "v1:/x:bogus", "/nonexistent-host-dir:/x"} {
		if out, code := c.code("run", "--rm", "-v", v, fixture, "busybox", "true"); code != 125 {
			t.Errorf("-v %s: %d %q", v, code, out)
		}
	}
	if out := c.must("volume", "prune"); out != "v1\n" {
		t.Errorf("prune: %q", out)
	}
	if out := c.must("volume", "ls", "-q"); out != "" {
		t.Errorf("after prune: %q", out)
	}
}

// TestMounts: --mount of each type (docker's and podman's syntax): a
// read-only bind, a named volume, a sized tmpfs, and an image's directory
// read-only (its files and owners as in the image; gone at rm); bad ones
// refused with nothing made.
func TestMounts(t *testing.T) {
	c := containerCLI(t)
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "f"), []byte("from-host\n"), 0o644)
	script := "busybox cat /b/f; (echo x > /b/g) 2>/dev/null || echo bind-ro; echo v > /v/f; busybox grep ' /t ' /proc/mounts | busybox grep -o 'size=[0-9]*k';" +
		" busybox ls /img; busybox stat -c %u /img/owned; busybox touch /img/x 2>/dev/null || echo image-ro; /img2/busybox true && echo image-exec"
	out := c.must("run", "--name", "m", "--mount", "type=bind,src="+host+",dst=/b,ro", "--mount", "type=volume,source=mv,target=/v",
		"--mount", "type=tmpfs,destination=/t,tmpfs-size=1m", "--mount", "type=image,src="+fixture+",dst=/img,subpath=data",
		"--mount", "type=image,src="+fixture+",dst=/img2,subpath=bin", fixture, "sh", "-c", script)
	if want := "from-host\nbind-ro\nsize=1024k\na\ndir\nhard\nowned\n1234\nimage-ro\nimage-exec\n"; out != want {
		t.Errorf("--mount of each type: %q, want %q", out, want)
	}
	if out := c.must("run", "--rm", "--mount", "type=volume,src=mv,dst=/v", fixture, "busybox", "cat", "/v/f"); out != "v\n" {
		t.Errorf("the named volume a --mount made: %q", out)
	}
	id := strings.TrimSpace(c.must("inspect", "--format", "{{.ID}}", "m"))
	if out := c.must("inspect", "--format", "{{range .Mounts}}{{.Type}}:{{.Destination}}:{{.RW}} {{end}}", "m"); out != "bind:/b:false tmpfs:/t:true volume:/v:true image:/img:false image:/img2:false \n" {
		t.Errorf("inspect's mounts: %q", out)
	}
	c.must("rm", "m")
	if b, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(b), filepath.Join(id, "image-volumes")) {
		t.Error("an image mount left after rm")
	}
	for _, bad := range []string{"type=image,src=" + fixture + ",dst=/i,rw", "type=image,src=" + fixture + ",dst=/i,subpath=../x",
		"type=foo,dst=/x", "type=bind,src=" + host, "type=tmpfs,dst=/t,bogus=1", "type=tmpfs,src=x,dst=/t", "type=image,dst=/i",
		"type=image,src=" + fixture + ",dst=/i,subpath=nosuch"} {
		if out, code := c.code("run", "--rm", "--mount", bad, fixture, "true"); code != 125 || !strings.Contains(out, "Error") {
			t.Errorf("--mount %s: %d %q", bad, code, out)
		}
	}
	if out := c.must("ps", "-aq"); out != "" {
		t.Errorf("refused mounts left containers: %q", out)
	}
}
