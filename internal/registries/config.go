// Package registries reads the containers-registries.conf(5) file (version 2,
// and the deprecated version 1 layout) that podman, buildah, skopeo and CRI-O
// share, so an existing /etc/containers/registries.conf works with berth
// unchanged, and answers the two questions a pull asks of it: which fully
// qualified names a short name may mean (Candidates), and where to fetch a
// qualified name from, mirrors first (Endpoints).
//
// Differences from containers/image, all of them accepting more:
//   - a location (registry or mirror) may start with "http://" (meaning
//     insecure = true: plain HTTP allowed) or "https://" (ignored); the
//     containers tools refuse any scheme there;
//   - a [[registry]] with a prefix but no location serves that prefix from
//     itself (location = prefix) instead of being an error;
//   - when the file does not set unqualified-search-registries at all, short
//     names are searched on docker.io, as docker does; an explicit empty list
//     disables the search;
//   - short-name-mode "enforcing" never prompts: an ambiguous short name is an
//     error that lists the candidates;
//   - registries.conf.d drop-in files and the per-user file are not read.
package registries

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/reference"
)

// ShortNameMode is the short-name-mode setting.
type ShortNameMode string

const (
	// ShortNameEnforcing makes a short name that matches more than one
	// search registry an error (berth never prompts).
	ShortNameEnforcing ShortNameMode = "enforcing"
	// ShortNamePermissive tries every search registry in order; the default.
	ShortNamePermissive ShortNameMode = "permissive"
	// ShortNameDisabled tries every search registry in order.
	ShortNameDisabled ShortNameMode = "disabled"
)

// PullFromMirror is a mirror's pull-from-mirror setting.
type PullFromMirror string

const (
	PullFromMirrorAll        PullFromMirror = "all"
	PullFromMirrorDigestOnly PullFromMirror = "digest-only"
	PullFromMirrorTagOnly    PullFromMirror = "tag-only"
)

// AuthFileHelper is the credential-helpers entry that means "the
// containers-auth.json / docker config.json files", and the default list.
const AuthFileHelper = "containers-auth.json"

// Config is a parsed, validated registries.conf. Field values are normalised:
// locations carry no scheme or trailing "/", defaults are filled in.
type Config struct {
	UnqualifiedSearchRegistries []string          `toml:"unqualified-search-registries"`
	ShortNameMode               ShortNameMode     `toml:"short-name-mode"`
	CredentialHelpers           []string          `toml:"credential-helpers"`
	Aliases                     map[string]string `toml:"aliases"`
	Registries                  []Registry        `toml:"registry"`
	// AdditionalLayerStoreAuthHelper is accepted so current files load;
	// berth has no additional layer store and ignores it.
	AdditionalLayerStoreAuthHelper string `toml:"additional-layer-store-auth-helper"`

	// Source is the file the configuration came from, "" for Default().
	Source string `toml:"-"`

	aliases map[string]reference.Named // parsed Aliases, name only
}

// Registry is one [[registry]] table.
type Registry struct {
	// Prefix selects the references this table applies to: host[:port],
	// host[:port]/path, a full reference, or "*.example.com" for every
	// subdomain. Defaults to Location.
	Prefix string `toml:"prefix"`
	// Location replaces Prefix when pulling; empty only for a wildcard prefix
	// (the reference is used as written).
	Location string `toml:"location"`
	// Insecure allows plain HTTP and unverified TLS.
	Insecure bool `toml:"insecure"`
	// Blocked refuses pulls of matching references.
	Blocked bool `toml:"blocked"`
	// MirrorByDigestOnly uses the mirrors only for references with a digest.
	MirrorByDigestOnly bool     `toml:"mirror-by-digest-only"`
	Mirrors            []Mirror `toml:"mirror"`

	key string // where it was defined, for error messages ("registry[2]")
}

// Mirror is one [[registry.mirror]] table.
type Mirror struct {
	Location       string         `toml:"location"`
	Insecure       bool           `toml:"insecure"`
	PullFromMirror PullFromMirror `toml:"pull-from-mirror"`
}

// DefaultPaths are the files Find tries, in order, without an override.
var DefaultPaths = []string{"/etc/berth/registries.conf", "/etc/containers/registries.conf"}

