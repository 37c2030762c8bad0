package cri

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The CRI's metrics are those cadvisor shows on the kubelet's
// /metrics/cadvisor, with its names, types and labels, so that the
// dashboards and alerts written for them work when the kubelet takes them
// from berthd (PodAndContainerStatsFromCRI). Values are unsigned
// integers on the wire: the _seconds ones are whole seconds.

// baseLabels are every metric's first labels, the kubelet's cadvisor ones:
// id is the cgroup, name the runtime's name of the container.
var baseLabels = []string{"container", "id", "image", "name", "namespace", "pod"}

type metricDesc struct {
	name, help string
	typ        runtime.MetricType
	labels     []string // after baseLabels
}

const (
	counter = runtime.MetricType_COUNTER
	gauge   = runtime.MetricType_GAUGE
)

var (
	devLabel   = []string{"device"}
	ifaceLabel = []string{"interface"}
)

var metricDescs = []metricDesc{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counter, []string{"cpu"}},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", counter, nil},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", counter, nil},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, nil},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, nil},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, nil},
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, nil},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, nil},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gauge, nil},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, nil},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, nil},
	{"container_memory_failcnt", "Number of memory usage hits limits.", counter, nil},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, nil},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, nil},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, nil},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", counter, []string{"failure_type", "scope"}},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, nil},
	{"container_hugetlb_usage_bytes", "Current hugepage usage in bytes.", gauge, []string{"pagesize"}},
	{"container_hugetlb_max_usage_bytes", "Maximum hugepage usage recorded in bytes.", gauge, []string{"pagesize"}},
	{"container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.", counter, nil},
	{"container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.", counter, nil},
	{"container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.", counter, nil},
	{"container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.", counter, nil},
	{"container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.", counter, nil},
	{"container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.", counter, nil},
	{"container_blkio_device_usage_total", "Blkio device bytes usage.", counter, []string{"device", "major", "minor", "operation"}},
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", counter, devLabel},
	{"container_fs_reads_total", "Cumulative count of reads completed.", counter, devLabel},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", counter, devLabel},
	{"container_fs_writes_total", "Cumulative count of writes completed.", counter, devLabel},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, devLabel},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, devLabel},
	{"container_fs_inodes_total", "Number of Inodes.", gauge, devLabel},
	{"container_fs_inodes_free", "Number of available Inodes.", gauge, devLabel},
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", counter, ifaceLabel},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", counter, ifaceLabel},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", counter, ifaceLabel},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", counter, ifaceLabel},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", counter, ifaceLabel},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", counter, ifaceLabel},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", counter, ifaceLabel},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", counter, ifaceLabel},
	{"container_processes", "Number of processes running inside the container.", gauge, nil},
	{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, nil},
	{"container_sockets", "Number of open sockets for the container.", gauge, nil},
	{"container_threads", "Number of threads running inside the container.", gauge, nil},
	{"container_threads_max", "Maximum number of threads allowed inside the container, infinity if value is zero.", gauge, nil},
	{"container_ulimits_soft", "Soft ulimit values for the container root process. Unlimited is left out.", gauge, []string{"ulimit"}},
	{"container_spec_cpu_period", "CPU period of the container.", gauge, nil},
	{"container_spec_cpu_quota", "CPU quota of the container.", gauge, nil},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, nil},
	{"container_spec_memory_limit_bytes", "Memory limit for the container, 0 for none.", gauge, nil},
	{"container_spec_memory_reservation_limit_bytes", "Memory reservation for the container, 0 for none.", gauge, nil},
	{"container_spec_memory_swap_limit_bytes", "Memory and swap limit for the container, 0 for none.", gauge, nil},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, nil},
	{"container_last_seen", "Last time a container was seen by the exporter.", gauge, nil},
}

var metricTypes = func() map[string]runtime.MetricType {
	m := map[string]runtime.MetricType{}
	for _, d := range metricDescs {
		m[d.name] = d.typ
	}
	return m
}()

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics returns.
func (s *Server) ListMetricDescriptors(ctx context.Context, req *runtime.ListMetricDescriptorsRequest) (*runtime.ListMetricDescriptorsResponse, error) {
	resp := &runtime.ListMetricDescriptorsResponse{}
	for _, d := range metricDescs {
		resp.Descriptors = append(resp.Descriptors, &runtime.MetricDescriptor{Name: d.name, Help: d.help,
			LabelKeys: append(slices.Clip(baseLabels), d.labels...)})
	}
	return resp, nil
}

