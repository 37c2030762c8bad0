package libct

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
	"github.com/berthdev/berth/internal/libct/cgroups"
	"github.com/berthdev/berth/internal/procfs"
	"github.com/moby/sys/userns"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CreateOpts are the create command's options.
type CreateOpts struct {
	Bundle        string
	PidFile       string
	ConsoleSocket string
	NoPivot       bool
	PreserveFds   int
	Stdio         [3]*os.File
}

// undo is a cleanup stack: a failed create leaves nothing behind.
type undo []func()

func (u *undo) add(f func()) { *u = append(*u, f) }
func (u undo) run() {
	for i := len(u) - 1; i >= 0; i-- {
		u[i]()
	}
}

// Create sets a container up to the point where only `start` is missing.
func Create(root, id string, o CreateOpts) (_ *Container, retErr error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return nil, err
	}
	spec, err := LoadSpec(bundle)
	if err != nil {
		return nil, err
	}
	slog.Debug("create: config loaded", "id", id)
	if spec.Process != nil && spec.Process.Terminal && o.ConsoleSocket == "" {
		return nil, fmt.Errorf("process.terminal is set: --console-socket is required: %w", errdefs.ErrInvalidArgument)
	}
	var cleanup undo
	defer func() {
		if retErr != nil {
			cleanup.run()
		}
	}()
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("state root %s: %w", root, err)
	}
	dir := Dir(root, id)
	if err := os.Mkdir(dir, 0o711); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrAlreadyExists)
		}
		return nil, err
	}
	cleanup.add(func() { os.RemoveAll(dir) })
	lock, err := fsutil.LockPath(dir)
	if err != nil {
		return nil, err
	}
	defer lock.Unlock()

	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	cg, err := cgroups.New(spec.Linux.CgroupsPath, id)
	if err != nil {
		return nil, fmt.Errorf("linux.cgroupsPath: %w", err)
	}
	if cg, err = rootlessCgroup(cg, spec.Linux.Resources); err != nil {
		return nil, err
	}
	if cg != nil {
		cleanup.add(func() { cg.Destroy() })
	}

	so := &spawnOpts{preserve: o.PreserveFds, stdio: o.Stdio, dir: bundle, cgroup: cg}
	cfg := &initConfig{Mode: "create", ID: id, Bundle: bundle, Rootfs: rootfs, Spec: initSpec(spec),
		NoPivot: o.NoPivot, PreserveFds: o.PreserveFds, ConsoleFd: -1, ListenerFd: -1,
		NewMountNS: hasNS(spec.Linux, specs.MountNamespace) && nsPath(spec.Linux, specs.MountNamespace) == "",
		UserNS:     hasNS(spec.Linux, specs.UserNamespace)}
	if cfg.Seccomp, err = compileSeccomp(root, spec.Linux); err != nil {
		return nil, err
	}
	// Writable by init whatever its uid in a user namespace; the umask
	// must not take that away.
	fifoPath := filepath.Join(dir, fifoName)
	if err := unix.Mkfifo(fifoPath, 0o622); err != nil {
		return nil, fmt.Errorf("exec fifo: %w", err)
	}
	if err := os.Chmod(fifoPath, 0o622); err != nil {
		return nil, err
	}
	fifo, err := os.OpenFile(fifoPath, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("exec fifo: %w", err)
	}
	defer fifo.Close()
	cfg.FifoFd = so.fileFd(len(so.files))
	so.files = append(so.files, fifo)
	if o.ConsoleSocket != "" {
		f, err := dialUnix(o.ConsoleSocket)
		if err != nil {
			return nil, fmt.Errorf("--console-socket %s: %w", o.ConsoleSocket, err)
		}
		defer f.Close()
		cfg.ConsoleFd = so.fileFd(len(so.files))
		so.files = append(so.files, f)
	}
	if s := spec.Linux.Seccomp; s != nil && s.ListenerPath != "" {
		f, err := dialUnix(s.ListenerPath)
		if err != nil {
			return nil, fmt.Errorf("linux.seccomp.listenerPath %s: %w", s.ListenerPath, err)
		}
		defer f.Close()
		cfg.ListenerFd = so.fileFd(len(so.files))
		so.files = append(so.files, f)
	}
	for _, ns := range spec.Linux.Namespaces {
		flag := nsTypes[ns.Type]
		if ns.Path != "" {
			so.joins = append(so.joins, nsJoin{flag, ns.Path})
		} else {
			so.cloneFlags |= uintptr(flag)
		}
	}
	so.uidMaps, so.gidMaps = spec.Linux.UIDMappings, spec.Linux.GIDMappings
	so.timeOffsets = spec.Linux.TimeOffsets
	so.clone = canClone(so)

	// A cloned init starts now, and its exec and Go start-up overlap
	// with the rest of the set-up below; only the cgroup2 cgroup it is
	// cloned into must exist first. Through nsenter.c, init joins the v1
	// cgroups before anything else, so they come first.
	var tasks []string
	var v2 string
	if cg != nil {
		tasks, v2 = cg.JoinPoints()
	}
	pureV2 := v2 != "" && len(tasks) == 0
	apply := func() error {
		if cg == nil {
			return nil
		}
		return cg.Apply(-1)
	}
	var p *initProc
	startInit := func() error {
		slog.Debug("create: spawning init", "id", id, "clone", so.clone)
		var err error
		p, err = spawn(so)
		if p != nil {
			cleanup.add(p.kill)
		}
		return err
	}
	if so.clone {
		if pureV2 {
			err = apply()
		} else if v2 != "" {
			err = os.MkdirAll(v2, 0o755)
		}
		if err == nil {
			err = startInit()
		}
		if err == nil && !pureV2 {
			err = apply()
		}
	} else {
		if err = apply(); err == nil {
			err = startInit()
		}
	}
	if p != nil {
		defer p.close()
	}
	if err != nil {
		return nil, err
	}

	c, err := newContainer(id, dir, spec)
	if err != nil {
		return nil, err
	}
	c.Bundle, c.Rootfs, c.Created = bundle, rootfs, time.Now().UTC()
	if os.Geteuid() != 0 {
		c.Owner = strconv.Itoa(os.Geteuid())
	} else {
		c.Owner = "root"
	}
	if so.clone {
		cfg.CgroupTasks = tasks
		cfg.CgroupNS = so.cloneFlags&unix.CLONE_NEWCGROUP != 0
	}
	slog.Debug("create: init in its namespaces", "id", id, "pid", p.pid)
	if cg != nil {
		if err := cg.Set(resourcesWithDevices(spec.Linux)); err != nil {
			return nil, fmt.Errorf("linux.resources: %w", err)
		}
		c.CgroupPaths = cg.Paths()
	}
	c.Pid = p.pid
	st, err := procfs.ReadStat(p.pid)
	if err != nil {
		return nil, fmt.Errorf("container init exited: %w", err)
	}
	c.PidStart = st.StartTime()
	cfg.CgroupPaths = c.CgroupPaths
	cfg.CgroupUnified, cfg.CgroupMounts = cgroupMounts(c.CgroupPaths)
	cfg.State = &specs.State{Version: specs.Version, ID: id, Status: Creating, Pid: p.pid, Bundle: bundle, Annotations: spec.Annotations}
	if h := spec.Hooks; h != nil {
		cfg.RuntimeHooks = len(h.Prestart) > 0 || len(h.CreateRuntime) > 0
	}
	if err := p.send(cfg); err != nil {
		return nil, err
	}
	// Recorded while init sets up, off the critical path; until `ready`
	// the lock keeps every other command out, and a failure removes it all.
	if err := c.save(); err != nil {
		return nil, err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, c.Pid); err != nil {
			return nil, err
		}
	}
	if h := spec.Hooks; h != nil && (len(h.Prestart) > 0 || len(h.CreateRuntime) > 0) {
		if err := p.recv("hooks"); err != nil {
			return nil, err
		}
		slog.Debug("create: rootfs mounted", "id", id)
		// runtime-tools checks "created" for prestart (crun passes it so).
		pre := *cfg.State
		pre.Status = Created
		if err := runHooks("prestart", h.Prestart, &pre); err != nil {
			return nil, err
		}
		if err := runHooks("createRuntime", h.CreateRuntime, cfg.State); err != nil {
			return nil, err
		}
		if err := p.enc.Encode(syncMsg{Type: "hooks-done"}); err != nil {
			return nil, err
		}
	}
	if err := p.recv("ready"); err != nil {
		return nil, err
	}
	slog.Debug("create: init ready", "id", id)
	return c, nil
}

