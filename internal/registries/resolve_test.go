package registries

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/reference"
)

const dg = "sha256:7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"

func mustParse(t *testing.T, conf string) *Config {
	t.Helper()
	c, err := Parse("test.conf", []byte(conf))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func names(refs []reference.Named) string {
	s := make([]string, len(refs))
	for i, r := range refs {
		s[i] = r.String()
	}
	return strings.Join(s, " ")
}

func TestCandidates(t *testing.T) {
	const search = `
unqualified-search-registries = ["quay.io", "docker.io", "localhost:5000"]
[aliases]
"ubi9" = "registry.access.redhat.com/ubi9"
"hub" = "docker.io/alpine"
"bad" = "blocked.example/bad"
[[registry]]
location = "blocked.example"
blocked = true
`
	for _, tc := range []struct {
		name, conf, ref string
		want            string // space-separated candidates
		class           error  // else: the error class
		msg             string // and text
	}{
		{name: "qualified", conf: search, ref: "ghcr.io/org/app", want: "ghcr.io/org/app:latest"},
		{name: "qualified hub normalised", conf: search, ref: "docker.io/busybox:1", want: "docker.io/library/busybox:1"},
		{name: "qualified index.docker.io", conf: search, ref: "index.docker.io/user/app@" + dg, want: "docker.io/user/app@" + dg},
		{name: "qualified localhost", conf: search, ref: "localhost/app", want: "localhost/app:latest"},
		{name: "search order, library/ only on docker.io", conf: search, ref: "busybox",
			want: "quay.io/busybox:latest docker.io/library/busybox:latest localhost:5000/busybox:latest"},
		{name: "search keeps tag and digest", conf: search, ref: "user/app:v1@" + dg,
			want: "quay.io/user/app:v1@" + dg + " docker.io/user/app:v1@" + dg + " localhost:5000/user/app:v1@" + dg},
		{name: "alias", conf: search, ref: "ubi9", want: "registry.access.redhat.com/ubi9:latest"},
		{name: "alias keeps tag", conf: search, ref: "ubi9:9.4", want: "registry.access.redhat.com/ubi9:9.4"},
		{name: "alias keeps digest, adds no tag", conf: search, ref: "ubi9@" + dg, want: "registry.access.redhat.com/ubi9@" + dg},
		{name: "alias value normalised", conf: search, ref: "hub", want: "docker.io/library/alpine:latest"},
		{name: "alias beats enforcing", conf: `short-name-mode = "enforcing"` + "\n" + search, ref: "ubi9",
			want: "registry.access.redhat.com/ubi9:latest"},
		{name: "default config searches docker.io", conf: "", ref: "busybox", want: "docker.io/library/busybox:latest"},
		{name: "enforcing with one registry is not ambiguous", conf: `short-name-mode = "enforcing"`, ref: "busybox",
			want: "docker.io/library/busybox:latest"},
		{name: "disabled uses all", conf: `unqualified-search-registries = ["a.example", "b.example"]
short-name-mode = "disabled"`, ref: "x", want: "a.example/x:latest b.example/x:latest"},
		{name: "blocked search registry skipped", conf: `unqualified-search-registries = ["blocked.example", "docker.io"]
short-name-mode = "enforcing"
[[registry]]
prefix = "blocked.example"
blocked = true`, ref: "x", want: "docker.io/library/x:latest"},
		{name: "enforcing ambiguous", conf: `unqualified-search-registries = ["quay.io", "docker.io"]
short-name-mode = "enforcing"`, ref: "busybox", class: errdefs.ErrInvalidArgument,
			msg: `short name "busybox" is ambiguous (short-name-mode is enforcing in test.conf) and could be any of: quay.io/busybox:latest, docker.io/library/busybox:latest`},
		{name: "no search registries", conf: `unqualified-search-registries = []`, ref: "busybox",
			class: errdefs.ErrInvalidArgument, msg: `short name "busybox": no alias for it and no unqualified-search-registries in test.conf`},
		{name: "blocked qualified", conf: search, ref: "blocked.example/x:1", class: errdefs.ErrFailedPrecond,
			msg: `pulling blocked.example/x:1 is blocked by [[registry]] prefix "blocked.example" in test.conf`},
		{name: "blocked alias", conf: search, ref: "bad", class: errdefs.ErrFailedPrecond,
			msg: `short name "bad" (alias for blocked.example/bad in test.conf): pulling blocked.example/bad:latest is blocked`},
		{name: "every search registry blocked", conf: `unqualified-search-registries = ["blocked.example"]
[[registry]]
prefix = "blocked.example"
blocked = true`, ref: "x", class: errdefs.ErrFailedPrecond,
			msg: `short name "x": every candidate is blocked in test.conf: blocked.example/x:latest`},
		{name: "invalid reference", conf: search, ref: "Busybox", class: errdefs.ErrInvalidArgument, msg: "must be lowercase"},
		{name: "too long after the registry", conf: `unqualified-search-registries = ["docker.io"]`, ref: strings.Repeat("a", 240),
			class: errdefs.ErrInvalidArgument, msg: "on search registry docker.io"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := mustParse(t, tc.conf)
			got, err := c.Candidates(tc.ref)
			if tc.class != nil {
				if err == nil {
					t.Fatalf("Candidates(%q) = %s, want an error", tc.ref, names(got))
				}
				if !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("Candidates(%q) error %q, want class %v and %q", tc.ref, err, tc.class, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Candidates(%q): %v", tc.ref, err)
			}
			if names(got) != tc.want {
				t.Errorf("Candidates(%q) = %s\nwant %s", tc.ref, names(got), tc.want)
			}
		})
	}
}

// criConf is the shape the CRI conformance setup uses: the public
// registries mirrored by a local plain-HTTP registry.
const criConf = `
[[registry]]
prefix = "registry.k8s.io"
location = "registry.k8s.io"
[[registry.mirror]]
location = "127.0.0.1:5000"

[[registry]]
location = "k8s.gcr.io"
[[registry.mirror]]
location = "http://127.0.0.1:5000"

[[registry]]
prefix = "gcr.io"
[[registry.mirror]]
location = "http://127.0.0.1:5000/gcr"
`

func TestEndpoints(t *testing.T) {
	const conf = `
[[registry]]
prefix = "example.com/foo"
location = "internal.example.net/bar"
[[registry.mirror]]
location = "mirror-0.local/mirror-for-foo"
[[registry.mirror]]
location = "mirror-1.local/mirrors/foo"
insecure = true

[[registry]]
prefix = "example.com"
location = "example.com"
insecure = true

[[registry]]
prefix = "example.com/foo/special:v1"
location = "pinned.example/special:v1-fixed"

[[registry]]
prefix = "docker.io"
[[registry.mirror]]
location = "mirror.gcr.io"

[[registry]]
prefix = "docker.io/library/alpine"
[[registry.mirror]]
location = "alpine-mirror.local/alpine"

[[registry]]
prefix = "modes.example"
[[registry.mirror]]
location = "digest.local"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "tag.local"
pull-from-mirror = "tag-only"
[[registry.mirror]]
location = "all.local"

[[registry]]
prefix = "bydigest.example"
mirror-by-digest-only = true
[[registry.mirror]]
location = "m.local"

[[registry]]
prefix = "*.wild.example"
insecure = true
[[registry.mirror]]
location = "wild-mirror.local/cache"

[[registry]]
prefix = "*.sub.wild.example"
[[registry]]
prefix = "exact.sub.wild.example"
location = "exact.sub.wild.example"
[[registry]]
prefix = "*.moved.example"
location = "moved-to.example/all"

[[registry]]
prefix = "blocked.example"
blocked = true

[[registry]]
prefix = "root.example/app"
location = "rootonly.example"
`
	type ep struct {
		ref            string
		insecure, mirr bool
	}
	for _, tc := range []struct {
		conf, ref string
		want      []ep
	}{
		// The man page's own example, plus longest-prefix-wins.
		{conf, "example.com/foo/image:latest", []ep{
			{"mirror-0.local/mirror-for-foo/image:latest", false, true},
			{"mirror-1.local/mirrors/foo/image:latest", true, true},
			{"internal.example.net/bar/image:latest", false, false}}},
		{conf, "example.com/other:1", []ep{{"example.com/other:1", true, false}}},
		// "example.com/foo" must not capture "example.com/foobar".
		{conf, "example.com/foobar:1", []ep{{"example.com/foobar:1", true, false}}},
		// A host prefix does not capture another port of the same host.
		{conf, "example.com:5000/foo/x:1", []ep{{"example.com:5000/foo/x:1", false, false}}},
		// A prefix with a tag matches only that tag.
		{conf, "example.com/foo/special:v1", []ep{{"pinned.example/special:v1-fixed", false, false}}},
		{conf, "example.com/foo/special:v2", []ep{
			{"mirror-0.local/mirror-for-foo/special:v2", false, true},
			{"mirror-1.local/mirrors/foo/special:v2", true, true},
			{"internal.example.net/bar/special:v2", false, false}}},
		// Docker Hub: mirrors keep library/; a more specific prefix wins.
		{conf, "docker.io/library/busybox:latest", []ep{
			{"mirror.gcr.io/library/busybox:latest", false, true},
			{"docker.io/library/busybox:latest", false, false}}},
		{conf, "docker.io/library/alpine:3", []ep{
			{"alpine-mirror.local/alpine:3", false, true},
			{"docker.io/library/alpine:3", false, false}}},
		// pull-from-mirror and mirror-by-digest-only.
		{conf, "modes.example/x:1", []ep{
			{"tag.local/x:1", false, true}, {"all.local/x:1", false, true}, {"modes.example/x:1", false, false}}},
		{conf, "modes.example/x@" + dg, []ep{
			{"digest.local/x@" + dg, false, true}, {"all.local/x@" + dg, false, true}, {"modes.example/x@" + dg, false, false}}},
		{conf, "modes.example/x:1@" + dg, []ep{
			{"digest.local/x:1@" + dg, false, true}, {"all.local/x:1@" + dg, false, true}, {"modes.example/x:1@" + dg, false, false}}},
		{conf, "bydigest.example/x:1", []ep{{"bydigest.example/x:1", false, false}}},
		{conf, "bydigest.example/x@" + dg, []ep{
			{"m.local/x@" + dg, false, true}, {"bydigest.example/x@" + dg, false, false}}},
		// Wildcards: any depth, any port, the domain is what gets replaced;
		// without a location the reference is used as written.
		{conf, "a.b.wild.example:8443/p/q:1", []ep{
			{"wild-mirror.local/cache/p/q:1", false, true},
			{"a.b.wild.example:8443/p/q:1", true, false}}},
		{conf, "wild.example/p:1", []ep{{"wild.example/p:1", false, false}}},
		{conf, "x.moved.example/p:1", []ep{{"moved-to.example/all/p:1", false, false}}},
		// A longer wildcard beats a shorter one; a plain prefix beats both.
		{conf, "a.sub.wild.example/p:1", []ep{{"a.sub.wild.example/p:1", false, false}}},
		{conf, "exact.sub.wild.example/p:1", []ep{{"exact.sub.wild.example/p:1", false, false}}},
		// No table: the reference itself; loopback registries may use HTTP.
		{conf, "quay.io/org/app:1", []ep{{"quay.io/org/app:1", false, false}}},
		{conf, "localhost/app:1", []ep{{"localhost/app:1", true, false}}},
		{conf, "localhost:5000/app:1", []ep{{"localhost:5000/app:1", true, false}}},
		{conf, "127.0.0.1:5000/app:1", []ep{{"127.0.0.1:5000/app:1", true, false}}},
		{conf, "127.1.2.3/app:1", []ep{{"127.1.2.3/app:1", true, false}}},
		{conf, "[::1]:5000/app:1", []ep{{"[::1]:5000/app:1", true, false}}},
		{conf, "10.0.0.1:5000/app:1", []ep{{"10.0.0.1:5000/app:1", false, false}}},
		// The CRI conformance layout.
		{criConf, "registry.k8s.io/pause:3.10", []ep{
			{"127.0.0.1:5000/pause:3.10", true, true},
			{"registry.k8s.io/pause:3.10", false, false}}},
		{criConf, "k8s.gcr.io/e2e/busybox:1.29@" + dg, []ep{
			{"127.0.0.1:5000/e2e/busybox:1.29@" + dg, true, true},
			{"k8s.gcr.io/e2e/busybox:1.29@" + dg, false, false}}},
		{criConf, "gcr.io/proj/img:1", []ep{
			{"127.0.0.1:5000/gcr/proj/img:1", true, true},
			{"gcr.io/proj/img:1", false, false}}},
		{criConf, "us.gcr.io/proj/img:1", []ep{{"us.gcr.io/proj/img:1", false, false}}},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			c := mustParse(t, tc.conf)
			ref, err := reference.Parse(tc.ref)
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Endpoints(ref)
			if err != nil {
				t.Fatalf("Endpoints: %v", err)
			}
			var gotEps []ep
			for _, e := range got {
				gotEps = append(gotEps, ep{e.Ref.String(), e.Insecure, e.Mirror})
			}
			if fmt.Sprint(gotEps) != fmt.Sprint(tc.want) {
				t.Errorf("Endpoints(%s) =\n%v\nwant\n%v", tc.ref, gotEps, tc.want)
			}
		})
	}

	c := mustParse(t, conf)
	for _, tc := range []struct {
		ref   string
		class error
		msg   string
	}{
		{"blocked.example/x:1", errdefs.ErrFailedPrecond, `pulling blocked.example/x:1 is blocked by [[registry]] prefix "blocked.example" in test.conf`},
		{"busybox", errdefs.ErrInvalidArgument, `reference "busybox" names no registry; resolve short names with Candidates first`},
		{"", errdefs.ErrInvalidArgument, "names no registry"},
		{"root.example/app:1", errdefs.ErrInvalidArgument, `rewriting root.example/app:1 for [[registry]] prefix "root.example/app" to location "rootonly.example" gives "rootonly.example:1", which has no repository path`},
	} {
		var ref reference.Named
		if tc.ref != "" {
			var err error
			if ref, err = reference.Parse(tc.ref); err != nil {
				t.Fatal(err)
			}
		}
		got, err := c.Endpoints(ref)
		if err == nil || !errors.Is(err, tc.class) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Endpoints(%q) = %v, %v; want class %v and %q", tc.ref, got, err, tc.class, tc.msg)
		}
	}
}

// TestCandidatesThenEndpoints is the path a pull takes: a short name on the
// default Docker Hub search, through a Docker Hub mirror.
func TestCandidatesThenEndpoints(t *testing.T) {
	c := mustParse(t, `
[[registry]]
prefix = "docker.io"
location = "docker.io"
[[registry.mirror]]
location = "http://localhost:5000"
`)
	cands, err := c.Candidates("busybox")
	if err != nil || len(cands) != 1 {
		t.Fatalf("Candidates = %v, %v", cands, err)
	}
	eps, err := c.Endpoints(cands[0])
	if err != nil || len(eps) != 2 || eps[0].Ref.String() != "localhost:5000/library/busybox:latest" || !eps[0].Insecure ||
		eps[1].Ref.String() != "docker.io/library/busybox:latest" || eps[1].Insecure {
		t.Fatalf("Endpoints = %+v, %v", eps, err)
	}
}
