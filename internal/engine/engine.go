// Package engine is the containers' life cycle on one store: create (from
// an image, through specgen), start (through a berth-monitor and an OCI
// runtime), stop, kill, remove, state, logs. berth uses it now, berthd
// later; see docs/engine.md.
package engine

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
	"github.com/berthdev/berth/internal/imagesvc"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/monitor"
	"github.com/berthdev/berth/internal/network"
	"github.com/berthdev/berth/internal/ociruntime"
	"github.com/berthdev/berth/internal/specgen"
	"github.com/moby/sys/mountinfo"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Engine runs containers from one store.
type Engine struct {
	Images  *imagesvc.Service
	Meta    *metadata.DB
	RunRoot string
	// Monitor is the berth-monitor binary.
	Monitor string
	// Networks are the store's CNI networks.
	Networks *network.Manager
}

// Config is what a container is made with (kept in its record).
type Config struct {
	Entrypoint    []string              `json:"entrypoint,omitempty"`
	EntrypointSet bool                  `json:"entrypointSet,omitempty"`
	Args          []string              `json:"args,omitempty"`
	Env           []string              `json:"env,omitempty"`
	WorkDir       string                `json:"workDir,omitempty"`
	User          string                `json:"user,omitempty"`
	Hostname      string                `json:"hostname,omitempty"`
	TTY           bool                  `json:"tty,omitempty"`
	Stdin         bool                  `json:"stdin,omitempty"`
	ReadOnly      bool                  `json:"readOnly,omitempty"`
	Privileged    bool                  `json:"privileged,omitempty"`
	NoNewPrivs    bool                  `json:"noNewPrivileges,omitempty"`
	Seccomp       string                `json:"seccomp,omitempty"`
	CapAdd        []string              `json:"capAdd,omitempty"`
	CapDrop       []string              `json:"capDrop,omitempty"`
	Network       string                `json:"network,omitempty"` // NetNone (also ""), NetHost or NetBridge
	Networks      []string              `json:"networks,omitempty"`
	Ports         []network.PortMapping `json:"ports,omitempty"`
	// Labels are the record's (metadata.Container.Labels).
	Labels map[string]string `json:"-"`
	// PublishAll publishes the image's exposed ports on free host ports.
	PublishAll bool                `json:"-"`
	Mounts     []specs.Mount       `json:"mounts,omitempty"`
	Volumes    []VolumeMount       `json:"volumes,omitempty"`
	Memory     int64               `json:"memory,omitempty"`
	CPUs       float64             `json:"cpus,omitempty"`
	PidsLimit  int64               `json:"pidsLimit,omitempty"`
	Rlimits    []specs.POSIXRlimit `json:"rlimits,omitempty"`
	Remove     bool                `json:"remove,omitempty"`
	LogMaxSize int64               `json:"logMaxSize,omitempty"`
	StopSignal string              `json:"stopSignal,omitempty"`
	Init       bool                `json:"init,omitempty"` // an init as PID 1 (see initBinary)
}

// dir is a container's directory: bundle (config.json, rootfs), log,
// monitor files.
func (e *Engine) dir(id string) string { return filepath.Join(e.RunRoot, "containers", id) }

// LogPath is where a container's log is.
func (e *Engine) LogPath(id string) string { return filepath.Join(e.dir(id), "ctr.log") }

func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func snapshotKey(id string) string { return "container-" + id }

