package imagesvc

import (
	"archive/tar"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestParseLocation(t *testing.T) {
	good := map[string]Location{
		"docker://busybox":                {Transport: Docker, Name: "busybox"},
		"oci:/tmp/x":                      {Transport: OCI, Path: "/tmp/x"},
		"oci:/tmp/x:v1":                   {Transport: OCI, Path: "/tmp/x", Name: "v1"},
		"docker-archive:/a.tar:busybox:1": {Transport: DockerArchive, Path: "/a.tar", Name: "busybox:1"},
		"oci-archive:a.tar":               {Transport: OCIArchive, Path: "a.tar"},
		"local:busybox":                   {Transport: Local, Name: "busybox"},
		"quay.io/x/y:1":                   {Transport: Local, Name: "quay.io/x/y:1"},
	}
	for in, want := range good {
		got, err := ParseLocation(in)
		if err != nil || got != want {
			t.Errorf("ParseLocation(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"docker://", "docker:busybox", "oci:", "oci:/x:bad tag", "oci-archive::v1"} {
		if _, err := ParseLocation(in); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseLocation(%q): %v, want an invalid argument", in, err)
		}
	}
}

// TestCopyRoundTrip moves one image through every transport and back into
// the store, and checks it is the same image each time.
func TestCopyRoundTrip(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	ref := pushRandom(t, passThrough)
	orig, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	loc := func(s string) Location {
		l, err := ParseLocation(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, dst := range []string{"oci:" + dir + "/layout:v1", "docker-archive:" + dir + "/d.tar", "oci-archive:" + dir + "/o.tar:v1"} {
		if _, err := s.Copy(ctx, loc(ref), loc(dst), CopyOptions{}); err != nil {
			t.Fatalf("copy to %s: %v", dst, err)
		}
	}
	// A push to another repository of the registry: the same manifest.
	pushed := strings.Replace(ref, "test/app:v1", "other/app:v2", 1)
	if _, err := s.Copy(ctx, loc(ref), loc("docker://"+pushed), CopyOptions{}); err != nil {
		t.Fatalf("push: %v", err)
	}
	tag, _ := name.NewTag(pushed, name.Insecure)
	desc, err := remote.Get(tag)
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != orig.Target.Digest.String() {
		t.Errorf("pushed manifest %s, stored %s", desc.Digest, orig.Target.Digest)
	}
	// Empty the store, then read each copy back.
	if _, err := s.Remove(ctx, ref, RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	for src, sameManifest := range map[string]bool{
		"oci:" + dir + "/layout:v1":        false, // docker schema2 becomes OCI
		"oci-archive:" + dir + "/o.tar":    false,
		"docker-archive:" + dir + "/d.tar": false, // the format keeps no manifest
		"docker://" + pushed:               true,
	} {
		nm, err := s.Copy(ctx, loc(src), loc("local:back:1"), CopyOptions{})
		if err != nil {
			t.Fatalf("copy from %s: %v", src, err)
		}
		img, err := s.LookupOne(ctx, nm)
		if err != nil {
			t.Fatal(err)
		}
		if img.Config != orig.Config || sameManifest && img.Target.Digest != orig.Target.Digest {
			t.Errorf("from %s: config %s manifest %s; want config %s manifest %s", src, img.Config, img.Target.Digest, orig.Config, orig.Target.Digest)
		}
		if rep, err := s.Check(ctx, CheckOptions{}); err != nil || len(rep.Problems) > 0 {
			t.Fatalf("check after copy from %s: %+v %v", src, rep, err)
		}
		if _, err := s.Remove(ctx, nm, RemoveOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GC(ctx); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	ref := pushRandom(t, passThrough)
	orig, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Tag(ctx, ref, "quay.io/me/app:2"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, format := range []string{FormatDockerArchive, FormatOCIArchive} {
		out := filepath.Join(dir, format+".tar")
		if err := s.Save(ctx, []string{ref, "quay.io/me/app:2"}, format, out); err != nil {
			t.Fatalf("save %s: %v", format, err)
		}
		for _, n := range []string{ref, "quay.io/me/app:2"} {
			if _, err := s.Remove(ctx, n, RemoveOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.GC(ctx); err != nil {
			t.Fatal(err)
		}
		names, err := s.Load(ctx, out)
		if err != nil {
			t.Fatalf("load %s: %v", format, err)
		}
		if len(names) != 2 {
			t.Fatalf("load %s: %v", format, names)
		}
		for _, n := range []string{ref, "quay.io/me/app:2"} {
			img, err := s.LookupOne(ctx, n)
			if err != nil || img.Config != orig.Config {
				t.Fatalf("after load of %s, %s: %+v %v", format, n, img, err)
			}
		}
	}
	// Both archives are readable by skopeo (installed by .ci/run).
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Log("skopeo not installed: interop not checked")
		return
	}
	for _, src := range []string{"oci-archive:" + filepath.Join(dir, FormatOCIArchive+".tar") + ":quay.io/me/app:2",
		"docker-archive:" + filepath.Join(dir, FormatDockerArchive+".tar") + ":quay.io/me/app:2"} {
		out, err := exec.Command("skopeo", "inspect", "--config", src).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "rootfs") {
			idx, _ := exec.Command("tar", "-xOf", filepath.Join(dir, FormatOCIArchive+".tar"), "index.json").CombinedOutput()
			t.Errorf("skopeo inspect --config %s: %s (%v)\nindex.json: %s", src, out, err, idx)
		}
	}
}

// TestLoadHostile: an archive whose entries climb out of the unpack
// directory writes nothing outside it, and a non-archive is refused.
func TestLoadHostile(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.tar")
	f, err := os.Create(bad)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, n := range []string{"../../escaped", "blobs/sha256/../../../escaped2", "index.json"} {
		body := []byte(`{"schemaVersion":2,"manifests":[]}`)
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
		tw.Write(body)
	}
	tw.WriteHeader(&tar.Header{Name: "oci-layout", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd"})
	tw.Close()
	f.Close()
	names, err := s.Load(ctx, bad)
	if err == nil && len(names) > 0 {
		t.Fatalf("loaded %v from a hostile archive", names)
	}
	for _, p := range []string{filepath.Join(dir, "escaped"), filepath.Join(s.Root, "escaped"), filepath.Join(s.Root, "escaped2"), "/escaped", "/escaped2"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s was written", p)
		}
	}
	os.WriteFile(filepath.Join(dir, "text"), []byte("not a tar"), 0o644)
	if _, err := s.Load(ctx, filepath.Join(dir, "text")); !errdefs.IsInvalidArgument(err) {
		t.Errorf("load of a text file: %v", err)
	}
}
