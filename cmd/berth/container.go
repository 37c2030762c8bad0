package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// runFlags are run's and create's flags.
type runFlags struct {
	name, runtime, pull, entrypoint, logOpt                string
	detach, interactive, tty, rm, publishAll, sigProxy     bool
	networks, publish, labels                              []string
	memory                                                 string
	cfg                                                    engine.Config
	volumes, mounts, tmpfs, securityOpt, ulimits, envFiles []string
}

func (f *runFlags) register(cmd *cobra.Command, run bool) {
	fl := cmd.Flags()
	fl.SetInterspersed(false) // what follows the image is the container's command
	fl.StringVar(&f.name, "name", "", "container name")
	fl.StringVar(&f.runtime, "runtime", "", "OCI runtime: berth-runtime (default), runc, crun, or a path")
	fl.StringVar(&f.pull, "pull", "missing", "pull the image: missing, always or never")
	fl.StringVar(&f.entrypoint, "entrypoint", "", "replace the image's entrypoint (\"\" clears it)")
	fl.StringArrayVar(&f.networks, "network", nil, "bridge (the default network), none (loopback only), host, or networks by name (repeat or separate by commas)")
	fl.StringArrayVar(&f.cfg.DNS, "dns", nil, "nameserver for the container's resolv.conf (instead of the host's)")
	fl.StringArrayVar(&f.cfg.DNSSearch, "dns-search", nil, "search domain for the container's resolv.conf")
	fl.StringArrayVar(&f.cfg.AddHosts, "add-host", nil, "NAME:IP line for the container's /etc/hosts")
	fl.StringArrayVarP(&f.publish, "publish", "p", nil, "[[HOST-IP:][HOST-PORT]:]PORT[/PROTO] publish a port (ranges too: 8000-8001:80-81)")
	fl.BoolVarP(&f.publishAll, "publish-all", "P", false, "publish the image's exposed ports on free host ports")
	fl.StringArrayVarP(&f.cfg.Env, "env", "e", nil, "KEY=VALUE, or KEY to pass the host's value")
	fl.StringArrayVar(&f.envFiles, "env-file", nil, "file of KEY=VALUE lines")
	fl.StringVarP(&f.cfg.WorkDir, "workdir", "w", "", "working directory")
	fl.StringVarP(&f.cfg.User, "user", "u", "", "user[:group], names from the image")
	fl.StringVar(&f.cfg.Hostname, "hostname", "", "host name (default: the short ID)")
	fl.StringArrayVarP(&f.labels, "label", "l", nil, "KEY=VALUE label on the container")
	fl.BoolVarP(&f.interactive, "interactive", "i", false, "keep standard input open")
	fl.BoolVarP(&f.tty, "tty", "t", false, "give the container a terminal")
	fl.BoolVar(&f.cfg.ReadOnly, "read-only", false, "mount the root file system read-only")
	fl.BoolVar(&f.cfg.Init, "init", false, "run an init (catatonit) as PID 1 that forwards signals and reaps zombies")
	fl.BoolVar(&f.cfg.Privileged, "privileged", false, "all capabilities and devices, no masked paths")
	fl.StringArrayVar(&f.cfg.CapAdd, "cap-add", nil, "add a capability")
	fl.StringArrayVar(&f.cfg.CapDrop, "cap-drop", nil, "drop a capability (ALL for all)")
	fl.StringArrayVar(&f.securityOpt, "security-opt", nil, "no-new-privileges, seccomp=unconfined or seccomp=PROFILE.json")
	fl.StringArrayVarP(&f.volumes, "volume", "v", nil, "HOST-DIR:PATH[:ro] bind mount, VOLUME:PATH[:ro] named volume, or PATH for an anonymous volume")
	fl.StringArrayVar(&f.mounts, "mount", nil, "type=bind|volume|tmpfs|image,src=SOURCE,dst=PATH[,ro][,subpath=DIR] (docker's and podman's --mount)")
	fl.StringArrayVar(&f.tmpfs, "tmpfs", nil, "CONTAINER[:options] tmpfs mount")
	fl.StringVarP(&f.memory, "memory", "m", "", "memory limit (b, k, m, g)")
	fl.Float64Var(&f.cfg.CPUs, "cpus", 0, "CPUs (quota)")
	fl.Int64Var(&f.cfg.PidsLimit, "pids-limit", 0, "most processes")
	fl.StringVar(&f.cfg.CgroupParent, "cgroup-parent", "", "the cgroup the container's goes under, in each hierarchy (default /berth; relative: under berth's own)")
	fl.StringArrayVar(&f.ulimits, "ulimit", nil, "TYPE=SOFT[:HARD], e.g. nofile=1024:2048")
	fl.StringVar(&f.logOpt, "log-opt", "", "max-size=SIZE: rotate the log at SIZE")
	if run {
		fl.BoolVarP(&f.detach, "detach", "d", false, "run in the background and print the ID")
		fl.BoolVar(&f.rm, "rm", false, "remove the container when it exits")
		fl.BoolVar(&f.sigProxy, "sig-proxy", true, "pass the signals berth gets to the container (not with -t: keys go as input then)")
	}
}

