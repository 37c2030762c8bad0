package reference

import (
	"fmt"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/errdefs"
)

const (
	hexA = "7cc4b5aefd1d0cadf8d97d4350462ba51c694ebca145b08d7d41b41acc8db5aa"
	dgA  = "sha256:" + hexA
	dg5  = "sha512:" + hexA + hexA
)

func TestParseValid(t *testing.T) {
	for _, tc := range []struct {
		in                        string
		domain, path, tag, digest string
		short                     bool
		normalized, familiar      string
	}{
		{in: "busybox", path: "busybox", short: true,
			normalized: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "busybox:1.36", path: "busybox", tag: "1.36", short: true,
			normalized: "docker.io/library/busybox:1.36", familiar: "busybox:1.36"},
		{in: "user/app", path: "user/app", short: true,
			normalized: "docker.io/user/app:latest", familiar: "user/app:latest"},
		{in: "library/busybox", path: "library/busybox", short: true,
			normalized: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "docker.io/busybox", domain: "docker.io", path: "busybox",
			normalized: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "index.docker.io/busybox", domain: "index.docker.io", path: "busybox",
			normalized: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "index.docker.io/user/app:v1", domain: "index.docker.io", path: "user/app", tag: "v1",
			normalized: "docker.io/user/app:v1", familiar: "user/app:v1"},
		{in: "docker.io/library/busybox:latest", domain: "docker.io", path: "library/busybox", tag: "latest",
			normalized: "docker.io/library/busybox:latest", familiar: "busybox:latest"},
		{in: "docker.io/library/a/b", domain: "docker.io", path: "library/a/b",
			normalized: "docker.io/library/a/b:latest", familiar: "library/a/b:latest"},
		{in: "quay.io/org/app", domain: "quay.io", path: "org/app",
			normalized: "quay.io/org/app:latest", familiar: "quay.io/org/app:latest"},
		{in: "registry.k8s.io/pause:3.10", domain: "registry.k8s.io", path: "pause", tag: "3.10",
			normalized: "registry.k8s.io/pause:3.10", familiar: "registry.k8s.io/pause:3.10"},
		{in: "localhost/app", domain: "localhost", path: "app",
			normalized: "localhost/app:latest", familiar: "localhost/app:latest"},
		{in: "localhost:5000/app:v2", domain: "localhost:5000", path: "app", tag: "v2",
			normalized: "localhost:5000/app:v2", familiar: "localhost:5000/app:v2"},
		{in: "127.0.0.1:5000/x/y/z", domain: "127.0.0.1:5000", path: "x/y/z",
			normalized: "127.0.0.1:5000/x/y/z:latest", familiar: "127.0.0.1:5000/x/y/z:latest"},
		{in: "[::1]:5000/app", domain: "[::1]:5000", path: "app",
			normalized: "[::1]:5000/app:latest", familiar: "[::1]:5000/app:latest"},
		{in: "[fe80::1]/app", domain: "[fe80::1]", path: "app",
			normalized: "[fe80::1]/app:latest", familiar: "[fe80::1]/app:latest"},
		{in: "myregistry:5000/app", domain: "myregistry:5000", path: "app",
			normalized: "myregistry:5000/app:latest", familiar: "myregistry:5000/app:latest"},
		// An upper-case first component can only be a host name (docker's rule).
		{in: "MyRegistry/app", domain: "MyRegistry", path: "app",
			normalized: "MyRegistry/app:latest", familiar: "MyRegistry/app:latest"},
		{in: "Example.COM/app", domain: "Example.COM", path: "app",
			normalized: "Example.COM/app:latest", familiar: "Example.COM/app:latest"},
		// Without a "/" a name is always a Docker Hub repository, even
		// "localhost" or "example.com" (docker's rule too).
		{in: "localhost", path: "localhost", short: true,
			normalized: "docker.io/library/localhost:latest", familiar: "localhost:latest"},
		{in: "localhost:5000", path: "localhost", tag: "5000", short: true,
			normalized: "docker.io/library/localhost:5000", familiar: "localhost:5000"},
		{in: "example.com", path: "example.com", short: true,
			normalized: "docker.io/library/example.com:latest", familiar: "example.com:latest"},
		// A Docker Hub path whose first component looks like a registry keeps
		// the domain in its familiar form, or it would name another image.
		{in: "docker.io/user.name/app", domain: "docker.io", path: "user.name/app",
			normalized: "docker.io/user.name/app:latest", familiar: "docker.io/user.name/app:latest"},
		{in: "busybox@" + dgA, path: "busybox", digest: dgA, short: true,
			normalized: "docker.io/library/busybox@" + dgA, familiar: "busybox@" + dgA},
		{in: "busybox:1.36@" + dgA, path: "busybox", tag: "1.36", digest: dgA, short: true,
			normalized: "docker.io/library/busybox:1.36@" + dgA, familiar: "busybox:1.36@" + dgA},
		{in: "localhost:5000/a@" + dg5, domain: "localhost:5000", path: "a", digest: dg5,
			normalized: "localhost:5000/a@" + dg5, familiar: "localhost:5000/a@" + dg5},
		// Separators: ".", "_", "__" and any run of "-".
		{in: "a_b__c---d/e.f-g", path: "a_b__c---d/e.f-g", short: true,
			normalized: "docker.io/a_b__c---d/e.f-g:latest", familiar: "a_b__c---d/e.f-g:latest"},
		{in: "x:_Tag.With-Ok_", path: "x", tag: "_Tag.With-Ok_", short: true,
			normalized: "docker.io/library/x:_Tag.With-Ok_", familiar: "x:_Tag.With-Ok_"},
		{in: "x:" + strings.Repeat("t", 128), path: "x", tag: strings.Repeat("t", 128), short: true,
			normalized: "docker.io/library/x:" + strings.Repeat("t", 128), familiar: "x:" + strings.Repeat("t", 128)},
		{in: "0/1/2", path: "0/1/2", short: true,
			normalized: "docker.io/0/1/2:latest", familiar: "0/1/2:latest"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			n, err := Parse(tc.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if n.Domain() != tc.domain || n.Path() != tc.path || n.Tag() != tc.tag ||
				n.Digest() != digest.Digest(tc.digest) || n.IsShort() != tc.short {
				t.Errorf("Parse = domain %q path %q tag %q digest %q short %v; want %q %q %q %q %v",
					n.Domain(), n.Path(), n.Tag(), n.Digest(), n.IsShort(),
					tc.domain, tc.path, tc.tag, tc.digest, tc.short)
			}
			if n.String() != tc.in {
				t.Errorf("String() = %q, want the input back", n.String())
			}
			nn, err := ParseNormalized(tc.in)
			if err != nil {
				t.Fatalf("ParseNormalized: %v", err)
			}
			if nn.String() != tc.normalized {
				t.Errorf("normalized = %q, want %q", nn.String(), tc.normalized)
			}
			if nn.IsShort() != tc.short {
				t.Errorf("normalized IsShort = %v, want %v", nn.IsShort(), tc.short)
			}
			if nn.Familiar() != tc.familiar {
				t.Errorf("Familiar() = %q, want %q", nn.Familiar(), tc.familiar)
			}
			back, err := ParseNormalized(nn.Familiar())
			if err != nil || back.String() != nn.String() {
				t.Errorf("ParseNormalized(Familiar()) = %v, %v; want %q", back, err, nn.String())
			}
		})
	}
}