// ListPodSandboxMetrics samples the running pods: the pod's own metrics
// (its cgroup when the kubelet gave it one, else its infra container's,
// and its network namespace's interfaces) and each running container's.
// What cannot be read (an exited container, a missing controller) is
// left out rather than reported as zero.
func (s *Server) ListPodSandboxMetrics(ctx context.Context, req *runtime.ListPodSandboxMetricsRequest) (*runtime.ListPodSandboxMetricsResponse, error) {
	pods, err := s.filterPods(ctx, "", nil)
	if err != nil {
		return nil, err
	}
	store := statStore(s.eng.Images.Root)
	resp := &runtime.ListPodSandboxMetricsResponse{}
	for _, sb := range pods {
		ctrs, err := s.podContainers(ctx, sb.ID)
		if err != nil {
			return nil, err
		}
		p, err := s.podScope(ctx, sb, ctrs)
		if err != nil || p.infraPid == 0 {
			continue // removed or stopped meanwhile: nothing to sample
		}
		meta := p.cfg.GetMetadata()
		pm := &runtime.PodSandboxMetrics{PodSandboxId: sb.ID}
		// The pod's series are cadvisor's pod cgroup (container "") or,
		// without one, its infra container's (container "POD").
		pod := &metricSink{}
		if p.own != nil {
			pod.base = []string{"", p.own.Path(), "", "", meta.GetNamespace(), meta.GetName()}
			pod.cgroup(*p.own)
		} else {
			pod.base = []string{"POD", p.parts[0].Path(), sb.Image, sb.Name, meta.GetNamespace(), meta.GetName()}
			pod.cgroup(p.parts[0])
			s.containerOnly(ctx, pod, sb, p.infra, store)
		}
		if !p.hostNetwork() {
			pod.network(p.infraPid)
		}
		pod.add("container_last_seen", uint64(time.Now().Unix()))
		pm.Metrics = pod.out
		for _, rc := range p.running {
			m := &metricSink{base: []string{fromLabel[*runtime.ContainerMetadata](rc.c, labelMetadata).GetName(), rc.cg.Path(),
				rc.c.Image, rc.c.Name, meta.GetNamespace(), meta.GetName()}}
			m.cgroup(rc.cg)
			s.containerOnly(ctx, m, rc.c, rc.state, store)
			m.add("container_last_seen", uint64(time.Now().Unix()))
			pm.ContainerMetrics = append(pm.ContainerMetrics, &runtime.ContainerMetrics{ContainerId: rc.c.ID, Metrics: m.out})
		}
		resp.PodMetrics = append(resp.PodMetrics, pm)
	}
	return resp, nil
}

// metricSink collects the metrics of one container (or pod).
type metricSink struct {
	base []string
	out  []*runtime.Metric
}

// add appends a metric. Its timestamp is 0: the kubelet reads that as
// sampled on request rather than cached.
func (m *metricSink) add(name string, v uint64, labels ...string) {
	m.out = append(m.out, &runtime.Metric{Name: name, MetricType: metricTypes[name],
		LabelValues: append(slices.Clip(m.base), labels...), Value: &runtime.UInt64Value{Value: v}})
}

// cgroup adds what g's controllers and processes count.
func (m *metricSink) cgroup(g engine.Cgroup) {
	st, err := g.Stats()
	if err != nil {
		return // removed meanwhile
	}
	cpu := st.CpuStats
	m.add("container_cpu_usage_seconds_total", cpu.CpuUsage.TotalUsage/1e9, "total")
	m.add("container_cpu_user_seconds_total", cpu.CpuUsage.UsageInUsermode/1e9)
	m.add("container_cpu_system_seconds_total", cpu.CpuUsage.UsageInKernelmode/1e9)
	period, quota, shares := cpuSpec(g)
	if period > 0 {
		m.add("container_spec_cpu_period", period)
	}
	// The periods are counted only while a quota applies, so cadvisor
	// shows them only then.
	if quota > 0 {
		m.add("container_spec_cpu_quota", quota)
		m.add("container_cpu_cfs_periods_total", cpu.ThrottlingData.Periods)
		m.add("container_cpu_cfs_throttled_periods_total", cpu.ThrottlingData.ThrottledPeriods)
		m.add("container_cpu_cfs_throttled_seconds_total", cpu.ThrottlingData.ThrottledTime/1e9)
	}
	if shares > 0 {
		m.add("container_spec_cpu_shares", shares)
	}
	m.memory(g, st)
	m.pressure(st)
	m.hugetlb(g)
	m.blkio(st)
	m.processes(g)
}

