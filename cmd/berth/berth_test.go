package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/berthdev/berth/internal/testbin"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var berthBin string

func TestMain(m *testing.M) {
	dir, err := testbin.Stage("../..", "cmd/berth")
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	berthBin = filepath.Join(dir, "berth")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestPullAndImages drives the berth binary: pull from a registry on
// 127.0.0.1 (go-containerregistry's in-memory one), then list.
func TestPullAndImages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: layers unpack with their owners")
	}
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	ref := strings.TrimPrefix(srv.URL, "http://") + "/test/app:v1"
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(ref, name.Insecure)
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	want, _ := img.ConfigName()

	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	os.WriteFile(conf, []byte("unqualified-search-registries = []\n"), 0o644)
	berth := func(args ...string) (string, error) {
		cmd := exec.Command(berthBin, append([]string{"--root", filepath.Join(dir, "store"), "--registries-conf", conf}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := berth("pull", "-q", ref)
	if err != nil || strings.TrimSpace(out) != want.Hex {
		t.Fatalf("pull: %v: %q, want %s", err, out, want)
	}
	out, err = berth("images", "--format", "json")
	if err != nil {
		t.Fatalf("images: %v: %s", err, out)
	}
	var imgs []struct{ Id, Repository, Tag string }
	if err := json.Unmarshal([]byte(out), &imgs); err != nil || len(imgs) != 1 || imgs[0].Repository+":"+imgs[0].Tag != ref || imgs[0].Id != want.Hex {
		t.Fatalf("images: %v %q", err, out)
	}
	out, err = berth("images")
	if err != nil || !strings.Contains(out, "test/app") || !strings.Contains(out, "v1") {
		t.Fatalf("images table: %v %q", err, out)
	}
	// save, rmi, load: the image comes back under its name.
	archive := filepath.Join(dir, "saved.tar")
	if out, err := berth("save", "-o", archive, ref); err != nil {
		t.Fatalf("save: %v %s", err, out)
	}
	if out, err := berth("rmi", ref); err != nil || !strings.Contains(out, "Untagged: "+ref) {
		t.Fatalf("rmi: %v %s", err, out)
	}
	if out, err := berth("load", "-i", archive); err != nil || !strings.Contains(out, "Loaded image: "+ref) {
		t.Fatalf("load: %v %s", err, out)
	}
	// prune keeps named images; prune -a removes them; df and check agree.
	if out, err := berth("image", "prune"); err != nil || strings.Contains(out, "Untagged") {
		t.Fatalf("prune: %v %s", err, out)
	}
	if out, err := berth("system", "df"); err != nil || !strings.Contains(strings.Join(strings.Fields(out), " "), "Images 1 1 ") {
		t.Fatalf("system df: %v %s", err, out)
	}
	if out, err := berth("image", "prune", "-a"); err != nil || !strings.Contains(out, "Untagged: "+ref) {
		t.Fatalf("prune -a: %v %s", err, out)
	}
	if out, err := berth("system", "check"); err != nil || !strings.Contains(out, "consistent") {
		t.Fatalf("system check: %v %s", err, out)
	}
	if out, err := berth("pull", "-q", ref); err != nil {
		t.Fatalf("pull again: %v %s", err, out)
	}

	// berth.toml: a known key is used, a typo is refused, with its name.
	good, bad := filepath.Join(dir, "good.toml"), filepath.Join(dir, "bad.toml")
	os.WriteFile(good, []byte("[images]\nparallel_downloads = 1\n"), 0o644)
	os.WriteFile(bad, []byte("[images]\nparallel_download = 1\n"), 0o644)
	if out, err := berth("--config", good, "rmi", ref); err != nil {
		t.Errorf("with a valid berth.toml: %v %s", err, out)
	}
	if out, err := berth("--config", good, "pull", "-q", ref); err != nil {
		t.Errorf("pull with parallel_downloads = 1: %v %s", err, out)
	}
	if out, err := berth("--config", bad, "images"); err == nil || !strings.Contains(out, "images.parallel_download") {
		t.Errorf("a typo in berth.toml: %v %q", err, out)
	}
	// A reference that does not parse, and an image that is not there.
	if out, err := berth("pull", "Not/Valid:ref!"); err == nil || !strings.Contains(out, "invalid reference") {
		t.Errorf("bad reference: %v %q", err, out)
	}
	if out, err := berth("pull", strings.TrimPrefix(srv.URL, "http://")+"/test/missing:v1"); err == nil || !strings.Contains(out, "not found") {
		t.Errorf("missing image: %v %q", err, out)
	}
}

// TestLoginCLI: berth login stores what a registry that wants a password
// accepts (read from standard input), pulls then work, and logout undoes it.
func TestLoginCLI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: layers unpack with their owners")
	}
	inner := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("me:s3cret"))
	var locked atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if locked.Load() && r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			http.Error(w, "{}", http.StatusUnauthorized)
			return
		}
		inner.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	img, _ := random.Image(1024, 1)
	tag, _ := name.NewTag(host+"/private/app:v1", name.Insecure)
	if err := remote.Write(tag, img); err != nil {
		t.Fatal(err)
	}
	locked.Store(true)
	dir := t.TempDir()
	conf := filepath.Join(dir, "registries.conf")
	os.WriteFile(conf, []byte("unqualified-search-registries = []\n"), 0o644)
	berth := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command(berthBin, append([]string{"--root", filepath.Join(dir, "store"), "--registries-conf", conf}, args...)...)
		cmd.Env = append(os.Environ(), "REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"), "DOCKER_CONFIG="+dir, "XDG_CONFIG_HOME="+dir)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := berth("", "pull", "-q", host+"/private/app:v1"); err == nil || !strings.Contains(out, "authentication") {
		t.Fatalf("pull without a login: %v %s", err, out)
	}
	if out, err := berth("wrong\n", "login", "-u", "me", "--password-stdin", host); err == nil {
		t.Fatalf("login with a wrong password: %s", out)
	}
	if out, err := berth("", "login", "-u", "me", host); err == nil || !strings.Contains(out, "not a terminal") {
		t.Fatalf("login without a password or terminal: %v %s", err, out)
	}
	if out, err := berth("s3cret\n", "login", "-u", "me", "--password-stdin", host); err != nil || !strings.Contains(out, "Login Succeeded") {
		t.Fatalf("login: %v %s", err, out)
	}
	if out, err := berth("", "pull", "-q", host+"/private/app:v1"); err != nil {
		t.Fatalf("pull after login: %v %s", err, out)
	}
	if out, err := berth("", "logout", host); err != nil {
		t.Fatalf("logout: %v %s", err, out)
	}
	if out, err := berth("", "image", "inspect", "docker://"+host+"/private/app:v1"); err == nil {
		t.Fatalf("remote inspect after logout: %s", out)
	}
}
