package imagesvc

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	gv1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// rawLayer is a layer given as its stored bytes and its tar.
type rawLayer struct {
	stored, tar []byte
	mt          types.MediaType
}

func (l rawLayer) Digest() (gv1.Hash, error) {
	h, _, err := gv1.SHA256(bytes.NewReader(l.stored))
	return h, err
}
func (l rawLayer) DiffID() (gv1.Hash, error) {
	h, _, err := gv1.SHA256(bytes.NewReader(l.tar))
	return h, err
}
func (l rawLayer) Compressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.stored)), nil
}
func (l rawLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l.tar)), nil
}
func (l rawLayer) Size() (int64, error)                { return int64(len(l.stored)), nil }
func (l rawLayer) MediaType() (types.MediaType, error) { return l.mt, nil }

func tarOf(t *testing.T, name, body string) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
	tw.Write([]byte(body))
	tw.Close()
	return b.Bytes()
}

// TestPullCompressions: gzip, zstd and uncompressed layers in one OCI
// image all unpack; a layer of an unknown media type is refused clearly
// and nothing is recorded.
func TestPullCompressions(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(tarOf(t, "gzip.txt", "from a gzip layer"))
	gw.Close()
	zw, _ := zstd.NewWriter(&zs)
	zw.Write(tarOf(t, "zstd.txt", "from a zstd layer"))
	zw.Close()
	layers := []gv1.Layer{
		rawLayer{gz.Bytes(), tarOf(t, "gzip.txt", "from a gzip layer"), types.OCILayer},
		rawLayer{zs.Bytes(), tarOf(t, "zstd.txt", "from a zstd layer"), types.OCILayerZStd},
		rawLayer{tarOf(t, "plain.txt", "from a plain layer"), tarOf(t, "plain.txt", "from a plain layer"), types.OCIUncompressedLayer},
	}
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	push := func(ref string, ls ...gv1.Layer) {
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), ls...)
		if err != nil {
			t.Fatal(err)
		}
		tag, _ := name.NewTag(ref, name.Insecure)
		if err := remote.Write(tag, img); err != nil {
			t.Fatal(err)
		}
	}
	push(host+"/c/all:1", layers...)
	img, err := s.Pull(ctx, host+"/c/all:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.Snapshots.View(ctx, "view", img.SnapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := ms[0].Mount(target); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(target, unix.MNT_DETACH)
	for f, want := range map[string]string{"gzip.txt": "from a gzip layer", "zstd.txt": "from a zstd layer", "plain.txt": "from a plain layer"} {
		if got, err := os.ReadFile(filepath.Join(target, f)); err != nil || string(got) != want {
			t.Errorf("%s: %q %v", f, got, err)
		}
	}

	push(host+"/c/odd:1", rawLayer{gz.Bytes(), tarOf(t, "gzip.txt", "from a gzip layer"), "application/x-berth-unknown"})
	_, err = s.Pull(ctx, host+"/c/odd:1", nil)
	if err == nil || !strings.Contains(err.Error(), "application/x-berth-unknown") {
		t.Fatalf("a layer of an unknown media type: %v", err)
	}
	if _, err := s.Meta.GetImage(ctx, host+"/c/odd:1"); err == nil {
		t.Error("an image was recorded")
	}
}
