package registries

import (
	"errors"
	"fmt"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/reference"
)

// finish validates c and fills in defaults. data is the file's text, used
// only to find line numbers for errors.
func (c *Config) finish(data []byte, searchDefault bool) error {
	switch c.ShortNameMode {
	case "":
		c.ShortNameMode = ShortNamePermissive
	case ShortNameEnforcing, ShortNamePermissive, ShortNameDisabled:
	default:
		return c.keyError(data, "short-name-mode", "unknown mode %q (want enforcing, permissive or disabled)", c.ShortNameMode)
	}
	if searchDefault {
		c.UnqualifiedSearchRegistries = []string{reference.DefaultDomain}
	}
	for i, r := range c.UnqualifiedSearchRegistries {
		if strings.Contains(r, "://") {
			return c.keyError(data, "unqualified-search-registries", "entry %d %q: a search registry is host[:port], without a URL scheme", i, r)
		}
		r = strings.TrimRight(r, "/")
		if err := reference.CheckDomain(r); err != nil {
			return c.keyError(data, "unqualified-search-registries", "entry %d %q is not a registry host[:port]: %v", i, c.UnqualifiedSearchRegistries[i], err)
		}
		// "myregistry/busybox" reads as a Docker Hub namespace: a search
		// entry the reference rules would not take as a registry would
		// silently send pulls to docker.io.
		if n, err := reference.Parse(r + "/x"); err != nil || n.IsShort() {
			return c.keyError(data, "unqualified-search-registries", "entry %d %q would be read as a Docker Hub namespace, not a registry: a registry name needs a \".\" or a \":port\", or is localhost", i, r)
		}
		c.UnqualifiedSearchRegistries[i] = r
	}
	if len(c.CredentialHelpers) == 0 {
		c.CredentialHelpers = []string{AuthFileHelper}
	}
	for i, h := range c.CredentialHelpers {
		if h == "" || strings.ContainsAny(h, "/ \t") {
			return c.keyError(data, "credential-helpers", "entry %d %q is not a helper name (docker-credential-<name> is run)", i, h)
		}
	}
	if err := c.finishRegistries(data); err != nil {
		return err
	}
	return c.finishAliases(data)
}

func (c *Config) finishRegistries(data []byte) error {
	kept := c.Registries[:0]
	seen := map[string]bool{}
	for i := range c.Registries {
		r := c.Registries[i]
		if r.key == "" {
			r.key = fmt.Sprintf("registry[%d]", i)
		}
		if err := c.finishRegistry(data, &r); err != nil {
			return err
		}
		// containers/image keeps the first table of a prefix and ignores
		// later ones; refusing the file would break setups that work there.
		if seen[r.Prefix] {
			continue
		}
		seen[r.Prefix] = true
		kept = append(kept, r)
	}
	c.Registries = kept
	// One server must not be both secure and insecure, or both blocked and
	// not, depending on which prefix led to it (containers/image refuses
	// this too).
	bySite := map[string]*Registry{}
	for i := range c.Registries {
		r := &c.Registries[i]
		site := r.Location
		if site == "" {
			site = r.Prefix
		}
		other, ok := bySite[site]
		if !ok {
			bySite[site] = r
			continue
		}
		if other.Insecure != r.Insecure {
			return c.keyError(data, r.key+".insecure", "location %q is also used by %s with a different insecure setting", site, other.key)
		}
		if other.Blocked != r.Blocked {
			return c.keyError(data, r.key+".blocked", "location %q is also used by %s with a different blocked setting", site, other.key)
		}
	}
	return nil
}

func (c *Config) finishRegistry(data []byte, r *Registry) error {
	loc, http, err := parseLocation(r.Location)
	if err != nil {
		return c.keyError(data, r.key+".location", "%v", err)
	}
	r.Location = loc
	r.Insecure = r.Insecure || http
	if r.Prefix == "" {
		if loc == "" {
			return c.keyError(data, r.key, "neither prefix nor location is set")
		}
		r.Prefix = loc
	} else {
		r.Prefix = strings.TrimRight(r.Prefix, "/")
		if err := checkPrefix(r.Prefix); err != nil {
			return c.keyError(data, r.key+".prefix", "%v", err)
		}
		if loc == "" && !isWildcard(r.Prefix) {
			// Serve the prefix from itself: what the author can only have meant.
			r.Location = r.Prefix
		}
	}
	for j := range r.Mirrors {
		m := &r.Mirrors[j]
		key := fmt.Sprintf("%s.mirror[%d]", r.key, j)
		loc, http, err := parseLocation(m.Location)
		if err != nil {
			return c.keyError(data, key+".location", "%v", err)
		}
		if loc == "" {
			return c.keyError(data, key, "mirror has no location")
		}
		m.Location, m.Insecure = loc, m.Insecure || http
		switch m.PullFromMirror {
		case "", PullFromMirrorAll, PullFromMirrorDigestOnly, PullFromMirrorTagOnly:
		default:
			return c.keyError(data, key+".pull-from-mirror", "unknown value %q (want all, digest-only or tag-only)", m.PullFromMirror)
		}
		if m.PullFromMirror != "" && r.MirrorByDigestOnly {
			return c.keyError(data, key+".pull-from-mirror", "cannot be set when the registry sets mirror-by-digest-only")
		}
		if m.PullFromMirror == "" {
			m.PullFromMirror = PullFromMirrorAll
		}
	}
	return nil
}

