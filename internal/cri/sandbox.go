package cri

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/network"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Labels on the store's records that make them the CRI's.
const (
	labelKind        = engine.LabelKind // kindSandbox or kindContainer
	labelSandbox     = engine.LabelSandbox
	labelMetadata    = "io.berth.cri.metadata"
	labelLabels      = "io.berth.cri.labels"
	labelAnnotations = "io.berth.cri.annotations"
	labelConfig      = "io.berth.cri.config" // the request's config, JSON
	labelHandler     = "io.berth.cri.runtime-handler"
	kindSandbox      = "sandbox"
	kindContainer    = "container"
)

// recordLabels are the labels of a CRI record.
func recordLabels(kind string, meta, labels, annotations, config any) map[string]string {
	return map[string]string{labelKind: kind, labelMetadata: jsonString(meta), labelLabels: jsonString(labels),
		labelAnnotations: jsonString(annotations), labelConfig: jsonString(config)}
}

func fromLabel[T any](c metadata.Container, key string) T {
	var v T
	json.Unmarshal([]byte(c.Labels[key]), &v)
	return v
}

// sandbox returns the pod sandbox id names (an ID or its unique prefix).
func (s *Server) sandbox(ctx context.Context, id string) (metadata.Container, error) {
	return s.record(ctx, id, kindSandbox)
}

func (s *Server) record(ctx context.Context, id, kind string) (metadata.Container, error) {
	if id == "" {
		return metadata.Container{}, fmt.Errorf("%s: no ID: %w", kind, errdefs.ErrInvalidArgument)
	}
	c, err := s.eng.Meta.GetContainer(ctx, id)
	if err != nil {
		return c, err
	}
	if c.Labels[labelKind] != kind {
		return c, fmt.Errorf("%s %s: %w", kind, id, errdefs.ErrNotFound)
	}
	return c, nil
}

// runtimeFor is the OCI runtime of a RuntimeClass handler.
func (s *Server) runtimeFor(handler string) (string, error) {
	if rt, ok := s.cfg.Runtimes[handler]; ok {
		return rt, nil
	}
	if handler == "" {
		return "", nil // berth-runtime
	}
	return "", fmt.Errorf("runtime handler %q: not configured (berthd.toml [cri.runtimes]): %w", handler, errdefs.ErrNotFound)
}

// ensureImage pulls ref unless the store has it.
func (s *Server) ensureImage(ctx context.Context, ref string) error {
	if _, err := s.eng.Images.LookupOne(ctx, ref); err == nil {
		return nil
	}
	_, err := s.eng.Images.Pull(ctx, ref, nil)
	return err
}

