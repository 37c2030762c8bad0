package main

import (
	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
)

func startCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "start CONTAINER",
		Short: "Run the process of a created container",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return locked(args[0], (*libct.Container).Start)
		},
	}
}
