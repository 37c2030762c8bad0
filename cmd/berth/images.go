package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/reference"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

func imagesCmd() *cobra.Command {
	var format string
	var digests bool
	cmd := &cobra.Command{
		Use:     "images [flags]",
		Aliases: []string{"image-ls"},
		Short:   "List the images in the local store",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openStore(cmd.Context())
			if err != nil {
				return err
			}
			defer s.close()
			imgs, err := s.meta.ListImages(cmd.Context(), nil)
			if err != nil {
				return err
			}
			switch format {
			case "json":
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(imgs)
			case "", "table":
			default:
				return fmt.Errorf("--format %q: table or json: %w", format, errdefs.ErrInvalidArgument)
			}
			w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
			fmt.Fprint(w, "REPOSITORY\tTAG\t")
			if digests {
				fmt.Fprint(w, "DIGEST\t")
			}
			fmt.Fprint(w, "IMAGE ID\tCREATED\n")
			for _, img := range imgs {
				repo, tag := img.Name, "<none>"
				if n, err := reference.Parse(img.Name); err == nil {
					repo = n.Domain() + "/" + n.Path()
					if n.Tag() != "" {
						tag = n.Tag()
					}
				}
				fmt.Fprintf(w, "%s\t%s\t", repo, tag)
				if digests {
					fmt.Fprintf(w, "%s\t", img.Target.Digest)
				}
				fmt.Fprintf(w, "%s\t%s\n", shortID(img.Config.Encoded()), img.CreatedAt.Format(time.RFC3339))
			}
			return w.Flush()
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "table or json")
	cmd.Flags().BoolVar(&digests, "digests", false, "show the manifest digests")
	return cmd
}

func shortID(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}

func parsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return v1.Platform{}, fmt.Errorf("--platform %q: want os/arch[/variant]: %w", s, errdefs.ErrInvalidArgument)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}
