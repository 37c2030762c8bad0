package libct

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"

	"github.com/berthdev/berth/internal/libct/seccomp"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/userns"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// initConfig is what the runtime sends init once its namespaces exist.
type initConfig struct {
	Mode        string         `json:"mode"` // "create" or "exec"
	ID          string         `json:"id"`
	Bundle      string         `json:"bundle"`
	Rootfs      string         `json:"rootfs"`
	Spec        *specs.Spec    `json:"spec"`
	Process     *specs.Process `json:"process"`
	NoPivot     bool           `json:"no_pivot,omitempty"`
	PreserveFds int            `json:"preserve_fds"`
	ConsoleFd   int            `json:"console_fd"` // -1: none
	// FifoFd is the exec fifo, opened O_PATH by the runtime (create only):
	// an init in a user namespace may not reach it through the runtime's
	// state directory.
	FifoFd        int               `json:"fifo_fd,omitempty"`
	ListenerFd    int               `json:"listener_fd"` // -1: no seccomp agent
	State         *specs.State      `json:"state"`
	NewMountNS    bool              `json:"new_mount_ns"`
	UserNS        bool              `json:"userns"`
	CgroupPaths   map[string]string `json:"cgroup_paths,omitempty"`
	CgroupMounts  []cgroupMount     `json:"cgroup_mounts,omitempty"`
	CgroupUnified bool              `json:"cgroup_unified,omitempty"`
	// RuntimeHooks: prestart or createRuntime hooks exist, and init
	// must stop for the runtime to run them.
	RuntimeHooks bool `json:"runtime_hooks,omitempty"`
	// A cloned init (spawnOpts.clone) joins its v1 cgroups and makes its
	// cgroup namespace itself, from the thread that will exec.
	CgroupTasks []string `json:"cgroup_tasks,omitempty"`
	CgroupNS    bool     `json:"cgroup_ns,omitempty"`
	// Seccomp is linux.seccomp compiled by the runtime (from its cache).
	Seccomp *seccomp.Program `json:"seccomp,omitempty"`
}

// cgroupMount is one host hierarchy as the container's cgroup mount shows it.
type cgroupMount struct {
	Dir     string   `json:"dir"`     // name under the mount: "cpu,cpuacct", "unified"
	Path    string   `json:"path"`    // the container's cgroup in it on the host
	Options string   `json:"options"` // cgroup v1 mount options: "cpu,cpuacct", "name=systemd"
	Links   []string `json:"links,omitempty"`
}

type syncMsg struct {
	Type  string `json:"type"` // hooks, hooks-done, ready, error
	Error string `json:"error,omitempty"`
}

// Init is the entry point of `berth-runtime init`: the re-executed binary,
// already in its namespaces (see nsenter.c). It never returns.
func Init() {
	runtime.LockOSThread()
	env := os.Getenv("_BERTH_INIT")
	if env == "" {
		env = os.Getenv("_BERTH_SYNC")
	}
	fd, err := strconv.Atoi(env)
	if err != nil {
		fmt.Fprintln(os.Stderr, "berth-runtime init: run by berth-runtime only")
		os.Exit(2)
	}
	os.Unsetenv("_BERTH_INIT")
	os.Unsetenv("_BERTH_SYNC")
	sock := os.NewFile(uintptr(fd), "sync")
	dec := json.NewDecoder(bufio.NewReader(sock))
	enc := json.NewEncoder(sock)
	var cfg initConfig
	if err := dec.Decode(&cfg); err != nil {
		os.Exit(1)
	}
	if cfg.Mode == "exec" {
		err = initExec(&cfg, enc)
	} else {
		err = initCreate(&cfg, dec, enc)
	}
	if execFifo != nil {
		execFifo.Write([]byte(err.Error()))
	}
	if readySent || enc.Encode(syncMsg{Type: "error", Error: err.Error()}) != nil {
		// Nobody waits on the sync socket any more: the container's
		// stderr is where the error can still be seen.
		fmt.Fprintf(os.Stderr, "berth-runtime init: %v\n", err)
	}
	os.Exit(1)
}

// readySent is set once create has returned: errors then go to stderr.
var readySent bool

// execFifo is the write end of the exec fifo once `start` has opened it.
var execFifo *os.File

func fdFile(fd int, name string) *os.File {
	if fd < 0 {
		return nil
	}
	return os.NewFile(uintptr(fd), name)
}

func initExec(cfg *initConfig, enc *json.Encoder) error {
	p := cfg.Process
	if !cfg.UserNS {
		// No process of the container may ptrace us or open our
		// /proc files before exec (CVE-2016-9962).
		unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	}
	seccompListener = fdFile(cfg.ListenerFd, "seccomp-agent")
	seccompState = cfg.State
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	setOOMScoreAdj(p.OOMScoreAdj, enc)
	if p.Terminal {
		if err := setupConsole(fdFile(cfg.ConsoleFd, "console"), p.ConsoleSize, false); err != nil {
			return err
		}
	}
	return finishProcess(p, cfg.Spec.Linux, cfg.PreserveFds, cfg.Seccomp)
}

