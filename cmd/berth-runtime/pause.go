package main

import (
	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
)

func pauseCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pause CONTAINER",
		Short: "Freeze every process of the container",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return locked(args[0], (*libct.Container).Pause)
		},
	}
}

func resumeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "resume CONTAINER",
		Short: "Thaw a paused container",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return locked(args[0], (*libct.Container).Resume)
		},
	}
}
