package testbin

import (
	"archive/tar"
	"bytes"
	"fmt"
	"net/http"
	"os"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	gv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Registry is the real registry the integration tests use: Debian's
// docker-registry on 127.0.0.1:5000 (or $BERTH_TEST_REGISTRY), started
// by .ci/run and by ../shared/peers/setup.sh registry. Without it, or
// without root, the test skips, unless BERTH_TEST_REGISTRY_REQUIRED is
// set, as CI sets it.
func Registry(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: namespaces, mounts, CNI")
	}
	reg := os.Getenv("BERTH_TEST_REGISTRY")
	if reg == "" {
		reg = "127.0.0.1:5000"
	}
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://" + reg + "/v2/")
	if err != nil {
		if os.Getenv("BERTH_TEST_REGISTRY_REQUIRED") != "" {
			t.Fatalf("no registry on %s: %v", reg, err)
		}
		t.Skipf("no registry on %s (../shared/peers/setup.sh registry): %v", reg, err)
	}
	resp.Body.Close()
	return reg
}

// RuntimeRegistry is Registry for a test that also runs containers: it
// skips without a runtime to test ($BERTH_TEST_RUNTIME, which make test sets).
func RuntimeRegistry(t *testing.T) string {
	t.Helper()
	if os.Getenv("BERTH_TEST_RUNTIME") == "" {
		t.Skip("BERTH_TEST_RUNTIME is not set (make test sets it)")
	}
	return Registry(t)
}

// PushBusybox pushes two images made of Debian's static busybox to reg, a
// pause image (sleeps for ever) and an app image (a shell), and returns
// their names.
func PushBusybox(t *testing.T, reg string) (pause, app string) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skip("busybox-static not installed")
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	tw.WriteHeader(&tar.Header{Name: "tmp/", Typeflag: tar.TypeDir, Mode: 0o1777})
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	for _, l := range []string{"sh", "cat", "stty", "mkdir", "sleep"} {
		tw.WriteHeader(&tar.Header{Name: "bin/" + l, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n"
	tw.WriteHeader(&tar.Header{Name: "etc/passwd", Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(passwd))})
	tw.Write([]byte(passwd))
	tw.Close()
	layer, err := tarball.LayerFromReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	tag := fmt.Sprintf("%d", time.Now().UnixNano()%1e9)
	push := func(repo string, cmd []string) string {
		img, err := mutate.AppendLayers(empty.Image, layer)
		if err != nil {
			t.Fatal(err)
		}
		cf, _ := img.ConfigFile()
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture = "linux", goruntime.GOARCH
		cf.Config = gv1.Config{Cmd: cmd, Env: []string{"PATH=/bin"}}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		ref := reg + "/berth-test/" + repo + ":" + tag
		nt, _ := name.NewTag(ref, name.Insecure)
		if err := remote.Write(nt, img); err != nil {
			t.Fatal(err)
		}
		return ref
	}
	return push("pause", []string{"/bin/busybox", "sleep", "2147483647"}), push("app", []string{"/bin/sh"})
}