func initCreate(cfg *initConfig, dec *json.Decoder, enc *json.Encoder) error {
	s := cfg.Spec
	p := s.Process
	if !cfg.UserNS {
		unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	}
	seccompListener = fdFile(cfg.ListenerFd, "seccomp-agent")
	seccompState = cfg.State
	if err := joinCgroups(cfg); err != nil {
		return err
	}
	// Reopened for writing through /proc/self/fd after pivot_root.
	fifoPath := fdFile(cfg.FifoFd, "exec fifo")
	// A runtime that is itself in a user namespace (rootless berth) cannot
	// mknod either.
	r := &rootfs{path: cfg.Rootfs, cfg: cfg, userns: cfg.UserNS || userns.RunningInUserNS()}
	if cfg.NewMountNS {
		if err := r.prepare(); err != nil {
			return err
		}
	}
	if err := r.open(); err != nil {
		return err
	}
	if err := r.mountAll(); err != nil {
		return err
	}
	if err := r.createDevices(); err != nil {
		return err
	}
	if err := r.devSymlinks(); err != nil {
		return err
	}
	if p != nil {
		// A missing working directory is created, as runc does.
		d, err := pathrs.MkdirAllHandle(r.root, p.Cwd, 0o755)
		if err != nil {
			return fmt.Errorf("process.cwd %s: %w", p.Cwd, err)
		}
		d.Close()
	}
	r.root.Close()
	if err := writeSysctls(s.Linux.Sysctl); err != nil {
		return err
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return fmt.Errorf("hostname: %w", err)
		}
	}
	if s.Domainname != "" {
		if err := unix.Setdomainname([]byte(s.Domainname)); err != nil {
			return fmt.Errorf("domainname: %w", err)
		}
	}
	// prestart and createRuntime hooks run in the runtime, now.
	if cfg.RuntimeHooks {
		if err := enc.Encode(syncMsg{Type: "hooks"}); err != nil {
			return err
		}
		var m syncMsg
		if err := dec.Decode(&m); err != nil || m.Type != "hooks-done" {
			return fmt.Errorf("runtime went away during hooks")
		}
	}
	if s.Hooks != nil {
		if err := runHooks("createContainer", s.Hooks.CreateContainer, cfg.State); err != nil {
			return err
		}
	}
	var err error
	switch {
	case !cfg.NewMountNS:
		err = unix.Chroot(cfg.Rootfs)
		if err == nil {
			err = unix.Chdir("/")
		}
	case cfg.NoPivot:
		err = moveRoot(cfg.Rootfs)
	default:
		err = pivot(cfg.Rootfs)
	}
	if err != nil {
		return fmt.Errorf("enter rootfs %s: %w", cfg.Rootfs, err)
	}
	if prop := s.Linux.RootfsPropagation; prop != "" && cfg.NewMountNS {
		if err := unix.Mount("", "/", "", propagationFlag(prop), ""); err != nil {
			return fmt.Errorf("linux.rootfsPropagation %s: %w", prop, err)
		}
	}
	if err := maskPaths(s.Linux.MaskedPaths); err != nil {
		return err
	}
	if err := readonlyPaths(s.Linux.ReadonlyPaths); err != nil {
		return err
	}
	if p != nil {
		setOOMScoreAdj(p.OOMScoreAdj, enc)
		if p.Terminal {
			if err := setupConsole(fdFile(cfg.ConsoleFd, "console"), p.ConsoleSize, true); err != nil {
				return err
			}
		}
		if _, err := lookPath(p.Args[0], p.Env); err != nil {
			return err
		}
	}
	if s.Root.Readonly {
		if err := readonlyRoot(); err != nil {
			return fmt.Errorf("root.readonly: %w", err)
		}
	}
	if err := enc.Encode(syncMsg{Type: "ready"}); err != nil {
		return err
	}
	readySent = true
	// Wait for `start`: it opens the fifo for reading.
	fifo, err := os.OpenFile(procFd(fifoPath), os.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open exec fifo: %w", err)
	}
	if _, err := fifo.Write([]byte{0}); err != nil {
		return fmt.Errorf("write exec fifo: %w", err)
	}
	// Kept open: exec closes it (close-on-exec), which tells `start` the
	// process runs; an error before that is written to it for `start`.
	execFifo = fifo
	if p == nil {
		return fmt.Errorf("process: missing, nothing to start")
	}
	if s.Hooks != nil {
		st := *cfg.State
		st.Status = Created // the process is not exec'd yet
		if err := runHooks("startContainer", s.Hooks.StartContainer, &st); err != nil {
			return err
		}
	}
	return finishProcess(p, s.Linux, cfg.PreserveFds, cfg.Seccomp)
}

// joinCgroups puts a cloned init's exec thread in its v1 cgroups (see
// cgroups.JoinPoints: "0" in "tasks" moves the calling thread only, and
// the thread that execs is all the container's process keeps) and then
// makes the cgroup namespace, rooted there.
func joinCgroups(cfg *initConfig) error {
	for _, t := range cfg.CgroupTasks {
		if err := os.WriteFile(t, []byte("0"), 0); err != nil {
			return fmt.Errorf("join cgroup %s: %w", t, err)
		}
	}
	if cfg.CgroupNS {
		if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			return fmt.Errorf("cgroup namespace: %w", err)
		}
	}
	return nil
}
