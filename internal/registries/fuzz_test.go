package registries

import (
	"testing"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/reference"
)

// FuzzLoad feeds arbitrary bytes to the parser: it must never panic, must
// classify every refusal as ErrInvalidArgument, and a configuration it
// accepts must answer Candidates and Endpoints without panicking.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		fullConf, criConf, "", "# comment\n", "unqualified-search-registries = []",
		"[registries.search]\nregistries = ['a.example']\n[registries.block]\nregistries = ['b.example']\n",
		"[[registry]]\nprefix = \"*.example.com\"\n[[registry.mirror]]\nlocation = \"m.local\"\n",
		"[aliases]\n\"x\" = \"quay.io/x\"\n", "[[registry]]\n[[registry.mirror]]\n", "a = [",
	} {
		f.Add([]byte(s))
	}
	refs := []string{"busybox", "x", "user/app:1", "docker.io/library/busybox", "quay.io/x@" + dg,
		"registry.k8s.io/pause:3.10", "a.example.com:5000/p/q:1", "localhost/a"}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.conf", data)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error %v is not ErrInvalidArgument", err)
			}
			return
		}
		for _, s := range refs {
			cands, _ := c.Candidates(s)
			for _, n := range cands {
				if n.IsShort() || n.Domain() == "" {
					t.Fatalf("Candidates(%q) gave %q, not qualified", s, n)
				}
				_, _ = c.Endpoints(n)
			}
			if n, err := reference.ParseNormalized(s); err == nil {
				eps, err := c.Endpoints(n)
				if err == nil && len(eps) == 0 {
					t.Fatalf("Endpoints(%q) gave no endpoint and no error", n)
				}
			}
		}
	})
}
