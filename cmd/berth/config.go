package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/berthdev/berth/internal/errdefs"
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
}

func loadConfig() (*config, error) {
	c := &config{}
	c.Images.ParallelDownloads = 3
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
	return c, nil
}
