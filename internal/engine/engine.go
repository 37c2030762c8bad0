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
	"maps"
	"os"
	"os/exec"
	"path"
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
	"github.com/berthdev/berth/internal/procfs"
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
	// PortProxy, when set, is the command (argv) that publishes the ports
	// of a slirp4netns or --network none container in user space
	// (network.ServeProxy), as an unprivileged user's berth must. It gets
	// the namespace's path and the mappings (JSON).
	PortProxy []string
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
	PublishAll bool          `json:"-"`
	Mounts     []specs.Mount `json:"mounts,omitempty"`
	Volumes    []VolumeMount `json:"volumes,omitempty"`
	DNS        []string      `json:"dns,omitempty"`       // nameservers instead of the host's
	DNSSearch  []string      `json:"dnsSearch,omitempty"` // search domains instead of the host's
	AddHosts   []string      `json:"addHosts,omitempty"`  // "name:IP" lines for /etc/hosts
	DNSOptions []string      `json:"dnsOptions,omitempty"`
	// ConsoleSize is the terminal's size at the start (with TTY).
	ConsoleSize *specs.Box `json:"consoleSize,omitempty"`
	// LogPath is where the log goes ("": the container's directory).
	LogPath string `json:"logPath,omitempty"`
	// Pod is what a container of a CRI pod needs beyond a berth run.
	Pod        *PodOptions         `json:"pod,omitempty"`
	Memory     int64               `json:"memory,omitempty"`
	CPUs       float64             `json:"cpus,omitempty"`
	PidsLimit  int64               `json:"pidsLimit,omitempty"`
	Rlimits    []specs.POSIXRlimit `json:"rlimits,omitempty"`
	Remove     bool                `json:"remove,omitempty"`
	LogMaxSize int64               `json:"logMaxSize,omitempty"`
	// ImageVolumes are stored images' files, read-only, in the container.
	ImageVolumes []ImageVolume `json:"imageVolumes,omitempty"`
	// CgroupParent is the cgroup the container's goes under (default
	// /berth): a path in each hierarchy, relative to the runtime's own
	// cgroup unless absolute.
	CgroupParent string `json:"cgroupParent,omitempty"`
	StopSignal   string `json:"stopSignal,omitempty"`
	Init         bool   `json:"init,omitempty"` // an init as PID 1 (see initBinary)
}

// dir is a container's directory: bundle (config.json, rootfs), log,
// monitor files.
func (e *Engine) dir(id string) string { return filepath.Join(e.RunRoot, "containers", id) }

