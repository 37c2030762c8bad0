package cgroups

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	ocgroups "github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthdev/berth/internal/errdefs"
)

// Kernel limits (kernel/sched/core.c, mm/memcontrol.c) checked up front so a
// bad config fails before anything is written, with the field named.
const (
	minShares    = 2
	maxShares    = 262144
	minCFSPeriod = 1000    // 1 ms
	maxCFSPeriod = 1000000 // 1 s
	minCFSQuota  = 1000
	minBlkWeight = 10
	maxBlkWeight = 1000
)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("linux.resources.%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

func unsupported(field, why string) error {
	return fmt.Errorf("linux.resources.%s: %s: %w", field, why, errdefs.ErrFailedPrecond)
}

// validate rejects values the kernel would refuse or silently change, and
// limits for controllers this host does not have (known from m.paths, so a
// Loaded manager validates without probing the host).
func (m *Manager) validate(r *specs.LinuxResources) error {
	v2 := m.v1 == nil
	has := func(ctrl string) bool { return v2 || m.paths[ctrl] != "" }
	for _, check := range []func() error{
		func() error { return validateMemory(r.Memory, v2, has("memory")) },
		func() error { return validateCPU(r.CPU, v2, has) },
		func() error { return validatePids(r.Pids, has("pids")) },
		func() error { return validateBlockIO(r.BlockIO, has("blkio")) },
		func() error { return validateHugetlb(r.HugepageLimits, has("hugetlb") || m.v2 != nil) },
		func() error { return validateNetwork(r.Network, v2, has) },
		func() error { return validateDevices(r.Devices) },
	} {
		if err := check(); err != nil {
			return err
		}
	}
	if len(r.Rdma) > 0 && !has("rdma") {
		return unsupported("rdma", "the rdma controller is not mounted")
	}
	for k := range r.Unified {
		if m.v2 == nil {
			return unsupported("unified", "needs cgroup v2, and this host has only v1 hierarchies")
		}
		if c, p, ok := strings.Cut(k, "."); !ok || c == "" || p == "" || strings.Contains(k, "/") {
			return invalid(fmt.Sprintf("unified[%q]", k), "must be a file name of the form CONTROLLER.PARAMETER")
		}
	}
	return nil
}

func validateMemory(mem *specs.LinuxMemory, v2, mounted bool) error {
	if mem == nil {
		return nil
	}
	if !mounted && (mem.Limit != nil || mem.Reservation != nil || mem.Swap != nil) {
		return unsupported("memory", "the memory controller is not mounted")
	}
	for _, f := range []struct {
		name string
		v    *int64
	}{{"limit", mem.Limit}, {"reservation", mem.Reservation}, {"swap", mem.Swap}} {
		if f.v != nil && *f.v < -1 {
			return invalid("memory."+f.name, "%d: must be -1 (unlimited) or a number of bytes", *f.v)
		}
	}
	limit, swap := val(mem.Limit), val(mem.Swap)
	switch {
	case swap > 0 && limit > 0 && swap < limit:
		return invalid("memory.swap", "%d is below memory.limit %d: swap is the memory+swap limit, so it must be >= limit", swap, limit)
	case swap > 0 && limit == -1 && !v2:
		return invalid("memory.swap", "%d: must be -1 when memory.limit is -1 (unlimited)", swap)
	case swap > 0 && limit == 0 && v2:
		return invalid("memory.swap", "needs memory.limit: cgroup v2 limits swap apart from memory")
	}
	if s := mem.Swappiness; s != nil && *s > 100 {
		return invalid("memory.swappiness", "%d: must be between 0 and 100", *s)
	}
	return nil
}

func validateCPU(c *specs.LinuxCPU, v2 bool, has func(string) bool) error {
	if c == nil {
		return nil
	}
	if !has("cpu") && (c.Shares != nil || c.Quota != nil || c.Period != nil || c.Burst != nil ||
		c.RealtimeRuntime != nil || c.RealtimePeriod != nil || c.Idle != nil) {
		return unsupported("cpu", "the cpu controller is not mounted")
	}
	if s := val(c.Shares); s != 0 && (s < minShares || s > maxShares) {
		return invalid("cpu.shares", "%d: must be between %d and %d", s, minShares, maxShares)
	}
	quota := val(c.Quota)
	if quota < -1 || (quota > 0 && quota < minCFSQuota) {
		return invalid("cpu.quota", "%d: must be -1 (unlimited) or at least %d µs", quota, minCFSQuota)
	}
	if p := c.Period; p != nil {
		if *p == 0 && quota > 0 {
			return invalid("cpu.period", "0 with a quota: omit period for the kernel default (100000 µs)")
		}
		if *p != 0 && (*p < minCFSPeriod || *p > maxCFSPeriod) {
			return invalid("cpu.period", "%d: must be between %d and %d µs", *p, minCFSPeriod, maxCFSPeriod)
		}
	}
	if b := c.Burst; b != nil && quota > 0 && *b > uint64(quota) {
		return invalid("cpu.burst", "%d is above cpu.quota %d", *b, quota)
	}
	if rt, rp := val(c.RealtimeRuntime), val(c.RealtimePeriod); rt != 0 || rp != 0 {
		if v2 {
			return unsupported("cpu.realtimeRuntime", "real-time group scheduling has no cgroup v2 interface")
		}
		if rt < -1 {
			return invalid("cpu.realtimeRuntime", "%d: must be -1 (unlimited) or a number of µs", rt)
		}
		if rp != 0 && rt > 0 && uint64(rt) > rp {
			return invalid("cpu.realtimeRuntime", "%d is above cpu.realtimePeriod %d", rt, rp)
		}
	}
	if i := c.Idle; i != nil && *i != 0 && *i != 1 {
		return invalid("cpu.idle", "%d: must be 0 or 1", *i)
	}
	for _, f := range []struct{ name, list string }{{"cpus", c.Cpus}, {"mems", c.Mems}} {
		if f.list == "" {
			continue
		}
		if !has("cpuset") {
			return unsupported("cpu."+f.name, "the cpuset controller is not mounted")
		}
		if err := checkList(f.list); err != nil {
			return invalid("cpu."+f.name, "%q: %v", f.list, err)
		}
	}
	return nil
}

// checkList accepts the kernel's list format: "0-3,5,8-11".
func checkList(s string) error {
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a number or range", part)
		}
		if isRange {
			b, err := strconv.ParseUint(hi, 10, 32)
			if err != nil || b < a {
				return fmt.Errorf("%q is not a range low-high", part)
			}
		}
	}
	return nil
}

