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

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
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

// basicRegistry serves an in-memory registry that wants user:pass, with
// an image at private/app:v1.
func basicRegistry(t *testing.T, user, pass string) string {
	t.Helper()
	inner := ggcrregistry.New(ggcrregistry.Logger(nopLogger()))
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	var locked atomic.Bool
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
	return host
}

// TestLoginLogout: a wrong password is refused and stores nothing; the
// right one is stored (other keys of the file kept) and used by pulls;
// logout removes it.
func TestLoginLogout(t *testing.T) {
	host := basicRegistry(t, "berth", "s3cret")
	authFile := filepath.Join(t.TempDir(), "containers", "auth.json")
	t.Setenv("REGISTRY_AUTH_FILE", authFile)
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	ctx := context.Background()
	c := New(nil)
	if err := c.Login(ctx, "", host, "berth", "wrong"); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("login with a wrong password: %v", err)
	}
	if _, err := os.Stat(authFile); !os.IsNotExist(err) {
		t.Fatalf("a refused login wrote the auth file: %v", err)
	}
	if err := c.Login(ctx, "", "not a host", "u", "p"); err == nil {
		t.Fatal("login to a malformed registry name succeeded")
	}
	os.MkdirAll(filepath.Dir(authFile), 0o700)
	os.WriteFile(authFile, []byte(`{"auths":{"other.example":{"auth":"eDp5"}},"credHelpers":{"x.example":"none"}}`), 0o600)
	if err := c.Login(ctx, "", host, "berth", "s3cret"); err != nil {
		t.Fatalf("login: %v", err)
	}
	data, _ := os.ReadFile(authFile)
	if !strings.Contains(string(data), host) || !strings.Contains(string(data), "other.example") || !strings.Contains(string(data), "credHelpers") {
		t.Fatalf("auth file after login: %s", data)
	}
	if fi, _ := os.Stat(authFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("auth file mode %v", fi.Mode().Perm())
	}
	if _, err := New(nil).Resolve(ctx, host+"/private/app:v1", nil); err != nil {
		t.Fatalf("pull after login: %v", err)
	}
	if err := Logout("", host); err != nil {
		t.Fatal(err)
	}
	if err := Logout("", host); !errdefs.IsNotFound(err) {
		t.Fatalf("second logout: %v", err)
	}
	if _, err := New(nil).Resolve(ctx, host+"/private/app:v1", nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("pull after logout: %v", err)
	}
}

// TestKeychainOrder: the first auth file with an entry wins, in podman's
// order; a credential helper named by a file is run.
func TestKeychainOrder(t *testing.T) {
	dir := t.TempDir()
	enc := func(up string) string { return base64.StdEncoding.EncodeToString([]byte(up)) }
	regFile := filepath.Join(dir, "registry-auth.json")
	os.WriteFile(regFile, []byte(fmt.Sprintf(`{"auths":{"a.example":{"auth":%q}}}`, enc("first:1"))), 0o600)
	docker := filepath.Join(dir, "docker")
	os.MkdirAll(docker, 0o700)
	os.WriteFile(filepath.Join(docker, "config.json"), []byte(fmt.Sprintf(
		`{"auths":{"a.example":{"auth":%q},"b.example":{"auth":%q}},"credHelpers":{"c.example":"berthtest"}}`,
		enc("second:2"), enc("docker:3"))), 0o600)
	helper := filepath.Join(dir, "bin", "docker-credential-berthtest")
	os.MkdirAll(filepath.Dir(helper), 0o755)
	os.WriteFile(helper, []byte("#!/bin/sh\nread server\necho '{\"ServerURL\":\"'$server'\",\"Username\":\"helper\",\"Secret\":\"h3lp\"}'\n"), 0o755)
	t.Setenv("PATH", filepath.Dir(helper)+":"+os.Getenv("PATH"))
	t.Setenv("REGISTRY_AUTH_FILE", regFile)
	t.Setenv("DOCKER_CONFIG", docker)
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(dir, "run"))
	t.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	for reg, want := range map[string]string{"a.example": "first:1", "b.example": "docker:3", "c.example": "helper:h3lp", "d.example": ""} {
		r, _ := name.NewRegistry(reg)
		a, err := Keychain(nil).Resolve(r)
		if err != nil {
			t.Fatalf("%s: %v", reg, err)
		}
		cfg, _ := a.Authorization()
		got := ""
		if cfg.Username != "" {
			got = cfg.Username + ":" + cfg.Password
		}
		if got != want {
			t.Errorf("%s: credentials %q, want %q", reg, got, want)
		}
	}
}

// TestWithCredentials: a request's own credentials (the CRI's PullImage
// auth) open a registry no auth file knows, and are not kept for the
// requests that come without them.
func TestWithCredentials(t *testing.T) {
	host := basicRegistry(t, "kube", "pull-secret")
	t.Setenv("REGISTRY_AUTH_FILE", filepath.Join(t.TempDir(), "auth.json"))
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	c := New(nil)
	ref := host + "/private/app:v1"
	if _, err := c.Resolve(WithCredentials(context.Background(), authn.AuthConfig{Username: "kube", Password: "wrong"}), ref, nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("with a wrong password: %v", err)
	}
	if _, err := c.Resolve(WithCredentials(context.Background(), authn.AuthConfig{Username: "kube", Password: "pull-secret"}), ref, nil); err != nil {
		t.Fatalf("with the request's credentials: %v", err)
	}
	if _, err := c.Resolve(context.Background(), ref, nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("a later request without credentials got in: %v", err)
	}
}