func TestParseInvalid(t *testing.T) {
	long := strings.Repeat("a", 256)
	for _, tc := range []struct {
		in, want string
	}{
		{"", "empty reference"},
		{"Busybox", "must be lowercase"},
		{"docker.io/Library/busybox", "must be lowercase"},
		{"quay.io/org/App:v1", "must be lowercase"},
		{"busybox:", "empty tag"},
		{"busybox:-x", "must start with a letter, digit"},
		{"busybox:.x", "must start with a letter, digit"},
		{"busybox:a+b", "invalid character '+'"},
		{"busybox:" + strings.Repeat("t", 129), "129 characters long"},
		{"busybox@", "empty digest"},
		{"busybox@sha256:abc", "invalid digest"},
		{"busybox@sha256:" + strings.ToUpper(hexA), "invalid digest"},
		{"busybox@md5:d41d8cd98f00b204e9800998ecf8427e", "invalid digest"},
		{"busybox@" + hexA, "invalid digest"},
		{"busybox@sha256:" + hexA + "00", "invalid digest"},
		{"busybox@" + dgA + "@" + dgA, "invalid digest"},
		{":tag", "missing repository name"},
		{"@" + dgA, "missing repository name"},
		{hexA, "image ID"},
		{"quay.io/", "missing repository path"},
		{"a//b", "empty component"},
		{"a/b/", "empty component"},
		{"/a", "empty component"},
		{"-a", "must start and end"},
		{"a-", "must start and end"},
		{"a..b", "must start and end"},
		{"a___b", "must start and end"},
		{"a._b", "must start and end"},
		{"a b", "character ' ' is not allowed"},
		{"a/b c:d", "character ' ' is not allowed"},
		{"a/b!c", "character '!' is not allowed"},
		{"a/\xffb", "character byte 0xff is not allowed"},
		{"Ä/x", "character 'Ä' is not allowed"},
		{"ä.com/x", "invalid character 'ä' in host name"},
		{"quay.io:/a", "empty port"},
		{"quay.io:x/a", "invalid port"},
		{"quay.io:99999/a", "invalid port"},
		{"quay.io:0/a", "invalid port"},
		{"::1/a", "must be in brackets"},
		{"[::1/a", "unterminated"},
		{"[::1]x/a", "unexpected"},
		{"[::1]:/a", "empty port"},
		{"[]:5000/a", "empty IPv6"},
		{"[]/a", "character '[' is not allowed"},
		{"[zz::1]/a", "invalid character 'z' in IPv6"},
		{"[1.2.3.4]:5/a", "invalid character '.'"},
		{"[1:2:3]/a", "invalid IPv6 address"},
		{"-bad.com/a", "starts or ends with \"-\""},
		{"bad-.com/a", "starts or ends with \"-\""},
		{"bad..com/a", "empty label"},
		{".com/a", "empty label"},
		{"b_ad.com/a", "invalid character '_' in host name"},
		{long, "256 characters long"},
		{"quay.io/" + strings.Repeat("a", 250), "258 characters long"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			n, err := Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error containing %q", tc.in, n, tc.want)
			}
			checkErr(t, err, tc.in, tc.want)
			if _, err := ParseNormalized(tc.in); err == nil {
				t.Errorf("ParseNormalized(%q) accepted what Parse refuses", tc.in)
			}
		})
	}
}

