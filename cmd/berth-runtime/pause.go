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
			c, l, err := libct.LockAndLoad(g.root, args[0])
			if err != nil {
				return err
			}
			defer l.Unlock()
			return c.Pause()
		},
	}
}

func resumeCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "resume CONTAINER",
		Short: "Thaw a paused container",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, l, err := libct.LockAndLoad(g.root, args[0])
			if err != nil {
				return err
			}
			defer l.Unlock()
			return c.Resume()
		},
	}
}
