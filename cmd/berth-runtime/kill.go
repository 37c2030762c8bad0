package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func killCmd() *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "kill [flags] CONTAINER [SIGNAL]",
		Short: "Send a signal (default SIGTERM) to the container's init",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("kill: expected CONTAINER [SIGNAL]: %w", errdefs.ErrInvalidArgument)
			}
			return libct.ValidateID(args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			sig := unix.SIGTERM
			if len(args) == 2 {
				var err error
				if sig, err = parseSignal(args[1]); err != nil {
					return err
				}
			}
			return locked(args[0], func(c *libct.Container) error { return c.Signal(sig, all) })
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "send the signal to every process of the container")
	return cmd
}

// parseSignal takes "9", "KILL" or "SIGKILL" (any case).
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %q: out of range: %w", s, errdefs.ErrInvalidArgument)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("signal %q: unknown signal: %w", s, errdefs.ErrInvalidArgument)
	}
	return sig, nil
}
