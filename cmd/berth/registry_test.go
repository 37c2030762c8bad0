package main

import (
	"archive/tar"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/testbin"
	"github.com/google/go-containerregistry/pkg/name"
	gv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func testRegistry(t *testing.T) string { return testbin.Registry(t) }

func randomSuffix() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

type entry struct {
	name, body, link string
	typ              byte
	mode             int64
	uid, gid         int
}

func file(name, body string) entry {
	return entry{name: name, body: body, typ: tar.TypeReg, mode: 0o644}
}
func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }

func layerOf(t *testing.T, entries ...entry) gv1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Uid: e.uid, Gid: e.gid,
			Size: int64(len(e.body)), ModTime: time.Unix(1700000000, 0)}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.body))
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// fixtureImage has two layers that exercise what an applier gets wrong:
// a hard link, a symlink, owners and modes, a whiteout and an opaque
// directory; its busybox is the host's static one.
func fixtureImage(t *testing.T, arch string) gv1.Image {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	l1 := layerOf(t, dir("bin/"), dir("etc/"), dir("data/"), dir("data/dir/"),
		entry{name: "bin/busybox", body: string(bb), typ: tar.TypeReg, mode: 0o755},
		entry{name: "bin/sh", link: "busybox", typ: tar.TypeSymlink, mode: 0o777},
		file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
		file("data/a", "hello from layer 1\n"),
		entry{name: "data/hard", link: "data/a", typ: tar.TypeLink},
		file("data/dir/x", "hidden by the opaque directory\n"),
		file("data/gone", "removed by a whiteout\n"),
		entry{name: "data/owned", body: "owned\n", typ: tar.TypeReg, mode: 0o640, uid: 1234, gid: 5678})
	l2 := layerOf(t, dir("data/"), file("data/.wh.gone", ""), dir("data/dir/"), file("data/dir/.wh..wh..opq", ""),
		file("data/dir/y", "new in layer 2\n"), file("etc/motd", "layer 2\n"))
	img, err := mutate.AppendLayers(empty.Image, l1, l2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = gv1.Time{Time: time.Unix(1700000000, 0).UTC()}
	cf.Config.Cmd = []string{"/bin/sh", "-c", "cat /data/a"}
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Labels = map[string]string{"org.example.fixture": arch}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// checkFixtureTree checks, in an unpacked or mounted fixture, what the two
// layers leave.
func checkFixtureTree(t *testing.T, root, who string) {
	t.Helper()
	read := func(p string) string { b, _ := os.ReadFile(filepath.Join(root, p)); return string(b) }
	if read("data/a") != "hello from layer 1\n" || read("data/dir/y") != "new in layer 2\n" || read("etc/motd") != "layer 2\n" {
		t.Errorf("%s: files of the layers are wrong or missing", who)
	}
	for _, gone := range []string{"data/gone", "data/dir/x", "data/.wh.gone", "data/dir/.wh..wh..opq"} {
		if _, err := os.Lstat(filepath.Join(root, gone)); err == nil {
			t.Errorf("%s: %s is there: whiteouts not applied", who, gone)
		}
	}
	a, err1 := os.Stat(filepath.Join(root, "data/a"))
	h, err2 := os.Stat(filepath.Join(root, "data/hard"))
	if err1 != nil || err2 != nil || !os.SameFile(a, h) {
		t.Errorf("%s: data/hard is not a hard link of data/a (%v %v)", who, err1, err2)
	}
	if l, err := os.Readlink(filepath.Join(root, "bin/sh")); err != nil || l != "busybox" {
		t.Errorf("%s: bin/sh -> %q (%v)", who, l, err)
	}
	if fi, err := os.Stat(filepath.Join(root, "data/owned")); err != nil {
		t.Errorf("%s: data/owned: %v", who, err)
	} else if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1234 || st.Gid != 5678 || fi.Mode().Perm() != 0o640 {
		t.Errorf("%s: data/owned is %d:%d %v, want 1234:5678 -rw-r-----", who, st.Uid, st.Gid, fi.Mode().Perm())
	}
}

type cli struct {
	t    *testing.T
	args []string
}

func newCLI(t *testing.T) *cli {
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	os.WriteFile(conf, []byte("unqualified-search-registries = []\n"), 0o644)
	c := &cli{t: t, args: []string{"--root", filepath.Join(dir, "store"), "--runroot", filepath.Join(dir, "run"), "--registries-conf", conf}}
	t.Cleanup(func() {
		// Unmount whatever a failed test left mounted.
		ents, _ := os.ReadDir(filepath.Join(dir, "run", "mounts"))
		for _, e := range ents {
			syscall.Unmount(filepath.Join(dir, "run", "mounts", e.Name()), syscall.MNT_DETACH)
		}
	})
	return c
}

func (c *cli) run(args ...string) (string, error) {
	out, err := exec.Command(berthBin, append(append([]string{}, c.args...), args...)...).CombinedOutput()
	return string(out), err
}

func (c *cli) must(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRealRegistry: pull a multi-layer fixture from the real registry,
// check its tree, push it back, read it with skopeo, write an OCI layout
// that skopeo and umoci read, and choose platforms from an index.
func TestRealRegistry(t *testing.T) {
	reg := testRegistry(t)
	c := newCLI(t)
	repo := reg + "/berth-test/fixture-" + randomSuffix()
	amd, arm := fixtureImage(t, "amd64"), fixtureImage(t, "arm64")
	pushImage(t, repo+":1", amd)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: amd, Descriptor: gv1.Descriptor{Platform: &gv1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: gv1.Descriptor{Platform: &gv1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}})
	multi, _ := name.NewTag(repo+":multi", name.Insecure)
	if err := remote.WriteIndex(multi, idx); err != nil {
		t.Fatal(err)
	}

	// Without a terminal, one line per layer.
	if out := c.must("pull", repo+":1"); strings.Count(out, "Copying blob sha256:") != 2 || !strings.Contains(out, " done (") {
		t.Errorf("pull output: %q", out)
	}
	dir := strings.TrimSpace(c.must("image", "mount", repo+":1"))
	checkFixtureTree(t, dir, "berth pull")
	if _, err := c.run("rmi", repo+":1"); err == nil {
		t.Errorf("rmi of a mounted image succeeded")
	}
	c.must("image", "unmount", repo+":1")

	// Platforms from the index; the host's by default.
	c.must("pull", "-q", "--platform", "linux/arm64", repo+":multi")
	var info []struct{ Architecture, Variant string }
	if err := json.Unmarshal([]byte(c.must("image", "inspect", repo+":multi")), &info); err != nil || len(info) != 1 || info[0].Architecture != "arm64" {
		t.Errorf("inspect after pull --platform linux/arm64: %+v %v", info, err)
	}
	raw := c.must("image", "inspect", "--raw", "docker://"+repo+":multi")
	if !strings.Contains(raw, string(types.OCIImageIndex)) {
		t.Errorf("inspect --raw of an index: %s", raw)
	}
	var ri struct {
		Architecture string
		RepoTags     []string
		Layers       []string
	}
	if err := json.Unmarshal([]byte(c.must("image", "inspect", "docker://"+repo+":multi")), &ri); err != nil ||
		ri.Architecture != "amd64" || len(ri.RepoTags) != 2 || len(ri.Layers) != 2 {
		t.Errorf("remote inspect: %+v %v", ri, err)
	}
	// Every platform of the index: to another repository (the same index)
	// and to an OCI layout (an OCI index of both, read by skopeo).
	c.must("image", "copy", "-q", "--all", "docker://"+repo+":multi", "docker://"+repo+"-copy:multi")
	if a, b := c.must("image", "inspect", "--raw", "docker://"+repo+":multi"), c.must("image", "inspect", "--raw", "docker://"+repo+"-copy:multi"); a != b {
		t.Errorf("copy --all between registries changed the index:\n%s\n%s", a, b)
	}
	allDir := filepath.Join(t.TempDir(), "all")
	c.must("image", "copy", "-q", "--all", "docker://"+repo+":multi", "oci:"+allDir+":multi")
	if _, err := exec.LookPath("skopeo"); err == nil {
		out := mustRun(t, "skopeo", "inspect", "--raw", "oci:"+allDir+":multi")
		if strings.Count(out, `"platform"`) != 2 || !strings.Contains(out, "arm64") {
			t.Errorf("skopeo reads berth's copied index as %s", out)
		}
		mustRun(t, "skopeo", "inspect", "--override-arch", "arm64", "oci:"+allDir+":multi")
	}
	if tags := strings.Fields(c.must("image", "tags", repo)); len(tags) != 2 || !slices.Contains(tags, "1") || !slices.Contains(tags, "multi") {
		t.Errorf("tags: %q", tags)
	}

	// Layers are kept unpacked: a push to a repository that has the
	// original blobs sends the same manifest; to one that has not, the
	// layers are rebuilt (same diffIDs, same image ID).
	local := strings.TrimSpace(c.must("image", "inspect", "--format", "{{.Digest}} {{.ID}}", repo+":1"))
	c.must("push", "-q", repo+":1", repo+":again")
	if got := strings.TrimSpace(c.must("image", "inspect", "--format", "{{.Digest}}", "docker://"+repo+":again")); !strings.HasPrefix(local, got+" ") {
		t.Errorf("push back to the origin: manifest %s, stored %s", got, local)
	}
	// Push under another name; skopeo reads it.
	pushed := reg + "/berth-test/pushed-" + randomSuffix() + ":2"
	c.must("tag", repo+":1", pushed)
	c.must("push", "-q", pushed)
	if _, err := exec.LookPath("skopeo"); err == nil {
		out := mustRun(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+pushed)
		if !strings.Contains(out, `"Architecture": "amd64"`) || !strings.Contains(out, "org.example.fixture") {
			t.Errorf("skopeo inspect of what berth pushed: %s", out)
		}
	} else {
		t.Error("skopeo not installed: interop not checked")
	}

	// An OCI layout that skopeo and umoci read.
	layout := filepath.Join(t.TempDir(), "layout")
	c.must("image", "copy", "-q", repo+":1", "oci:"+layout+":v1")
	if _, err := exec.LookPath("umoci"); err == nil {
		mustRun(t, "skopeo", "inspect", "oci:"+layout+":v1")
		bundle := filepath.Join(t.TempDir(), "bundle")
		mustRun(t, "umoci", "unpack", "--image", layout+":v1", bundle)
		checkFixtureTree(t, filepath.Join(bundle, "rootfs"), "umoci unpack of berth's OCI layout")
	} else {
		t.Error("umoci not installed: interop not checked")
	}

	// Everything removed: the store is empty and consistent.
	c.must("rmi", "-a", "-f")
	if out := c.must("system", "check"); !strings.Contains(out, "consistent") {
		t.Errorf("system check: %s", out)
	}
	if out := c.must("images", "-q"); out != "" {
		t.Errorf("images after rmi -a: %q", out)
	}
}

// pushImage writes img to ref with go-containerregistry: a client other
// than berth.
func pushImage(t *testing.T, ref string, img gv1.Image) {
	t.Helper()
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
}