// Default is the configuration used when no file exists: short names are
// searched on docker.io only, as docker does, with no mirrors or aliases.
func Default() *Config {
	c := &Config{}
	if err := c.finish(nil, true); err != nil {
		panic("registries: built-in default is invalid: " + err.Error())
	}
	return c
}

// Find loads the registries configuration berth uses: override (the
// --registries-conf flag) when set, which must exist; else the first of
// DefaultPaths that exists; else Default(). It returns the path read, "" for
// the default.
func Find(override string) (*Config, string, error) {
	if override != "" {
		c, err := Load(override)
		if err != nil {
			return nil, "", err
		}
		return c, override, nil
	}
	for _, p := range DefaultPaths {
		c, err := Load(p)
		if err == nil {
			return c, p, nil
		}
		if !errdefs.IsNotFound(err) {
			return nil, "", err
		}
	}
	return Default(), "", nil
}

// Load reads and validates the registries.conf at path. A missing file is
// ErrNotFound; a malformed one ErrInvalidArgument naming the file, the line
// and the key.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("registries config %s: %w", path, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("registries config: %w", err)
	}
	return Parse(path, data)
}

// v1Config is the deprecated version 1 layout ([registries.search] etc.),
// still found on older systems.
type v1Config struct {
	Search   v1List `toml:"search"`
	Insecure v1List `toml:"insecure"`
	Block    v1List `toml:"block"`
}

type v1List struct {
	Registries []string `toml:"registries"`
}

// Parse decodes and validates registries.conf content; source names it in
// errors (a path, or a description).
func Parse(source string, data []byte) (*Config, error) {
	var file struct {
		Config
		V1 v1Config `toml:"registries"`
	}
	md, err := toml.Decode(string(data), &file)
	if err != nil {
		return nil, decodeError(source, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		return nil, unknownKeysError(source, data, undecoded)
	}
	c := &file.Config
	c.Source = source
	if md.IsDefined("registries") {
		for _, v2 := range []string{"registry", "unqualified-search-registries"} {
			if md.IsDefined(v2) {
				return nil, c.keyError(data, "registries", "the version 1 [registries.*] tables cannot be mixed with the version 2 key %q; convert the file to version 2", v2)
			}
		}
		if err := c.fromV1(data, file.V1); err != nil {
			return nil, err
		}
	}
	searchDefault := !md.IsDefined("unqualified-search-registries") && !md.IsDefined("registries", "search")
	if err := c.finish(data, searchDefault); err != nil {
		return nil, err
	}
	return c, nil
}

// fromV1 converts version 1 lists to [[registry]] tables, as containers/image
// does: blocked entries first, then insecure ones, each location once.
func (c *Config) fromV1(data []byte, v1 v1Config) error {
	c.UnqualifiedSearchRegistries = v1.Search.Registries
	index := map[string]int{}
	add := func(loc, key string) (*Registry, error) {
		loc, http, err := parseLocation(loc)
		if err == nil && loc == "" {
			err = fmt.Errorf("empty entry")
		}
		if err != nil {
			return nil, c.keyError(data, key, "%v", err)
		}
		if i, ok := index[loc]; ok {
			return &c.Registries[i], nil
		}
		index[loc] = len(c.Registries)
		c.Registries = append(c.Registries, Registry{Prefix: loc, Location: loc, Insecure: http, key: key})
		return &c.Registries[len(c.Registries)-1], nil
	}
	for _, loc := range v1.Block.Registries {
		r, err := add(loc, "registries.block.registries")
		if err != nil {
			return err
		}
		r.Blocked = true
	}
	for _, loc := range v1.Insecure.Registries {
		r, err := add(loc, "registries.insecure.registries")
		if err != nil {
			return err
		}
		r.Insecure = true
	}
	return nil
}

// keyError is a validation error about key (a path such as
// "registry[1].mirror[0].location"), located in data when possible.
func (c *Config) keyError(data []byte, key, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	source := c.Source
	if source == "" {
		source = "(built-in default)"
	}
	if line := lineOfKey(keyLines(data), key); line > 0 {
		return fmt.Errorf("registries config %s: line %d, key %s: %s: %w", source, line, key, msg, errdefs.ErrInvalidArgument)
	}
	return fmt.Errorf("registries config %s: key %s: %s: %w", source, key, msg, errdefs.ErrInvalidArgument)
}

// decodeError turns a TOML syntax or type error into one that names the
// file, line and key.
func decodeError(source string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		where := fmt.Sprintf("line %d", pe.Position.Line)
		if pe.LastKey != "" {
			where += ", key " + pe.LastKey
		}
		return fmt.Errorf("registries config %s: %s: %s: %w", source, where, pe.Message, errdefs.ErrInvalidArgument)
	}
	// Type mismatches ("insecure = 'yes'") come as plain errors that already
	// say "toml: line N (last key ...)".
	return fmt.Errorf("registries config %s: %s: %w", source, strings.TrimPrefix(err.Error(), "toml: "), errdefs.ErrInvalidArgument)
}

