package reference

import (
	// go-digest only accepts an algorithm whose hash is linked into the
	// binary; without these a valid sha256/sha512 digest would be refused as
	// "unsupported" in a program that happens not to hash anything itself.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/opencontainers/go-digest"

	"github.com/berthdev/berth/internal/errdefs"
)

// Parse parses a reference as the user wrote it, without defaults: a short
// name ("busybox", "user/app:v1") keeps an empty Domain and reports IsShort;
// a qualified one ("quay.io/org/app", "localhost:5000/x") keeps its registry
// as written (index.docker.io is not rewritten and no tag is added). Like
// docker, it refuses a bare 64-digit hex string: that is an image ID.
func Parse(s string) (Named, error) {
	if s == "" {
		return Named{}, errorf(s, "empty reference")
	}
	if isImageID(s) {
		return Named{}, errorf(s, "a 64-character hexadecimal string is an image ID, not a repository name")
	}
	var n Named
	rest := s
	// Neither a name nor a tag can hold "@", so the first one starts the digest.
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		d := digest.Digest(rest[i+1:])
		if d == "" {
			return Named{}, errorf(s, "empty digest after \"@\"")
		}
		if err := d.Validate(); err != nil {
			return Named{}, errorf(s, "invalid digest %q (want algorithm:hex, e.g. sha256:<64 hex digits>): %v", d, err)
		}
		n.digest, rest = d, rest[:i]
	}
	// A ":" after the last "/" starts the tag; one before it is a port.
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		if err := checkTag(rest[i+1:]); err != nil {
			return Named{}, errorf(s, "%s", err)
		}
		n.tag, rest = rest[i+1:], rest[:i]
	}
	if rest == "" {
		return Named{}, errorf(s, "missing repository name")
	}
	if len(rest) > NameTotalLengthMax {
		return Named{}, errorf(s, "repository name is %d characters long, more than the %d allowed", len(rest), NameTotalLengthMax)
	}
	if first, path, ok := strings.Cut(rest, "/"); ok && looksLikeDomain(first) {
		if err := CheckDomain(first); err != nil {
			return Named{}, errorf(s, "%s", err)
		}
		n.domain, rest = first, path
	} else {
		n.short = true
	}
	if err := checkPath(rest); err != nil {
		return Named{}, errorf(s, "%s", err)
	}
	n.path = rest
	return n, nil
}

// ParseNormalized parses a reference and applies Docker Hub's rules, as docker
// and podman do for a name without a registry: "busybox" becomes
// "docker.io/library/busybox:latest", "user/app" "docker.io/user/app:latest",
// "index.docker.io/x" "docker.io/library/x". A name with neither tag nor
// digest gets the tag "latest". IsShort still reports a name typed without a
// registry, for callers that resolve short names through registries.conf.
func ParseNormalized(s string) (Named, error) {
	n, err := Parse(s)
	if err != nil {
		return Named{}, err
	}
	switch n.domain {
	case "":
		n.domain = DefaultDomain
	case legacyDefaultDomain:
		n.domain = DefaultDomain
	}
	if n.domain == DefaultDomain && !strings.Contains(n.path, "/") {
		n.path = officialRepoPrefix + n.path
	}
	if l := len(n.Name()); l > NameTotalLengthMax {
		return Named{}, errorf(s, "repository name %q is %d characters long, more than the %d allowed", n.Name(), l, NameTotalLengthMax)
	}
	return TagOrLatest(n), nil
}

// CheckDomain reports whether s is a valid registry host[:port]: a DNS name
// or IPv4 address, or an IPv6 address in brackets, with an optional port.
// The error does not name the whole reference; callers add it.
func CheckDomain(s string) error {
	if s == "" {
		return fmt.Errorf("empty registry host")
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return fmt.Errorf("registry %q: unterminated \"[\" in IPv6 address", s)
		}
		host, port = s[1:end], s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return fmt.Errorf("registry %q: unexpected %q after IPv6 address", s, port)
			}
			port = port[1:]
			if port == "" {
				return fmt.Errorf("registry %q: empty port", s)
			}
		}
		if err := checkIPv6(host); err != nil {
			return fmt.Errorf("registry %q: %w", s, err)
		}
	} else {
		if i := strings.LastIndexByte(s, ':'); i >= 0 {
			host, port = s[:i], s[i+1:]
			if port == "" {
				return fmt.Errorf("registry %q: empty port", s)
			}
		}
		if strings.Contains(host, ":") {
			return fmt.Errorf("registry %q: an IPv6 address must be in brackets, as in [::1]:5000", s)
		}
		if err := checkHostname(host); err != nil {
			return fmt.Errorf("registry %q: %w", s, err)
		}
	}
	if port != "" {
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil || p == 0 {
			return fmt.Errorf("registry %q: invalid port %q (want 1-65535)", s, port)
		}
	}
	return nil
}

