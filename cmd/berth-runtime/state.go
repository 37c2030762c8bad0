package main

import (
	"encoding/json"
	"os"

	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
)

func stateCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "state CONTAINER",
		Short: "Print the container's state (JSON, per the OCI runtime spec)",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := libct.Load(g.root, args[0])
			if err != nil {
				return err
			}
			return printJSON(c.State())
		},
	}
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
