package cri

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CreateContainer makes a container in a pod: it joins the pod's network
// namespace and its infra container's IPC and UTS namespaces (and PID's
// for a pod-wide PID namespace), and logs where the kubelet reads.
func (s *Server) CreateContainer(ctx context.Context, req *runtime.CreateContainerRequest) (*runtime.CreateContainerResponse, error) {
	sb, err := s.sandbox(ctx, req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	cfg := req.GetConfig()
	m := cfg.GetMetadata()
	if m == nil || m.Name == "" {
		return nil, fmt.Errorf("container: metadata needs a name: %w", errdefs.ErrInvalidArgument)
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, fmt.Errorf("container %s: no image: %w", m.Name, errdefs.ErrInvalidArgument)
	}
	img, err := s.eng.Images.LookupOne(ctx, cfg.Image.Image)
	if err != nil {
		return nil, fmt.Errorf("container %s: image %s (the kubelet pulls it first): %w", m.Name, cfg.Image.Image, err)
	}
	st, err := s.eng.State(ctx, sb)
	if err != nil {
		return nil, err
	}
	if st.Status != engine.StatusRunning || st.Pid == 0 {
		return nil, fmt.Errorf("pod %s is not ready (its infra container is %s): %w", sb.ID, st.Status, errdefs.ErrFailedPrecond)
	}
	sbCfg := fromLabel[runtime.PodSandboxConfig](sb, labelConfig)
	ec, err := s.containerConfig(sb, st.Pid, &sbCfg, cfg)
	if err != nil {
		return nil, err
	}
	pm := fromLabel[runtime.PodSandboxMetadata](sb, labelMetadata)
	name := fmt.Sprintf("k8s_%s_%s_%s_%s_%d", m.Name, pm.Name, pm.Namespace, pm.Uid, m.Attempt)
	ec.Labels = recordLabels(kindContainer, m, cfg.Labels, cfg.Annotations, cfg)
	ec.Labels[labelSandbox] = sb.ID
	c, err := s.eng.Create(ctx, img.Config.String(), name, sb.Runtime, ec)
	if err != nil {
		return nil, err
	}
	return &runtime.CreateContainerResponse{ContainerId: c.ID}, nil
}

// containerConfig maps a CRI container config onto the engine's.
func (s *Server) containerConfig(sb metadata.Container, infraPid int, sbCfg *runtime.PodSandboxConfig, cfg *runtime.ContainerConfig) (engine.Config, error) {
	ec := engine.Config{Args: cfg.Args, WorkDir: cfg.WorkingDir, TTY: cfg.Tty, Stdin: cfg.Stdin, Pod: &engine.PodOptions{}}
	if len(cfg.Command) > 0 {
		ec.Entrypoint, ec.EntrypointSet = cfg.Command, true
	}
	for _, kv := range cfg.Envs {
		ec.Env = append(ec.Env, kv.Key+"="+string(kv.Value))
	}
	if sbCfg.LogDirectory != "" && cfg.LogPath != "" {
		ec.LogPath = filepath.Join(sbCfg.LogDirectory, cfg.LogPath)
	}
	p := ec.Pod
	p.Files = s.podFiles(sb)
	p.Annotations = cfg.Annotations
	sbNS := sbCfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if sbNS.GetNetwork() == runtime.NamespaceMode_NODE {
		ec.Network, p.UTS = engine.NetHost, "host"
	} else {
		ec.Network, p.NetNS, p.UTS = engine.NetJoin, nsPath(infraPid, "net"), nsPath(infraPid, "uts")
	}
	if sbNS.GetIpc() == runtime.NamespaceMode_NODE {
		p.IPC = "host"
	} else {
		p.IPC = nsPath(infraPid, "ipc")
	}
	lx := cfg.GetLinux()
	sc := lx.GetSecurityContext()
	switch sc.GetNamespaceOptions().GetPid() {
	case runtime.NamespaceMode_NODE:
		p.PID = "host"
	case runtime.NamespaceMode_POD:
		p.PID = nsPath(infraPid, "pid")
	case runtime.NamespaceMode_TARGET:
		t, err := s.record(context.Background(), sc.NamespaceOptions.TargetId, kindContainer)
		if err != nil {
			return ec, fmt.Errorf("pid namespace target: %w", err)
		}
		tst, err := s.eng.State(context.Background(), t)
		if err != nil || tst.Pid == 0 {
			return ec, fmt.Errorf("pid namespace target %s is not running: %w", t.ID, errdefs.ErrFailedPrecond)
		}
		p.PID = nsPath(tst.Pid, "pid")
	}
	ec.CgroupParent = cmp.Or(sbCfg.GetLinux().GetCgroupParent(), s.cfg.CgroupParent)
	for _, mnt := range cfg.Mounts {
		if mnt.Image != nil && mnt.Image.Image != "" {
			v, err := s.imageVolume(mnt)
			if err != nil {
				return ec, err
			}
			ec.ImageVolumes = append(ec.ImageVolumes, v)
			continue
		}
		m, err := mount(mnt)
		if err != nil {
			return ec, err
		}
		ec.Mounts = append(ec.Mounts, m)
		// A mount that propagates needs the root's mounts to propagate too.
		switch mnt.Propagation {
		case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			p.RootfsPropagation = "rshared"
		case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			if p.RootfsPropagation == "" {
				p.RootfsPropagation = "rslave"
			}
		}
	}
	for _, d := range cfg.Devices {
		dev, err := device(d)
		if err != nil {
			return ec, err
		}
		p.Devices = append(p.Devices, dev)
	}
	if err := securityContext(&ec, sc); err != nil {
		return ec, err
	}
	p.Resources = resources(lx.GetResources())
	return ec, nil
}

// securityContext maps the container's security context.
func securityContext(ec *engine.Config, sc *runtime.LinuxContainerSecurityContext) error {
	if sc == nil {
		return nil
	}
	ec.Privileged, ec.ReadOnly, ec.NoNewPrivs = sc.Privileged, sc.ReadonlyRootfs, sc.NoNewPrivs
	if c := sc.Capabilities; c != nil {
		ec.CapAdd, ec.CapDrop = c.AddCapabilities, c.DropCapabilities
		if len(c.AddAmbientCapabilities) > 0 {
			return fmt.Errorf("ambient capabilities: %w", errdefs.ErrNotImplemented)
		}
	}
	switch {
	case sc.RunAsUser != nil:
		ec.User = strconv.FormatInt(sc.RunAsUser.Value, 10)
	case sc.RunAsUsername != "":
		ec.User = sc.RunAsUsername
	}
	if sc.RunAsGroup != nil {
		if ec.User == "" {
			return fmt.Errorf("run_as_group without run_as_user or run_as_username: %w", errdefs.ErrInvalidArgument)
		}
		ec.User += ":" + strconv.FormatInt(sc.RunAsGroup.Value, 10)
	}
	for _, g := range sc.SupplementalGroups {
		ec.Pod.AdditionalGIDs = append(ec.Pod.AdditionalGIDs, uint32(g))
	}
	if !sc.Privileged {
		if len(sc.MaskedPaths) > 0 {
			ec.Pod.MaskedPaths = &sc.MaskedPaths
		}
		if len(sc.ReadonlyPaths) > 0 {
			ec.Pod.ReadonlyPaths = &sc.ReadonlyPaths
		}
	}
	// The kubelet's rules: no profile given is unconfined; a privileged
	// container is unconfined whatever it names.
	prof := sc.GetSeccomp()
	switch {
	case sc.Privileged || prof == nil || prof.ProfileType == runtime.SecurityProfile_Unconfined:
		ec.Seccomp = "unconfined"
	case prof.ProfileType == runtime.SecurityProfile_Localhost:
		if !filepath.IsAbs(prof.LocalhostRef) {
			return fmt.Errorf("seccomp localhost profile %q: not an absolute path: %w", prof.LocalhostRef, errdefs.ErrInvalidArgument)
		}
		ec.Seccomp = prof.LocalhostRef
	}
	return nil
}

// mount maps a CRI mount to a bind mount; a missing host path is made as
// a directory (the kubelet's hostPath volumes assume so).
func mount(m *runtime.Mount) (specs.Mount, error) {
	if !filepath.IsAbs(m.ContainerPath) || !filepath.IsAbs(m.HostPath) {
		return specs.Mount{}, fmt.Errorf("mount %s:%s: both paths must be absolute: %w", m.HostPath, m.ContainerPath, errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(m.HostPath); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(m.HostPath, 0o755); err != nil {
			return specs.Mount{}, err
		}
	}
	opts := []string{"rbind"}
	switch m.Propagation {
	case runtime.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		opts = append(opts, "rslave")
	case runtime.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		opts = append(opts, "rshared")
	default:
		opts = append(opts, "rprivate")
	}
	if m.Readonly {
		opts = append(opts, "ro")
	}
	if m.RecursiveReadOnly {
		if !m.Readonly || m.Propagation != runtime.MountPropagation_PROPAGATION_PRIVATE {
			return specs.Mount{}, fmt.Errorf("mount %s: recursive read-only needs readonly and private propagation: %w", m.ContainerPath, errdefs.ErrInvalidArgument)
		}
		opts = append(opts, "rro")
	}
	return specs.Mount{Destination: m.ContainerPath, Type: "bind", Source: m.HostPath, Options: opts}, nil
}

// imageVolume maps a mount of an image (the kubelet's image volumes, which
// it pulls first): read-only, as the CRI requires; a sub-path is a
// relative path inside the image. The mount's image_ref is set to the
// image's ID, which ContainerStatus reports.
func (s *Server) imageVolume(m *runtime.Mount) (engine.ImageVolume, error) {
	if !filepath.IsAbs(m.ContainerPath) {
		return engine.ImageVolume{}, fmt.Errorf("mount %s: the container path must be absolute: %w", m.ContainerPath, errdefs.ErrInvalidArgument)
	}
	if !m.Readonly {
		return engine.ImageVolume{}, fmt.Errorf("mount %s: an image volume is read-only: %w", m.ContainerPath, errdefs.ErrInvalidArgument)
	}
	sub := m.ImageSubPath
	if sub != "" {
		sub = path.Clean(sub)
		if path.IsAbs(sub) || sub == ".." || strings.HasPrefix(sub, "../") {
			return engine.ImageVolume{}, fmt.Errorf("mount %s: image sub-path %q must stay inside the image: %w", m.ContainerPath, m.ImageSubPath, errdefs.ErrInvalidArgument)
		}
	}
	img, err := s.eng.Images.LookupOne(context.Background(), m.Image.Image)
	if err != nil {
		return engine.ImageVolume{}, fmt.Errorf("mount %s: image %s (the kubelet pulls it first): %w", m.ContainerPath, m.Image.Image, err)
	}
	m.Image.ImageRef = imageID(img)
	return engine.ImageVolume{Image: imageID(img), Destination: m.ContainerPath, SubPath: sub}, nil
}

// device maps a host device; permissions are r, w and m letters.
func device(d *runtime.Device) (specs.LinuxDevice, error) {
	var st unix.Stat_t
	if err := unix.Stat(d.HostPath, &st); err != nil {
		return specs.LinuxDevice{}, fmt.Errorf("device %s: %w", d.HostPath, err)
	}
	typ := ""
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, fmt.Errorf("device %s: not a device: %w", d.HostPath, errdefs.ErrInvalidArgument)
	}
	mode := os.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{Path: cmp.Or(d.ContainerPath, d.HostPath), Type: typ, Major: int64(unix.Major(st.Rdev)),
		Minor: int64(unix.Minor(st.Rdev)), FileMode: &mode, UID: &uid, GID: &gid}, nil
}

// resources maps the CRI's resources; nil for none.
func resources(r *runtime.LinuxContainerResources) *specs.LinuxResources {
	if r == nil {
		return nil
	}
	out := &specs.LinuxResources{}
	cpu := &specs.LinuxCPU{Cpus: r.CpusetCpus, Mems: r.CpusetMems}
	if r.CpuShares > 0 {
		v := uint64(r.CpuShares)
		cpu.Shares = &v
	}
	if r.CpuQuota > 0 {
		v := r.CpuQuota
		cpu.Quota = &v
	}
	if r.CpuPeriod > 0 {
		v := uint64(r.CpuPeriod)
		cpu.Period = &v
	}
	out.CPU = cpu
	if r.MemoryLimitInBytes > 0 {
		v := r.MemoryLimitInBytes
		out.Memory = &specs.LinuxMemory{Limit: &v}
		if r.MemorySwapLimitInBytes > 0 {
			sw := r.MemorySwapLimitInBytes
			out.Memory.Swap = &sw
		}
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
	}
	out.Unified = r.Unified
	return out
}

// StartContainer starts a created container.
func (s *Server) StartContainer(ctx context.Context, req *runtime.StartContainerRequest) (*runtime.StartContainerResponse, error) {
	c, err := s.record(ctx, req.ContainerId, kindContainer)
	if err != nil {
		return nil, err
	}
	if _, err := s.eng.Start(ctx, c.ID); err != nil {
		return nil, err
	}
	return &runtime.StartContainerResponse{}, nil
}

// StopContainer stops a container (its stop signal, then SIGKILL after
// the timeout); one that is not there is stopped.
func (s *Server) StopContainer(ctx context.Context, req *runtime.StopContainerRequest) (*runtime.StopContainerResponse, error) {
	c, err := s.record(ctx, req.ContainerId, kindContainer)
	if errdefs.IsNotFound(err) {
		return &runtime.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.eng.Stop(ctx, c, time.Duration(req.Timeout)*time.Second); err != nil {
		return nil, err
	}
	return &runtime.StopContainerResponse{}, nil
}

// RemoveContainer removes a container, running or not; one that is not
// there is removed.
func (s *Server) RemoveContainer(ctx context.Context, req *runtime.RemoveContainerRequest) (*runtime.RemoveContainerResponse, error) {
	c, err := s.record(ctx, req.ContainerId, kindContainer)
	if errdefs.IsNotFound(err) {
		return &runtime.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.eng.Remove(ctx, c, true); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return &runtime.RemoveContainerResponse{}, nil
}

func containerState(st engine.State) runtime.ContainerState {
	switch st.Status {
	case engine.StatusRunning:
		return runtime.ContainerState_CONTAINER_RUNNING
	case engine.StatusExited:
		return runtime.ContainerState_CONTAINER_EXITED
	case engine.StatusCreated:
		return runtime.ContainerState_CONTAINER_CREATED
	}
	return runtime.ContainerState_CONTAINER_UNKNOWN
}

// ContainerStatus reports a container: state, times, exit code, image,
// mounts and log path.
func (s *Server) ContainerStatus(ctx context.Context, req *runtime.ContainerStatusRequest) (*runtime.ContainerStatusResponse, error) {
	c, err := s.record(ctx, req.ContainerId, kindContainer)
	if err != nil {
		return nil, err
	}
	st, err := s.eng.State(ctx, c)
	if err != nil {
		return nil, err
	}
	cfg := fromLabel[runtime.ContainerConfig](c, labelConfig)
	status := &runtime.ContainerStatus{
		Id: c.ID, Metadata: cfg.Metadata, State: containerState(st), CreatedAt: c.CreatedAt.UnixNano(),
		StartedAt: nanos(st.StartedAt), FinishedAt: nanos(st.FinishedAt), ExitCode: int32(st.ExitCode),
		Image: cfg.Image, ImageRef: c.ImageID.String(), ImageId: c.ImageID.String(),
		Labels: cfg.Labels, Annotations: cfg.Annotations, Mounts: cfg.Mounts, LogPath: s.eng.LogPath(c),
		User: &runtime.ContainerUser{},
	}
	if cfg.Image != nil {
		status.Image = &runtime.ImageSpec{Image: cfg.Image.Image}
	}
	if st.Status == engine.StatusExited {
		switch {
		case st.ExitCode == 137 && s.eng.OOMKilled(c):
			status.Reason = "OOMKilled"
		case st.ExitCode != 0:
			status.Reason = "Error"
		default:
			status.Reason = "Completed"
		}
		status.Message = st.Error
	}
	resp := &runtime.ContainerStatusResponse{Status: status}
	if req.Verbose {
		resp.Info = map[string]string{"info": jsonString(map[string]any{"pid": st.Pid, "sandboxID": c.Labels[labelSandbox],
			"runtime": c.Runtime, "bundle": s.eng.Dir(c.ID)})}
	}
	return resp, nil
}

// ListContainers lists containers, filtered by ID (or prefix), state,
// pod and labels.
func (s *Server) ListContainers(ctx context.Context, req *runtime.ListContainersRequest) (*runtime.ListContainersResponse, error) {
	all, err := s.eng.Meta.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	f := req.Filter
	resp := &runtime.ListContainersResponse{}
	for _, c := range all {
		if c.Labels[labelKind] != kindContainer || f != nil && (f.Id != "" && !strings.HasPrefix(c.ID, f.Id) ||
			f.PodSandboxId != "" && !strings.HasPrefix(c.Labels[labelSandbox], f.PodSandboxId)) {
			continue
		}
		cfg := fromLabel[runtime.ContainerConfig](c, labelConfig)
		if !matchLabels(cfg.Labels, f.GetLabelSelector()) {
			continue
		}
		st, err := s.eng.State(ctx, c)
		if err != nil {
			continue
		}
		state := containerState(st)
		if f.GetState() != nil && f.GetState().State != state {
			continue
		}
		resp.Containers = append(resp.Containers, &runtime.Container{Id: c.ID, PodSandboxId: c.Labels[labelSandbox],
			Metadata: cfg.Metadata, Image: cfg.Image, ImageRef: c.ImageID.String(), ImageId: c.ImageID.String(), State: state,
			CreatedAt: c.CreatedAt.UnixNano(), Labels: cfg.Labels, Annotations: cfg.Annotations})
	}
	return resp, nil
}

// ExecSync runs a command in a running container and returns its output
// and exit code; past the timeout the command is killed.
func (s *Server) ExecSync(ctx context.Context, req *runtime.ExecSyncRequest) (*runtime.ExecSyncResponse, error) {
	c, err := s.record(ctx, req.ContainerId, kindContainer)
	if err != nil {
		return nil, err
	}
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.Timeout)*time.Second)
		defer cancel()
	}
	var stdout, stderr bytes.Buffer
	code, err := s.eng.Exec(ctx, c, engine.ExecConfig{Args: req.Cmd, Stdin: bytes.NewReader(nil), Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return nil, err
	}
	return &runtime.ExecSyncResponse{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: int32(code)}, nil
}

// containerStats samples c: CPU and memory from its cgroup (zero while
// it does not run), its writable layer's use.
func (s *Server) containerStats(ctx context.Context, c metadata.Container) (*runtime.ContainerStats, error) {
	st, err := s.eng.Stats(ctx, c, nil)
	if err != nil {
		return nil, err
	}
	used, inodes, err := s.eng.WritableUsage(ctx, c)
	if err != nil {
		return nil, err
	}
	now := time.Now().UnixNano()
	cfg := fromLabel[runtime.ContainerConfig](c, labelConfig)
	return &runtime.ContainerStats{
		Attributes: &runtime.ContainerAttributes{Id: c.ID, Metadata: cfg.Metadata, Labels: cfg.Labels, Annotations: cfg.Annotations},
		Cpu:        &runtime.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtime.UInt64Value{Value: st.CPUNano}},
		Memory: &runtime.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtime.UInt64Value{Value: st.MemUsage},
			UsageBytes: &runtime.UInt64Value{Value: st.MemUsage}, AvailableBytes: &runtime.UInt64Value{Value: st.MemLimit - min(st.MemLimit, st.MemUsage)}},
		WritableLayer: &runtime.FilesystemUsage{Timestamp: now, FsId: &runtime.FilesystemIdentifier{Mountpoint: s.eng.Images.Root},
			UsedBytes: &runtime.UInt64Value{Value: used}, InodesUsed: &runtime.UInt64Value{Value: inodes}},
	}, nil
}