// cpuSpec is g's CFS period and quota (µs, 0 for none) and shares.
func cpuSpec(g engine.Cgroup) (period, quota, shares uint64) {
	if !g.IsV2() {
		period, _ = strconv.ParseUint(g.Read("cpu", "cpu.cfs_period_us"), 10, 64)
		quota, _ = strconv.ParseUint(g.Read("cpu", "cpu.cfs_quota_us"), 10, 64) // -1 for none: no number
		shares, _ = strconv.ParseUint(g.Read("cpu", "cpu.shares"), 10, 64)
		return period, quota, shares
	}
	if f := strings.Fields(g.Read("cpu", "cpu.max")); len(f) == 2 {
		quota, _ = strconv.ParseUint(f[0], 10, 64) // "max" for none
		period, _ = strconv.ParseUint(f[1], 10, 64)
	}
	// cpu.weight is what the runtime made of the shares: mapped back as
	// the kubelet and cadvisor do (KEP 2254's linear mapping, exact up to
	// its rounding; runtimes with another mapping come out near).
	if w, err := strconv.ParseUint(g.Read("cpu", "cpu.weight"), 10, 64); err == nil && w > 0 {
		shares = 2 + (w-1)*262142/9999
	}
	return period, quota, shares
}

func (m *metricSink) memory(g engine.Cgroup, st *cgroups.Stats) {
	ms := st.MemoryStats
	for _, s := range []struct{ metric, stat string }{{"container_memory_cache", "cache"},
		{"container_memory_rss", "rss"}, {"container_memory_mapped_file", "mapped_file"}} {
		if v, ok := g.MemStat(st, s.stat); ok {
			m.add(s.metric, v)
		}
	}
	m.add("container_memory_usage_bytes", ms.Usage.Usage)
	m.add("container_memory_working_set_bytes", g.WorkingSet(st))
	v1 := !g.IsV2()
	var limit, reservation, swapLimit string
	if v1 {
		if v, ok := g.MemStat(st, "swap"); ok { // only with swap accounting
			m.add("container_memory_swap", v)
		}
		if g.Read("memory", "memory.kmem.usage_in_bytes") != "" {
			m.add("container_memory_kernel_usage", ms.KernelUsage.Usage)
		}
		m.add("container_memory_failcnt", ms.Usage.Failcnt)
		m.add("container_memory_max_usage_bytes", ms.Usage.MaxUsage)
		if v, ok := g.Keyed("memory", "memory.oom_control", "oom_kill"); ok {
			m.add("container_oom_events_total", v)
		}
		// v1 counts a cgroup's own faults apart from its descendants'.
		for _, t := range []string{"pgfault", "pgmajfault"} {
			if v, ok := ms.Stats[t]; ok {
				m.add("container_memory_failures_total", v, t, "container")
			}
		}
		limit, reservation = g.Read("memory", "memory.limit_in_bytes"), g.Read("memory", "memory.soft_limit_in_bytes")
		swapLimit = g.Read("memory", "memory.memsw.limit_in_bytes")
	} else {
		if g.Read("memory", "memory.swap.current") != "" {
			m.add("container_memory_swap", ms.SwapOnlyUsage.Usage)
		}
		if v, ok := ms.Stats["kernel"]; ok {
			m.add("container_memory_kernel_usage", v)
		}
		// v2's failcnt: how often the usage reached memory.max.
		if v, ok := g.Keyed("memory", "memory.events", "max"); ok {
			m.add("container_memory_failcnt", v)
		}
		if g.Read("memory", "memory.peak") != "" {
			m.add("container_memory_max_usage_bytes", ms.Usage.MaxUsage)
		}
		if v, ok := g.Keyed("memory", "memory.events", "oom_kill"); ok {
			m.add("container_oom_events_total", v)
		}
		limit, reservation = g.Read("memory", "memory.max"), g.Read("memory", "memory.low")
		// v1's memsw limit is memory and swap together; v2 limits swap
		// alone: their sum keeps the metric's meaning.
		if l, s := limitValue(limit), limitValue(g.Read("memory", "memory.swap.max")); l > 0 && s > 0 {
			swapLimit = strconv.FormatUint(l+s, 10)
		}
	}
	for _, t := range []string{"pgfault", "pgmajfault"} {
		if v, ok := g.MemStat(st, t); ok {
			m.add("container_memory_failures_total", v, t, "hierarchy")
		}
	}
	if limit != "" {
		m.add("container_spec_memory_limit_bytes", limitValue(limit))
	}
	if reservation != "" {
		m.add("container_spec_memory_reservation_limit_bytes", limitValue(reservation))
	}
	if swapLimit != "" || !v1 {
		m.add("container_spec_memory_swap_limit_bytes", limitValue(swapLimit))
	}
}