// Create makes a container from image (a stored image; the caller pulls),
// named name ("" for one made from its ID), on runtime ("" for
// berth-runtime). It records the container, prepares its rootfs snapshot
// and writes its bundle; nothing runs yet.
func (e *Engine) Create(ctx context.Context, image, name, runtime string, cfg Config) (_ metadata.Container, retErr error) {
	img, err := e.Images.LookupOne(ctx, image)
	if err != nil {
		return metadata.Container{}, err
	}
	rt, err := ociruntime.Find(runtime, e.RunRoot)
	if err != nil {
		return metadata.Container{}, err
	}
	imgCfg, err := e.Images.Config(ctx, img)
	if err != nil {
		return metadata.Container{}, err
	}
	if cfg.PublishAll {
		cfg.Ports = append(cfg.Ports, exposed(imgCfg.Config.ExposedPorts)...)
	}
	if err := e.checkNetwork(&cfg); err != nil {
		return metadata.Container{}, err
	}
	if err := nameVolumes(&cfg, imgCfg.Config.Volumes); err != nil {
		return metadata.Container{}, err
	}
	if cfg.StopSignal == "" {
		cfg.StopSignal = imgCfg.Config.StopSignal // the image's STOPSIGNAL, else SIGTERM
	}
	id := newID()
	if name == "" {
		name = "berth_" + id[:12]
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return metadata.Container{}, err
	}
	c := metadata.Container{ID: id, Name: name, Image: img.Name, ImageID: img.Config, Snapshot: snapshotKey(id), Runtime: rt.Path, Config: raw, Labels: cfg.Labels}
	// The record first: a crash then leaves a record whose snapshot may be
	// missing (rm copes), never a snapshot nothing names.
	var made []string // volumes this create made
	defer func() {
		if retErr != nil { // after the cleanup below: no record uses them then
			for _, v := range made {
				e.RemoveVolume(context.WithoutCancel(ctx), v)
			}
		}
	}()
	if c, err = e.Meta.CreateContainer(ctx, c); err != nil {
		return c, err
	}
	defer func() {
		if retErr != nil {
			e.cleanup(context.WithoutCancel(ctx), c)
		}
	}()
	made, err = e.makeVolumes(cfg)
	if err != nil {
		return c, err
	}
	if _, err := e.Images.Snapshots.Prepare(ctx, c.Snapshot, img.SnapshotKey, map[string]string{"berth.container": id}); err != nil {
		return c, err
	}
	if err := e.writeBundle(ctx, c, cfg, imgCfg.Config); err != nil {
		return c, err
	}
	return c, nil
}

// mountRootfs mounts the container's snapshot at dir/rootfs, unless it is
// mounted already.
func (e *Engine) mountRootfs(ctx context.Context, c metadata.Container) (string, error) {
	target := filepath.Join(e.dir(c.ID), "rootfs")
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", err
	}
	if ok, err := mountinfo.Mounted(target); err == nil && ok {
		return target, nil
	}
	ms, err := e.Images.Snapshots.Mounts(ctx, c.Snapshot)
	if err != nil {
		return "", err
	}
	for _, m := range ms {
		if err := m.Mount(target); err != nil {
			return "", err
		}
	}
	return target, nil
}

