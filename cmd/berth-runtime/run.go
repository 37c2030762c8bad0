package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

func runCmd() *cobra.Command {
	var fl createFlags
	var detach bool
	cmd := &cobra.Command{
		Use:   "run [flags] CONTAINER",
		Short: "Create and start a container; without --detach wait for it and remove it",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !detach {
				// init is our grandchild when it has a pid namespace:
				// as subreaper we can wait for it.
				unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
			}
			c, err := libct.Create(g.root, args[0], fl.opts())
			if err != nil {
				return err
			}
			// Caught from before the process runs, so that none is lost.
			var sigs chan os.Signal
			if !detach {
				sigs = make(chan os.Signal, 16)
				signal.Notify(sigs, forwarded...)
			}
			if err := c.Start(); err != nil {
				c.Delete(true)
				return err
			}
			if detach {
				return nil
			}
			code := waitForward(c.Pid, sigs)
			if c2, l, err := libct.LockAndLoad(g.root, args[0]); err == nil {
				c2.Delete(true)
				l.Unlock()
			}
			return exitError(code)
		},
	}
	fl.add(cmd)
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "do not wait for the container")
	return cmd
}

// forwarded are the signals a foreground run or exec passes on.
var forwarded = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT, syscall.SIGTSTP,
	syscall.SIGTTIN, syscall.SIGTTOU, syscall.SIGALRM}

// waitForward waits for pid, passing on the signals that ch (nil: from now
// on) receives, and returns its exit code the way a shell reports it.
func waitForward(pid int, ch chan os.Signal) int {
	if ch == nil {
		ch = make(chan os.Signal, 16)
		signal.Notify(ch, forwarded...)
	}
	go func() {
		for s := range ch {
			unix.Kill(pid, s.(syscall.Signal))
		}
	}()
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 255
		}
		break
	}
	signal.Stop(ch)
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}