func checkErr(t *testing.T, err error, input, want string) {
	t.Helper()
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("error %q does not wrap ErrInvalidArgument", err)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not say %q", err, want)
	}
	if !strings.Contains(err.Error(), fmt.Sprintf("%q", input)) {
		t.Errorf("error %q does not quote the input %q", err, input)
	}
}

func TestParseNormalizedLength(t *testing.T) {
	// 255 characters are fine as written, but Docker Hub's
	// "docker.io/library/" pushes the canonical name over the limit.
	name := strings.Repeat("a", 255)
	if _, err := Parse(name); err != nil {
		t.Fatalf("Parse of a 255-character name: %v", err)
	}
	_, err := ParseNormalized(name)
	if err == nil {
		t.Fatal("ParseNormalized accepted a canonical name of 273 characters")
	}
	checkErr(t, err, name, "273 characters long")
}

func TestWithTagWithDigest(t *testing.T) {
	n, err := ParseNormalized("busybox")
	if err != nil {
		t.Fatal(err)
	}
	tagged, err := n.WithTag("1.36")
	if err != nil || tagged.String() != "docker.io/library/busybox:1.36" {
		t.Fatalf("WithTag = %v, %v", tagged, err)
	}
	both, err := tagged.WithDigest(dgA)
	if err != nil || both.String() != "docker.io/library/busybox:1.36@"+dgA {
		t.Fatalf("WithDigest = %v, %v", both, err)
	}
	if !both.IsShort() {
		t.Error("WithTag/WithDigest lost IsShort")
	}
	if got := both.NameOnly().String(); got != "docker.io/library/busybox" {
		t.Errorf("NameOnly = %q", got)
	}
	if _, err := n.WithTag("bad tag"); err == nil {
		t.Error("WithTag accepted \"bad tag\"")
	} else {
		checkErr(t, err, "docker.io/library/busybox:bad tag", "invalid character ' '")
	}
	if _, err := n.WithDigest("sha256:123"); err == nil {
		t.Error("WithDigest accepted a short hex")
	} else {
		checkErr(t, err, "docker.io/library/busybox@sha256:123", "invalid digest")
	}
	if _, err := (Named{}).WithTag("x"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("WithTag on the zero Named: %v", err)
	}
	if _, err := (Named{}).WithDigest(dgA); !errdefs.IsInvalidArgument(err) {
		t.Errorf("WithDigest on the zero Named: %v", err)
	}
}

func TestTagOrLatest(t *testing.T) {
	for in, want := range map[string]string{
		"quay.io/a":             "quay.io/a:latest",
		"quay.io/a:v1":          "quay.io/a:v1",
		"quay.io/a@" + dgA:      "quay.io/a@" + dgA,
		"quay.io/a:v1@" + dgA:   "quay.io/a:v1@" + dgA,
		"busybox":               "busybox:latest",
		"localhost:5000/x/y/zz": "localhost:5000/x/y/zz:latest",
	} {
		n, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := TagOrLatest(n).String(); got != want {
			t.Errorf("TagOrLatest(%q) = %q, want %q", in, got, want)
		}
	}
	if !TagOrLatest(Named{}).IsZero() {
		t.Error("TagOrLatest gave the zero Named a tag")
	}
}

func TestCheckDomain(t *testing.T) {
	for _, ok := range []string{"docker.io", "localhost", "localhost:5000", "127.0.0.1:5000",
		"[::1]", "[::1]:5000", "a-b.c", "A.B", "x:65535"} {
		if err := CheckDomain(ok); err != nil {
			t.Errorf("CheckDomain(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "http://x", "x:", "x:65536", "::1", "[::1", "a_b", "x.", "*.example.com"} {
		if err := CheckDomain(bad); err == nil {
			t.Errorf("CheckDomain(%q) accepted it", bad)
		}
	}
}

func TestZeroNamed(t *testing.T) {
	var n Named
	if !n.IsZero() || n.String() != "" || n.Familiar() != "" {
		t.Errorf("zero Named: IsZero %v String %q Familiar %q", n.IsZero(), n.String(), n.Familiar())
	}
}
