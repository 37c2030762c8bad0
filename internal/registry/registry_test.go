package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/registries"
)

// newRegistry serves go-containerregistry's in-memory registry on
// 127.0.0.1 and returns its host:port.
func newRegistry(t *testing.T) string {
	t.Helper()
	return serve(t, ggcrregistry.New(ggcrregistry.Logger(nopLogger())))
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func config(t *testing.T, toml string) *registries.Config {
	t.Helper()
	c, err := registries.Parse("test.conf", []byte(toml))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

func put(t *testing.T, method, url, contentType string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s: %s: %s", method, url, resp.Status, msg)
	}
}

// pushBlob and pushManifest speak the push side of the protocol by hand:
// the client under test only pulls.
func pushBlob(t *testing.T, host, repo string, data []byte) {
	put(t, http.MethodPost, fmt.Sprintf("http://%s/v2/%s/blobs/uploads/?digest=%s", host, repo, digest.FromBytes(data)), "", data)
}

func pushManifest(t *testing.T, host, repo, ref string, mt types.MediaType, raw []byte) {
	put(t, http.MethodPut, fmt.Sprintf("http://%s/v2/%s/manifests/%s", host, repo, ref), string(mt), raw)
}

func pushImage(t *testing.T, host, repo, tag string, img v1.Image) v1.Hash {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		pushBlob(t, host, repo, data)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	pushBlob(t, host, repo, cfg)
	raw, err := img.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	mt, _ := img.MediaType()
	d, _ := img.Digest()
	if tag == "" {
		tag = d.String()
	}
	pushManifest(t, host, repo, tag, mt, raw)
	return d
}

func randomImage(t *testing.T) v1.Image {
	t.Helper()
	img, err := random.Image(256, 2)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestResolveAlias(t *testing.T) {
	host := newRegistry(t)
	img := randomImage(t)
	want := pushImage(t, host, "team/app", "latest", img)
	c := New(config(t, fmt.Sprintf("unqualified-search-registries = []\n[aliases]\n\"app\" = %q\n", host+"/team/app")))

	r, err := c.Resolve(context.Background(), "app", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ref.String() != host+"/team/app:latest" || r.Descriptor.Digest != want || r.Manifest.Digest != want || r.IsIndex() {
		t.Fatalf("resolved %s %s %s, want %s", r.Ref, r.Descriptor.Digest, r.Manifest.Digest, want)
	}
	raw, desc, err := c.Manifest(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	wantRaw, _ := img.RawManifest()
	if !bytes.Equal(raw, wantRaw) || desc.MediaType != types.DockerManifestSchema2 {
		t.Fatalf("manifest %s %q differs", desc.MediaType, raw)
	}
}

func TestResolveSearchRegistries(t *testing.T) {
	down := serve(t, http.NotFoundHandler()) // a registry that lacks everything
	host := newRegistry(t)
	want := pushImage(t, host, "search/img", "v1", randomImage(t))
	c := New(config(t, fmt.Sprintf("unqualified-search-registries = [%q, %q]\n", down, host)))

	r, err := c.Resolve(context.Background(), "search/img:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Ref.String() != host+"/search/img:v1" || r.Descriptor.Digest != want {
		t.Fatalf("resolved %s %s", r.Ref, r.Descriptor.Digest)
	}

	_, err = c.Resolve(context.Background(), "search/none", nil)
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), down) || !strings.Contains(err.Error(), host) {
		t.Fatalf("missing image: got %v, want not found naming both registries", err)
	}
}

func TestMirrorFirstThenFallback(t *testing.T) {
	origin, mirror := newRegistry(t), newRegistry(t)
	inMirror := pushImage(t, mirror, "pause", "3.10", randomImage(t))
	pushImage(t, origin, "pause", "3.10", randomImage(t)) // differs: must not be chosen
	onlyOrigin := pushImage(t, origin, "other", "1", randomImage(t))
	c := New(config(t, fmt.Sprintf(`
[[registry]]
prefix = "registry.example.com"
location = %q
[[registry.mirror]]
location = %q
`, origin, mirror)))

	r, err := c.Resolve(context.Background(), "registry.example.com/pause:3.10", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Endpoint.Mirror || r.Endpoint.Ref.Domain() != mirror || r.Descriptor.Digest != inMirror {
		t.Fatalf("got endpoint %+v digest %s, want the mirror's %s", r.Endpoint, r.Descriptor.Digest, inMirror)
	}
	if r.Ref.String() != "registry.example.com/pause:3.10" {
		t.Fatalf("canonical ref %s names the mirror", r.Ref)
	}

	r, err = c.Resolve(context.Background(), "registry.example.com/other:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Endpoint.Mirror || r.Endpoint.Ref.Domain() != origin || r.Descriptor.Digest != onlyOrigin {
		t.Fatalf("fallback: got endpoint %+v digest %s", r.Endpoint, r.Descriptor.Digest)
	}
	if r.Ref.String() != "registry.example.com/other:1" {
		t.Fatalf("canonical ref %s", r.Ref)
	}
}

func TestUnreachableMirrorFallsThrough(t *testing.T) {
	dead := serve(t, http.NotFoundHandler())
	origin := newRegistry(t)
	want := pushImage(t, origin, "x", "1", randomImage(t))
	// A closed port: the mirror does not answer at all.
	s := httptest.NewServer(http.NotFoundHandler())
	closed := strings.TrimPrefix(s.URL, "http://")
	s.Close()
	c := New(config(t, fmt.Sprintf(`
[[registry]]
prefix = "r.example.com"
location = %q
[[registry.mirror]]
location = %q
[[registry.mirror]]
location = %q
`, origin, closed, dead)), WithRetries(0))
	r, err := c.Resolve(context.Background(), "r.example.com/x:1", nil)
	if err != nil || r.Descriptor.Digest != want {
		t.Fatalf("got %v, %v", r, err)
	}
}

func pushIndex(t *testing.T, host, repo, tag string) (amd64, arm64 v1.Hash, idxDigest v1.Hash) {
	t.Helper()
	a, b := randomImage(t), randomImage(t)
	amd64 = pushImage(t, host, repo, "", a)
	arm64 = pushImage(t, host, repo, "", b)
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex),
		mutate.IndexAddendum{Add: a, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: b, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	)
	raw, err := idx.RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	pushManifest(t, host, repo, tag, types.OCIImageIndex, raw)
	idxDigest, _ = idx.Digest()
	return amd64, arm64, idxDigest
}

func TestIndexPlatform(t *testing.T) {
	host := newRegistry(t)
	amd64, arm64, idx := pushIndex(t, host, "multi", "latest")
	c := New(nil)
	ctx := context.Background()

	r, err := c.Resolve(ctx, host+"/multi", &v1.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.IsIndex() || r.Descriptor.Digest != idx || r.Manifest.Digest != amd64 {
		t.Fatalf("got index %s manifest %s, want %s %s", r.Descriptor.Digest, r.Manifest.Digest, idx, amd64)
	}
	raw, desc, err := c.Manifest(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if digest.FromBytes(raw).String() != amd64.String() || desc.Digest != amd64 || desc.MediaType != types.DockerManifestSchema2 {
		t.Fatalf("manifest %s %s", desc.Digest, desc.MediaType)
	}

	r, err = c.Resolve(ctx, host+"/multi", &v1.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil || r.Manifest.Digest != arm64 {
		t.Fatalf("arm64: %v %v", r, err)
	}

	_, err = c.Resolve(ctx, host+"/multi", &v1.Platform{OS: "linux", Architecture: "s390x"})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("missing platform: got %v, want not found", err)
	}
	for _, s := range []string{"linux/s390x", "linux/amd64", "linux/arm64/v8"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("missing platform error %q does not name %s", err, s)
		}
	}
}

func TestDigestPinned(t *testing.T) {
	host := newRegistry(t)
	want := pushImage(t, host, "pinned", "v1", randomImage(t))
	c := New(nil)
	r, err := c.Resolve(context.Background(), host+"/pinned@"+want.String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Descriptor.Digest != want || r.Ref.Digest().String() != want.String() {
		t.Fatalf("got %s %s", r.Ref, r.Descriptor.Digest)
	}
	other := digest.FromString("nothing")
	if _, err := c.Resolve(context.Background(), host+"/pinned@"+other.String(), nil); !errdefs.IsNotFound(err) {
		t.Fatalf("unknown digest: got %v, want not found", err)
	}
}

func TestUnauthorized(t *testing.T) {
	host := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
	}))
	c := New(nil)
	_, err := c.Resolve(context.Background(), host+"/secret:1", nil)
	if !errors.Is(err, ErrUnauthorized) || !errdefs.IsFailedPrecond(err) {
		t.Fatalf("got %v, want ErrUnauthorized", err)
	}
	if !strings.Contains(err.Error(), "registry "+host) || !strings.Contains(err.Error(), "authentication") {
		t.Fatalf("error %q does not name the registry and authentication", err)
	}
	if _, err := c.Tags(context.Background(), host+"/secret"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("tags: got %v", err)
	}
}

func TestBlob(t *testing.T) {
	inner := ggcrregistry.New(ggcrregistry.Logger(nopLogger()))
	// A blob path answered with other bytes of the same length.
	var corrupt string
	var corruptSize int
	host := serve(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if corrupt != "" && req.URL.Path == corrupt {
			w.Header().Set("Content-Length", fmt.Sprint(corruptSize))
			w.Write(bytes.Repeat([]byte{'x'}, corruptSize))
			return
		}
		inner.ServeHTTP(w, req)
	}))
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	pushImage(t, host, "blobs", "1", img)
	c := New(nil)
	ctx := context.Background()
	r, err := c.Resolve(ctx, host+"/blobs:1", nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	layer := m.Layers[0]

	rc, err := c.Blob(ctx, r, layer)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || int64(len(got)) != layer.Size || digest.FromBytes(got).String() != layer.Digest.String() {
		t.Fatalf("good blob: %d bytes, %v", len(got), err)
	}

	corrupt, corruptSize = "/v2/blobs/blobs/"+layer.Digest.String(), int(layer.Size)
	rc, err = c.Blob(ctx, r, layer)
	if err != nil {
		t.Fatal(err) // the mismatch shows only at EOF
	}
	_, err = io.ReadAll(rc)
	rc.Close()
	if err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), layer.Digest.String()) {
		t.Fatalf("corrupt blob: got %v, want an error naming %s", err, layer.Digest)
	}

	short := layer
	short.Size--
	rc, err = c.Blob(ctx, r, m.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); err != nil {
		t.Fatalf("config blob: %v", err)
	}
	rc.Close()
	if _, err := c.Blob(ctx, r, short); err == nil || !strings.Contains(err.Error(), fmt.Sprint(short.Size)) {
		t.Fatalf("size mismatch: got %v", err)
	}
}

