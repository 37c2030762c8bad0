package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/imagesvc"
	"github.com/spf13/cobra"
)

func imageCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images: local ones, and remote ones without pulling them",
	}
	cmd.AddCommand(imagesCmd("ls", "list"), rmiCmd("rm", "remove"), tagCmd(), inspectImageCmd(), pruneImagesCmd(),
		pullCmd(), pushCmd(), tagsCmd(), copyCmd(), saveCmd(), loadCmd(), mountCmd(), unmountCmd())
	return cmd
}

func rmiCmd(use string, aliases ...string) *cobra.Command {
	var force, all bool
	cmd := &cobra.Command{
		Use:     use + " [flags] IMAGE...",
		Aliases: aliases,
		Short:   "Remove images (their names; layers no image uses are freed)",
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			if len(args) == 0 && !all {
				return fmt.Errorf("give at least one image, or --all: %w", errdefs.ErrInvalidArgument)
			}
			if all {
				recs, err := s.meta.ListImages(ctx, nil)
				if err != nil {
					return err
				}
				for _, r := range recs {
					args = append(args, r.Name)
				}
			}
			var errs []error
			for _, q := range args {
				names, err := s.svc.Remove(ctx, q, imagesvc.RemoveOptions{Force: force})
				if err != nil {
					if all && errdefs.IsNotFound(err) {
						continue
					}
					errs = append(errs, err)
					continue
				}
				for _, n := range names {
					fmt.Println("Untagged: " + n)
				}
			}
			r, err := s.svc.GC(ctx)
			if err != nil {
				errs = append(errs, err)
			}
			for _, d := range r.Blobs {
				fmt.Println("Deleted: " + d.String())
			}
			return errors.Join(errs...)
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove every name of an image ID, and images containers use")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all images")
	return cmd
}

func tagCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tag IMAGE NAME...",
		Short: "Give a local image more names",
		Args:  cobra.MinimumNArgs(2),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			for _, n := range args[1:] {
				if _, err := s.svc.Tag(ctx, args[0], n); err != nil {
					return err
				}
			}
			return nil
		}),
	}
}

func inspectImageCmd() *cobra.Command {
	var format, platform string
	var raw, config, noTags bool
	cmd := &cobra.Command{
		Use:   "inspect [flags] IMAGE|docker://REF...",
		Short: "Show an image's details: a local one, or a remote one without pulling it",
		Args:  cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			p, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			var local []imagesvc.ImageInfo
			var remote []imagesvc.RemoteInfo
			for _, a := range args {
				if ref, ok := strings.CutPrefix(a, "docker://"); ok {
					r, err := s.svc.InspectRemote(ctx, ref, p, !noTags && !raw && !config)
					if err != nil {
						return err
					}
					switch {
					case raw && config:
						return fmt.Errorf("--raw and --config: choose one: %w", errdefs.ErrInvalidArgument)
					case raw:
						os.Stdout.Write(r.Raw)
						fmt.Println()
					case config:
						os.Stdout.Write(r.Config)
						fmt.Println()
					default:
						remote = append(remote, r.Info)
					}
					continue
				}
				rec, err := s.svc.LookupOne(ctx, a)
				if err != nil {
					return err
				}
				info, err := s.svc.Inspect(ctx, rec)
				if err != nil {
					return err
				}
				local = append(local, info)
			}
			w := os.Stdout
			if format == "" || format == "json" {
				if remote != nil && local == nil && len(remote) == 1 {
					return printJSON(remote[0]) // skopeo prints one object
				}
				if remote != nil {
					if err := printJSON(remote); err != nil {
						return err
					}
				}
				if local != nil {
					return printJSON(local)
				}
				return nil
			}
			if err := output(w, format, remote, nil); err != nil {
				return err
			}
			return output(w, format, local, nil)
		}),
	}
	f := cmd.Flags()
	f.StringVarP(&format, "format", "f", "json", "json, or a Go template ({{.Digest}})")
	f.BoolVar(&raw, "raw", false, "docker://: print the raw manifest or index")
	f.BoolVar(&config, "config", false, "docker://: print the raw image config")
	f.BoolVarP(&noTags, "no-tags", "n", false, "docker://: do not list the repository's tags")
	f.StringVar(&platform, "platform", "", "docker://: os/arch[/variant] to choose from an index")
	return cmd
}

func tagsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "tags REPOSITORY",
		Short: "List a remote repository's tags",
		Args:  cobra.ExactArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			tags, err := s.svc.Registry.Tags(ctx, strings.TrimPrefix(args[0], "docker://"))
			if err != nil {
				return err
			}
			for _, t := range tags {
				fmt.Println(t)
			}
			return nil
		}),
	}
}

func pruneImagesCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "prune [flags]",
		Short: "Remove images without a name (--all: every image no container uses), and free what nothing uses",
		Args:  cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			rows, err := listImages(ctx, s.svc, nil)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if !all && !r.Dangling {
					continue
				}
				names, err := s.svc.Remove(ctx, r.name, imagesvc.RemoveOptions{})
				if errdefs.IsFailedPrecond(err) {
					continue // in use
				}
				if err != nil && !errdefs.IsNotFound(err) {
					return err
				}
				for _, n := range names {
					fmt.Println("Untagged: " + n)
				}
			}
			gc, err := s.svc.GC(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("Total reclaimed space: %s\n", humanSize(gc.BlobBytes))
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove every image no container uses")
	return cmd
}

func copyCmd() *cobra.Command {
	var quiet, all bool
	var platform string
	cmd := &cobra.Command{
		Use:   "copy [flags] SOURCE DESTINATION",
		Short: "Copy an image between docker://REF, oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REF] and local:NAME",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			return copyImage(cmd.Context(), args[0], args[1], imagesvc.CopyOptions{Platform: p, All: all}, quiet)
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing but errors")
	cmd.Flags().StringVar(&platform, "platform", "", "os/arch[/variant] to choose from an index (default: the host's)")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "copy every platform of an index (to docker:// or an OCI layout)")
	return cmd
}

func copyImage(ctx context.Context, from, to string, opts imagesvc.CopyOptions, quiet bool) error {
	src, err := imagesvc.ParseLocation(from)
	if err != nil {
		return err
	}
	dst, err := imagesvc.ParseLocation(to)
	if err != nil {
		return err
	}
	s, err := openStore(ctx)
	if err != nil {
		return err
	}
	defer s.close()
	if !quiet {
		fmt.Fprintf(os.Stderr, "Copying %s to %s\n", src, dst)
		bars := newProgress() // layers that go into the local store
		s.svc.Progress = bars.Event
		defer bars.Close()
	}
	name, err := s.svc.Copy(ctx, src, dst, opts)
	if err != nil {
		return err
	}
	if !quiet {
		fmt.Fprintf(os.Stderr, "Wrote %s\n", name)
	}
	return nil
}

func saveCmd() *cobra.Command {
	var out, format string
	cmd := &cobra.Command{
		Use:   "save [flags] IMAGE...",
		Short: "Write local images to an archive (docker-archive, oci-archive) or an OCI layout directory (oci-dir)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if out == "" {
				return fmt.Errorf("give the output file with -o: %w", errdefs.ErrInvalidArgument)
			}
			s, err := openStore(ctx)
			if err != nil {
				return err
			}
			defer s.close()
			return s.svc.Save(ctx, args, format, out)
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "", "file (or directory for oci-dir) to write")
	cmd.Flags().StringVar(&format, "format", imagesvc.FormatDockerArchive, "docker-archive, oci-archive or oci-dir")
	return cmd
}

func loadCmd() *cobra.Command {
	var in string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [flags]",
		Short: "Load images from a docker-archive or oci-archive file",
		Args:  cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			file := in
			if file == "" {
				// From stdin, through a file: archives are read out of order.
				f, err := os.CreateTemp("", "berth-load-")
				if err != nil {
					return err
				}
				defer os.Remove(f.Name())
				_, err = io.Copy(f, os.Stdin)
				f.Close()
				if err != nil {
					return err
				}
				file = f.Name()
			}
			names, err := s.svc.Load(ctx, file)
			for _, n := range names {
				if !quiet {
					fmt.Println("Loaded image: " + n)
				}
			}
			return err
		}),
	}
	cmd.Flags().StringVarP(&in, "input", "i", "", "archive to read (default: standard input)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing but errors")
	return cmd
}

func systemCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "system", Short: "Check and report on the store"}
	var quick, repair bool
	var format string
	check := &cobra.Command{
		Use:   "check [flags]",
		Short: "Verify the store (blobs, layers, images); --repair removes what is damaged",
		Args:  cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			rep, err := s.svc.Check(ctx, imagesvc.CheckOptions{Quick: quick, Repair: repair})
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(rep)
			}
			for _, p := range rep.Problems {
				state := "damaged"
				if p.Repaired {
					state = "removed"
				}
				fmt.Printf("%s %s: %s (%s)\n", p.Kind, p.ID, p.Detail, state)
			}
			if rep.GC != nil {
				fmt.Printf("Freed %d blobs (%s), %d layers, %d dead leases, %d stale downloads, %d scratch directories\n",
					len(rep.GC.Blobs), humanSize(rep.GC.BlobBytes), len(rep.GC.Snapshots), len(rep.GC.Leases), len(rep.GC.Ingests), len(rep.GC.Scratch))
			}
			unrepaired := 0
			for _, p := range rep.Problems {
				if !p.Repaired {
					unrepaired++
				}
			}
			if unrepaired > 0 {
				return exitError{1, fmt.Errorf("%d problems found; `berth system check --repair` removes what is damaged", unrepaired)}
			}
			fmt.Println("The store is consistent.")
			return nil
		}),
	}
	check.Flags().BoolVarP(&quick, "quick", "q", false, "do not re-hash every blob")
	check.Flags().BoolVarP(&repair, "repair", "r", false, "remove damaged blobs, layers and images, and collect garbage")
	check.Flags().StringVar(&format, "format", "", "json for a machine-readable report")
	df := &cobra.Command{
		Use:   "df",
		Short: "Show the store's disk use",
		Args:  cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			u, err := s.svc.DiskUsage(ctx)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "TYPE\tTOTAL\tNAMES\tSIZE\tRECLAIMABLE")
			fmt.Fprintf(tw, "Images\t%d\t%d\t%s\t%s\n", u.Images, u.Names, humanSize(u.BlobBytes+u.LayerBytes), humanSize(u.Reclaimable))
			fmt.Fprintf(tw, "  blobs\t\t\t%s\t\n", humanSize(u.BlobBytes))
			fmt.Fprintf(tw, "  layers\t\t\t%s\t\n", humanSize(u.LayerBytes))
			return tw.Flush()
		}),
	}
	cmd.AddCommand(check, df, resetCmd())
	return cmd
}

// exitError carries an exit code other than 125.
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}
func (e exitError) ExitCode() int { return e.code }
func (e exitError) Unwrap() error { return e.err }

// mountPoint is where `image mount` puts an image: one place per image ID.
func mountPoint(id string) string { return filepath.Join(g.runroot, "mounts", id) }

func mountCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "mount IMAGE",
		Short: "Mount an image's file system read-only and print where",
		Args:  cobra.ExactArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			img, err := s.svc.LookupOne(ctx, args[0])
			if err != nil {
				return err
			}
			dir := mountPoint(img.Config.Encoded())
			if _, err := s.svc.Mount(ctx, args[0], dir); err != nil {
				return err
			}
			fmt.Println(dir)
			return nil
		}),
	}
}

func unmountCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "unmount IMAGE",
		Aliases: []string{"umount"},
		Short:   "Unmount an image mounted with `image mount`",
		Args:    cobra.ExactArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			img, err := s.svc.LookupOne(ctx, args[0])
			if err != nil {
				return err
			}
			dir := mountPoint(img.Config.Encoded())
			if err := s.svc.Unmount(ctx, dir); err != nil {
				return err
			}
			return os.Remove(dir)
		}),
	}
}
