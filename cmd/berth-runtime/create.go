package main

import (
	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
)

type createFlags struct {
	bundle, pidFile, consoleSocket string
	noPivot, noNewKeyring          bool
	preserveFds                    int
}

func (c *createFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVarP(&c.bundle, "bundle", "b", ".", "the bundle directory (config.json and rootfs)")
	f.StringVar(&c.pidFile, "pid-file", "", "write the container's pid to this file")
	f.StringVar(&c.consoleSocket, "console-socket", "", "unix socket that receives the pty master when process.terminal is set")
	f.BoolVar(&c.noPivot, "no-pivot", false, "do not use pivot_root (for a rootfs on a ramdisk)")
	f.BoolVar(&c.noNewKeyring, "no-new-keyring", false, "accepted for runc compatibility (no keyring is created)")
	f.IntVar(&c.preserveFds, "preserve-fds", 0, "pass this many file descriptors after stdio (3..) to the process")
}

func (c *createFlags) opts() libct.CreateOpts {
	return libct.CreateOpts{Bundle: c.bundle, PidFile: c.pidFile, ConsoleSocket: c.consoleSocket,
		NoPivot: c.noPivot, PreserveFds: c.preserveFds, Stdio: stdio()}
}

func createCmd() *cobra.Command {
	var fl createFlags
	cmd := &cobra.Command{
		Use:   "create [flags] CONTAINER",
		Short: "Create a container; `start` runs its process",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			_, err := libct.Create(g.root, args[0], fl.opts())
			return err
		},
	}
	fl.add(cmd)
	return cmd
}
