package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/libct"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

type execFlags struct {
	process, consoleSocket, pidFile, cwd, user, apparmor string
	tty, detach, noNewPrivs, ignorePaused                bool
	env, caps                                            []string
	gids                                                 []int
	preserveFds                                          int
}

func execCmd() *cobra.Command {
	var fl execFlags
	cmd := &cobra.Command{
		Use:   "exec [flags] CONTAINER [COMMAND [ARG...]]",
		Short: "Run another process in a running container",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return fmt.Errorf("exec: expected a container id: %w", errdefs.ErrInvalidArgument)
			}
			if len(args) == 1 && fl.process == "" {
				return fmt.Errorf("exec: give a command or --process: %w", errdefs.ErrInvalidArgument)
			}
			return libct.ValidateID(args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := libct.Load(g.root, args[0])
			if err != nil {
				return err
			}
			spec, err := c.Spec()
			if err != nil {
				return err
			}
			p, err := fl.build(spec, args[1:])
			if err != nil {
				return err
			}
			var sigs chan os.Signal
			if !fl.detach {
				unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
				// Caught from before the process runs, so that none is lost.
				sigs = make(chan os.Signal, 16)
				signal.Notify(sigs, forwarded...)
			}
			pid, err := c.Exec(libct.ExecOpts{Process: p, ConsoleSocket: fl.consoleSocket, PidFile: fl.pidFile,
				PreserveFds: fl.preserveFds, Stdio: stdio()})
			if err != nil {
				return err
			}
			if fl.detach {
				return nil
			}
			return exitError(waitForward(pid, sigs))
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false)
	f.StringVarP(&fl.process, "process", "p", "", "JSON file with the process (the spec's process object)")
	f.BoolVarP(&fl.tty, "tty", "t", false, "allocate a pty (needs --console-socket)")
	f.StringVar(&fl.consoleSocket, "console-socket", "", "unix socket that receives the pty master")
	f.BoolVarP(&fl.detach, "detach", "d", false, "do not wait for the process")
	f.StringVar(&fl.pidFile, "pid-file", "", "write the process's pid to this file")
	f.StringArrayVarP(&fl.env, "env", "e", nil, "set an environment variable (KEY=VALUE)")
	f.StringVar(&fl.cwd, "cwd", "", "working directory")
	f.StringVarP(&fl.user, "user", "u", "", "UID[:GID]")
	f.IntSliceVarP(&fl.gids, "additional-gids", "g", nil, "additional group ids")
	f.StringArrayVarP(&fl.caps, "cap", "c", nil, "add a capability")
	f.BoolVar(&fl.noNewPrivs, "no-new-privs", false, "set no_new_privs")
	f.StringVar(&fl.apparmor, "apparmor", "", "AppArmor profile")
	f.IntVar(&fl.preserveFds, "preserve-fds", 0, "pass this many file descriptors after stdio to the process")
	f.BoolVar(&fl.ignorePaused, "ignore-paused", false, "accepted for runc compatibility")
	f.String("process-label", "", "accepted for runc compatibility (no SELinux)")
	return cmd
}

// build makes the process: --process as given, or the container's own
// process with the command and the flags' changes.
func (fl *execFlags) build(spec *specs.Spec, args []string) (*specs.Process, error) {
	var p specs.Process
	if fl.process != "" {
		data, err := os.ReadFile(fl.process)
		if err != nil {
			return nil, fmt.Errorf("--process: %w", err)
		}
		if err := json.Unmarshal(data, &p); err != nil {
			return nil, fmt.Errorf("--process %s: malformed JSON: %v: %w", fl.process, err, errdefs.ErrInvalidArgument)
		}
	} else {
		if spec.Process != nil {
			p = *spec.Process
			if p.Capabilities != nil {
				caps := *p.Capabilities
				p.Capabilities = &caps
			}
		}
		p.Args = args
		p.Terminal = fl.tty
		p.Env = append(append([]string(nil), p.Env...), fl.env...)
		if fl.cwd != "" {
			p.Cwd = fl.cwd
		}
		if p.Cwd == "" {
			p.Cwd = "/"
		}
		if fl.user != "" {
			u, gs, _ := strings.Cut(fl.user, ":")
			uid, err := strconv.ParseUint(u, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("--user %q: must be UID[:GID]: %w", fl.user, errdefs.ErrInvalidArgument)
			}
			p.User.UID = uint32(uid)
			if gs != "" {
				gid, err := strconv.ParseUint(gs, 10, 32)
				if err != nil {
					return nil, fmt.Errorf("--user %q: must be UID[:GID]: %w", fl.user, errdefs.ErrInvalidArgument)
				}
				p.User.GID = uint32(gid)
			}
		}
		for _, g := range fl.gids {
			p.User.AdditionalGids = append(p.User.AdditionalGids, uint32(g))
		}
		if len(fl.caps) > 0 {
			if p.Capabilities == nil {
				p.Capabilities = &specs.LinuxCapabilities{}
			}
			c := p.Capabilities
			c.Bounding = append(c.Bounding, fl.caps...)
			c.Effective = append(c.Effective, fl.caps...)
			c.Permitted = append(c.Permitted, fl.caps...)
			// Ambient needs inheritable, which runc no longer grants
			// (CVE-2022-29162): only caps already inheritable go ambient.
			for _, cp := range fl.caps {
				for _, in := range c.Inheritable {
					if in == cp {
						c.Ambient = append(c.Ambient, cp)
					}
				}
			}
		}
		if fl.noNewPrivs {
			p.NoNewPrivileges = true
		}
		if fl.apparmor != "" {
			p.ApparmorProfile = fl.apparmor
		}
	}
	return &p, nil
}
