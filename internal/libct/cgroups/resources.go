package cgroups

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	ocgroups "github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berthdev/berth/internal/errdefs"
)

// Set validates r and applies it to the container's cgroups; a nil r is a
// no-op. Devices nil leaves the device rules as they are (for updates); a
// non-nil list replaces them, so a create passes the config's rules plus
// DefaultAllowedDevices. Fields left nil keep their current values.
func (m *Manager) Set(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	if err := m.validate(r); err != nil {
		return err
	}
	if m.owned && r.Devices != nil {
		cp := *r
		cp.Devices = nil
		r = &cp
	}
	res := toResources(r, m.v1 == nil)

	// On a hybrid host what the v1 side cannot take goes to the v2 cgroup.
	var uni *ocgroups.Resources
	if m.hybrid() {
		uni = &ocgroups.Resources{SkipDevices: true, Unified: res.Unified}
		res.Unified = nil
		if m.paths["hugetlb"] == "" {
			uni.HugetlbLimit, res.HugetlbLimit = res.HugetlbLimit, nil
		}
	}
	v1Devices := m.v1 != nil && r.Devices != nil && m.paths["devices"] != ""
	if v1Devices {
		res.SkipDevices = true
	}
	var err error
	if m.v1 != nil {
		err = m.v1.Set(res)
	} else {
		err = m.v2.Set(res)
	}
	if err != nil {
		return fmt.Errorf("cgroups: set resources: %w", err)
	}
	if v1Devices {
		if err := writeV1Devices(m.paths["devices"], r.Devices); err != nil {
			return err
		}
	}
	if uni != nil && (len(uni.HugetlbLimit) > 0 || len(uni.Unified) > 0) {
		if err := m.setHybridV2(uni); err != nil {
			return err
		}
	}
	if r.Pids != nil && r.Pids.Limit != nil {
		return m.setPids(*r.Pids.Limit)
	}
	return nil
}

// setPids writes pids.max itself because the spec makes 0 a real limit
// while the library turns it into 1 (a systemd workaround we do not need).
func (m *Manager) setPids(limit int64) error {
	val := "max"
	if limit >= 0 {
		val = strconv.FormatInt(limit, 10)
	}
	if err := ocgroups.WriteFile(m.Path("pids"), "pids.max", val); err != nil {
		return fmt.Errorf("cgroups: linux.resources.pids.limit: %w", err)
	}
	return nil
}

// setHybridV2 applies hugetlb limits and unified keys to the v2 cgroup of a
// hybrid host, enabling the controllers they need in its ancestors first.
func (m *Manager) setHybridV2(r *ocgroups.Resources) error {
	var want []string
	if len(r.HugetlbLimit) > 0 {
		want = append(want, "hugetlb")
	}
	for k := range r.Unified {
		if c, _, ok := strings.Cut(k, "."); ok && c != "cgroup" && !slices.Contains(want, c) {
			want = append(want, c)
		}
	}
	if err := enableControllers(m.paths[UnifiedKey], want, len(r.HugetlbLimit) > 0); err != nil {
		return err
	}
	if err := m.v2.Set(r); err != nil {
		return fmt.Errorf("cgroups: set resources in %s: %w", m.paths[UnifiedKey], err)
	}
	return nil
}

// enableControllers lists want in cgroup.subtree_control of every ancestor
// of dir within its cgroup2 mount: a v2 controller's files appear in a cgroup
// only then. Pure v2 hosts get this from fs2 at Apply; on a hybrid host we do
// it only when a limit needs it, so the host's v2 tree is otherwise untouched.
// Controllers the hierarchy lacks are skipped (the write then names the key),
// except hugetlb, which has nowhere else to go.
func enableControllers(dir string, want []string, needHugetlb bool) error {
	if len(want) == 0 {
		return nil
	}
	var chain []string // ancestors of dir, nearest first, up to the mount root
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		chain = append(chain, p)
		var st unix.Statfs_t
		if up := filepath.Dir(p); up == p || unix.Statfs(up, &st) != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
			break
		}
	}
	data, err := ocgroups.ReadFile(chain[len(chain)-1], "cgroup.controllers")
	if err != nil {
		return fmt.Errorf("cgroups: %w", err)
	}
	avail := strings.Fields(data)
	if needHugetlb && !slices.Contains(avail, "hugetlb") {
		return fmt.Errorf("linux.resources.hugepageLimits: no hugetlb controller in the v1 or v2 hierarchies: %w",
			errdefs.ErrFailedPrecond)
	}
	for i := len(chain) - 1; i >= 0; i-- {
		data, err := ocgroups.ReadFile(chain[i], "cgroup.subtree_control")
		if err != nil {
			return fmt.Errorf("cgroups: %w", err)
		}
		have := strings.Fields(data)
		for _, c := range want {
			if !slices.Contains(avail, c) || slices.Contains(have, c) {
				continue
			}
			if err := ocgroups.WriteFile(chain[i], "cgroup.subtree_control", "+"+c); err != nil {
				return fmt.Errorf("cgroups: enable %s controller in %s: %w", c, chain[i], err)
			}
		}
	}
	return nil
}

