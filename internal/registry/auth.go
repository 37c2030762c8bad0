package registry

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"

	dockerconfig "github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
	"github.com/berthdev/berth/internal/reference"
)

// AuthFiles are the files credentials are read from, in podman's order:
// $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json (for root
// without XDG_RUNTIME_DIR, /run/containers/0/auth.json),
// $XDG_CONFIG_HOME/containers/auth.json (~/.config/...), then docker's
// $DOCKER_CONFIG/config.json (~/.docker/config.json).
func AuthFiles() []string {
	var files []string
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		files = append(files, f)
	}
	files = append(files, DefaultAuthFile())
	home, _ := os.UserHomeDir()
	cfg := os.Getenv("XDG_CONFIG_HOME")
	if cfg == "" && home != "" {
		cfg = filepath.Join(home, ".config")
	}
	if cfg != "" {
		files = append(files, filepath.Join(cfg, "containers", "auth.json"))
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		files = append(files, filepath.Join(d, "config.json"))
	} else if home != "" {
		files = append(files, filepath.Join(home, ".docker", "config.json"))
	}
	return files
}

// DefaultAuthFile is where `berth login` writes: podman's default.
func DefaultAuthFile() string {
	if f := os.Getenv("REGISTRY_AUTH_FILE"); f != "" {
		return f
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "containers", "auth.json")
	}
	return filepath.Join("/run/containers", strconv.Itoa(os.Getuid()), "auth.json")
}

// Keychain finds credentials in files (AuthFiles() when nil): the first
// file with an entry for the repository or its registry wins, whether the
// entry is in "auths" or names a credential helper ("credHelpers",
// "credsStore": docker-credential-NAME on $PATH). No entry is anonymous.
func Keychain(files []string) authn.Keychain {
	return keychain{files: files}
}

type keychain struct{ files []string }

func (k keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	files := k.files
	if files == nil {
		files = AuthFiles()
	}
	keys := []string{r.String(), r.RegistryStr()}
	if r.RegistryStr() == name.DefaultRegistry || r.RegistryStr() == "docker.io" {
		keys = append(keys, "docker.io", "https://index.docker.io/v1/", "index.docker.io")
	}
	for _, f := range files {
		cf, err := loadAuthFile(f)
		if err != nil {
			return nil, err
		}
		if cf == nil {
			continue
		}
		for _, key := range keys {
			if !cf.ContainsAuth() {
				break
			}
			_, helper := cf.CredentialHelpers[key]
			_, stored := cf.AuthConfigs[key]
			if !helper && !stored && cf.CredentialsStore == "" {
				continue
			}
			ac, err := cf.GetAuthConfig(key)
			if err != nil {
				return nil, fmt.Errorf("credentials for %s in %s: %w", key, f, err)
			}
			if ac.Username == "" && ac.Password == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
				continue
			}
			return authn.FromConfig(authn.AuthConfig{Username: ac.Username, Password: ac.Password,
				IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}), nil
		}
	}
	return authn.Anonymous, nil
}

// loadAuthFile reads a docker config or podman auth.json; nil if missing.
func loadAuthFile(path string) (*configfile.ConfigFile, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	cf, err := dockerconfig.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("auth file %s: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	cf.Filename = path
	return cf, nil
}

// Login checks user and password against registry (a GET of /v2/ with
// them, through the token exchange if it uses one) and stores them in
// file (DefaultAuthFile() when ""), keeping the file's other entries.
func (c *Client) Login(ctx context.Context, file, registry, user, password string) error {
	if file == "" {
		file = DefaultAuthFile()
	}
	if err := c.checkLogin(ctx, registry, user, password); err != nil {
		return err
	}
	return editAuthFile(file, func(auths map[string]json.RawMessage) {
		entry, _ := json.Marshal(map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))})
		auths[registry] = entry
	})
}

func (c *Client) checkLogin(ctx context.Context, registry, user, password string) error {
	if err := reference.CheckDomain(registry); err != nil {
		return fmt.Errorf("login: %q is not a registry host[:port]: %v: %w", registry, err, errdefs.ErrInvalidArgument)
	}
	var opts []name.Option
	if n, err := reference.Parse(registry + "/login"); err == nil {
		if eps, err := c.cfg.Endpoints(n); err == nil && eps[len(eps)-1].Insecure {
			opts = append(opts, name.Insecure)
		}
	}
	reg, err := name.NewRegistry(apiHost(registry), opts...)
	if err != nil {
		return fmt.Errorf("login %s: %v: %w", registry, err, errdefs.ErrInvalidArgument)
	}
	base := c.transport
	if base == nil {
		base = http.DefaultTransport
	}
	rt, err := transport.NewWithContext(ctx, reg, &authn.Basic{Username: user, Password: password}, base, nil)
	if err == nil {
		var req *http.Request
		req, err = http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
		if err == nil {
			var resp *http.Response
			if resp, err = (&http.Client{Transport: rt}).Do(req); err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = &transport.Error{StatusCode: resp.StatusCode}
				}
			}
		}
	}
	var terr *transport.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &terr) && (terr.StatusCode == http.StatusUnauthorized || terr.StatusCode == http.StatusForbidden):
		return fmt.Errorf("login %s: user name or password refused (HTTP %d): %w", registry, terr.StatusCode, ErrUnauthorized)
	case ctx.Err() != nil:
		return ctx.Err()
	}
	return fmt.Errorf("login %s: %v: %w", registry, err, errdefs.ErrUnavailable)
}

// Logout removes registry's entry from file (DefaultAuthFile() when ""),
// or every entry when registry is "". Not logged in is ErrNotFound.
func Logout(file, registry string) error {
	if file == "" {
		file = DefaultAuthFile()
	}
	found := false
	err := editAuthFile(file, func(auths map[string]json.RawMessage) {
		if registry == "" {
			found = len(auths) > 0
			clear(auths)
			return
		}
		_, found = auths[registry]
		delete(auths, registry)
	})
	if err != nil {
		return err
	}
	if !found && registry != "" {
		return fmt.Errorf("not logged in to %s (in %s): %w", registry, file, errdefs.ErrNotFound)
	}
	return nil
}

// editAuthFile changes the "auths" object of an auth file, keeping every
// other key, and replaces the file atomically (mode 0600).
func editAuthFile(file string, edit func(map[string]json.RawMessage)) error {
	top := map[string]json.RawMessage{}
	data, err := os.ReadFile(file)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("auth file: %w", err)
	}
	if len(data) > 0 {
		if err := json.Unmarshal(data, &top); err != nil {
			return fmt.Errorf("auth file %s: %v: %w", file, err, errdefs.ErrInvalidArgument)
		}
	}
	auths := map[string]json.RawMessage{}
	if raw, ok := top["auths"]; ok {
		if err := json.Unmarshal(raw, &auths); err != nil {
			return fmt.Errorf("auth file %s: auths: %v: %w", file, err, errdefs.ErrInvalidArgument)
		}
	}
	edit(auths)
	top["auths"], _ = json.Marshal(auths)
	out, err := json.MarshalIndent(top, "", "\t")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(file, append(out, '\n'), 0o600)
}

type credsKey struct{}

// WithCredentials makes the registry requests made with ctx authenticate
// with a, whatever the auth files say: a CRI PullImage carries the
// kubelet's image pull secret.
func WithCredentials(ctx context.Context, a authn.AuthConfig) context.Context {
	return context.WithValue(ctx, credsKey{}, a)
}
