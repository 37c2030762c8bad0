package registries

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/reference"
)

// Endpoint is one place to pull a reference from.
type Endpoint struct {
	// Ref is the reference to ask this endpoint for: the user's reference
	// rewritten by the mirror's or the registry's location.
	Ref reference.Named
	// Insecure allows plain HTTP and unverified TLS: set by the
	// configuration, or because the endpoint is on the loopback interface.
	Insecure bool
	// Mirror is true for a mirror, false for the registry itself.
	Mirror bool
}

// Candidates returns the fully qualified references ref may mean, in the
// order a pull should try them, each with a tag or digest ("latest" added).
// A qualified name means itself (normalised: docker.io/busybox is
// docker.io/library/busybox). A short name resolves through [aliases] first;
// else it is tried on each unqualified-search registry in order, docker.io
// adding "library/" to one-component names. Search registries that are
// blocked are skipped; a blocked qualified name or alias is an error.
func (c *Config) Candidates(ref string) ([]reference.Named, error) {
	n, err := reference.Parse(ref)
	if err != nil {
		return nil, err
	}
	if !n.IsShort() {
		full, err := reference.ParseNormalized(ref)
		if err != nil {
			return nil, err
		}
		if err := c.checkBlocked(full); err != nil {
			return nil, err
		}
		return []reference.Named{full}, nil
	}
	if alias, ok := c.aliases[n.Path()]; ok {
		full, err := withTagDigest(alias, n)
		if err != nil {
			return nil, err
		}
		if err := c.checkBlocked(full); err != nil {
			return nil, fmt.Errorf("short name %q (alias for %s in %s): %w", ref, alias, c.sourceName(), err)
		}
		return []reference.Named{full}, nil
	}
	if len(c.UnqualifiedSearchRegistries) == 0 {
		return nil, fmt.Errorf("short name %q: no alias for it and no unqualified-search-registries in %s; use a fully qualified name (registry/repository): %w",
			ref, c.sourceName(), errdefs.ErrInvalidArgument)
	}
	var out []reference.Named
	var blocked []string
	for _, reg := range c.UnqualifiedSearchRegistries {
		full, err := reference.ParseNormalized(reg + "/" + ref)
		if err != nil {
			return nil, fmt.Errorf("short name %q on search registry %s: %w", ref, reg, err)
		}
		if c.checkBlocked(full) != nil {
			blocked = append(blocked, full.String())
			continue
		}
		out = append(out, full)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("short name %q: every candidate is blocked in %s: %s: %w",
			ref, c.sourceName(), strings.Join(blocked, ", "), errdefs.ErrFailedPrecond)
	}
	if c.ShortNameMode == ShortNameEnforcing && len(out) > 1 {
		names := make([]string, len(out))
		for i, o := range out {
			names[i] = o.String()
		}
		return nil, fmt.Errorf("short name %q is ambiguous (short-name-mode is enforcing in %s) and could be any of: %s; use one of these fully qualified names or add an alias: %w",
			ref, c.sourceName(), strings.Join(names, ", "), errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// withTagDigest gives an alias the tag and digest the user wrote, or "latest".
func withTagDigest(alias, user reference.Named) (reference.Named, error) {
	var err error
	full := alias
	if user.Tag() != "" {
		if full, err = full.WithTag(user.Tag()); err != nil {
			return reference.Named{}, err
		}
	}
	if user.Digest() != "" {
		if full, err = full.WithDigest(user.Digest()); err != nil {
			return reference.Named{}, err
		}
	}
	return reference.TagOrLatest(full), nil
}

func (c *Config) checkBlocked(ref reference.Named) error {
	if r, ok := c.Lookup(ref); ok && r.Blocked {
		return fmt.Errorf("pulling %s is blocked by [[registry]] prefix %q in %s: %w",
			ref, r.Prefix, c.sourceName(), errdefs.ErrFailedPrecond)
	}
	return nil
}

// Endpoints returns where to pull ref from, in order: the mirrors of the
// [[registry]] whose prefix matches ref best (those that pull-from-mirror
// and mirror-by-digest-only allow for this reference), then the registry's
// own location. A mirror or location replaces the matched prefix and keeps
// the rest of the reference: with prefix "registry.k8s.io" and mirror
// "127.0.0.1:5000", "registry.k8s.io/pause:3.10" is pulled as
// "127.0.0.1:5000/pause:3.10". ref must be qualified (see Candidates).
func (c *Config) Endpoints(ref reference.Named) ([]Endpoint, error) {
	if ref.IsZero() || ref.Domain() == "" {
		return nil, fmt.Errorf("reference %q names no registry; resolve short names with Candidates first: %w", ref, errdefs.ErrInvalidArgument)
	}
	r, ok := c.Lookup(ref)
	if !ok {
		return []Endpoint{{Ref: ref, Insecure: isLoopback(ref.Domain())}}, nil
	}
	if r.Blocked {
		return nil, c.checkBlocked(ref)
	}
	digested := ref.Digest() != ""
	var out []Endpoint
	for _, m := range r.Mirrors {
		if !mirrorApplies(m.PullFromMirror, r.MirrorByDigestOnly, digested) {
			continue
		}
		mref, err := rewrite(ref, r, m.Location)
		if err != nil {
			return nil, err
		}
		out = append(out, Endpoint{Ref: mref, Insecure: m.Insecure || isLoopback(mref.Domain()), Mirror: true})
	}
	own := ref
	if r.Location != "" {
		var err error
		if own, err = rewrite(ref, r, r.Location); err != nil {
			return nil, err
		}
	}
	return append(out, Endpoint{Ref: own, Insecure: r.Insecure || isLoopback(own.Domain())}), nil
}

// mirrorApplies: a tag can move, so a mirror may be kept to digest pulls
// (where any copy is the same image) or, for a fresher mirror, to tag pulls.
// A reference with both a tag and a digest is a digest pull.
func mirrorApplies(mode PullFromMirror, byDigestOnly, digested bool) bool {
	switch {
	case byDigestOnly, mode == PullFromMirrorDigestOnly:
		return digested
	case mode == PullFromMirrorTagOnly:
		return !digested
	}
	return true
}

// rewrite replaces the part of ref matched by r's prefix with location. For
// a wildcard prefix the matched part is the whole registry domain.
func rewrite(ref reference.Named, r *Registry, location string) (reference.Named, error) {
	s := ref.String()
	matched := len(r.Prefix)
	if isWildcard(r.Prefix) {
		matched = len(ref.Domain())
	}
	out := location + s[matched:]
	n, err := reference.Parse(out)
	if err != nil {
		return reference.Named{}, fmt.Errorf("rewriting %s for [[registry]] prefix %q to location %q: %w", ref, r.Prefix, location, err)
	}
	if n.IsShort() {
		return reference.Named{}, fmt.Errorf("rewriting %s for [[registry]] prefix %q to location %q gives %q, which has no repository path: %w",
			ref, r.Prefix, location, out, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// isLoopback reports a registry on this machine (localhost, 127.0.0.0/8,
// ::1): traffic never leaves the host, so plain HTTP is allowed, as docker
// and podman allow it for local test registries.
func isLoopback(domain string) bool {
	host := hostOf(domain)
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}
