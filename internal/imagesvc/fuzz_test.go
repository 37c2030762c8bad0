package imagesvc

import (
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
)

// FuzzParseImage feeds arbitrary manifests and configs to the checks every
// import runs before it stores anything: no input may panic, and what is
// accepted must be self-consistent.
func FuzzParseImage(f *testing.F) {
	man, cfg := seedImage()
	f.Add(man, cfg, false)
	f.Add([]byte(`{"layers":[{"digest":"sha256:zz"}]}`), []byte(`{}`), true)
	f.Add([]byte(`{"config":{"size":-1}}`), []byte(`null`), false)
	f.Fuzz(func(t *testing.T, raw, config []byte, docker bool) {
		mt := types.OCIManifestSchema1
		if docker {
			mt = types.DockerManifestSchema2
		}
		p, err := parseImage("fuzz", raw, mt, func() ([]byte, error) { return config, nil })
		if err != nil {
			return
		}
		if len(p.chain) != len(p.man.Layers) || len(p.cfg.RootFS.DiffIDs) != len(p.man.Layers) {
			t.Fatalf("accepted %d layers, %d diffIDs, %d chain IDs", len(p.man.Layers), len(p.cfg.RootFS.DiffIDs), len(p.chain))
		}
		if digest.FromBytes(config) != p.man.Config.Digest || p.desc.Digest != digest.FromBytes(raw) {
			t.Fatal("accepted a config or manifest whose digest does not match")
		}
		for _, l := range p.man.Layers {
			if l.Digest.Validate() != nil || l.Size < 0 {
				t.Fatalf("accepted layer %+v", l)
			}
		}
		for _, c := range p.chain {
			if c.Validate() != nil {
				t.Fatalf("chain ID %q", c)
			}
		}
	})
}

// seedImage is a valid one-layer manifest and its config.
func seedImage() (man, cfg []byte) {
	cfg = []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:` + strings.Repeat("a", 64) + `"]}}`)
	man = []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` +
		digest.FromBytes(cfg).String() + `","size":` + strconv.Itoa(len(cfg)) + `},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:` +
		strings.Repeat("b", 64) + `","size":10}]}`)
	return man, cfg
}

func TestParseImageSeed(t *testing.T) {
	man, cfg := seedImage()
	if _, err := parseImage("seed", man, types.OCIManifestSchema1, func() ([]byte, error) { return cfg, nil }); err != nil {
		t.Fatalf("the fuzz seed is refused: %v", err)
	}
	if _, err := parseImage("seed", man, types.DockerManifestSchema2, func() ([]byte, error) { return cfg, nil }); err == nil {
		t.Fatal("an OCI manifest served as Docker schema2 was accepted")
	}
}
