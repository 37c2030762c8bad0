package cri

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/opencontainers/cgroups"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodSandboxStats samples one pod: its cgroup's CPU, memory and
// processes, its network namespace's interfaces and its containers.
func (s *Server) PodSandboxStats(ctx context.Context, req *runtime.PodSandboxStatsRequest) (*runtime.PodSandboxStatsResponse, error) {
	sb, err := s.sandbox(ctx, req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	st, err := s.podStats(ctx, sb)
	if err != nil {
		return nil, err
	}
	return &runtime.PodSandboxStatsResponse{Stats: st}, nil
}

// ListPodSandboxStats samples the pods the filter picks (ID prefix, labels).
func (s *Server) ListPodSandboxStats(ctx context.Context, req *runtime.ListPodSandboxStatsRequest) (*runtime.ListPodSandboxStatsResponse, error) {
	pods, err := s.filterPods(ctx, req.GetFilter().GetId(), req.GetFilter().GetLabelSelector())
	if err != nil {
		return nil, err
	}
	resp := &runtime.ListPodSandboxStatsResponse{}
	for _, sb := range pods {
		st, err := s.podStats(ctx, sb)
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, err
		}
		resp.Stats = append(resp.Stats, st)
	}
	return resp, nil
}

// filterPods are the pod records whose ID starts with id and whose pod
// labels hold selector.
func (s *Server) filterPods(ctx context.Context, id string, selector map[string]string) ([]metadata.Container, error) {
	all, err := s.eng.Meta.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	var out []metadata.Container
	for _, sb := range all {
		if sb.Labels[labelKind] == kindSandbox && strings.HasPrefix(sb.ID, id) &&
			matchLabels(fromLabel[map[string]string](sb, labelLabels), selector) {
			out = append(out, sb)
		}
	}
	return out, nil
}

// podScope is where a pod's numbers are read from.
type podScope struct {
	cfg      *runtime.PodSandboxConfig
	infraPid int // 0 when the infra container does not run
	infra    engine.State
	// own is the pod's own cgroup when the kubelet gave one
	// (cgroup_parent): its infra container's and its containers' cgroups
	// are in it, so it holds the whole pod's use.
	own *engine.Cgroup
	// parts, without an own cgroup, are the cgroups of the pod's running
	// containers, its infra's first: the pod's use is their sum.
	parts []engine.Cgroup
	// running are the pod's containers that run, with their cgroups.
	running []runningContainer
}

type runningContainer struct {
	c     metadata.Container
	state engine.State
	cg    engine.Cgroup
}

// podScope finds the cgroups of sb and of its running containers.
func (s *Server) podScope(ctx context.Context, sb metadata.Container, ctrs []metadata.Container) (podScope, error) {
	p := podScope{cfg: fromLabel[*runtime.PodSandboxConfig](sb, labelConfig)}
	st, err := s.eng.State(ctx, sb)
	if err != nil {
		return p, err
	}
	p.infra = st
	if st.Status != engine.StatusRunning || st.Pid <= 0 {
		return p, nil
	}
	infraCg, err := engine.CgroupOf(st.Pid, sb.ID)
	if err != nil {
		return p, nil // exited meanwhile
	}
	p.infraPid = st.Pid
	// A parent given by berthd.toml is shared by every pod: only the
	// kubelet's is the pod's own.
	if p.cfg.GetLinux().GetCgroupParent() != "" {
		if parent, ok := infraCg.Parent(); ok {
			p.own = &parent
		}
	}
	p.parts = []engine.Cgroup{infraCg}
	for _, c := range ctrs {
		cst, err := s.eng.State(ctx, c)
		if err != nil || cst.Status != engine.StatusRunning || cst.Pid <= 0 {
			continue
		}
		cg, err := engine.CgroupOf(cst.Pid, c.ID)
		if err != nil {
			continue
		}
		p.running = append(p.running, runningContainer{c: c, state: cst, cg: cg})
		p.parts = append(p.parts, cg)
	}
	return p, nil
}

// hostNetwork reports whether the pod uses the node's network namespace,
// whose counters are the node's, not the pod's.
func (p *podScope) hostNetwork() bool {
	return p.cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE
}