func validatePids(p *specs.LinuxPids, mounted bool) error {
	if p == nil || p.Limit == nil {
		return nil
	}
	if !mounted {
		return unsupported("pids", "the pids controller is not mounted")
	}
	if *p.Limit < -1 {
		return invalid("pids.limit", "%d: must be -1 (unlimited) or a number of tasks (0 is a limit too)", *p.Limit)
	}
	return nil
}

func checkWeight(field string, w *uint16) error {
	if w != nil && *w != 0 && (*w < minBlkWeight || *w > maxBlkWeight) {
		return invalid(field, "%d: must be between %d and %d", *w, minBlkWeight, maxBlkWeight)
	}
	return nil
}

func validateBlockIO(b *specs.LinuxBlockIO, mounted bool) error {
	if b == nil {
		return nil
	}
	if !mounted {
		return unsupported("blockIO", "the blkio controller is not mounted")
	}
	if err := checkWeight("blockIO.weight", b.Weight); err != nil {
		return err
	}
	if err := checkWeight("blockIO.leafWeight", b.LeafWeight); err != nil {
		return err
	}
	for i, wd := range b.WeightDevice {
		f := fmt.Sprintf("blockIO.weightDevice[%d]", i)
		if wd.Major < 0 || wd.Minor < 0 {
			return invalid(f, "device %d:%d: major and minor must not be negative", wd.Major, wd.Minor)
		}
		if err := checkWeight(f+".weight", wd.Weight); err != nil {
			return err
		}
		if err := checkWeight(f+".leafWeight", wd.LeafWeight); err != nil {
			return err
		}
	}
	for name, list := range map[string][]specs.LinuxThrottleDevice{
		"throttleReadBpsDevice": b.ThrottleReadBpsDevice, "throttleWriteBpsDevice": b.ThrottleWriteBpsDevice,
		"throttleReadIOPSDevice": b.ThrottleReadIOPSDevice, "throttleWriteIOPSDevice": b.ThrottleWriteIOPSDevice,
	} {
		for i, t := range list {
			if t.Major < 0 || t.Minor < 0 {
				return invalid(fmt.Sprintf("blockIO.%s[%d]", name, i), "device %d:%d: major and minor must not be negative", t.Major, t.Minor)
			}
		}
	}
	return nil
}

func validateHugetlb(limits []specs.LinuxHugepageLimit, available bool) error {
	if len(limits) == 0 {
		return nil
	}
	if !available {
		return unsupported("hugepageLimits", "no hugetlb controller is mounted")
	}
	sizes := ocgroups.HugePageSizes() // read once per process, and only here
	for i, l := range limits {
		if !slices.Contains(sizes, l.Pagesize) {
			return invalid(fmt.Sprintf("hugepageLimits[%d].pageSize", i), "%q: this host has %s", l.Pagesize, strings.Join(sizes, ", "))
		}
	}
	return nil
}

func validateNetwork(n *specs.LinuxNetwork, v2 bool, has func(string) bool) error {
	if n == nil {
		return nil
	}
	if n.ClassID != nil && (v2 || !has("net_cls")) {
		return unsupported("network.classID", "the net_cls controller is not mounted (cgroup v2 has none)")
	}
	if len(n.Priorities) > 0 && (v2 || !has("net_prio")) {
		return unsupported("network.priorities", "the net_prio controller is not mounted (cgroup v2 has none)")
	}
	return nil
}

func validateDevices(devs []specs.LinuxDeviceCgroup) error {
	for i, d := range devs {
		f := fmt.Sprintf("devices[%d]", i)
		switch d.Type {
		case "", "a", "b", "c":
		default:
			return invalid(f+".type", "%q: must be a (all), b (block) or c (char)", d.Type)
		}
		if d.Access == "" || strings.Trim(d.Access, "rwm") != "" {
			return invalid(f+".access", "%q: must be a non-empty combination of r, w and m", d.Access)
		}
		for _, n := range []struct {
			name string
			v    *int64
		}{{"major", d.Major}, {"minor", d.Minor}} {
			if n.v != nil && *n.v < -1 {
				return invalid(f+"."+n.name, "%d: must not be negative (omit it for any)", *n.v)
			}
		}
	}
	return nil
}
