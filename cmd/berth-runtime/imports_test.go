package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the runtime lean: it starts for every container, so it
// must not link the daemon's, the registry's or the store's dependencies.
func TestImports(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	forbidden := []string{"google.golang.org/grpc", "k8s.io/", "github.com/google/go-containerregistry",
		"go.etcd.io/bbolt", "github.com/containernetworking/", "github.com/prometheus/",
		"github.com/berthdev/berth/internal/cri", "github.com/berthdev/berth/internal/engine",
		"github.com/berthdev/berth/internal/imagesvc", "github.com/berthdev/berth/internal/registry",
		"net/http"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f || strings.HasPrefix(dep, f) {
				t.Errorf("berth-runtime imports %s (forbidden: %s)", dep, f)
			}
		}
	}
}
