package cgroups

import (
	"fmt"
	"maps"

	ocgroups "github.com/opencontainers/cgroups"
)

// Stats is the cgroup part of `events --stats`, with the field names and
// JSON tags of runc's types/events.go so tools reading runc's output read
// ours. (runc's intel_rdt and network_interfaces are not cgroup data; the
// runtime adds them if it has them.)
type Stats struct {
	CPU     CPU                `json:"cpu"`
	CPUSet  CPUSet             `json:"cpuset"`
	Memory  Memory             `json:"memory"`
	Pids    Pids               `json:"pids"`
	Blkio   Blkio              `json:"blkio"`
	Hugetlb map[string]Hugetlb `json:"hugetlb"`
}

type PSIStats = ocgroups.PSIStats

type Hugetlb struct {
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

type BlkioEntry struct {
	Major uint64 `json:"major,omitempty"`
	Minor uint64 `json:"minor,omitempty"`
	Op    string `json:"op,omitempty"`
	Value uint64 `json:"value,omitempty"`
}

type Blkio struct {
	IoServiceBytesRecursive []BlkioEntry `json:"ioServiceBytesRecursive,omitempty"`
	IoServicedRecursive     []BlkioEntry `json:"ioServicedRecursive,omitempty"`
	IoQueuedRecursive       []BlkioEntry `json:"ioQueueRecursive,omitempty"`
	IoServiceTimeRecursive  []BlkioEntry `json:"ioServiceTimeRecursive,omitempty"`
	IoWaitTimeRecursive     []BlkioEntry `json:"ioWaitTimeRecursive,omitempty"`
	IoMergedRecursive       []BlkioEntry `json:"ioMergedRecursive,omitempty"`
	IoTimeRecursive         []BlkioEntry `json:"ioTimeRecursive,omitempty"`
	SectorsRecursive        []BlkioEntry `json:"sectorsRecursive,omitempty"`
	PSI                     *PSIStats    `json:"psi,omitempty"`
}

type Pids struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}

type Throttling struct {
	Periods          uint64 `json:"periods,omitempty"`
	ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
	ThrottledTime    uint64 `json:"throttledTime,omitempty"`
}

// CpuUsage is in nanoseconds.
type CpuUsage struct {
	Total        uint64   `json:"total,omitempty"`
	Percpu       []uint64 `json:"percpu,omitempty"`
	PercpuKernel []uint64 `json:"percpu_kernel,omitempty"`
	PercpuUser   []uint64 `json:"percpu_user,omitempty"`
	Kernel       uint64   `json:"kernel"`
	User         uint64   `json:"user"`
}

type CPU struct {
	Usage      CpuUsage   `json:"usage,omitempty"`
	Throttling Throttling `json:"throttling,omitempty"`
	PSI        *PSIStats  `json:"psi,omitempty"`
}

type CPUSet struct {
	CPUs                  []uint16 `json:"cpus,omitempty"`
	CPUExclusive          uint64   `json:"cpu_exclusive"`
	Mems                  []uint16 `json:"mems,omitempty"`
	MemHardwall           uint64   `json:"mem_hardwall"`
	MemExclusive          uint64   `json:"mem_exclusive"`
	MemoryMigrate         uint64   `json:"memory_migrate"`
	MemorySpreadPage      uint64   `json:"memory_spread_page"`
	MemorySpreadSlab      uint64   `json:"memory_spread_slab"`
	MemoryPressure        uint64   `json:"memory_pressure"`
	SchedLoadBalance      uint64   `json:"sched_load_balance"`
	SchedRelaxDomainLevel int64    `json:"sched_relax_domain_level"`
}

type MemoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

