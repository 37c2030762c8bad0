package main

import (
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var berthBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "berth-cli-")
	if err == nil {
		berthBin = filepath.Join(dir, "berth")
		if out, err := exec.Command("go", "build", "-o", berthBin, ".").CombinedOutput(); err != nil {
			os.Stderr.Write(out)
			os.Exit(1)
		}
	}
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