// initSpec is the part of the spec init acts on: a fresh process decodes
// every type it receives for the first time, and resources, annotations
// and the runtime's hooks are not init's business.
func initSpec(s *specs.Spec) *specs.Spec {
	c := *s
	c.Annotations = nil
	l := *s.Linux
	l.Resources = nil
	c.Linux = &l
	if s.Hooks != nil {
		c.Hooks = &specs.Hooks{CreateContainer: s.Hooks.CreateContainer, StartContainer: s.Hooks.StartContainer}
	}
	return &c
}

func dialUnix(path string) (*os.File, error) {
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.File()
}

func writePidFile(path string, pid int) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	return fsutil.ReplaceFile(abs, []byte(strconv.Itoa(pid)), 0o644)
}

// resourcesWithDevices adds to the configured device rules those every
// container needs: the default devices and the ones the spec creates.
func resourcesWithDevices(l *specs.Linux) *specs.LinuxResources {
	r := &specs.LinuxResources{}
	if l.Resources != nil {
		cp := *l.Resources
		r = &cp
	}
	// Like runc: the configured rules, the defaults, then what linux.devices creates.
	rules := append([]specs.LinuxDeviceCgroup(nil), r.Devices...)
	rules = append(rules, cgroups.DefaultAllowedDevices()...)
	{
		for _, d := range l.Devices {
			maj, min := d.Major, d.Minor
			t := d.Type
			if t == "u" {
				t = "c"
			}
			if t == "p" {
				continue
			}
			rules = append(rules, specs.LinuxDeviceCgroup{Allow: true, Type: t, Major: &maj, Minor: &min, Access: "rwm"})
		}
	}
	r.Devices = rules
	return r
}