// config turns the flags into the engine's Config.
func (f *runFlags) config(cmd *cobra.Command, args []string) (engine.Config, error) {
	cfg := f.cfg
	cfg.Args = args
	cfg.TTY, cfg.Stdin, cfg.Remove = f.tty, f.interactive, f.rm
	if f.tty && isTerminal(os.Stdin) {
		// The terminal's size from the start: a resize sent once the
		// container runs may come after its first look at the size.
		if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil && ws.Row > 0 && ws.Col > 0 {
			cfg.ConsoleSize = &specs.Box{Height: uint(ws.Row), Width: uint(ws.Col)}
		}
	}
	if cmd.Flags().Changed("entrypoint") {
		cfg.EntrypointSet = true
		if f.entrypoint != "" {
			cfg.Entrypoint = []string{f.entrypoint}
		}
	}
	if err := f.networkConfig(&cfg); err != nil {
		return cfg, err
	}
	labels, err := parseLabels(f.labels)
	if err != nil {
		return cfg, err
	}
	cfg.Labels = labels
	for _, ef := range f.envFiles {
		data, err := os.ReadFile(ef)
		if err != nil {
			return cfg, fmt.Errorf("--env-file: %w", err)
		}
		var fromFile []string
		for _, l := range strings.Split(string(data), "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
				fromFile = append(fromFile, l)
			}
		}
		cfg.Env = append(fromFile, cfg.Env...)
	}
	for _, o := range f.securityOpt {
		switch o {
		case "no-new-privileges", "no-new-privileges=true", "no-new-privileges:true":
			cfg.NoNewPrivs = true
		default:
			k, v, _ := strings.Cut(o, "=")
			if k != "seccomp" || v == "" {
				return cfg, fmt.Errorf("--security-opt %q: no-new-privileges or seccomp=unconfined|PROFILE.json: %w", o, errdefs.ErrInvalidArgument)
			}
			if v != "unconfined" {
				abs, err := filepath.Abs(v)
				if err != nil {
					return cfg, err
				}
				v = abs
			}
			cfg.Seccomp = v
		}
	}
	for _, v := range f.volumes {
		if err := addVolume(&cfg, v); err != nil {
			return cfg, err
		}
	}
	for _, m := range f.mounts {
		if err := addMount(&cfg, m); err != nil {
			return cfg, err
		}
	}
	for _, t := range f.tmpfs {
		dst, opts, _ := strings.Cut(t, ":")
		if !filepath.IsAbs(dst) {
			return cfg, fmt.Errorf("--tmpfs %q: the path must be absolute: %w", t, errdefs.ErrInvalidArgument)
		}
		o := []string{"nosuid", "nodev"}
		if opts != "" {
			o = append(o, strings.Split(opts, ",")...)
		}
		cfg.Mounts = append(cfg.Mounts, specs.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs", Options: o})
	}
	if f.memory != "" {
		n, err := parseSize(f.memory)
		if err != nil {
			return cfg, fmt.Errorf("--memory: %w", err)
		}
		cfg.Memory = n
	}
	for _, u := range f.ulimits {
		r, err := parseUlimit(u)
		if err != nil {
			return cfg, err
		}
		cfg.Rlimits = append(cfg.Rlimits, r)
	}
	if f.logOpt == "" {
		if conf, err := loadConfig(); err == nil && conf.Containers.LogMaxSize != "" {
			f.logOpt = "max-size=" + conf.Containers.LogMaxSize
		}
	}
	if f.logOpt != "" {
		k, v, _ := strings.Cut(f.logOpt, "=")
		if k != "max-size" {
			return cfg, fmt.Errorf("--log-opt %q: only max-size: %w", f.logOpt, errdefs.ErrInvalidArgument)
		}
		n, err := parseSize(v)
		if err != nil {
			return cfg, fmt.Errorf("--log-opt: %w", err)
		}
		cfg.LogMaxSize = n
	}
	if f.rm && f.detach {
		cfg.Remove = true
	}
	return cfg, nil
}