func TestOversizedManifest(t *testing.T) {
	big := bytes.Repeat([]byte(" "), DefaultManifestLimit+10)
	handler := func(chunked bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", string(types.OCIManifestSchema1))
			if !chunked {
				w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			}
			w.Write(big)
		})
	}
	for _, chunked := range []bool{false, true} {
		host := serve(t, handler(chunked))
		_, err := New(nil).Resolve(context.Background(), host+"/huge:1", nil)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "allowed for a manifest") {
			t.Fatalf("chunked=%v: got %v", chunked, err)
		}
	}
}

func TestRefusedMediaTypes(t *testing.T) {
	for mt, want := range map[string]string{
		string(types.DockerManifestSchema1Signed): "schema 1",
		"application/vnd.example.thing+json":      "unsupported manifest media type",
	} {
		host := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", mt)
			w.Write([]byte(`{"schemaVersion":1}`))
		}))
		_, err := New(nil).Resolve(context.Background(), host+"/old:1", nil)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want %q", mt, err, want)
		}
	}
}

func TestTags(t *testing.T) {
	host := newRegistry(t)
	img := randomImage(t)
	for _, tag := range []string{"v1", "v2", "latest"} {
		pushImage(t, host, "tagged", tag, img)
	}
	c := New(nil)
	tags, err := c.Tags(context.Background(), host+"/tagged")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(tags)
	if !slices.Equal(tags, []string{"latest", "v1", "v2"}) {
		t.Fatalf("tags %v", tags)
	}
	if _, err := c.Tags(context.Background(), host+"/tagged:v1"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("tags of a tagged name: got %v", err)
	}
	if _, err := c.Tags(context.Background(), host+"/none"); !errdefs.IsNotFound(err) {
		t.Fatalf("tags of a missing repo: got %v", err)
	}
}

func TestManifestDigestMismatch(t *testing.T) {
	raw, err := randomImage(t).RawManifest()
	if err != nil {
		t.Fatal(err)
	}
	host := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", string(types.DockerManifestSchema2))
		w.Write(raw) // whatever digest was asked for
	}))
	pinned := digest.FromString("other")
	_, err = New(nil).Resolve(context.Background(), host+"/x@"+pinned.String(), nil)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), pinned.String()) {
		t.Fatalf("got %v, want a digest mismatch naming %s", err, pinned)
	}
}

func TestBlobLongerThanDescriptor(t *testing.T) {
	data := []byte("0123456789")
	host := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.(http.Flusher).Flush() // no Content-Length: the size shows only while reading
		w.Write(data)
	}))
	d, _ := v1.NewHash(digest.FromBytes(data[:5]).String())
	r := &Resolved{Endpoint: registries.Endpoint{Insecure: true}}
	r.Endpoint.Ref, _ = parseRef(host + "/x:1")
	rc, err := New(nil).Blob(context.Background(), r, v1.Descriptor{Digest: d, Size: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "more than the 5 bytes") {
		t.Fatalf("got %v", err)
	}
}
