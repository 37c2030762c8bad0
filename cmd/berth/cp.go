package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/spf13/cobra"
)

func cpCmd() *cobra.Command {
	var o engine.CopyOptions
	cmd := &cobra.Command{
		Use:   "cp [flags] CONTAINER:SRC DEST|-  or  cp [flags] SRC|- CONTAINER:DEST",
		Short: "Copy files and directories between a container and the host",
		Long: "Copy files and directories between a container (running or not) and the host,\n" +
			"by docker cp's rules: a file goes into an existing directory or to the name given;\n" +
			"a directory is created at a new name, or goes into an existing one (SRC/. copies\n" +
			"what it holds); - is a tar stream on standard input or output. Paths in the container\n" +
			"are from its root, and its symbolic links resolve inside it. A stopped container's\n" +
			"bind mounts are reached through their sources; its tmpfs mounts only while it runs.",
		Args: cobra.ExactArgs(2),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			srcCtr, srcPath, srcIn := splitCpArg(args[0])
			dstCtr, dstPath, dstIn := splitCpArg(args[1])
			switch {
			case srcIn && dstIn:
				return fmt.Errorf("cp %s %s: copying between two containers is not supported: copy through the host: %w", args[0], args[1], errdefs.ErrNotImplemented)
			case !srcIn && !dstIn:
				return fmt.Errorf("cp %s %s: one of SRC and DEST must be CONTAINER:PATH (a host path with a colon: ./name:x): %w", args[0], args[1], errdefs.ErrInvalidArgument)
			case srcIn && srcPath == "", dstIn && dstPath == "":
				return fmt.Errorf("cp %s %s: give a path after CONTAINER: (/ for its root): %w", args[0], args[1], errdefs.ErrInvalidArgument)
			case srcIn:
				c, err := s.meta.GetContainer(ctx, srcCtr)
				if err != nil {
					return err
				}
				return s.eng.CopyFromContainer(ctx, c, srcPath, args[1], os.Stdout, o)
			default:
				c, err := s.meta.GetContainer(ctx, dstCtr)
				if err != nil {
					return err
				}
				return s.eng.CopyToContainer(ctx, c, args[0], os.Stdin, dstPath, o)
			}
		}),
	}
	cmd.Flags().BoolVarP(&o.Archive, "archive", "a", false, "keep the files' owners (UID and GID)")
	cmd.Flags().BoolVarP(&o.FollowLink, "follow-link", "L", false, "copy what a symbolic link SRC points to")
	return cmd
}

// splitCpArg is docker's rule: a colon before any slash makes
// CONTAINER:PATH; "-", and paths starting with / or ., are the host's.
func splitCpArg(a string) (ctr, path string, inContainer bool) {
	if a == "-" || strings.HasPrefix(a, "/") || strings.HasPrefix(a, ".") {
		return "", a, false
	}
	i, j := strings.IndexByte(a, ':'), strings.IndexByte(a, '/')
	if i <= 0 || j >= 0 && j < i {
		return "", a, false
	}
	return a[:i], a[i+1:], true
}