// ContainerStats samples one container.
func (s *Server) ContainerStats(ctx context.Context, req *runtime.ContainerStatsRequest) (*runtime.ContainerStatsResponse, error) {
	c, err := s.record(ctx, req.ContainerId, kindContainer)
	if err != nil {
		return nil, err
	}
	st, err := s.containerStats(ctx, c)
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStatsResponse{Stats: st}, nil
}

// ListContainerStats samples the containers the filter picks.
func (s *Server) ListContainerStats(ctx context.Context, req *runtime.ListContainerStatsRequest) (*runtime.ListContainerStatsResponse, error) {
	f := req.Filter
	list, err := s.ListContainers(ctx, &runtime.ListContainersRequest{Filter: &runtime.ContainerFilter{
		Id: f.GetId(), PodSandboxId: f.GetPodSandboxId(), LabelSelector: f.GetLabelSelector()}})
	if err != nil {
		return nil, err
	}
	resp := &runtime.ListContainerStatsResponse{}
	for _, ctr := range list.Containers {
		c, err := s.record(ctx, ctr.Id, kindContainer)
		if err != nil {
			continue // removed meanwhile
		}
		st, err := s.containerStats(ctx, c)
		if err != nil {
			return nil, err
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

// ReopenContainerLog has the container's monitor open its log again,
// after the kubelet renamed it for rotation.
func (s *Server) ReopenContainerLog(ctx context.Context, req *runtime.ReopenContainerLogRequest) (*runtime.ReopenContainerLogResponse, error) {
	c, err := s.record(ctx, req.ContainerId, kindContainer)
	if err != nil {
		return nil, err
	}
	if err := s.eng.ReopenLog(ctx, c); err != nil {
		return nil, err
	}
	return &runtime.ReopenContainerLogResponse{}, nil
}

// UpdateContainerResources changes a running container's limits.
func (s *Server) UpdateContainerResources(ctx context.Context, req *runtime.UpdateContainerResourcesRequest) (*runtime.UpdateContainerResourcesResponse, error) {
	c, err := s.record(ctx, req.ContainerId, kindContainer)
	if err != nil {
		return nil, err
	}
	r := resources(req.Linux)
	if r == nil {
		return &runtime.UpdateContainerResourcesResponse{}, nil
	}
	if err := s.eng.Update(ctx, c, r); err != nil {
		return nil, err
	}
	return &runtime.UpdateContainerResourcesResponse{}, nil
}