// RunPodSandbox starts the pod's infra container on its own network
// namespace (or the host's), with the pod's hostname, DNS, ports and
// sysctls; its containers join its namespaces.
func (s *Server) RunPodSandbox(ctx context.Context, req *runtime.RunPodSandboxRequest) (*runtime.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	m := cfg.GetMetadata()
	if m == nil || m.Name == "" || m.Namespace == "" || m.Uid == "" {
		return nil, fmt.Errorf("pod sandbox: metadata needs a name, a namespace and a uid: %w", errdefs.ErrInvalidArgument)
	}
	rt, err := s.runtimeFor(req.RuntimeHandler)
	if err != nil {
		return nil, err
	}
	if err := s.ensureImage(ctx, s.cfg.PauseImage); err != nil {
		return nil, fmt.Errorf("pause image %s: %w", s.cfg.PauseImage, err)
	}
	linux := cfg.GetLinux()
	nsOpts := linux.GetSecurityContext().GetNamespaceOptions()
	ec := engine.Config{Hostname: cfg.Hostname, StopSignal: "SIGKILL", CgroupParent: cmp.Or(linux.GetCgroupParent(), s.cfg.CgroupParent),
		Pod: &engine.PodOptions{Sysctls: linux.GetSysctls()}}
	if dns := cfg.GetDnsConfig(); dns != nil {
		ec.DNS, ec.DNSSearch, ec.DNSOptions = dns.Servers, dns.Searches, dns.Options
	}
	if nsOpts.GetNetwork() == runtime.NamespaceMode_NODE {
		ec.Network, ec.Pod.UTS = engine.NetHost, "host"
	} else {
		ec.Network, ec.Networks = engine.NetBridge, []string{s.cfg.Network}
		for _, p := range cfg.PortMappings {
			if p.HostPort <= 0 {
				continue
			}
			ec.Ports = append(ec.Ports, network.PortMapping{HostIP: p.HostIp, HostPort: int(p.HostPort),
				ContainerPort: int(p.ContainerPort), Protocol: strings.ToLower(p.Protocol.String())})
		}
	}
	if nsOpts.GetIpc() == runtime.NamespaceMode_NODE {
		ec.Pod.IPC = "host"
	}
	if nsOpts.GetPid() == runtime.NamespaceMode_NODE {
		ec.Pod.PID = "host"
	}
	sc := linux.GetSecurityContext()
	ec.Privileged = sc.GetPrivileged()
	if ec.Privileged {
		ec.Seccomp = "unconfined"
	}
	name := fmt.Sprintf("k8s_POD_%s_%s_%s_%d", m.Name, m.Namespace, m.Uid, m.Attempt)
	labels := recordLabels(kindSandbox, m, cfg.Labels, cfg.Annotations, cfg)
	labels[labelHandler] = req.RuntimeHandler
	ec.Labels = labels
	c, err := s.eng.Create(ctx, s.cfg.PauseImage, name, rt, ec)
	if err != nil {
		return nil, err
	}
	if _, err := s.eng.Start(ctx, c.ID); err != nil {
		s.eng.Remove(context.WithoutCancel(ctx), c, true)
		return nil, err
	}
	return &runtime.RunPodSandboxResponse{PodSandboxId: c.ID}, nil
}

// podContainers are the containers of pod id.
func (s *Server) podContainers(ctx context.Context, id string) ([]metadata.Container, error) {
	all, err := s.eng.Meta.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	var out []metadata.Container
	for _, c := range all {
		if c.Labels[labelKind] == kindContainer && c.Labels[labelSandbox] == id {
			out = append(out, c)
		}
	}
	return out, nil
}