func checkHostname(host string) error {
	if host == "" {
		return fmt.Errorf("empty host name")
	}
	for label := range strings.SplitSeq(host, ".") {
		if label == "" {
			return fmt.Errorf("empty label in host name %q", host)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if isAlnum(c) || c >= 'A' && c <= 'Z' {
				continue
			}
			if c == '-' && i > 0 && i < len(label)-1 {
				continue
			}
			if c == '-' {
				return fmt.Errorf("host name label %q starts or ends with \"-\"", label)
			}
			return fmt.Errorf("invalid character %s in host name %q", charAt(label, i), host)
		}
	}
	return nil
}

func checkIPv6(host string) error {
	if host == "" {
		return fmt.Errorf("empty IPv6 address")
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !(c == ':' || c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return fmt.Errorf("invalid character %s in IPv6 address %q", charAt(host, i), host)
		}
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
		return fmt.Errorf("invalid IPv6 address %q", host)
	}
	return nil
}

// looksLikeDomain is docker's test for "the first component is a registry".
// An upper-case letter counts because a repository path cannot contain one,
// so only a (case-insensitive) host name can explain it.
func looksLikeDomain(first string) bool {
	return first == "localhost" || strings.ContainsAny(first, ".:") || hasUpper(first)
}

// hasUpper looks at ASCII only: strings.ToLower would also turn invalid
// UTF-8 into U+FFFD and call garbage "not lowercase".
func hasUpper(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' {
			return true
		}
	}
	return false
}

func checkPath(path string) error {
	if path == "" {
		return fmt.Errorf("missing repository path after the registry")
	}
	if hasUpper(path) {
		return fmt.Errorf("repository path %q must be lowercase", path)
	}
	for c := range strings.SplitSeq(path, "/") {
		if c == "" {
			return fmt.Errorf("repository path %q has an empty component (a leading, trailing or double \"/\")", path)
		}
		if !validComponent(c) {
			return fmt.Errorf("repository path component %q is invalid: %s", c, componentProblem(c))
		}
	}
	return nil
}

// validComponent implements [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*.
func validComponent(c string) bool {
	i := 0
	for {
		start := i
		for i < len(c) && isAlnum(c[i]) {
			i++
		}
		if i == start {
			return false
		}
		if i == len(c) {
			return true
		}
		switch c[i] {
		case '.':
			i++
		case '_':
			i++
			if i < len(c) && c[i] == '_' {
				i++
			}
		case '-':
			for i < len(c) && c[i] == '-' {
				i++
			}
		default:
			return false
		}
	}
}

// componentProblem says what is wrong with a component validComponent refused.
func componentProblem(c string) string {
	for i := 0; i < len(c); i++ {
		if !isAlnum(c[i]) && !strings.ContainsRune("._-", rune(c[i])) {
			return fmt.Sprintf("character %s is not allowed (only a-z, 0-9 and the separators . _ __ -)", charAt(c, i))
		}
	}
	return "it must start and end with a letter or digit, and separators (. _ __ -) may only stand alone between them"
}

func checkTag(tag string) error {
	switch {
	case tag == "":
		return fmt.Errorf("empty tag after \":\"")
	case len(tag) > tagLengthMax:
		return fmt.Errorf("tag is %d characters long, more than the %d allowed", len(tag), tagLengthMax)
	case !isWord(tag[0]):
		return fmt.Errorf("tag %q must start with a letter, digit or \"_\"", tag)
	}
	for i := 1; i < len(tag); i++ {
		if c := tag[i]; !isWord(c) && c != '.' && c != '-' {
			return fmt.Errorf("tag %q has invalid character %s (allowed: letters, digits, _ . -)", tag, charAt(tag, i))
		}
	}
	return nil
}

// isImageID matches the 64-hex-digit form docker refuses as a name, because
// "docker run <id>" must never be mistaken for a pull of a repository.
func isImageID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// charAt names the character at s[i] for an error message; a byte that is
// not UTF-8 is shown as such instead of as a misleading Latin-1 letter.
func charAt(s string, i int) string {
	r, size := utf8.DecodeRuneInString(s[i:])
	if r == utf8.RuneError && size <= 1 {
		return fmt.Sprintf("byte 0x%02x", s[i])
	}
	return fmt.Sprintf("%q", r)
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func isWord(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

func errorf(input, format string, args ...any) error {
	return fmt.Errorf("invalid reference %q: %s: %w", input, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}