// toResources maps the spec onto the library's resources; zero means "leave
// as is" there, as a nil pointer does in the spec.
func toResources(r *specs.LinuxResources, v2 bool) *ocgroups.Resources {
	res := &ocgroups.Resources{}
	if mem := r.Memory; mem != nil {
		// kernel and kernelTCP are ignored, as by runc: kernels from 5.16
		// no longer limit kernel memory separately.
		res.Memory = val(mem.Limit)
		res.MemoryReservation = val(mem.Reservation)
		res.MemorySwap = val(mem.Swap)
		res.MemorySwappiness = mem.Swappiness
		res.OomKillDisable = val(mem.DisableOOMKiller)
		res.MemoryCheckBeforeUpdate = val(mem.CheckBeforeUpdate)
	}
	if c := r.CPU; c != nil {
		res.CpuShares = val(c.Shares)
		if v2 {
			res.CpuWeight = ocgroups.ConvertCPUSharesToCgroupV2Value(res.CpuShares)
		}
		res.CpuQuota = val(c.Quota)
		res.CpuBurst = c.Burst
		res.CpuPeriod = val(c.Period)
		res.CpuRtRuntime = val(c.RealtimeRuntime)
		res.CpuRtPeriod = val(c.RealtimePeriod)
		res.CpusetCpus = c.Cpus
		res.CpusetMems = c.Mems
		res.CPUIdle = c.Idle
	}
	if b := r.BlockIO; b != nil {
		res.BlkioWeight = val(b.Weight)
		res.BlkioLeafWeight = val(b.LeafWeight)
		for _, wd := range b.WeightDevice {
			res.BlkioWeightDevice = append(res.BlkioWeightDevice,
				ocgroups.NewWeightDevice(wd.Major, wd.Minor, val(wd.Weight), val(wd.LeafWeight)))
		}
		res.BlkioThrottleReadBpsDevice = throttles(b.ThrottleReadBpsDevice)
		res.BlkioThrottleWriteBpsDevice = throttles(b.ThrottleWriteBpsDevice)
		res.BlkioThrottleReadIOPSDevice = throttles(b.ThrottleReadIOPSDevice)
		res.BlkioThrottleWriteIOPSDevice = throttles(b.ThrottleWriteIOPSDevice)
	}
	for _, h := range r.HugepageLimits {
		res.HugetlbLimit = append(res.HugetlbLimit, &ocgroups.HugepageLimit{Pagesize: h.Pagesize, Limit: h.Limit})
	}
	if n := r.Network; n != nil {
		res.NetClsClassid = val(n.ClassID)
		for _, p := range n.Priorities {
			res.NetPrioIfpriomap = append(res.NetPrioIfpriomap, &ocgroups.IfPrioMap{Interface: p.Name, Priority: int64(p.Priority)})
		}
	}
	if len(r.Rdma) > 0 {
		res.Rdma = make(map[string]ocgroups.LinuxRdma, len(r.Rdma))
		for dev, l := range r.Rdma {
			res.Rdma[dev] = ocgroups.LinuxRdma{HcaHandles: l.HcaHandles, HcaObjects: l.HcaObjects}
		}
	}
	res.Unified = r.Unified
	if r.Devices == nil {
		res.SkipDevices = true
	} else {
		res.Devices = deviceRules(r.Devices)
	}
	return res
}

func throttles(in []specs.LinuxThrottleDevice) []*ocgroups.ThrottleDevice {
	var out []*ocgroups.ThrottleDevice
	for _, t := range in {
		out = append(out, ocgroups.NewThrottleDevice(t.Major, t.Minor, t.Rate))
	}
	return out
}

func val[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

// writeV1Devices replays the rules on the v1 devices cgroup in the listed
// order, after denying everything: the kernel keeps its exceptions in the
// order written, so devices.list shows the configured list as is (the
// library's emulator writes its own order).
func writeV1Devices(dir string, rules []specs.LinuxDeviceCgroup) error {
	write := func(file, line string) error {
		if err := writeFile(dir, file, line); err != nil {
			return fmt.Errorf("cgroups: devices rule %q: %w", line, err)
		}
		return nil
	}
	if err := write("devices.deny", "a"); err != nil {
		return err
	}
	for _, d := range rules {
		num := func(p *int64) string {
			if p == nil || *p < 0 {
				return "*"
			}
			return strconv.FormatInt(*p, 10)
		}
		typ := d.Type
		if typ == "" {
			typ = "a"
		}
		access := string(canonicalAccess(d.Access))
		if access == "" {
			access = "rwm"
		}
		line := fmt.Sprintf("%s %s:%s %s", typ, num(d.Major), num(d.Minor), access)
		if typ == "a" && d.Major == nil && d.Minor == nil {
			line = "a"
		}
		file := "devices.deny"
		if d.Allow {
			file = "devices.allow"
		}
		if err := write(file, line); err != nil {
			return err
		}
	}
	return nil
}

func writeFile(dir, file, data string) error {
	return os.WriteFile(filepath.Join(dir, file), []byte(data), 0)
}