type Memory struct {
	Cache     uint64            `json:"cache,omitempty"`
	Usage     MemoryEntry       `json:"usage,omitempty"`
	Swap      MemoryEntry       `json:"swap,omitempty"`
	Kernel    MemoryEntry       `json:"kernel,omitempty"`
	KernelTCP MemoryEntry       `json:"kernelTCP,omitempty"`
	Raw       map[string]uint64 `json:"raw,omitempty"`
	PSI       *PSIStats         `json:"psi,omitempty"`
}

// Stats reads the container's usage counters.
func (m *Manager) Stats() (*Stats, error) {
	var (
		st  *ocgroups.Stats
		err error
	)
	if m.v1 != nil {
		st, err = m.v1.Stats(nil)
	} else {
		st, err = m.v2.Stats(nil)
	}
	if err != nil {
		return nil, fmt.Errorf("cgroups: stats: %w", err)
	}
	if m.hybrid() && m.paths["hugetlb"] == "" {
		// Missing files (controller not enabled here) read as no pages.
		hs, err := m.v2.Stats(&ocgroups.StatsOptions{Controllers: ocgroups.HugeTLB})
		if err != nil {
			return nil, fmt.Errorf("cgroups: hugetlb stats: %w", err)
		}
		maps.Copy(st.HugetlbStats, hs.HugetlbStats)
	}
	return convertStats(st), nil
}

func convertStats(cg *ocgroups.Stats) *Stats {
	s := &Stats{Hugetlb: make(map[string]Hugetlb, len(cg.HugetlbStats))}
	s.Pids = Pids{Current: cg.PidsStats.Current, Limit: cg.PidsStats.Limit}

	u := cg.CpuStats.CpuUsage
	s.CPU.Usage = CpuUsage{
		Total: u.TotalUsage, Percpu: u.PercpuUsage,
		PercpuKernel: u.PercpuUsageInKernelmode, PercpuUser: u.PercpuUsageInUsermode,
		Kernel: u.UsageInKernelmode, User: u.UsageInUsermode,
	}
	t := cg.CpuStats.ThrottlingData
	s.CPU.Throttling = Throttling{Periods: t.Periods, ThrottledPeriods: t.ThrottledPeriods, ThrottledTime: t.ThrottledTime}
	s.CPU.PSI = cg.CpuStats.PSI
	s.CPUSet = CPUSet(cg.CPUSetStats)

	ms := cg.MemoryStats
	s.Memory = Memory{
		Cache: ms.Cache, Usage: memEntry(ms.Usage), Swap: memEntry(ms.SwapUsage),
		Kernel: memEntry(ms.KernelUsage), KernelTCP: memEntry(ms.KernelTCPUsage),
		Raw: ms.Stats, PSI: ms.PSI,
	}

	b := cg.BlkioStats
	s.Blkio = Blkio{
		IoServiceBytesRecursive: blkio(b.IoServiceBytesRecursive),
		IoServicedRecursive:     blkio(b.IoServicedRecursive),
		IoQueuedRecursive:       blkio(b.IoQueuedRecursive),
		IoServiceTimeRecursive:  blkio(b.IoServiceTimeRecursive),
		IoWaitTimeRecursive:     blkio(b.IoWaitTimeRecursive),
		IoMergedRecursive:       blkio(b.IoMergedRecursive),
		IoTimeRecursive:         blkio(b.IoTimeRecursive),
		SectorsRecursive:        blkio(b.SectorsRecursive),
		PSI:                     b.PSI,
	}
	for size, h := range cg.HugetlbStats {
		s.Hugetlb[size] = Hugetlb{Usage: h.Usage, Max: h.MaxUsage, Failcnt: h.Failcnt}
	}
	return s
}

func memEntry(d ocgroups.MemoryData) MemoryEntry {
	return MemoryEntry{Limit: d.Limit, Usage: d.Usage, Max: d.MaxUsage, Failcnt: d.Failcnt}
}

func blkio(in []ocgroups.BlkioStatEntry) []BlkioEntry {
	var out []BlkioEntry
	for _, e := range in {
		out = append(out, BlkioEntry(e))
	}
	return out
}
