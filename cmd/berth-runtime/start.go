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
			c, l, err := libct.LockAndLoad(g.root, args[0])
			if err != nil {
				return err
			}
			defer l.Unlock()
			return c.Start()
		},
	}
}
