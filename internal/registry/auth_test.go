package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
)

// TestBasicAuthFromAuthFile: a registry that wants a login is read with
// the credentials of a podman-style auth file ($REGISTRY_AUTH_FILE), and
// refused clearly without them.
func TestBasicAuthFromAuthFile(t *testing.T) {
	inner := ggcrregistry.New(ggcrregistry.Logger(nopLogger()))
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("berth:s3cret"))
	var locked atomic.Bool // pushes in the test's set-up go in without a login
	host := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if locked.Load() && r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="berth-test"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	pushImage(t, host, "private/app", "v1", randomImage(t))
	locked.Store(true)

	authFile := filepath.Join(t.TempDir(), "auth.json")
	t.Setenv("REGISTRY_AUTH_FILE", authFile)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())

	// No credentials: a clear refusal that names the registry.
	_, err := New(nil).Resolve(context.Background(), host+"/private/app:v1", nil)
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), host) {
		t.Fatalf("without credentials: %v, want ErrUnauthorized naming %s", err, host)
	}

	creds := base64.StdEncoding.EncodeToString([]byte("berth:s3cret"))
	if err := os.WriteFile(authFile, []byte(fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, host, creds)), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := New(nil).Resolve(context.Background(), host+"/private/app:v1", nil)
	if err != nil {
		t.Fatalf("with credentials: %v", err)
	}
	if _, _, err := New(nil).Manifest(context.Background(), r); err != nil {
		t.Fatalf("manifest with credentials: %v", err)
	}
}