func parseSize(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for suffix, m := range map[string]int64{"k": 1 << 10, "kb": 1 << 10, "m": 1 << 20, "mb": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "b": 1} {
		if strings.HasSuffix(s, suffix) && len(s) > len(suffix) {
			if _, err := strconv.ParseFloat(strings.TrimSuffix(s, suffix), 64); err == nil {
				s, mult = strings.TrimSuffix(s, suffix), m
				break
			}
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("size %q: want a positive number with b, k, m or g: %w", s, errdefs.ErrInvalidArgument)
	}
	return int64(f * float64(mult)), nil
}

var rlimitNames = map[string]string{"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "core": "RLIMIT_CORE", "memlock": "RLIMIT_MEMLOCK",
	"stack": "RLIMIT_STACK", "fsize": "RLIMIT_FSIZE", "cpu": "RLIMIT_CPU", "as": "RLIMIT_AS", "data": "RLIMIT_DATA", "msgqueue": "RLIMIT_MSGQUEUE",
	"nice": "RLIMIT_NICE", "rtprio": "RLIMIT_RTPRIO", "sigpending": "RLIMIT_SIGPENDING", "locks": "RLIMIT_LOCKS", "rss": "RLIMIT_RSS", "rttime": "RLIMIT_RTTIME"}

func parseUlimit(s string) (specs.POSIXRlimit, error) {
	k, v, ok := strings.Cut(s, "=")
	typ, known := rlimitNames[k]
	if !ok || !known {
		return specs.POSIXRlimit{}, fmt.Errorf("--ulimit %q: want TYPE=SOFT[:HARD] with a known type: %w", s, errdefs.ErrInvalidArgument)
	}
	soft, hard, hasHard := strings.Cut(v, ":")
	if !hasHard {
		hard = soft
	}
	sn, err1 := strconv.ParseUint(soft, 10, 64)
	hn, err2 := strconv.ParseUint(hard, 10, 64)
	if err1 != nil || err2 != nil || sn > hn {
		return specs.POSIXRlimit{}, fmt.Errorf("--ulimit %q: soft and hard must be numbers, soft <= hard: %w", s, errdefs.ErrInvalidArgument)
	}
	return specs.POSIXRlimit{Type: typ, Soft: sn, Hard: hn}, nil
}

// ensureImage pulls ref as the policy says.
func ensureImage(ctx context.Context, s *store, ref, policy string) error {
	var err error
	if policy != "always" {
		_, err = s.svc.LookupOne(ctx, ref)
	}
	switch {
	case policy == "always" || policy == "missing" && errdefs.IsNotFound(err):
		_, err = s.svc.Pull(ctx, ref, nil)
		return err
	case policy == "never" || policy == "missing":
		return err
	}
	return fmt.Errorf("--pull %q: missing, always or never: %w", policy, errdefs.ErrInvalidArgument)
}

func createContainer(ctx context.Context, s *store, f *runFlags, cmd *cobra.Command, args []string) (metadata.Container, error) {
	cfg, err := f.config(cmd, args[1:])
	if err != nil {
		return metadata.Container{}, err
	}
	conf, err := loadConfig()
	if err != nil {
		return metadata.Container{}, err
	}
	pull := f.pull
	if !cmd.Flags().Changed("pull") {
		pull = conf.Containers.Pull
	}
	if err := ensureImage(ctx, s, args[0], pull); err != nil {
		return metadata.Container{}, err
	}
	cfg.CgroupParent = cmp.Or(cfg.CgroupParent, conf.Containers.CgroupParent)
	for i, v := range cfg.ImageVolumes { // --mount type=image: pulled as the container's image is
		if err := ensureImage(ctx, s, v.Image, pull); err != nil {
			return metadata.Container{}, fmt.Errorf("--mount type=image: %w", err)
		}
		img, err := s.svc.LookupOne(ctx, v.Image)
		if err != nil {
			return metadata.Container{}, err
		}
		cfg.ImageVolumes[i].Image = img.Config.String()
	}
	return s.eng.Create(ctx, args[0], f.name, cmp.Or(f.runtime, conf.Containers.Runtime), cfg)
}

func runCmd() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "run [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Run a command in a new container",
		Args:  cobra.MinimumNArgs(1),
	}
	cmd.RunE = storeRun(func(ctx context.Context, s *store, args []string) error {
		phase := timer()
		c, err := createContainer(ctx, s, f, cmd, args)
		if err != nil {
			return err
		}
		phase("create")
		if f.detach {
			if _, err := s.eng.Start(ctx, c.ID); err != nil {
				return err
			}
			fmt.Println(c.ID)
			return nil
		}
		started, err := s.eng.Prepare(ctx, c.ID)
		if err != nil {
			if f.rm {
				s.eng.Remove(context.WithoutCancel(ctx), c, true)
			}
			return err
		}
		phase("monitor and runtime create")
		a, err := attach(started.Dir, f.interactive, f.tty)
		if err != nil {
			return err
		}
		if f.sigProxy {
			a.proxy = signalProxy(ctx, s, c)
		}
		if err := started.Run(ctx); err != nil {
			return err
		}
		phase("runtime start")
		code, err := a.stream()
		if err != nil {
			return err
		}
		phase("run, exit, monitor cleanup")
		if f.rm {
			// The monitor has recorded the exit; remove what is left.
			if err := s.eng.Remove(context.WithoutCancel(ctx), c, true); err != nil {
				return err
			}
			phase("remove")
		}
		if code != 0 {
			return exitError{code, nil}
		}
		return nil
	})
	f.register(cmd, true)
	return cmd
}