// cgroupMounts describes the host hierarchies for the container's cgroup
// mount, from the paths of its cgroups.
func cgroupMounts(paths map[string]string) (unified bool, out []cgroupMount) {
	const base = "/sys/fs/cgroup/"
	if _, ok := paths[cgroups.UnifiedKey]; ok && len(paths) == 1 {
		return true, nil
	}
	seen := map[string]bool{}
	for ctrl, p := range paths {
		rel := strings.TrimPrefix(p, base)
		if rel == p {
			continue
		}
		dir, _, _ := strings.Cut(rel, "/")
		if seen[dir] {
			continue
		}
		seen[dir] = true
		m := cgroupMount{Dir: dir, Path: p, Options: dir}
		if strings.HasPrefix(ctrl, "name=") {
			m.Options = ctrl
		}
		if strings.Contains(dir, ",") {
			m.Links = strings.Split(dir, ",")
		}
		out = append(out, m)
	}
	return false, out
}

// rootlessCgroup is cg for a privileged runtime. An unprivileged one (run
// by a user, or in a user namespace) keeps the hierarchies delegated to its
// user (cgroups.Own), or none: a container then runs without them, as with
// runc's rootless mode, unless the spec asks for a limit one of them would
// hold, which is refused naming what is missing (never silently dropped).
func rootlessCgroup(cg *cgroups.Manager, r *specs.LinuxResources) (*cgroups.Manager, error) {
	if !userns.RunningInUserNS() && os.Geteuid() == 0 {
		return cg, nil
	}
	own, err := cg.Own()
	if err != nil {
		return nil, err
	}
	for _, l := range requestedLimits(r) {
		if own == nil || own.Path(l[1]) == "" {
			if own != nil {
				own.Destroy()
			}
			return nil, fmt.Errorf("linux.resources.%s: this user has no %s cgroup delegated to it (%s): have its parent delegated (chown on cgroup v1, systemd-run --user --scope -p Delegate=yes on v2) or drop the limit: %w",
				l[0], l[1], cmp.Or(cg.Path(l[1]), "not mounted"), errdefs.ErrFailedPrecond)
		}
	}
	if own == nil {
		slog.Debug("create: no cgroup: none delegated to this user")
	}
	return own, nil
}

// requestedLimits lists the limits r sets as field and the cgroup
// controller that holds them (cgroups.UnifiedKey for unified keys). Device
// rules do not count: a user namespace cannot make device nodes.
func requestedLimits(r *specs.LinuxResources) [][2]string {
	if r == nil {
		return nil
	}
	var out [][2]string
	add := func(set bool, field, ctrl string) {
		if set {
			out = append(out, [2]string{field, ctrl})
		}
	}
	if m := r.Memory; m != nil {
		add(m.Limit != nil || m.Reservation != nil || m.Swap != nil || m.Swappiness != nil || m.DisableOOMKiller != nil, "memory", "memory")
	}
	if c := r.CPU; c != nil {
		add(c.Shares != nil || c.Quota != nil || c.Period != nil || c.RealtimeRuntime != nil || c.RealtimePeriod != nil || c.Burst != nil || c.Idle != nil, "cpu", "cpu")
		add(c.Cpus != "" || c.Mems != "", "cpu", "cpuset")
	}
	add(r.Pids != nil && r.Pids.Limit != nil, "pids", "pids")
	add(r.BlockIO != nil, "blockIO", "blkio")
	add(len(r.HugepageLimits) > 0, "hugepageLimits", "hugetlb")
	if n := r.Network; n != nil {
		add(n.ClassID != nil, "network", "net_cls")
		add(len(n.Priorities) > 0, "network", "net_prio")
	}
	add(len(r.Rdma) > 0, "rdma", "rdma")
	if len(r.Unified) > 0 {
		out = append(out, [2]string{"unified", cgroups.UnifiedKey})
	}
	return out
}