// StopPodSandbox stops the pod's containers, then its infra container,
// which releases its network. A pod that is not there is stopped.
func (s *Server) StopPodSandbox(ctx context.Context, req *runtime.StopPodSandboxRequest) (*runtime.StopPodSandboxResponse, error) {
	sb, err := s.sandbox(ctx, req.PodSandboxId)
	if errdefs.IsNotFound(err) {
		return &runtime.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	cs, err := s.podContainers(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if err := s.eng.Stop(ctx, c, 0); err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	if err := s.eng.Stop(ctx, sb, 0); err != nil {
		return nil, err
	}
	return &runtime.StopPodSandboxResponse{}, nil
}

// RemovePodSandbox removes the pod's containers and its infra container;
// a pod that is not there is removed.
func (s *Server) RemovePodSandbox(ctx context.Context, req *runtime.RemovePodSandboxRequest) (*runtime.RemovePodSandboxResponse, error) {
	sb, err := s.sandbox(ctx, req.PodSandboxId)
	if errdefs.IsNotFound(err) {
		return &runtime.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	cs, err := s.podContainers(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	for _, c := range cs {
		if err := s.eng.Remove(ctx, c, true); err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	if err := s.eng.Remove(ctx, sb, true); err != nil && !errdefs.IsNotFound(err) {
		return nil, err
	}
	return &runtime.RemovePodSandboxResponse{}, nil
}

// sandboxState is READY while the infra container runs.
func (s *Server) sandboxState(ctx context.Context, sb metadata.Container) (runtime.PodSandboxState, engine.State) {
	st, err := s.eng.State(ctx, sb)
	if err == nil && st.Status == engine.StatusRunning {
		return runtime.PodSandboxState_SANDBOX_READY, st
	}
	return runtime.PodSandboxState_SANDBOX_NOTREADY, st
}

// PodSandboxStatus reports a pod: its state, address, namespaces.
func (s *Server) PodSandboxStatus(ctx context.Context, req *runtime.PodSandboxStatusRequest) (*runtime.PodSandboxStatusResponse, error) {
	sb, err := s.sandbox(ctx, req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	cfg := fromLabel[runtime.PodSandboxConfig](sb, labelConfig)
	state, st := s.sandboxState(ctx, sb)
	status := &runtime.PodSandboxStatus{
		Id: sb.ID, Metadata: fromLabel[*runtime.PodSandboxMetadata](sb, labelMetadata), State: state,
		CreatedAt: sb.CreatedAt.UnixNano(), Labels: fromLabel[map[string]string](sb, labelLabels),
		Annotations: fromLabel[map[string]string](sb, labelAnnotations), RuntimeHandler: sb.Labels[labelHandler],
		Linux:   &runtime.LinuxPodSandboxStatus{Namespaces: &runtime.Namespace{Options: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()}},
		Network: &runtime.PodSandboxNetworkStatus{},
	}
	if atts := s.eng.Attachments(sb); len(atts) > 0 {
		ip, _, _ := strings.Cut(atts[0].IP, "/")
		status.Network.Ip = ip
	}
	resp := &runtime.PodSandboxStatusResponse{Status: status}
	if req.Verbose {
		resp.Info = map[string]string{"info": jsonString(map[string]any{"pid": st.Pid, "config": &cfg, "runtime": sb.Runtime,
			"bundle": s.eng.Dir(sb.ID)})}
	}
	return resp, nil
}

// ListPodSandbox lists pods, filtered by ID (or prefix), state and labels.
func (s *Server) ListPodSandbox(ctx context.Context, req *runtime.ListPodSandboxRequest) (*runtime.ListPodSandboxResponse, error) {
	all, err := s.eng.Meta.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	f := req.Filter
	resp := &runtime.ListPodSandboxResponse{}
	for _, sb := range all {
		if sb.Labels[labelKind] != kindSandbox || f != nil && f.Id != "" && !strings.HasPrefix(sb.ID, f.Id) {
			continue
		}
		labels := fromLabel[map[string]string](sb, labelLabels)
		if !matchLabels(labels, f.GetLabelSelector()) {
			continue
		}
		state, _ := s.sandboxState(ctx, sb)
		if f.GetState() != nil && f.GetState().State != state {
			continue
		}
		resp.Items = append(resp.Items, &runtime.PodSandbox{Id: sb.ID, Metadata: fromLabel[*runtime.PodSandboxMetadata](sb, labelMetadata),
			State: state, CreatedAt: sb.CreatedAt.UnixNano(), Labels: labels, Annotations: fromLabel[map[string]string](sb, labelAnnotations),
			RuntimeHandler: sb.Labels[labelHandler]})
	}
	return resp, nil
}

func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// podFiles are the pod's /etc files its containers bind: those its infra
// container's spec binds.
func (s *Server) podFiles(sb metadata.Container) map[string]string {
	files := map[string]string{}
	spec, err := s.eng.Spec(sb)
	if err != nil {
		return files
	}
	for _, m := range spec.Mounts {
		switch m.Destination {
		case "/etc/hosts", "/etc/resolv.conf", "/etc/hostname":
			files[m.Destination] = m.Source
		}
	}
	return files
}

// nsPath is a namespace of the infra container's process.
func nsPath(pid int, ns string) string { return filepath.Join("/proc", strconv.Itoa(pid), "ns", ns) }

// nanos is t as the CRI's nanoseconds, 0 for no time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