func createCmd() *cobra.Command {
	f := &runFlags{}
	cmd := &cobra.Command{
		Use:   "create [flags] IMAGE [COMMAND [ARG...]]",
		Short: "Create a container without starting it",
		Args:  cobra.MinimumNArgs(1),
	}
	cmd.RunE = storeRun(func(ctx context.Context, s *store, args []string) error {
		c, err := createContainer(ctx, s, f, cmd, args)
		if err != nil {
			return err
		}
		fmt.Println(c.ID)
		return nil
	})
	f.register(cmd, false)
	return cmd
}

// eachContainer runs fn on every container named, printing each name it
// succeeded for; it goes on after a failure and returns all of them.
func eachContainer(ctx context.Context, s *store, refs []string, fn func(metadata.Container) error) error {
	var errs []error
	for _, ref := range refs {
		c, err := s.meta.GetContainer(ctx, ref)
		if err == nil {
			err = fn(c)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Println(ref)
	}
	return errors.Join(errs...)
}

func startCmd() *cobra.Command {
	return &cobra.Command{
		Use: "start CONTAINER...", Short: "Start created or stopped containers", Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			return eachContainer(ctx, s, args, func(c metadata.Container) error {
				_, err := s.eng.Start(ctx, c.ID)
				return err
			})
		}),
	}
}

func stopCmd() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use: "stop [flags] CONTAINER...", Short: "Stop containers (SIGTERM, then SIGKILL after the timeout)", Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			return eachContainer(ctx, s, args, func(c metadata.Container) error {
				return s.eng.Stop(ctx, c, time.Duration(timeout)*time.Second)
			})
		}),
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before SIGKILL")
	return cmd
}

