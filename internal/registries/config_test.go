package registries

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berthdev/berth/internal/errdefs"
)

// A file with every key the format has, as a podman user would write it.
const fullConf = `
unqualified-search-registries = ["registry.fedoraproject.org", "quay.io/", "docker.io"]
short-name-mode = "enforcing"
credential-helpers = ["containers-auth.json", "pass"]

[aliases]
"busybox" = "docker.io/library/busybox"
"ubi9" = "registry.access.redhat.com/ubi9"
"library/alpine" = "docker.io/alpine"
"erased" = ""

[[registry]]
prefix = "example.com/foo"
location = "internal-registry-for-example.com/bar/"
insecure = false
blocked = false

[[registry.mirror]]
location = "example-mirror-0.local/mirror-for-foo"

[[registry.mirror]]
location = "example-mirror-1.local/mirrors/foo"
insecure = true
pull-from-mirror = "digest-only"

[[registry]]
location = "registry.com"

[[registry.mirror]]
location = "http://mirror.registry.com:5000"

[[registry]]
prefix = "*.wild.example"
blocked = true

[[registry]]
prefix = "digests.example"
mirror-by-digest-only = true
mirror = [{ location = "https://m.digests.example" }]
`

func TestParseFull(t *testing.T) {
	c, err := Parse("full.conf", []byte(fullConf))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"registry.fedoraproject.org", "quay.io", "docker.io"}; !reflect.DeepEqual(c.UnqualifiedSearchRegistries, want) {
		t.Errorf("search = %q, want %q", c.UnqualifiedSearchRegistries, want)
	}
	if c.ShortNameMode != ShortNameEnforcing {
		t.Errorf("mode = %q", c.ShortNameMode)
	}
	if want := []string{"containers-auth.json", "pass"}; !reflect.DeepEqual(c.CredentialHelpers, want) {
		t.Errorf("credential helpers = %q", c.CredentialHelpers)
	}
	if c.Source != "full.conf" {
		t.Errorf("Source = %q", c.Source)
	}
	want := []Registry{
		{Prefix: "example.com/foo", Location: "internal-registry-for-example.com/bar", Mirrors: []Mirror{
			{Location: "example-mirror-0.local/mirror-for-foo", PullFromMirror: PullFromMirrorAll},
			{Location: "example-mirror-1.local/mirrors/foo", Insecure: true, PullFromMirror: PullFromMirrorDigestOnly},
		}},
		{Prefix: "registry.com", Location: "registry.com", Mirrors: []Mirror{
			// "http://" is read as insecure = true.
			{Location: "mirror.registry.com:5000", Insecure: true, PullFromMirror: PullFromMirrorAll},
		}},
		{Prefix: "*.wild.example", Blocked: true},
		{Prefix: "digests.example", Location: "digests.example", MirrorByDigestOnly: true, Mirrors: []Mirror{
			{Location: "m.digests.example", PullFromMirror: PullFromMirrorAll},
		}},
	}
	for i := range c.Registries {
		c.Registries[i].key = ""
	}
	if !reflect.DeepEqual(c.Registries, want) {
		t.Errorf("registries =\n%+v\nwant\n%+v", c.Registries, want)
	}
	aliases := map[string]string{}
	for k, v := range c.aliases {
		aliases[k] = v.String()
	}
	wantAliases := map[string]string{
		"busybox":        "docker.io/library/busybox",
		"ubi9":           "registry.access.redhat.com/ubi9",
		"library/alpine": "docker.io/library/alpine",
	}
	if !reflect.DeepEqual(aliases, wantAliases) {
		t.Errorf("aliases = %v, want %v", aliases, wantAliases)
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	if !reflect.DeepEqual(c.UnqualifiedSearchRegistries, []string{"docker.io"}) ||
		c.ShortNameMode != ShortNamePermissive ||
		!reflect.DeepEqual(c.CredentialHelpers, []string{AuthFileHelper}) ||
		len(c.Registries) != 0 || c.Source != "" {
		t.Errorf("Default() = %+v", c)
	}
}

