package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/libct"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
)

func specVersion() string { return specs.Version }

func specCmd() *cobra.Command {
	var bundle string
	var rootless bool
	cmd := &cobra.Command{
		Use:   "spec [flags]",
		Short: "Write a default config.json into the bundle",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := filepath.Join(bundle, "config.json")
			if _, err := os.Stat(path); err == nil {
				return fmt.Errorf("%s exists; remove it first: %w", path, errdefs.ErrAlreadyExists)
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			data, err := json.MarshalIndent(libct.DefaultSpec(rootless), "", "\t")
			if err != nil {
				return err
			}
			return os.WriteFile(path, append(data, '\n'), 0o644)
		},
	}
	cmd.Flags().StringVarP(&bundle, "bundle", "b", ".", "the bundle directory")
	cmd.Flags().BoolVar(&rootless, "rootless", false, "a config for an unprivileged user (user namespace, no cgroup limits)")
	return cmd
}