func (e *Engine) writeBundle(ctx context.Context, c metadata.Container, cfg Config, img v1.ImageConfig) error {
	dir := e.dir(c.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	rootfs, err := e.mountRootfs(ctx, c)
	if err != nil {
		return err
	}
	hostname := cfg.Hostname
	if hostname == "" && cfg.Network != "host" {
		hostname = c.ID[:12]
	}
	files, err := e.etcFiles(dir, hostname, cfg.Network)
	if err != nil {
		return err
	}
	netns := ""
	switch cfg.Network {
	case NetHost:
		netns = "host"
	case NetBridge:
		netns = e.netnsPath(c.ID)
	}
	initBin, err := initBinary(cfg.Init)
	if err != nil {
		return err
	}
	vols, err := e.volumeMounts(cfg, rootfs)
	if err != nil {
		return err
	}
	spec, err := specgen.Generate(specgen.Options{
		ID: c.ID, Image: img, Rootfs: rootfs,
		Entrypoint: cfg.Entrypoint, EntrypointSet: cfg.EntrypointSet, Args: cfg.Args,
		Env: cfg.Env, HostEnv: os.LookupEnv, WorkDir: cfg.WorkDir, User: cfg.User, Hostname: cfg.Hostname,
		TTY: cfg.TTY, Stdin: cfg.Stdin, ReadOnly: cfg.ReadOnly, Privileged: cfg.Privileged,
		CapAdd: cfg.CapAdd, CapDrop: cfg.CapDrop, NoNewPrivs: cfg.NoNewPrivs, Seccomp: cfg.Seccomp, Network: netns,
		Files: files, Mounts: append(slices.Clip(cfg.Mounts), vols...), Memory: cfg.Memory, CPUs: cfg.CPUs, PidsLimit: cfg.PidsLimit,
		Rlimits: cfg.Rlimits, CgroupPath: "/berth/" + c.ID, Init: initBin,
	})
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return fsutil.ReplaceFile(filepath.Join(dir, "config.json"), data, 0o600)
}

// etcFiles writes the container's /etc/hosts, /etc/resolv.conf and
// /etc/hostname; on the host's network, the host's hosts and resolv.conf
// are bound instead.
func (e *Engine) etcFiles(dir, hostname, mode string) (map[string]string, error) {
	files := map[string]string{}
	if mode == NetHost {
		for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
			if _, err := os.Stat(f); err == nil {
				files[f] = f
			}
		}
		return files, nil
	}
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	if mode == NetBridge {
		hosts += network.HostsMarker // its addresses and its peers' follow when attached
	} else {
		hosts += "127.0.1.1\t" + hostname + "\n"
	}
	for name, content := range map[string][]byte{"hosts": []byte(hosts), "resolv.conf": resolvConf(), "hostname": []byte(hostname + "\n")} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			return nil, err
		}
		files["/etc/"+name] = p
	}
	return files, nil
}

// config decodes a container's engine config.
func config(c metadata.Container) (Config, error) {
	var cfg Config
	if len(c.Config) == 0 {
		return cfg, nil
	}
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		return cfg, fmt.Errorf("container %s: config: %v: %w", c.ID, err, errdefs.ErrInvalidArgument)
	}
	return cfg, nil
}

// Started is a container whose monitor reported it created; the caller
// may attach before calling Run.
type Started struct {
	C   metadata.Container
	rt  *ociruntime.Runtime
	Dir string
}