// podStats samples sb. A pod whose infra container does not run has its
// containers' (zero) stats only.
func (s *Server) podStats(ctx context.Context, sb metadata.Container) (*runtime.PodSandboxStats, error) {
	ctrs, err := s.podContainers(ctx, sb.ID)
	if err != nil {
		return nil, err
	}
	out := &runtime.PodSandboxStats{
		Attributes: &runtime.PodSandboxAttributes{Id: sb.ID, Metadata: fromLabel[*runtime.PodSandboxMetadata](sb, labelMetadata),
			Labels: fromLabel[map[string]string](sb, labelLabels), Annotations: fromLabel[map[string]string](sb, labelAnnotations)},
		Linux: &runtime.LinuxPodSandboxStats{},
	}
	for _, c := range ctrs {
		cs, err := s.containerStats(ctx, c)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out.Linux.Containers = append(out.Linux.Containers, cs)
	}
	p, err := s.podScope(ctx, sb, ctrs)
	if err != nil || p.infraPid == 0 {
		return out, err
	}
	now := time.Now().UnixNano()
	var u cgroupUsage
	if p.own != nil {
		if u, err = usageOf(*p.own); err != nil {
			return nil, fmt.Errorf("pod %s: %w", sb.ID, err)
		}
	} else {
		for _, g := range p.parts {
			part, err := usageOf(g)
			if err != nil {
				continue // exited meanwhile
			}
			u.add(part)
		}
	}
	lx := out.Linux
	lx.Cpu = &runtime.CpuUsage{Timestamp: now, UsageCoreNanoSeconds: &runtime.UInt64Value{Value: u.cpu}, Psi: psi(u.cpuPSI)}
	lx.Memory = &runtime.MemoryUsage{Timestamp: now, WorkingSetBytes: &runtime.UInt64Value{Value: u.workingSet},
		UsageBytes: &runtime.UInt64Value{Value: u.mem}, RssBytes: &runtime.UInt64Value{Value: u.rss},
		PageFaults: &runtime.UInt64Value{Value: u.faults}, MajorPageFaults: &runtime.UInt64Value{Value: u.majFaults}, Psi: psi(u.memPSI)}
	if u.limit > 0 {
		lx.Memory.AvailableBytes = &runtime.UInt64Value{Value: u.limit - min(u.limit, u.workingSet)}
	}
	if u.ioPSI != nil {
		lx.Io = &runtime.IoUsage{Timestamp: now, Psi: psi(u.ioPSI)}
	}
	lx.Process = &runtime.ProcessUsage{Timestamp: now, ProcessCount: &runtime.UInt64Value{Value: u.procs}}
	if !p.hostNetwork() {
		if ifs, err := netDev(p.infraPid); err == nil {
			lx.Network = &runtime.NetworkUsage{Timestamp: now}
			def := defaultInterface(p.infraPid)
			for _, i := range ifs {
				n := &runtime.NetworkInterfaceUsage{Name: i.name, RxBytes: &runtime.UInt64Value{Value: i.rxBytes},
					RxErrors: &runtime.UInt64Value{Value: i.rxErrors}, TxBytes: &runtime.UInt64Value{Value: i.txBytes},
					TxErrors: &runtime.UInt64Value{Value: i.txErrors}}
				lx.Network.Interfaces = append(lx.Network.Interfaces, n)
				if i.name == def {
					lx.Network.DefaultInterface = n
				}
			}
		}
	}
	return out, nil
}

func psi(p *cgroups.PSIStats) *runtime.PsiStats {
	if p == nil {
		return nil
	}
	d := func(v cgroups.PSIData) *runtime.PsiData {
		return &runtime.PsiData{Total: v.Total, Avg10: v.Avg10, Avg60: v.Avg60, Avg300: v.Avg300}
	}
	return &runtime.PsiStats{Full: d(p.Full), Some: d(p.Some)}
}

// cgroupUsage is what the CRI's pod stats take from a cgroup.
type cgroupUsage struct {
	cpu, mem, workingSet, rss, faults, majFaults, procs uint64
	limit                                               uint64 // 0: none
	cpuPSI, memPSI, ioPSI                               *cgroups.PSIStats
}

// unlimited is where a limit stops meaning one: the kernel reports "no
// limit" as the largest page-aligned int64.
const unlimited = 1 << 62

func usageOf(g engine.Cgroup) (cgroupUsage, error) {
	st, err := g.Stats()
	if err != nil {
		return cgroupUsage{}, err
	}
	u := cgroupUsage{cpu: st.CpuStats.CpuUsage.TotalUsage, mem: st.MemoryStats.Usage.Usage, procs: uint64(len(g.Pids())),
		cpuPSI: st.CpuStats.PSI, memPSI: st.MemoryStats.PSI, ioPSI: st.BlkioStats.PSI}
	u.workingSet = g.WorkingSet(st)
	u.rss, _ = g.MemStat(st, "rss")
	u.faults, _ = g.MemStat(st, "pgfault")
	u.majFaults, _ = g.MemStat(st, "pgmajfault")
	if l := st.MemoryStats.Usage.Limit; l < unlimited {
		u.limit = l
	}
	return u, nil
}

// add sums the counters of a container into a pod's; pressure averages
// and limits do not add up and are left out.
func (u *cgroupUsage) add(o cgroupUsage) {
	u.cpu, u.mem, u.workingSet, u.rss = u.cpu+o.cpu, u.mem+o.mem, u.workingSet+o.workingSet, u.rss+o.rss
	u.faults, u.majFaults, u.procs = u.faults+o.faults, u.majFaults+o.majFaults, u.procs+o.procs
}

// ifaceStats are one interface's counters from /proc/PID/net/dev.
type ifaceStats struct {
	name                                    string
	rxBytes, rxPackets, rxErrors, rxDropped uint64
	txBytes, txPackets, txErrors, txDropped uint64
}

// netDev reads the interfaces of pid's network namespace, loopback left
// out (what a pod sends itself is not network I/O).
func netDev(pid int) ([]ifaceStats, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/net/dev")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseNetDev(f)
}

func parseNetDev(r io.Reader) ([]ifaceStats, error) {
	var out []ifaceStats
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		name = strings.TrimSpace(name)
		if !ok || name == "lo" {
			continue // the two header lines have no colon
		}
		// receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes packets errs drop ...
		v := strings.Fields(rest)
		if len(v) < 12 {
			continue
		}
		n := make([]uint64, 12)
		for i := range n {
			n[i], _ = strconv.ParseUint(v[i], 10, 64)
		}
		out = append(out, ifaceStats{name: name, rxBytes: n[0], rxPackets: n[1], rxErrors: n[2], rxDropped: n[3],
			txBytes: n[8], txPackets: n[9], txErrors: n[10], txDropped: n[11]})
	}
	return out, sc.Err()
}

// defaultInterface is the interface of the default route in pid's
// network namespace ("" without one).
func defaultInterface(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/route")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		// Iface Destination Gateway Flags ...: destination 0 is the default.
		if f := strings.Fields(line); len(f) > 2 && f[1] == "00000000" {
			return f[0]
		}
	}
	return ""
}