// limitValue is a cgroup limit file's value, 0 for none ("max" or v1's
// huge number), as cadvisor shows it.
func limitValue(s string) uint64 {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v >= unlimited {
		return 0
	}
	return v
}

// pressure adds the PSI totals (µs): "some" is time tasks waited,
// "full" time none could run.
func (m *metricSink) pressure(st *cgroups.Stats) {
	for _, p := range []struct {
		res string
		psi *cgroups.PSIStats
	}{{"cpu", st.CpuStats.PSI}, {"memory", st.MemoryStats.PSI}, {"io", st.BlkioStats.PSI}} {
		if p.psi != nil {
			m.add("container_pressure_"+p.res+"_waiting_seconds_total", p.psi.Some.Total/1e6)
			m.add("container_pressure_"+p.res+"_stalled_seconds_total", p.psi.Full.Total/1e6)
		}
	}
}

// hugetlb adds the huge pages in use by page size. The usage is read
// here: opencontainers/cgroups' v1 reads the reservations where the
// kernel has them.
func (m *metricSink) hugetlb(g engine.Cgroup) {
	for _, size := range cgroups.HugePageSizes() {
		cur, peak := ".usage_in_bytes", ".max_usage_in_bytes"
		if g.IsV2() {
			cur, peak = ".current", "" // v2 keeps no maximum
		}
		if v, err := strconv.ParseUint(g.Read("hugetlb", "hugetlb."+size+cur), 10, 64); err == nil {
			m.add("container_hugetlb_usage_bytes", v, size)
		}
		if peak == "" {
			continue
		}
		if v, err := strconv.ParseUint(g.Read("hugetlb", "hugetlb."+size+peak), 10, 64); err == nil {
			m.add("container_hugetlb_max_usage_bytes", v, size)
		}
	}
}

// blkio adds the bytes and operations per block device (v1's
// blkio.*io_service_bytes/io_serviced, v2's io.stat).
func (m *metricSink) blkio(st *cgroups.Stats) {
	names := map[[2]uint64]string{}
	name := func(e cgroups.BlkioStatEntry) string {
		k := [2]uint64{e.Major, e.Minor}
		if n, ok := names[k]; ok {
			return n
		}
		names[k] = blockDevice(e.Major, e.Minor)
		return names[k]
	}
	for _, e := range st.BlkioStats.IoServiceBytesRecursive {
		if e.Major == 0 && e.Minor == 0 {
			continue // v1's grand total line
		}
		dev := name(e)
		m.add("container_blkio_device_usage_total", e.Value, dev, strconv.FormatUint(e.Major, 10), strconv.FormatUint(e.Minor, 10), e.Op)
		switch strings.ToLower(e.Op) {
		case "read":
			m.add("container_fs_reads_bytes_total", e.Value, dev)
		case "write":
			m.add("container_fs_writes_bytes_total", e.Value, dev)
		}
	}
	for _, e := range st.BlkioStats.IoServicedRecursive {
		if e.Major == 0 && e.Minor == 0 {
			continue
		}
		switch strings.ToLower(e.Op) {
		case "read":
			m.add("container_fs_reads_total", e.Value, name(e))
		case "write":
			m.add("container_fs_writes_total", e.Value, name(e))
		}
	}
}

// blockDevice is /dev/NAME of a block device, from sysfs ("" if unknown).
func blockDevice(major, minor uint64) string {
	b, err := os.ReadFile("/sys/dev/block/" + strconv.FormatUint(major, 10) + ":" + strconv.FormatUint(minor, 10) + "/uevent")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(b)) {
		if n, ok := strings.CutPrefix(strings.TrimSpace(line), "DEVNAME="); ok {
			return "/dev/" + n
		}
	}
	return ""
}