// Prepare starts a created (or exited) container's monitor, which has the
// runtime create it; Run then starts its process. Attach clients that
// connect in between see all of its output.
func (e *Engine) Prepare(ctx context.Context, ref string) (_ *Started, retErr error) {
	c, err := e.Meta.GetContainer(ctx, ref)
	if err != nil {
		return nil, err
	}
	st, err := e.State(ctx, c)
	if err != nil {
		return nil, err
	}
	if st.Status == StatusRunning {
		return nil, fmt.Errorf("container %s is running already: %w", c.Name, errdefs.ErrFailedPrecond)
	}
	cfg, err := config(c)
	if err != nil {
		return nil, err
	}
	rt, err := ociruntime.Find(c.Runtime, e.RunRoot)
	if err != nil {
		return nil, err
	}
	dir := e.dir(c.ID)
	// A restart: the runtime's old state and the last exit go first.
	if rt.Has(c.ID) {
		rt.Delete(ctx, c.ID, true)
	}
	os.Remove(filepath.Join(dir, monitor.ExitFile))
	rootfs, err := e.mountRootfs(ctx, c)
	if err != nil {
		return nil, err
	}
	args := []string{"--id", c.ID, "--dir", dir, "--runtime", rt.Path, "--runtime-root", rt.Root,
		"--log", e.LogPath(c.ID), "--rootfs", rootfs}
	if cfg.LogMaxSize > 0 {
		args = append(args, "--log-max-size", strconv.FormatInt(cfg.LogMaxSize, 10))
	}
	if cfg.TTY {
		args = append(args, "--tty")
	}
	if cfg.Stdin {
		args = append(args, "--stdin")
	}
	// The network is attached while the runtime creates the container;
	// the container's process starts (Run) only once both are done.
	attached, err := e.netUp(ctx, c, cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if attached != nil { // not waited for: an error came first
			attached()
		}
		if retErr != nil {
			if rt.Has(c.ID) {
				rt.Delete(context.WithoutCancel(ctx), c.ID, true)
			}
			e.netDown(context.WithoutCancel(ctx), c, cfg)
		}
	}()
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer syncR.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		syncW.Close()
		return nil, err
	}
	defer devnull.Close()
	cmd := exec.Command(e.Monitor, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.ExtraFiles = []*os.File{syncW}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		syncW.Close()
		return nil, fmt.Errorf("berth-monitor: %w", err)
	}
	syncW.Close()
	go cmd.Wait() // reaped if this process lives on; otherwise init adopts it
	var msg struct {
		Pid   int    `json:"pid"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(syncR).Decode(&msg); err != nil {
		return nil, fmt.Errorf("container %s: the monitor ended without a word: %w", c.Name, errdefs.ErrUnavailable)
	}
	if msg.Error != "" {
		return nil, fmt.Errorf("container %s: %s: %w", c.Name, msg.Error, errdefs.ErrFailedPrecond)
	}
	wait := attached
	attached = nil
	if err := wait(); err != nil {
		return nil, err
	}
	return &Started{C: c, rt: rt, Dir: dir}, nil
}

// Run starts the container's process.
func (s *Started) Run(ctx context.Context) error {
	if err := s.rt.Start(ctx, s.C.ID); err != nil {
		return fmt.Errorf("container %s: %w", s.C.Name, err)
	}
	os.WriteFile(filepath.Join(s.Dir, "started"), []byte(time.Now().UTC().Format(time.RFC3339Nano)), 0o644)
	return nil
}

// Start is Prepare then Run, for a container nobody attaches to.
func (e *Engine) Start(ctx context.Context, ref string) (metadata.Container, error) {
	s, err := e.Prepare(ctx, ref)
	if err != nil {
		return metadata.Container{}, err
	}
	return s.C, s.Run(ctx)
}

// Container states.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
)

// State is what a container is doing, read from its monitor's files and
// processes, so it is right even when the container was killed from
// outside or berth was not running.
type State struct {
	Status     string
	Pid        int
	ExitCode   int
	StartedAt  time.Time
	FinishedAt time.Time
	Error      string
}

// State reads c's state.
func (e *Engine) State(ctx context.Context, c metadata.Container) (State, error) {
	dir := e.dir(c.ID)
	var st State
	if b, err := os.ReadFile(filepath.Join(dir, "started")); err == nil {
		st.StartedAt, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	}
	if x, err := monitor.ReadExit(dir); err == nil {
		st.Status, st.ExitCode, st.FinishedAt, st.Error = StatusExited, x.Code, x.ExitedAt, x.Error
		return st, nil
	}
	monPid := readPid(filepath.Join(dir, monitor.MonitorPid))
	if monPid == 0 {
		st.Status = StatusCreated
		return st, nil
	}
	if alive(monPid) {
		st.Status, st.Pid = StatusRunning, readPid(filepath.Join(dir, monitor.PidFile))
		if st.StartedAt.IsZero() {
			st.Status = StatusCreated // created by its monitor, not started
		}
		return st, nil
	}
	// The monitor died without writing the exit (killed): the runtime
	// knows whether the container still runs.
	rt, err := ociruntime.Find(c.Runtime, e.RunRoot)
	if err == nil {
		if rs, err := rt.State(ctx, c.ID); err == nil && rs.Status == specs.StateRunning {
			st.Status, st.Pid = StatusRunning, rs.Pid
			return st, nil
		}
	}
	st.Status, st.ExitCode, st.Error = StatusExited, 255, "its monitor was killed; the exit code is unknown"
	return st, nil
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// Wait blocks until c has exited and returns its exit code.
func (e *Engine) Wait(ctx context.Context, c metadata.Container) (int, error) {
	for {
		st, err := e.State(ctx, c)
		if err != nil {
			return 0, err
		}
		if st.Status == StatusExited {
			return st.ExitCode, nil
		}
		if st.Status == StatusCreated && st.StartedAt.IsZero() && readPid(filepath.Join(e.dir(c.ID), monitor.MonitorPid)) == 0 {
			return 0, fmt.Errorf("container %s was never started: %w", c.Name, errdefs.ErrFailedPrecond)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// running returns c's runtime, or ErrFailedPrecond if c is not running.
func (e *Engine) running(ctx context.Context, c metadata.Container) (*ociruntime.Runtime, error) {
	st, err := e.State(ctx, c)
	if err != nil {
		return nil, err
	}
	if st.Status != StatusRunning {
		return nil, fmt.Errorf("container %s is not running: %w", c.Name, errdefs.ErrFailedPrecond)
	}
	return ociruntime.Find(c.Runtime, e.RunRoot)
}

// Kill sends sig to the container's processes.
func (e *Engine) Kill(ctx context.Context, c metadata.Container, sig unix.Signal) error {
	rt, err := e.running(ctx, c)
	if err != nil {
		return err
	}
	return rt.Kill(ctx, c.ID, int(sig), sig == unix.SIGKILL)
}

// Stop sends the stop signal (the image's, or SIGTERM), waits timeout for
// the container to exit, then kills it.
func (e *Engine) Stop(ctx context.Context, c metadata.Container, timeout time.Duration) error {
	cfg, _ := config(c)
	sig := unix.SIGTERM
	if s := unix.SignalNum(strings.ToUpper("SIG" + strings.TrimPrefix(strings.ToUpper(cfg.StopSignal), "SIG"))); cfg.StopSignal != "" && s != 0 {
		sig = s
	}
	if err := e.Kill(ctx, c, sig); err != nil {
		if errdefs.IsFailedPrecond(err) { // not running: stopped already
			return e.netDown(ctx, c, cfg)
		}
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := e.Wait(wctx, c); err == nil {
		return e.netDown(ctx, c, cfg)
	}
	if err := e.Kill(ctx, c, unix.SIGKILL); err != nil && !errdefs.IsFailedPrecond(err) {
		return err
	}
	if _, err := e.Wait(ctx, c); err != nil {
		return err
	}
	return e.netDown(ctx, c, cfg)
}

// Remove deletes a container: its runtime state, rootfs, snapshot, files
// and record. A running container needs force (it is killed).
func (e *Engine) Remove(ctx context.Context, c metadata.Container, force bool) error {
	st, err := e.State(ctx, c)
	if err != nil {
		return err
	}
	if st.Status == StatusRunning {
		if !force {
			return fmt.Errorf("container %s is running: stop it first, or use --force: %w", c.Name, errdefs.ErrFailedPrecond)
		}
		if err := e.Kill(ctx, c, unix.SIGKILL); err != nil && !errdefs.IsFailedPrecond(err) {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := e.Wait(wctx, c)
		cancel()
		if err != nil {
			return fmt.Errorf("container %s: did not exit after SIGKILL: %w", c.Name, err)
		}
	}
	return e.cleanup(ctx, c)
}

// cleanup removes what a container has, whatever state it was left in.
func (e *Engine) cleanup(ctx context.Context, c metadata.Container) error {
	// The network is released (plugin runs, mostly waiting) while the
	// rest goes; the record goes last, once both are done, so that a
	// crash leaves a record that rm can finish.
	netErr := make(chan error, 1)
	go func() {
		cfg, err := config(c)
		if err == nil {
			err = e.netDown(ctx, c, cfg)
		}
		netErr <- err
	}()
	if rt, err := ociruntime.Find(c.Runtime, e.RunRoot); err == nil && rt.Has(c.ID) {
		rt.Delete(ctx, c.ID, true)
	}
	dir := e.dir(c.ID)
	unix.Unmount(filepath.Join(dir, "rootfs"), unix.MNT_DETACH)
	var errs []error
	if err := e.Images.Snapshots.Remove(ctx, c.Snapshot); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	if err := <-netErr; err != nil {
		return errors.Join(append(errs, err)...) // the record stays: rm again retries
	}
	if err := e.Meta.DeleteContainer(ctx, c.ID); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, err)
	}
	if cfg, err := config(c); err == nil && cfg.Remove {
		for _, v := range AnonymousVolumes(c) { // --rm takes its anonymous volumes along, as in docker
			if err := e.RemoveVolume(ctx, v); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Spec reads the OCI spec of c's bundle.
func (e *Engine) Spec(c metadata.Container) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(e.dir(c.ID), "config.json"))
	if err != nil {
		return nil, fmt.Errorf("container %s: bundle: %w", c.Name, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil || spec.Process == nil {
		return nil, fmt.Errorf("container %s: bundle: %v: %w", c.Name, err, errdefs.ErrFailedPrecond)
	}
	return &spec, nil
}

// ExecConfig is a process to run in a running container.
type ExecConfig struct {
	Args    []string
	Env     []string
	User    string // uid[:gid]
	WorkDir string
	TTY     bool
	Detach  bool
	// ConsoleSocket receives the terminal's master for TTY.
	ConsoleSocket string
}

// Exec runs a process in c, with the container's process as the template
// (environment, user, capabilities), through the runtime; the process
// inherits stdio unless it has a terminal. It returns the process's exit
// code (0 for Detach).
func (e *Engine) Exec(ctx context.Context, c metadata.Container, x ExecConfig) (int, error) {
	rt, err := e.running(ctx, c)
	if err != nil {
		return 0, err
	}
	if len(x.Args) == 0 {
		return 0, fmt.Errorf("exec: no command: %w", errdefs.ErrInvalidArgument)
	}
	dir := e.dir(c.ID)
	spec, err := e.Spec(c)
	if err != nil {
		return 0, err
	}
	p := *spec.Process
	p.Args, p.Terminal = x.Args, x.TTY
	for _, kv := range x.Env {
		k, _, _ := strings.Cut(kv, "=")
		p.Env = append(slicesDeleteEnv(p.Env, k), kv)
	}
	if x.WorkDir != "" {
		p.Cwd = x.WorkDir
	}
	if x.User != "" {
		u, g, _ := strings.Cut(x.User, ":")
		uid, err1 := strconv.ParseUint(u, 10, 32)
		gid, err2 := strconv.ParseUint(cmp.Or(g, "0"), 10, 32)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("exec --user %q: numeric uid[:gid]: %w", x.User, errdefs.ErrInvalidArgument)
		}
		p.User = specs.User{UID: uint32(uid), GID: uint32(gid)}
	}
	pf, err := os.CreateTemp(dir, "exec-*.json")
	if err != nil {
		return 0, err
	}
	defer os.Remove(pf.Name())
	if err := json.NewEncoder(pf).Encode(p); err != nil {
		pf.Close()
		return 0, err
	}
	pf.Close()
	args := []string{"exec", "--process", pf.Name()}
	if x.TTY {
		args = append(args, "--console-socket", x.ConsoleSocket)
	}
	if x.Detach {
		args = append(args, "--detach")
	}
	cmd := rt.Command(ctx, append(args, c.ID)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), nil
		}
		return 0, err
	}
	return 0, nil
}

func slicesDeleteEnv(env []string, k string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, k+"=") {
			out = append(out, e)
		}
	}
	return out
}

// Pause freezes (or, with resume, thaws) c's processes through the runtime.
func (e *Engine) Pause(ctx context.Context, c metadata.Container, resume bool) error {
	rt, err := e.running(ctx, c)
	if err != nil {
		return err
	}
	verb := "pause"
	if resume {
		verb = "resume"
	}
	cmd := rt.Command(ctx, verb, c.ID)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("container %s: %s: %s: %w", c.Name, verb, strings.TrimSpace(string(out)), errdefs.ErrFailedPrecond)
	}
	return nil
}

// Paused reports whether the runtime has c frozen.
func (e *Engine) Paused(ctx context.Context, c metadata.Container) bool {
	rt, err := ociruntime.Find(c.Runtime, e.RunRoot)
	if err != nil || !rt.Has(c.ID) {
		return false
	}
	st, err := rt.State(ctx, c.ID)
	return err == nil && st.Status == "paused"
}
