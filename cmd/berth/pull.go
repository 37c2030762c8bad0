package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/berthdev/berth/internal/imagesvc"
	"github.com/spf13/cobra"
)

func pullCmd() *cobra.Command {
	var quiet bool
	var platform string
	cmd := &cobra.Command{
		Use:   "pull [flags] IMAGE",
		Short: "Pull an image from a registry into the local store",
		Args:  cobra.ExactArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			p, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			ref := strings.TrimPrefix(args[0], "docker://")
			var bars *progress
			if !quiet {
				fmt.Fprintf(os.Stderr, "Trying to pull %s...\n", ref)
				bars = newProgress()
				s.svc.Progress = bars.Event
				defer bars.Close()
			}
			img, err := s.svc.Pull(ctx, ref, p)
			if s.svc.Progress != nil {
				s.svc.Progress = nil
				bars.Close()
			}
			if err != nil {
				return err
			}
			if !quiet {
				fmt.Fprintf(os.Stderr, "Stored %s\n", img.Name)
			}
			fmt.Println(img.Config.Encoded())
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image ID")
	cmd.Flags().StringVar(&platform, "platform", "", "os/arch[/variant] (default: the host's)")
	return cmd
}

func pushCmd() *cobra.Command {
	var quiet bool
	var jobs int
	cmd := &cobra.Command{
		Use:   "push [flags] IMAGE [DESTINATION]",
		Short: "Push a local image to a registry (or any destination `image copy` takes)",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			dst := "docker://" + strings.TrimPrefix(args[0], "docker://")
			if len(args) == 2 {
				dst = args[1]
				if !strings.Contains(dst, ":") || !isTransport(dst) {
					dst = "docker://" + dst
				}
			}
			return copyImage(ctx, "local:"+args[0], dst, imagesvc.CopyOptions{Jobs: jobs}, quiet)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing but errors")
	cmd.Flags().IntVar(&jobs, "jobs", 3, "blobs uploaded at once")
	return cmd
}

// isTransport reports whether s starts with a transport name.
func isTransport(s string) bool {
	for _, t := range []string{"docker://", "oci:", "oci-archive:", "docker-archive:", "local:"} {
		if strings.HasPrefix(s, t) {
			return true
		}
	}
	return false
}
