package main

import (
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
)

func deleteCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "delete [flags] CONTAINER",
		Aliases: []string{"rm"},
		Short:   "Remove a stopped container and its resources",
		Args:    oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			err := locked(args[0], func(c *libct.Container) error { return c.Delete(force) })
			// runc: --force on a container that is gone is not an error.
			if force && errdefs.IsNotFound(err) {
				return nil
			}
			return err
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill the container first if it runs")
	return cmd
}
