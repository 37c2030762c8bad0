// Package reference parses and normalises image references ("busybox",
// "quay.io/org/app:v1", "localhost:5000/x@sha256:...") with the grammar the
// ecosystem shares (docker/distribution's reference grammar, as used by docker,
// podman and containerd), so that a name typed for another tool means the same
// image here.
//
// The grammar, for reference:
//
//	reference := name [ ":" tag ] [ "@" digest ]
//	name      := [ domain "/" ] path            (at most 255 characters)
//	domain    := host [ ":" port ]
//	host      := dns-name | IPv4 | "[" IPv6 "]"
//	path      := component [ "/" component ]*
//	component := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
//	tag       := [\w][\w.-]{0,127}
//	digest    := algorithm ":" hex               (validated by go-digest)
//
// The first component of a name is a registry only if it contains a "." or a
// ":", is "localhost", or has an upper-case letter (a path cannot have one);
// otherwise the name is short and Docker Hub or registries.conf decide where
// it lives.
package reference

import (
	"strings"

	"github.com/opencontainers/go-digest"
)

const (
	// DefaultDomain is Docker Hub, where short names live in docker's rules.
	DefaultDomain = "docker.io"
	// legacyDefaultDomain is the old Docker Hub name, still found in scripts.
	legacyDefaultDomain = "index.docker.io"
	// officialRepoPrefix is the Docker Hub namespace of one-component names.
	officialRepoPrefix = "library/"
	// DefaultTag is the tag a pull uses when the user gave neither tag nor digest.
	DefaultTag = "latest"
	// NameTotalLengthMax is the longest name (domain and path) registries accept.
	NameTotalLengthMax = 255
	// tagLengthMax is the longest tag (the distribution spec's limit).
	tagLengthMax = 128
)

// Named is a parsed image reference. The zero value is not a valid reference
// (IsZero reports it). Named is comparable with ==.
type Named struct {
	domain string // "" only for a short name parsed with Parse
	path   string
	tag    string
	digest digest.Digest
	// short records that the user gave no registry, even after
	// ParseNormalized filled in docker.io: a pull must then consult
	// registries.conf's aliases and unqualified-search registries instead
	// of trusting the Docker Hub default.
	short bool
}

// Domain is the registry host[:port], or "" for a short name from Parse.
func (n Named) Domain() string { return n.domain }

// Path is the repository path inside the registry ("library/busybox").
func (n Named) Path() string { return n.path }

// Name is the reference without tag and digest ("docker.io/library/busybox").
func (n Named) Name() string {
	if n.domain == "" {
		return n.path
	}
	return n.domain + "/" + n.path
}

// Tag is the tag, or "" when the reference has none.
func (n Named) Tag() string { return n.tag }

// Digest is the digest, or "" when the reference has none.
func (n Named) Digest() digest.Digest { return n.digest }

// IsShort reports that the user gave no registry ("busybox", "user/app"):
// the caller must resolve it through registries.conf (aliases, then the
// unqualified-search registries) rather than assume a registry.
func (n Named) IsShort() bool { return n.short }

// IsZero reports whether n is the zero value (no reference at all).
func (n Named) IsZero() bool { return n.path == "" }

// String is the full reference: the canonical form for a reference from
// ParseNormalized ("docker.io/library/busybox:latest"), the input's form for
// one from Parse. Parse(n.String()) gives n back.
func (n Named) String() string {
	s := n.Name()
	if n.tag != "" {
		s += ":" + n.tag
	}
	if n.digest != "" {
		s += "@" + string(n.digest)
	}
	return s
}

// Familiar is the short form docker prints: "busybox:latest" for
// "docker.io/library/busybox:latest", "user/app:v1" for
// "docker.io/user/app:v1", the full reference for other registries.
// ParseNormalized(n.Familiar()) gives n back.
func (n Named) Familiar() string {
	if n.domain != DefaultDomain {
		return n.String()
	}
	p := n.path
	if rest, ok := strings.CutPrefix(p, officialRepoPrefix); ok && !strings.Contains(rest, "/") {
		p = rest
	}
	// Docker drops "docker.io/" unconditionally, but a first component such
	// as "user.name" would then read back as a registry; keep the domain so
	// the familiar form still names the same image.
	first, _, hasSlash := strings.Cut(p, "/")
	if hasSlash && looksLikeDomain(first) {
		return n.String()
	}
	f := Named{path: p, tag: n.tag, digest: n.digest}
	return f.String()
}

// WithTag returns n with its tag set to tag (a digest, if any, is kept: the
// digest still decides what is pulled).
func (n Named) WithTag(tag string) (Named, error) {
	if n.IsZero() {
		return Named{}, errorf(":"+tag, "no repository name to add the tag to")
	}
	if err := checkTag(tag); err != nil {
		return Named{}, errorf(n.Name()+":"+tag, "%s", err)
	}
	n.tag = tag
	return n, nil
}

// WithDigest returns n with its digest set to d (a tag, if any, is kept).
func (n Named) WithDigest(d digest.Digest) (Named, error) {
	if n.IsZero() {
		return Named{}, errorf("@"+string(d), "no repository name to add the digest to")
	}
	if err := d.Validate(); err != nil {
		return Named{}, errorf(n.Name()+"@"+string(d), "invalid digest %q: %v", d, err)
	}
	n.digest = d
	return n, nil
}

// NameOnly returns n without tag and digest.
func (n Named) NameOnly() Named {
	n.tag, n.digest = "", ""
	return n
}

// TagOrLatest returns n with the tag "latest" when it has neither a tag nor a
// digest, which is what a pull of a bare name means; otherwise n unchanged.
func TagOrLatest(n Named) Named {
	if n.IsZero() || n.tag != "" || n.digest != "" {
		return n
	}
	n.tag = DefaultTag
	return n
}