// processes adds the count of g's processes, of their threads, open
// files and sockets (from /proc), and the pids controller's limit.
func (m *metricSink) processes(g engine.Cgroup) {
	pids := g.Pids()
	var fds, sockets, threads uint64
	for _, pid := range pids {
		dir := "/proc/" + strconv.Itoa(pid)
		if ents, err := os.ReadDir(dir + "/task"); err == nil {
			threads += uint64(len(ents))
		}
		ents, err := os.ReadDir(dir + "/fd")
		if err != nil {
			continue // exited meanwhile
		}
		fds += uint64(len(ents))
		for _, e := range ents {
			if l, err := os.Readlink(dir + "/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
				sockets++
			}
		}
	}
	m.add("container_processes", uint64(len(pids)))
	m.add("container_threads", threads)
	m.add("container_file_descriptors", fds)
	m.add("container_sockets", sockets)
	if limit := g.Read("pids", "pids.max"); limit != "" {
		m.add("container_threads_max", limitValue(limit))
	}
}

// network adds the counters of the interfaces of pid's network namespace.
func (m *metricSink) network(pid int) {
	ifs, err := netDev(pid)
	if err != nil {
		return
	}
	for _, i := range ifs {
		for _, c := range []struct {
			metric string
			v      uint64
		}{
			{"container_network_receive_bytes_total", i.rxBytes}, {"container_network_receive_packets_total", i.rxPackets},
			{"container_network_receive_packets_dropped_total", i.rxDropped}, {"container_network_receive_errors_total", i.rxErrors},
			{"container_network_transmit_bytes_total", i.txBytes}, {"container_network_transmit_packets_total", i.txPackets},
			{"container_network_transmit_packets_dropped_total", i.txDropped}, {"container_network_transmit_errors_total", i.txErrors},
		} {
			m.add(c.metric, c.v, i.name)
		}
	}
}

// containerOnly adds what belongs to a container rather than to a
// cgroup: its writable layer, its start and its init's open-files limit.
func (s *Server) containerOnly(ctx context.Context, m *metricSink, c metadata.Container, st engine.State, store storeFS) {
	if used, _, err := s.eng.WritableUsage(ctx, c); err == nil {
		m.add("container_fs_usage_bytes", used, store.device)
	}
	if store.ok {
		m.add("container_fs_limit_bytes", store.size, store.device)
		m.add("container_fs_inodes_total", store.inodes, store.device)
		m.add("container_fs_inodes_free", store.inodesFree, store.device)
	}
	if !st.StartedAt.IsZero() {
		m.add("container_start_time_seconds", uint64(st.StartedAt.Unix()))
	}
	if v, ok := openFilesLimit(st.Pid); ok {
		m.add("container_ulimits_soft", v, "max_open_files")
	}
}

// openFilesLimit is the soft RLIMIT_NOFILE of pid (not ok if unlimited,
// which has no unsigned value).
func openFilesLimit(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0, false
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				v, err := strconv.ParseUint(f[0], 10, 64)
				return v, err == nil
			}
		}
	}
	return 0, false
}

// storeFS is the file system the writable layers are on.
type storeFS struct {
	ok                       bool
	device                   string // its mount's source
	size, inodes, inodesFree uint64
}

func statStore(root string) storeFS {
	var sfs unix.Statfs_t
	var st unix.Stat_t
	if unix.Statfs(root, &sfs) != nil || unix.Stat(root, &st) != nil {
		return storeFS{}
	}
	out := storeFS{ok: true, size: sfs.Blocks * uint64(sfs.Bsize), inodes: sfs.Files, inodesFree: sfs.Ffree}
	// The mount with the store's device number names the device.
	dev := strconv.FormatUint(uint64(unix.Major(st.Dev)), 10) + ":" + strconv.FormatUint(uint64(unix.Minor(st.Dev)), 10)
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			// ID parent MAJ:MIN root mountpoint options ... - fstype source superoptions
			f := strings.Fields(line)
			if len(f) < 3 || f[2] != dev {
				continue
			}
			if i := slices.Index(f, "-"); i > 0 && i+2 < len(f) {
				out.device = f[i+2]
				break
			}
		}
	}
	return out
}
