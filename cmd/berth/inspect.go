package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/network"
	"github.com/spf13/cobra"
)

func inspectCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use: "inspect [flags] CONTAINER|IMAGE...", Short: "Show containers (or images) in detail", Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			type info struct {
				metadata.Container
				State   engine.State `json:"State"`
				Args    []string     `json:"Args"`
				LogPath string       `json:"LogPath"`
				// Mounts: binds, tmpfs, volumes and image mounts (docker's names).
				Mounts []engine.MountInfo `json:"Mounts"`
				// NetworkSettings: the interfaces while attached, the published ports.
				NetworkSettings struct {
					IPAddress string                `json:"IPAddress"`
					Networks  []network.Attachment  `json:"Networks"`
					Ports     []network.PortMapping `json:"Ports"`
				} `json:"NetworkSettings"`
			}
			var out []any
			for _, ref := range args {
				c, err := s.meta.GetContainer(ctx, ref)
				if errdefs.IsNotFound(err) {
					rec, ierr := s.svc.LookupOne(ctx, ref)
					if ierr != nil {
						return fmt.Errorf("no container or image %q: %w", ref, errdefs.ErrNotFound)
					}
					i, err := s.svc.Inspect(ctx, rec)
					if err != nil {
						return err
					}
					out = append(out, i)
					continue
				}
				if err != nil {
					return err
				}
				st, err := s.eng.State(ctx, c)
				if err != nil {
					return err
				}
				a, _ := containerArgs(s, c)
				in := info{Container: c, State: st, Args: a, LogPath: s.eng.LogPath(c), Mounts: s.eng.Mounts(c)}
				in.NetworkSettings.Networks, in.NetworkSettings.Ports = s.eng.Attachments(c), engine.Ports(c)
				if len(in.NetworkSettings.Networks) > 0 {
					in.NetworkSettings.IPAddress, _, _ = strings.Cut(in.NetworkSettings.Networks[0].IP, "/")
				}
				out = append(out, in)
			}
			return output(os.Stdout, format, out, nil)
		}),
	}
	cmd.Flags().StringVarP(&format, "format", "f", "json", "json, or a Go template")
	return cmd
}
