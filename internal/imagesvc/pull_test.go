package imagesvc

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berthdev/berth/internal/content"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/registries"
	"github.com/berthdev/berth/internal/registry"
	"github.com/berthdev/berth/internal/snapshot"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/sys/unix"
)

func newService(t *testing.T) *Service {
	t.Helper()
	return newServiceAt(t, t.TempDir())
}

// newServiceAt opens the store under root.
func newServiceAt(t *testing.T, root string) *Service {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: layers unpack with owners, and snapshots mount")
	}
	ctx := context.Background()
	db, err := metadata.Open(ctx, filepath.Join(root, "meta.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	cs, err := content.NewStore(filepath.Join(root, "content"))
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := snapshot.NewOverlay(filepath.Join(root, "snapshots"), db)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := registries.Parse("test", []byte(""))
	if err != nil {
		t.Fatal(err)
	}
	return &Service{Root: root, Registry: registry.New(cfg), Content: cs, Snapshots: snaps, Meta: db}
}

// pushRandom serves an in-memory registry (behind wrap) with a random
// 3-layer image and returns its reference.
func pushRandom(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(wrap(h))
	t.Cleanup(srv.Close)
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/app:v1"
	img, err := random.Image(4096, 3)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestPull(t *testing.T) {
	s := newService(t)
	ctx := context.Background()
	ref := pushRandom(t, func(h http.Handler) http.Handler { return h })
	img, err := s.Pull(ctx, ref, nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.Name != ref || img.SnapshotKey == "" || img.Config == "" {
		t.Fatalf("image record %+v", img)
	}
	// The manifest and config are in the content store; layers are kept
	// unpacked, each with its layer record, and no download is left.
	n := 0
	s.Content.Walk(ctx, func(content.Info) error { n++; return nil })
	if n != 2 {
		t.Errorf("%d blobs stored, want 2 (manifest, config)", n)
	}
	for key := img.SnapshotKey; key != ""; {
		sn, err := s.Meta.GetSnapshot(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join(s.Snapshots.Dir(key), layerRecordFile)); err != nil || sn.Labels[labelLayer] == "" {
			t.Errorf("layer %s: layer record %v, labels %v", key, err, sn.Labels)
		}
		if _, err := s.Content.Status(ctx, sn.Labels[labelLayer]); !errdefs.IsNotFound(err) {
			t.Errorf("layer %s: its download is still there: %v", key, err)
		}
		key = sn.Parent
	}
	// The chain is mountable and holds the layers' files.
	ms, err := s.Snapshots.View(ctx, "check", img.SnapshotKey)
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := ms[0].Mount(target); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(target)
	unix.Unmount(target, unix.MNT_DETACH)
	if len(ents) == 0 {
		t.Errorf("the image's file system is empty")
	}
	// Pulling again finds everything there.
	if _, err := s.Pull(ctx, ref, nil); err != nil {
		t.Fatalf("second pull: %v", err)
	}
}

// TestPullCorruptLayer: a registry that serves a layer whose bytes do not
// match its digest makes the pull fail, and no image is recorded.
func TestPullCorruptLayer(t *testing.T) {
	root := t.TempDir()
	s := newServiceAt(t, root)
	ctx := context.Background()
	var corrupt atomic.Bool
	ref := pushRandom(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if corrupt.Load() && r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, r)
				body := rec.Body.Bytes()
				if len(body) > 100 {
					body[len(body)/2] ^= 0xff
				}
				for k, v := range rec.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(rec.Code)
				w.Write(body)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	corrupt.Store(true)
	if _, err := s.Pull(ctx, ref, nil); err == nil {
		t.Fatal("a corrupt layer was accepted")
	}
	if _, err := s.Meta.GetImage(ctx, ref); !errdefs.IsNotFound(err) {
		t.Errorf("image recorded after a failed pull: %v", err)
	}
	// What the failed pull wrote (layers that were whole) is garbage: the
	// next collection leaves nothing.
	if _, err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if c := storeCounts(t, s, root); c != (counts{}) {
		t.Errorf("after a failed pull and GC the store holds %+v", c)
	}
}