func unknownKeysError(source string, data []byte, keys []toml.Key) error {
	const show = 5 // enough to act on; a file of garbage need not be echoed
	lines := keyLines(data)
	seen := map[string]bool{}
	var parts []string
	for _, k := range keys {
		s := k.String()
		if seen[s] {
			continue
		}
		seen[s] = true
		if len(parts) == show {
			parts = append(parts, "...")
			break
		}
		if line := lineOfKey(lines, s); line > 0 {
			s = fmt.Sprintf("%s (line %d)", s, line)
		}
		parts = append(parts, s)
	}
	return fmt.Errorf("registries config %s: unknown key %s (see containers-registries.conf(5)): %w",
		source, strings.Join(parts, ", "), errdefs.ErrInvalidArgument)
}

// sourceName is the configuration's origin as error messages show it.
func (c *Config) sourceName() string {
	if c.Source == "" {
		return "the built-in default registries configuration"
	}
	return c.Source
}

// Lookup returns the [[registry]] table that applies to ref (the longest
// matching prefix; a plain prefix beats a wildcard one), if any.
func (c *Config) Lookup(ref reference.Named) (*Registry, bool) {
	s, domain := ref.String(), ref.Domain()
	var best *Registry
	for i := range c.Registries {
		r := &c.Registries[i]
		if !isWildcard(r.Prefix) && matchesPrefix(s, domain, r.Prefix) && (best == nil || len(r.Prefix) > len(best.Prefix)) {
			best = r
		}
	}
	if best != nil {
		return best, true
	}
	host := hostOf(domain)
	for i := range c.Registries {
		r := &c.Registries[i]
		if isWildcard(r.Prefix) && matchesWildcard(host, r.Prefix) && (best == nil || len(r.Prefix) > len(best.Prefix)) {
			best = r
		}
	}
	return best, best != nil
}

// matchesPrefix reports whether the reference s (with registry domain)
// starts with prefix and continues with a separator. A prefix of only a host
// must equal the whole domain, so "example.com" does not capture
// "example.com:5000" (containers/image matches it, and calls that a bug).
func matchesPrefix(s, domain, prefix string) bool {
	if !strings.Contains(prefix, "/") {
		return domain == prefix
	}
	if !strings.HasPrefix(s, prefix) {
		return false
	}
	return len(s) == len(prefix) || strings.ContainsRune("/:@", rune(s[len(prefix)]))
}

// matchesWildcard: "*.example.com" matches any host strictly below
// example.com, at any depth and with any port.
func matchesWildcard(host, prefix string) bool {
	suffix := prefix[1:] // ".example.com"
	return len(host) > len(suffix) && strings.HasSuffix(host, suffix)
}

func isWildcard(prefix string) bool { return strings.HasPrefix(prefix, "*.") }

// hostOf strips the port (and IPv6 brackets) from a registry domain.
func hostOf(domain string) string {
	if strings.HasPrefix(domain, "[") {
		if end := strings.IndexByte(domain, ']'); end > 0 {
			return domain[1:end]
		}
		return domain
	}
	if i := strings.LastIndexByte(domain, ':'); i >= 0 {
		return domain[:i]
	}
	return domain
}

// sortedKeys gives map keys in a stable order, so the first error reported
// for a file does not change from run to run.
func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
