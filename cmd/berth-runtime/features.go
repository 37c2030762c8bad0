package main

import (
	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
)

func featuresCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "features",
		Short: "Print what this runtime supports (JSON, per the OCI runtime spec)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return printJSON(libct.Features())
		},
	}
}
