package main

import (
	"fmt"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

func pullCmd() *cobra.Command {
	var quiet bool
	var platform string
	cmd := &cobra.Command{
		Use:   "pull [flags] IMAGE",
		Short: "Pull an image from a registry into the local store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			var p *v1.Platform
			if platform != "" {
				pp, err := parsePlatform(platform)
				if err != nil {
					return err
				}
				p = &pp
			}
			s, err := openStore(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			img, err := s.svc.Pull(ctx, args[0], p)
			if err != nil {
				return err
			}
			if quiet {
				fmt.Println(img.Target.Digest)
			} else {
				fmt.Printf("%s\n%s\n", img.Name, img.Target.Digest)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the manifest digest")
	cmd.Flags().StringVar(&platform, "platform", "", "os/arch[/variant] (default: the host's)")
	return cmd
}
