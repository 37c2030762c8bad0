package libct

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/berthdev/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ExecOpts are the exec command's options.
type ExecOpts struct {
	Process       *specs.Process
	ConsoleSocket string
	PidFile       string
	PreserveFds   int
	Stdio         [3]*os.File
}

// Exec starts another process in the running container and returns its pid;
// the caller waits for it (it is our child, or our grandchild with us as
// subreaper).
func (c *Container) Exec(o ExecOpts) (int, error) {
	if st := c.Status(); st != Running {
		return 0, wrongState(c, st, Running)
	}
	p := o.Process
	if err := validateProcess(p, "process"); err != nil {
		return 0, err
	}
	if p.Terminal && o.ConsoleSocket == "" {
		return 0, fmt.Errorf("--tty needs --console-socket: %w", errdefs.ErrInvalidArgument)
	}
	spec, err := c.Spec()
	if err != nil {
		return 0, err
	}
	so := &spawnOpts{preserve: o.PreserveFds, stdio: o.Stdio, dir: "/"}
	cfg := &initConfig{Mode: "exec", ID: c.ID, Spec: spec, Process: p, PreserveFds: o.PreserveFds,
		ConsoleFd: -1, ListenerFd: -1, UserNS: hasNS(spec.Linux, specs.UserNamespace)}
	if cfg.Seccomp, err = compileSeccomp(filepath.Dir(c.dir), spec.Linux); err != nil {
		return 0, err
	}
	if o.ConsoleSocket != "" {
		f, err := dialUnix(o.ConsoleSocket)
		if err != nil {
			return 0, fmt.Errorf("--console-socket %s: %w", o.ConsoleSocket, err)
		}
		defer f.Close()
		cfg.ConsoleFd = so.fileFd(len(so.files))
		so.files = append(so.files, f)
	}
	if s := spec.Linux.Seccomp; s != nil && s.ListenerPath != "" {
		f, err := dialUnix(s.ListenerPath)
		if err != nil {
			return 0, fmt.Errorf("linux.seccomp.listenerPath %s: %w", s.ListenerPath, err)
		}
		defer f.Close()
		cfg.ListenerFd = so.fileFd(len(so.files))
		so.files = append(so.files, f)
	}
	// Join every namespace of the container that is not already ours.
	for _, ns := range spec.Linux.Namespaces {
		name := map[specs.LinuxNamespaceType]string{specs.PIDNamespace: "pid", specs.NetworkNamespace: "net",
			specs.MountNamespace: "mnt", specs.IPCNamespace: "ipc", specs.UTSNamespace: "uts",
			specs.UserNamespace: "user", specs.CgroupNamespace: "cgroup", specs.TimeNamespace: "time"}[ns.Type]
		path := "/proc/" + strconv.Itoa(c.Pid) + "/ns/" + name
		if sameNS(path, "/proc/self/ns/"+name) {
			continue
		}
		so.joins = append(so.joins, nsJoin{nsTypes[ns.Type], path})
	}
	so.cgroup = c.cgroups()
	proc, err := spawn(so)
	if proc != nil {
		defer proc.close()
	}
	if err != nil {
		if proc != nil {
			proc.kill()
		}
		return 0, err
	}
	cfg.State = c.State()
	cfg.State.Pid = proc.pid
	if err := proc.send(cfg); err != nil {
		proc.kill()
		return 0, err
	}
	if err := proc.waitExec(); err != nil {
		proc.kill()
		return 0, err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, proc.pid); err != nil {
			return proc.pid, err
		}
	}
	return proc.pid, nil
}

func sameNS(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}
