package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/network"
)

// config is berth.toml (--config, default /etc/berth/berth.toml). A missing
// file is the defaults; an unknown key is an error, so a typo is not
// silently ignored.
type config struct {
	Images struct {
		// ParallelDownloads is how many layers a pull fetches and unpacks
		// at once (containers.conf's image_parallel_copies).
		ParallelDownloads int `toml:"parallel_downloads"`
	} `toml:"images"`
	// Containers are run's and create's defaults.
	Containers struct {
		// Network is the --network of a container that gives none:
		// bridge (the default network), none, host or a network's name.
		Network string `toml:"network"`
		// Runtime is the OCI runtime by name or path.
		Runtime string `toml:"runtime"`
		// Pull is the --pull policy: missing, always or never.
		Pull string `toml:"pull"`
		// LogMaxSize rotates a container's log at this size ("10m").
		LogMaxSize string `toml:"log_max_size"`
		// CgroupParent is the --cgroup-parent of a container that gives
		// none: for an unprivileged user, the cgroup delegated to it.
		CgroupParent string `toml:"cgroup_parent"`
	} `toml:"containers"`
	Storage struct {
		// MountProgram mounts the snapshots' overlays in user space
		// (fuse-overlayfs), as for a kernel that refuses overlayfs in a
		// user namespace (berth falls back to it there by itself).
		MountProgram string `toml:"mount_program"`
	} `toml:"storage"`
	Network struct {
		// CNIPluginDirs are searched for CNI plugins, in order.
		CNIPluginDirs []string `toml:"cni_plugin_dirs"`
	} `toml:"network"`
}

var loaded *config

// loadConfig reads berth.toml once per process.
func loadConfig() (*config, error) {
	if loaded != nil {
		return loaded, nil
	}
	c, err := readConfig()
	if err == nil {
		loaded = c
	}
	return c, err
}

func readConfig() (*config, error) {
	c := &config{}
	c.Images.ParallelDownloads = 3
	c.Containers.Network = "bridge"
	c.Containers.Pull = "missing"
	c.Network.CNIPluginDirs = network.DefaultPluginDirs
	data, err := os.ReadFile(g.config)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", g.config, err)
	}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		return nil, fmt.Errorf("config %s: %v: %w", g.config, err, errdefs.ErrInvalidArgument)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = k.String()
		}
		return nil, fmt.Errorf("config %s: unknown keys %s: %w", g.config, strings.Join(names, ", "), errdefs.ErrInvalidArgument)
	}
	if n := c.Images.ParallelDownloads; n < 1 || n > 64 {
		return nil, fmt.Errorf("config %s: images.parallel_downloads = %d: want 1 to 64: %w", g.config, n, errdefs.ErrInvalidArgument)
	}
	switch c.Containers.Pull {
	case "missing", "always", "never":
	default:
		return nil, fmt.Errorf("config %s: containers.pull = %q: want missing, always or never: %w", g.config, c.Containers.Pull, errdefs.ErrInvalidArgument)
	}
	if p := c.Storage.MountProgram; p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return nil, fmt.Errorf("config %s: storage.mount_program: %v: %w", g.config, err, errdefs.ErrInvalidArgument)
		}
	}
	if c.Containers.LogMaxSize != "" {
		if _, err := parseSize(c.Containers.LogMaxSize); err != nil {
			return nil, fmt.Errorf("config %s: containers.log_max_size: %w", g.config, err)
		}
	}
	return c, nil
}