func TestSearchRegistriesDefault(t *testing.T) {
	// A file that does not mention the key (Debian ships one that is all
	// comments) searches docker.io, like docker; an explicit empty list
	// turns the search off.
	c, err := Parse("x", []byte("# all comments\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.UnqualifiedSearchRegistries, []string{"docker.io"}) {
		t.Errorf("absent key: search = %q", c.UnqualifiedSearchRegistries)
	}
	c, err = Parse("x", []byte("unqualified-search-registries = []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.UnqualifiedSearchRegistries) != 0 {
		t.Errorf("empty list: search = %q", c.UnqualifiedSearchRegistries)
	}
}

func TestParseV1(t *testing.T) {
	c, err := Parse("v1.conf", []byte(`
[registries.search]
registries = ['registry1.com', 'registry2.com']

[registries.insecure]
registries = ['registry3.com', 'registry1.com']

[registries.block]
registries = ['registry.untrusted.com', 'registry.unsafe.com']
`))
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"registry1.com", "registry2.com"}; !reflect.DeepEqual(c.UnqualifiedSearchRegistries, want) {
		t.Errorf("search = %q", c.UnqualifiedSearchRegistries)
	}
	got := map[string]string{}
	for _, r := range c.Registries {
		got[r.Prefix] = map[[2]bool]string{{false, true}: "blocked", {true, false}: "insecure"}[[2]bool{r.Insecure, r.Blocked}]
		if r.Location != r.Prefix {
			t.Errorf("v1 entry %q has location %q", r.Prefix, r.Location)
		}
	}
	want := map[string]string{"registry3.com": "insecure", "registry1.com": "insecure",
		"registry.untrusted.com": "blocked", "registry.unsafe.com": "blocked"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("v1 registries = %v, want %v", got, want)
	}
}

func TestDuplicatePrefixFirstWins(t *testing.T) {
	c, err := Parse("x", []byte(`
[[registry]]
location = "a.example"
[[registry.mirror]]
location = "first.example"
[[registry]]
location = "a.example"
[[registry.mirror]]
location = "second.example"
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Registries) != 1 || c.Registries[0].Mirrors[0].Location != "first.example" {
		t.Errorf("registries = %+v, want only the first table", c.Registries)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		want       []string // all must appear in the error
	}{
		{"syntax", "short-name-mode = \"enforcing\"\nunqualified-search-registries = [\"a\",\n\n[[registry]\n",
			[]string{"bad.conf", "line 4"}},
		{"unterminated string", "\n\nshort-name-mode = \"enforcing\n", []string{"line 3", "short-name-mode"}},
		{"type", "[[registry]]\nlocation = \"a.example\"\ninsecure = \"yes\"\n",
			[]string{"line 3", "insecure", "bool"}},
		{"type top", "unqualified-search-registries = \"docker.io\"\n",
			[]string{"line 1", "unqualified-search-registries"}},
		{"unknown top key", "\nunqualified-search-registry = [\"docker.io\"]\n",
			[]string{"unknown key unqualified-search-registry (line 2)"}},
		{"unknown mirror key", "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"b.example\"\ninsecure-skip = true\n",
			[]string{"unknown key registry.mirror.insecure-skip (line 5)"}},
		{"pull-from-mirror on registry", "[[registry]]\nlocation = \"a.example\"\npull-from-mirror = \"all\"\n",
			[]string{"unknown key registry.pull-from-mirror (line 3)"}},
		{"mode", "short-name-mode = \"prompt\"\n", []string{"line 1", "short-name-mode", `unknown mode "prompt"`}},
		{"search entry", "unqualified-search-registries = [\"docker.io\", \"http://quay.io\"]\n",
			[]string{"line 1", "unqualified-search-registries", `entry 1 "http://quay.io"`}},
		{"search entry path", "unqualified-search-registries = [\"quay.io/org\"]\n",
			[]string{"unqualified-search-registries", `"quay.io/org"`}},
		{"search entry not a registry", "unqualified-search-registries = [\"quay.io\", \"myregistry\"]\n",
			[]string{"line 1", `entry 1 "myregistry" would be read as a Docker Hub namespace`}},
		{"credential helper", "credential-helpers = [\"\"]\n", []string{"credential-helpers", "entry 0"}},
		{"no prefix or location", "[[registry]]\ninsecure = true\n", []string{"line 1", "key registry[0]:", "neither prefix nor location"}},
		{"scheme", "[[registry]]\nlocation = \"ftp://a.example\"\n", []string{"line 2", "registry[0].location", "only http:// and https://"}},
		{"short location", "[[registry]]\nlocation = \"a.example\"\n[[registry]]\nlocation = \"nodot/x\"\n",
			[]string{"line 4", "registry[1].location", "does not start with a registry host"}},
		{"bad location", "[[registry]]\nlocation = \"a.example/UP\"\n", []string{"registry[0].location", "must be lowercase"}},
		{"prefix scheme", "[[registry]]\nprefix = \"https://a.example\"\nlocation = \"a.example\"\n", []string{"line 2", "registry[0].prefix", "no URL scheme"}},
		{"wildcard path", "[[registry]]\nprefix = \"*.example.com/foo\"\n", []string{"registry[0].prefix", "only *.host.name"}},
		{"wildcard port", "[[registry]]\nprefix = \"*.example.com:5000\"\n", []string{"registry[0].prefix", "only *.host.name"}},
		{"wildcard middle", "[[registry]]\nprefix = \"example.*.com\"\nlocation = \"x.com\"\n", []string{"registry[0].prefix"}},
		{"mirror no location", "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\ninsecure = true\n",
			[]string{"line 3", "registry[0].mirror[0]:", "no location"}},
		{"mirror bad location", "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"b:x\"\n",
			[]string{"line 6", "registry[0].mirror[1].location", "invalid port"}},
		{"pull-from-mirror value", "[[registry]]\nlocation = \"a.example\"\n[[registry.mirror]]\nlocation = \"m.example\"\npull-from-mirror = \"tags\"\n",
			[]string{"line 5", "registry[0].mirror[0].pull-from-mirror", `unknown value "tags"`}},
		{"pull-from-mirror with digest-only", "[[registry]]\nlocation = \"a.example\"\nmirror-by-digest-only = true\n[[registry.mirror]]\nlocation = \"m.example\"\npull-from-mirror = \"all\"\n",
			[]string{"line 6", "mirror-by-digest-only"}},
		{"conflicting insecure", "[[registry]]\nprefix = \"a.example/x\"\nlocation = \"b.example\"\n[[registry]]\nprefix = \"a.example/y\"\nlocation = \"b.example\"\ninsecure = true\n",
			[]string{"line 7", "registry[1].insecure", `"b.example"`, "registry[0]"}},
		{"conflicting blocked", "[[registry]]\nlocation = \"b.example\"\nblocked = true\n[[registry]]\nprefix = \"x.example\"\nlocation = \"b.example\"\n",
			[]string{"registry[1].blocked", "registry[0]"}},
		{"alias name qualified", "[aliases]\n\"quay.io/x\" = \"quay.io/x\"\n", []string{"line 2", "aliases.quay.io/x", "must be a short name"}},
		{"alias name localhost", "[aliases]\n\"localhost/x\" = \"quay.io/x\"\n", []string{"aliases.localhost/x", "must be a short name"}},
		{"alias name tag", "[aliases]\n\"x:1\" = \"quay.io/x\"\n", []string{"aliases.x:1", "must not have a tag"}},
		{"alias name invalid", "[aliases]\n\"X\" = \"quay.io/x\"\n", []string{"aliases.X", "must be lowercase"}},
		{"alias value short", "[aliases]\nx = \"x\"\n", []string{"line 2", "aliases.x", "must name its registry"}},
		{"alias value tag", "[aliases]\nx = \"quay.io/x:1\"\n", []string{"aliases.x", "must not have a tag"}},
		{"alias value digest", "[aliases]\nx = \"quay.io/x@sha256:" + strings.Repeat("a", 64) + "\"\n", []string{"aliases.x", "must not have a tag or digest"}},
		{"mix v1 v2", "unqualified-search-registries = [\"a.example\"]\n[registries.search]\nregistries = [\"b.example\"]\n",
			[]string{"line 2", "version 1", "unqualified-search-registries"}},
		{"v1 bad entry", "[registries.insecure]\nregistries = [\"bad host\"]\n",
			[]string{"registries.insecure.registries", "line 2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Parse("bad.conf", []byte(tc.conf))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", c)
			}
			t.Log(err)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %q is not ErrInvalidArgument", err)
			}
			for _, w := range append(tc.want, "bad.conf") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestLoadAndFind(t *testing.T) {
	dir := t.TempDir()
	berth := filepath.Join(dir, "berth.conf")
	containers := filepath.Join(dir, "containers.conf")
	override := filepath.Join(dir, "override.conf")
	write := func(p, s string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := DefaultPaths
	t.Cleanup(func() { DefaultPaths = old })
	DefaultPaths = []string{berth, containers}

	c, path, err := Find("")
	if err != nil || path != "" || !reflect.DeepEqual(c, Default()) {
		t.Fatalf("no files: Find = %+v, %q, %v; want Default()", c, path, err)
	}
	write(containers, `unqualified-search-registries = ["quay.io"]`)
	if c, path, err = Find(""); err != nil || path != containers || c.UnqualifiedSearchRegistries[0] != "quay.io" {
		t.Fatalf("containers file: Find = %+v, %q, %v", c, path, err)
	}
	write(berth, `unqualified-search-registries = ["ghcr.io"]`)
	if c, path, err = Find(""); err != nil || path != berth || c.UnqualifiedSearchRegistries[0] != "ghcr.io" || c.Source != berth {
		t.Fatalf("berth file: Find = %+v, %q, %v", c, path, err)
	}
	// A broken file is an error, not a reason to fall back to the next one.
	write(berth, `unqualified-search-registries = [`)
	if _, _, err = Find(""); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), berth) {
		t.Fatalf("broken berth file: Find error = %v", err)
	}
	// The override must exist.
	if _, _, err = Find(override); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), override) {
		t.Fatalf("missing override: Find error = %v", err)
	}
	write(override, `short-name-mode = "disabled"`)
	if c, path, err = Find(override); err != nil || path != override || c.ShortNameMode != ShortNameDisabled {
		t.Fatalf("override: Find = %+v, %q, %v", c, path, err)
	}
	// A directory cannot be read: that error is not "not found".
	if _, err = Load(dir); err == nil || errdefs.IsNotFound(err) {
		t.Fatalf("Load(directory) = %v", err)
	}
}

func TestKeyLines(t *testing.T) {
	data := []byte(`# comment
top = 1
[[registry]]
prefix = "a"
  [[registry.mirror]]
  location = "m0"
  [[registry.mirror]]
  location = "m1"
[[registry]]
"location" = "b"
[[registry.mirror]]
location = "m2"
[aliases]
"x/y" = "z"
[registries.search]
registries = []
`)
	for key, want := range map[string]int{
		"top": 2, "registry[0]": 3, "registry[0].prefix": 4, "registry[0].mirror[1].location": 8,
		"registry[1].location": 10, "registry[1].mirror[0].location": 12, "registry.mirror.location": 6,
		"aliases.x/y": 14, "registries": 15, "registries.search.registries": 16, "nothing": 0,
		"registry[1].mirror[0].insecure": 11,
	} {
		if got := lineOfKey(keyLines(data), key); got != want {
			t.Errorf("lineOfKey(%q) = %d, want %d", key, got, want)
		}
	}
}

func TestManyUnknownKeys(t *testing.T) {
	// Each [[registry]] repeats the same unknown key: it is named once, and
	// a file of many different unknown keys is not echoed whole.
	var b strings.Builder
	for i := range 3000 {
		fmt.Fprintf(&b, "[[registry]]\nlocation = \"a.example\"\nfoo = 1\nbar%d = 2\n", i)
	}
	_, err := Parse("many.conf", []byte(b.String()))
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Parse = %v", err)
	}
	msg := err.Error()
	if strings.Count(msg, "registry.foo") != 1 || !strings.Contains(msg, "registry.foo (line 3)") ||
		!strings.Contains(msg, "registry.bar0 (line 4)") || !strings.Contains(msg, ", ...") || strings.Count(msg, "(line") != 5 {
		t.Errorf("error = %q", msg)
	}
}