// LogPath is where a container's log is: where its config says (the
// kubelet's path, for the CRI), else in its directory.
func (e *Engine) LogPath(c metadata.Container) string {
	if cfg, err := config(c); err == nil && cfg.LogPath != "" {
		return cfg.LogPath
	}
	return filepath.Join(e.dir(c.ID), "ctr.log")
}

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
	if err := CheckDNSOptions(cfg); err != nil {
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
	files, err := etcFiles(dir, hostname, cfg)
	if err != nil {
		return err
	}
	netns := ""
	switch cfg.Network {
	case NetHost:
		netns = "host"
	case NetBridge, NetSlirp:
		netns = e.netnsPath(c.ID)
	case NetNone, "":
		if len(cfg.Ports) > 0 { // the port proxy joins it
			netns = e.netnsPath(c.ID)
		}
	case NetJoin:
		netns = cfg.Pod.NetNS
	}
	cgroup := path.Join(cmp.Or(cfg.CgroupParent, "/berth"), c.ID)
	var po specgen.Options
	if p := cfg.Pod; p != nil {
		maps.Copy(files, p.Files)
		po = specgen.Options{Namespaces: p.namespaces(), Devices: p.Devices, Sysctls: p.Sysctls, OOMScoreAdj: p.OOMScoreAdj,
			AdditionalGIDs: p.AdditionalGIDs, MaskedPaths: p.MaskedPaths, ReadonlyPaths: p.ReadonlyPaths, Resources: p.Resources,
			Annotations: p.Annotations, RootfsPropagation: p.RootfsPropagation}
	}
	initBin, err := initBinary(cfg.Init)
	if err != nil {
		return err
	}
	vols, err := e.volumeMounts(cfg, rootfs)
	if err != nil {
		return err
	}
	ivs, err := e.imageVolumeMounts(ctx, c, cfg)
	if err != nil {
		return err
	}
	vols = append(vols, ivs...)
	po.ID, po.Image, po.Rootfs = c.ID, img, rootfs
	po.Entrypoint, po.EntrypointSet, po.Args = cfg.Entrypoint, cfg.EntrypointSet, cfg.Args
	po.Env, po.HostEnv, po.WorkDir, po.User, po.Hostname = cfg.Env, os.LookupEnv, cfg.WorkDir, cfg.User, cfg.Hostname
	po.TTY, po.Stdin, po.ReadOnly, po.Privileged = cfg.TTY, cfg.Stdin, cfg.ReadOnly, cfg.Privileged
	po.ConsoleSize = cfg.ConsoleSize
	po.CapAdd, po.CapDrop, po.NoNewPrivs, po.Seccomp, po.Network = cfg.CapAdd, cfg.CapDrop, cfg.NoNewPrivs, cfg.Seccomp, netns
	po.Files, po.Mounts = files, append(slices.Clip(cfg.Mounts), vols...)
	po.Memory, po.CPUs, po.PidsLimit, po.Rlimits = cfg.Memory, cfg.CPUs, cfg.PidsLimit, cfg.Rlimits
	po.CgroupPath, po.Init = cgroup, initBin
	spec, err := specgen.Generate(po)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return fsutil.ReplaceFile(filepath.Join(dir, "config.json"), data, 0o600)
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
	if _, err := os.Stat(filepath.Join(dir, "config.json")); errors.Is(err, os.ErrNotExist) {
		// The runroot went (a reboot clears /run): the bundle is made
		// again from the record; the rootfs's changes are in the store.
		img, err := e.Images.LookupOne(ctx, c.ImageID.Encoded())
		if err != nil {
			return nil, fmt.Errorf("container %s: its image, to make its bundle again: %w", c.Name, err)
		}
		imgCfg, err := e.Images.Config(ctx, img)
		if err != nil {
			return nil, err
		}
		if err := e.writeBundle(ctx, c, cfg, imgCfg.Config); err != nil {
			return nil, err
		}
	}
	rootfs, err := e.mountRootfs(ctx, c)
	if err != nil {
		return nil, err
	}
	if cfg.LogPath != "" { // the kubelet's pod log directory may not be there yet
		if err := os.MkdirAll(filepath.Dir(cfg.LogPath), 0o755); err != nil {
			return nil, err
		}
	}
	args := []string{"--id", c.ID, "--dir", dir, "--runtime", rt.Path, "--runtime-root", rt.Root,
		"--log", e.LogPath(c), "--rootfs", rootfs}
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
		return nil, fmt.Errorf("container %s: %w", c.Name, errdefs.Said(msg.Error, errdefs.ErrFailedPrecond))
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
	// The runtime's record and then the network are released (runtime
	// and plugin runs, mostly waiting) while the files go: the runtime
	// keeps the spec in its own state, not the bundle. The record goes
	// last, once both are done, so that a crash leaves a record that rm
	// can finish.
	netErr, deleted := make(chan error, 1), make(chan struct{})
	go func() {
		if rt, err := ociruntime.Find(c.Runtime, e.RunRoot); err == nil && rt.Has(c.ID) {
			rt.Delete(ctx, c.ID, true)
		}
		close(deleted)
		cfg, err := config(c)
		if err == nil {
			err = e.netDown(ctx, c, cfg)
		}
		netErr <- err
	}()
	dir := e.dir(c.ID)
	unix.Unmount(filepath.Join(dir, "rootfs"), unix.MNT_DETACH)
	var errs []error
	if err := e.releaseImageVolumes(ctx, c); err != nil {
		errs = append(errs, err)
	}
	if err := e.Images.Snapshots.Remove(ctx, c.Snapshot); err != nil && !errdefs.IsNotFound(err) {
		errs = append(errs, err)
	}
	// A monitor whose container the delete just killed (one created, never
	// started) writes its exit into dir: the files go once it is gone.
	<-deleted
	if pid := readPid(filepath.Join(dir, monitor.MonitorPid)); pid > 0 {
		procfs.End(pid, c.ID, 0, 2*time.Second)
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