// parseLocation validates a location ("host[:port][/path]", optionally with
// a tag or digest, as the man page allows) and strips a trailing "/". An
// "http://" scheme, which the format does not have but people write, is
// accepted and reported so the caller can allow plain HTTP.
func parseLocation(s string) (loc string, http bool, err error) {
	loc = s
	if rest, ok := strings.CutPrefix(loc, "http://"); ok {
		loc, http = rest, true
	} else if rest, ok := strings.CutPrefix(loc, "https://"); ok {
		loc = rest
	} else if strings.Contains(loc, "://") {
		return "", false, fmt.Errorf("location %q: only http:// and https:// are understood", s)
	}
	loc = strings.TrimRight(loc, "/")
	if loc == "" {
		return "", http, nil
	}
	if err := checkQualified(loc); err != nil {
		return "", false, fmt.Errorf("location %q: %v", s, err)
	}
	return loc, http, nil
}

// checkPrefix validates a prefix: a qualified name or reference, or a
// "*.example.com" wildcard with nothing after the host.
func checkPrefix(p string) error {
	if strings.Contains(p, "://") {
		return fmt.Errorf("prefix %q: a prefix is an image name and has no URL scheme", p)
	}
	if rest, ok := strings.CutPrefix(p, "*."); ok {
		if strings.ContainsAny(rest, "/:@*") {
			return fmt.Errorf("prefix %q: a wildcard prefix is only *.host.name, without port, path or tag", p)
		}
		if err := reference.CheckDomain(rest); err != nil {
			return fmt.Errorf("prefix %q: %v", p, err)
		}
		return nil
	}
	if err := checkQualified(p); err != nil {
		return fmt.Errorf("prefix %q: %v", p, err)
	}
	return nil
}

// checkQualified accepts "host[:port]" or a reference that names its
// registry ("host[:port]/path[:tag][@digest]").
func checkQualified(s string) error {
	if !strings.Contains(s, "/") {
		return reference.CheckDomain(s)
	}
	n, err := reference.Parse(s)
	if err != nil {
		return bare(err)
	}
	if n.IsShort() {
		return fmt.Errorf("%q does not start with a registry host (one with a \".\" or \":\", or localhost)", s)
	}
	return nil
}

func (c *Config) finishAliases(data []byte) error {
	c.aliases = map[string]reference.Named{}
	for _, name := range sortedKeys(c.Aliases) {
		key := "aliases." + name
		short, err := reference.Parse(name)
		switch {
		case err != nil:
			return c.keyError(data, key, "alias name: %v", bare(err))
		case !short.IsShort():
			return c.keyError(data, key, "alias name %q must be a short name, without a registry", name)
		case short.Tag() != "" || short.Digest() != "":
			return c.keyError(data, key, "alias name %q must not have a tag or digest", name)
		}
		value := c.Aliases[name]
		if value == "" {
			// An empty value erases an alias in the containers tools'
			// drop-in files; alone it means no alias.
			continue
		}
		full, err := reference.Parse(value)
		switch {
		case err != nil:
			return c.keyError(data, key, "alias value: %v", bare(err))
		case full.IsShort():
			return c.keyError(data, key, "alias value %q must name its registry (a fully qualified name)", value)
		case full.Tag() != "" || full.Digest() != "":
			return c.keyError(data, key, "alias value %q must not have a tag or digest", value)
		}
		norm, err := reference.ParseNormalized(value)
		if err != nil {
			return c.keyError(data, key, "alias value: %v", bare(err))
		}
		c.aliases[name] = norm.NameOnly()
	}
	return nil
}

// bare drops the error class from a nested error's text: the error it ends
// up in carries the class once, at the end.
func bare(err error) error {
	return errors.New(strings.TrimSuffix(err.Error(), ": "+errdefs.ErrInvalidArgument.Error()))
}
