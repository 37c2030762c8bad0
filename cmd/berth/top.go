package main

import (
	"context"
	"os"

	"github.com/spf13/cobra"
)

func topCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top CONTAINER [DESCRIPTORS | PS-OPTIONS]",
		Short: "Show a running container's processes (host PIDs)",
		Long: "Show a running container's processes through the host's ps: by default\n" +
			"USER PID PPID %CPU ELAPSED TTY TIME COMMAND. Arguments are podman's descriptors\n" +
			"(args, comm, etime, group, nice, pcpu, pgid, pid, ppid, rgroup, ruser, rss, state,\n" +
			"stime, time, tty, user, vsz, or AIX codes such as %C %p), or else ps(1) options\n" +
			"whose output is cut down to the container's processes, as docker's top does.",
		Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			c, err := s.meta.GetContainer(ctx, args[0])
			if err != nil {
				return err
			}
			out, err := s.eng.Top(ctx, c, args[1:])
			if err != nil {
				return err
			}
			_, err = os.Stdout.Write(out)
			return err
		}),
	}
	// What follows the container is ps's, "-ef" included.
	cmd.Flags().SetInterspersed(false)
	return cmd
}