func killCmd() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use: "kill [flags] CONTAINER...", Short: "Send a signal to containers", Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			n, err := parseSignal(sig)
			if err != nil {
				return err
			}
			return eachContainer(ctx, s, args, func(c metadata.Container) error { return s.eng.Kill(ctx, c, n) })
		}),
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "KILL", "signal name or number")
	return cmd
}

func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return unix.Signal(n), nil
	}
	if n := unix.SignalNum("SIG" + strings.TrimPrefix(strings.ToUpper(s), "SIG")); n != 0 {
		return n, nil
	}
	return 0, fmt.Errorf("signal %q: unknown: %w", s, errdefs.ErrInvalidArgument)
}

func rmCmd() *cobra.Command {
	var force, all, volumes bool
	cmd := &cobra.Command{
		Use: "rm [flags] CONTAINER...", Short: "Remove containers", Aliases: []string{"container-rm"},
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			if all {
				list, err := s.meta.ListContainers(ctx)
				if err != nil {
					return err
				}
				for _, c := range list {
					args = append(args, c.ID)
				}
			}
			if len(args) == 0 && !all {
				return fmt.Errorf("give at least one container, or --all: %w", errdefs.ErrInvalidArgument)
			}
			return eachContainer(ctx, s, args, func(c metadata.Container) error {
				if err := s.eng.Remove(ctx, c, force); err != nil {
					return err
				}
				if volumes {
					for _, v := range engine.AnonymousVolumes(c) {
						if err := s.eng.RemoveVolume(ctx, v); err != nil && !errdefs.IsNotFound(err) {
							return err
						}
					}
				}
				return nil
			})
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill running containers first")
	cmd.Flags().BoolVarP(&volumes, "volumes", "v", false, "remove the container's anonymous volumes too")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove all containers")
	return cmd
}

func waitCmd() *cobra.Command {
	return &cobra.Command{
		Use: "wait CONTAINER...", Short: "Wait for containers to exit and print their exit codes", Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			for _, ref := range args {
				c, err := s.meta.GetContainer(ctx, ref)
				if err != nil {
					return err
				}
				code, err := s.eng.Wait(ctx, c)
				if err != nil {
					return err
				}
				fmt.Println(code)
			}
			return nil
		}),
	}
}

func execCmd() *cobra.Command {
	var x engine.ExecConfig
	var interactive bool
	cmd := &cobra.Command{
		Use: "exec [flags] CONTAINER COMMAND [ARG...]", Short: "Run a command in a running container", Args: cobra.MinimumNArgs(2),
	}
	cmd.Flags().SetInterspersed(false)
	cmd.RunE = storeRun(func(ctx context.Context, s *store, args []string) error {
		c, err := s.meta.GetContainer(ctx, args[0])
		if err != nil {
			return err
		}
		x.Args = args[1:]
		if x.TTY {
			sock, done, err := consoleProxy(interactive)
			if err != nil {
				return err
			}
			defer done()
			x.ConsoleSocket = sock
		}
		code, err := s.eng.Exec(ctx, c, x)
		if err != nil {
			return err
		}
		if code != 0 {
			return exitError{code, nil}
		}
		return nil
	})
	f := cmd.Flags()
	f.BoolVarP(&interactive, "interactive", "i", false, "pass standard input")
	f.BoolVarP(&x.TTY, "tty", "t", false, "allocate a terminal")
	f.BoolVarP(&x.Detach, "detach", "d", false, "do not wait for the command")
	f.StringArrayVarP(&x.Env, "env", "e", nil, "KEY=VALUE")
	f.StringVarP(&x.User, "user", "u", "", "uid[:gid]")
	f.StringVarP(&x.WorkDir, "workdir", "w", "", "working directory")
	return cmd
}

// timer returns a function that, with --log-level debug, prints how long
// each phase since the last call took (to find where a run's time goes).
func timer() func(string) {
	last := time.Now()
	return func(name string) {
		if g.logLevel == "debug" {
			fmt.Fprintf(os.Stderr, "berth: %-28s %6.2f ms\n", name, float64(time.Since(last).Microseconds())/1000)
		}
		last = time.Now()
	}
}
