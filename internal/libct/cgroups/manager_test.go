package cgroups

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	ocgroups "github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthdev/berth/internal/errdefs"
)

// hybridHugetlb arranges for hugetlb to be disabled again in the unified
// root after a test that enabled it, so the host is left as found. It must
// be registered before removeTree: the kernel refuses to disable a
// controller that a child cgroup still passes on.
func hybridHugetlb(t *testing.T, m *Manager) {
	if m.hybrid() && strings.HasPrefix(m.paths[UnifiedKey], hybridRoot+"/") {
		restoreHugetlb(t, hybridRoot)
	}
}

const hybridRoot = "/sys/fs/cgroup/unified"

// restoreHugetlb disables hugetlb in root at cleanup unless it was enabled
// before, or a direct child (maybe another test's container, running in
// parallel) has a hugetlb limit that disabling would drop.
func restoreHugetlb(t *testing.T, root string) {
	if slices.Contains(strings.Fields(readCg(t, root, "cgroup.subtree_control")), "hugetlb") {
		return
	}
	t.Cleanup(func() {
		limits, _ := filepath.Glob(filepath.Join(root, "*", "hugetlb.*.max"))
		for _, f := range limits {
			if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) != "max" {
				t.Logf("leaving hugetlb enabled in %s: %s is in use", root, f)
				return
			}
		}
		if err := os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("-hugetlb"), 0); err != nil {
			t.Logf("could not disable hugetlb again in %s: %v", root, err)
		}
	})
}

func TestLifecycle(t *testing.T) {
	requireRoot(t)
	parent := uniqueName("life")
	m, err := New("/"+parent+"/ctr", "ignored")
	if err != nil {
		t.Fatal(err)
	}
	hybridHugetlb(t, m) // registered first: cleanups run last-in first-out
	removeTree(t, m, 2)
	child := startChild(t, "sleep", "30")
	pid := child.Process.Pid

	if err := m.Apply(pid); err != nil {
		t.Fatal(err)
	}
	// A second container may not move into a cgroup that has processes.
	if m2, err := New("/"+parent+"/ctr", "other"); err != nil {
		t.Fatal(err)
	} else if err := m2.Apply(-1); !errdefs.IsFailedPrecond(err) || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Apply on a populated cgroup: err = %v, want failed precondition", err)
	}
	for k, p := range m.Paths() {
		if !slices.Contains(strings.Fields(readCg(t, p, "cgroup.procs")), strconv.Itoa(pid)) {
			t.Errorf("%s: pid %d not in %s", k, pid, p)
		}
	}

	const mib = 1 << 20
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr[int64](64 * mib), Reservation: ptr[int64](32 * mib), Swap: ptr[int64](128 * mib)},
		CPU: &specs.LinuxCPU{Shares: ptr[uint64](512), Quota: ptr[int64](50000), Period: ptr[uint64](100000),
			Burst: ptr[uint64](10000), Cpus: "0", Mems: "0"},
		Pids: &specs.LinuxPids{Limit: ptr[int64](100)},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rwm"},
			{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](5), Access: "wr"},
		},
	}
	haveHugetlb := slices.Contains(ocgroups.HugePageSizes(), "2MB") && (m.Path("hugetlb") != "" || m.v2 != nil)
	if haveHugetlb {
		r.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 * mib}}
	}
	maj, min, haveDisk := firstDisk(t)
	if haveDisk {
		r.BlockIO = &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{
			{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: maj, Minor: min}, Rate: mib},
		}}
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}

	if m.v1 != nil {
		mem := m.Path("memory")
		wantFile(t, mem, "memory.limit_in_bytes", "67108864")
		wantFile(t, mem, "memory.soft_limit_in_bytes", "33554432")
		if _, err := os.Stat(filepath.Join(mem, "memory.memsw.limit_in_bytes")); err == nil {
			wantFile(t, mem, "memory.memsw.limit_in_bytes", "134217728")
		}
		wantFile(t, m.Path("cpu"), "cpu.shares", "512")
		wantFile(t, m.Path("cpu"), "cpu.cfs_quota_us", "50000")
		wantFile(t, m.Path("cpu"), "cpu.cfs_period_us", "100000")
		if _, err := os.Stat(filepath.Join(m.Path("cpu"), "cpu.cfs_burst_us")); err == nil {
			wantFile(t, m.Path("cpu"), "cpu.cfs_burst_us", "10000")
		}
		wantFile(t, m.Path("cpuset"), "cpuset.cpus", "0")
		wantFile(t, m.Path("cpuset"), "cpuset.mems", "0")
		wantFile(t, m.Path("pids"), "pids.max", "100")
		wantFile(t, m.Path("devices"), "devices.list", "c 1:3 rwm\nc 1:5 rw")
		if haveDisk {
			wantFile(t, m.Path("blkio"), "blkio.throttle.read_bps_device", fmt.Sprintf("%d:%d 1048576", maj, min))
		}
		switch {
		case !haveHugetlb:
		case m.Path("hugetlb") != "":
			wantFile(t, m.Path("hugetlb"), "hugetlb.2MB.limit_in_bytes", "4194304")
		default:
			wantFile(t, m.paths[UnifiedKey], "hugetlb.2MB.max", "4194304")
		}
	} else {
		u := m.paths[UnifiedKey]
		wantFile(t, u, "memory.max", "67108864")
		wantFile(t, u, "memory.low", "33554432")
		wantFile(t, u, "cpu.max", "50000 100000")
		wantFile(t, u, "pids.max", "100")
		wantFile(t, u, "cpuset.cpus", "0")
		if haveHugetlb {
			wantFile(t, u, "hugetlb.2MB.max", "4194304")
		}
	}

	pids, err := m.Pids()
	if err != nil || !slices.Equal(pids, []int{pid}) {
		t.Errorf("Pids() = %v, %v; want [%d]", pids, err, pid)
	}

	st, err := m.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids.Current != 1 || st.Pids.Limit != 100 {
		t.Errorf("pids stats = %+v, want current 1 limit 100", st.Pids)
	}
	if st.Memory.Usage.Limit != 64*mib {
		t.Errorf("memory limit stat = %d, want %d", st.Memory.Usage.Limit, 64*mib)
	}
	if _, ok := st.Hugetlb["2MB"]; haveHugetlb && !ok {
		t.Errorf("hugetlb stats lack 2MB: %+v", st.Hugetlb)
	}
	raw, _ := json.Marshal(st)
	var keys map[string]json.RawMessage
	_ = json.Unmarshal(raw, &keys)
	for _, k := range []string{"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb"} {
		if _, ok := keys[k]; !ok {
			t.Errorf("stats JSON lacks %q: %s", k, raw)
		}
	}

	// A live process keeps its cgroup: Destroy must fail and remove nothing.
	if err := m.Destroy(); err == nil {
		t.Error("Destroy succeeded with a process still inside")
	}
	if _, err := os.Stat(m.Path("memory")); err != nil {
		t.Errorf("memory cgroup of a live process vanished: %v", err)
	}

	stopChild(child)
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
	for k, p := range m.Paths() {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %s still exists after Destroy (%v)", k, p, err)
		}
	}
}

func TestFreezeThaw(t *testing.T) {
	requireRoot(t)
	m, err := New("/"+uniqueName("freeze"), "x")
	if err != nil {
		t.Fatal(err)
	}
	removeTree(t, m, 1)
	// The shell waits for a line so that it starts ticking only once inside
	// the cgroup, with every later child there too.
	cmd := startChildPiped(t, "sh", "-c", "read x; while :; do echo; sleep 0.02; done")
	if err := m.Apply(cmd.pid); err != nil {
		t.Fatal(err)
	}
	cmd.release()
	waitTicks := func(d time.Duration) int64 {
		before := cmd.ticks.Load()
		time.Sleep(d)
		return cmd.ticks.Load() - before
	}
	if waitTicks(300*time.Millisecond) == 0 {
		t.Fatal("child is not ticking before freeze")
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	if fr, err := m.Frozen(); err != nil || !fr {
		t.Fatalf("Frozen() = %v, %v after Freeze", fr, err)
	}
	time.Sleep(50 * time.Millisecond) // drain what was in flight
	if n := waitTicks(300 * time.Millisecond); n != 0 {
		t.Errorf("child ticked %d times while frozen", n)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	if fr, err := m.Frozen(); err != nil || fr {
		t.Fatalf("Frozen() = %v, %v after Thaw", fr, err)
	}
	if waitTicks(500*time.Millisecond) == 0 {
		t.Error("child did not resume after Thaw")
	}
	cmd.stop()
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
}

type pipedChild struct {
	pid     int
	ticks   atomic.Int64
	release func() // lets the child start ticking
	stop    func()
}

func startChildPiped(t *testing.T, args ...string) *pipedChild {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pipedChild{pid: cmd.Process.Pid}
	p.release = func() { _, _ = in.Write([]byte("go\n")) }
	p.stop = func() { stopChild(cmd) }
	t.Cleanup(p.stop)
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			p.ticks.Add(1)
		}
	}()
	return p
}

func TestDefaultDevicesList(t *testing.T) {
	requireRoot(t)
	m, err := New("/"+uniqueName("dev"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if m.v1 == nil {
		t.Skip("devices.list exists only on cgroup v1; v2 rules are an eBPF program")
	}
	removeTree(t, m, 1)
	if err := m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	rules := append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, DefaultAllowedDevices()...)
	if err := m.Set(&specs.LinuxResources{Devices: rules}); err != nil {
		t.Fatal(err)
	}
	want := []string{"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:8 rwm", "c 1:7 rwm", "c 5:0 rwm",
		"c 1:5 rwm", "c 1:9 rwm", "c 136:* rwm", "c 5:2 rwm", "c 10:200 rwm"}
	got := strings.Split(readCg(t, m.Path("devices"), "devices.list"), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("devices.list = %q, want %q", got, want)
	}
	// An update without devices leaves the rules alone.
	if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr[int64](5)}}); err != nil {
		t.Fatal(err)
	}
	if n := len(strings.Split(readCg(t, m.Path("devices"), "devices.list"), "\n")); n != len(want) {
		t.Errorf("devices.list changed by a Set without devices: %d lines", n)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
}

func TestLimitEdges(t *testing.T) {
	requireRoot(t)
	m, err := New("/"+uniqueName("edges"), "x")
	if err != nil {
		t.Fatal(err)
	}
	removeTree(t, m, 1)
	if err := m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	pidsMax := func(limit int64, want string) {
		t.Helper()
		if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &limit}}); err != nil {
			t.Fatal(err)
		}
		wantFile(t, m.Path("pids"), "pids.max", want)
	}
	pidsMax(0, "0") // the spec: 0 is a limit, not "unset"
	pidsMax(-1, "max")
	pidsMax(7, "7")

	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](32 << 20)}}); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](-1)}}); err != nil {
		t.Fatal(err)
	}
	if m.v1 != nil {
		if v, _ := strconv.ParseUint(readCg(t, m.Path("memory"), "memory.limit_in_bytes"), 10, 64); v < 1<<62 {
			t.Errorf("memory limit -1 left memory.limit_in_bytes = %d", v)
		}
	} else {
		wantFile(t, m.Path("memory"), "memory.max", "max")
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
}

func TestRealtimeAndIdle(t *testing.T) {
	requireRoot(t)
	m, err := New("/"+uniqueName("rt"), "x") // one level: RT budget comes from the root
	if err != nil {
		t.Fatal(err)
	}
	if m.v1 == nil {
		t.Skip("real-time group scheduling is cgroup v1 only")
	}
	if _, err := os.Stat("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"); err != nil {
		t.Skip("kernel without CONFIG_RT_GROUP_SCHED")
	}
	removeTree(t, m, 1)
	if err := m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	cpu := &specs.LinuxCPU{RealtimePeriod: ptr[uint64](1000000), RealtimeRuntime: ptr[int64](10000)}
	if err := m.Set(&specs.LinuxResources{CPU: cpu}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, m.Path("cpu"), "cpu.rt_runtime_us", "10000")
	wantFile(t, m.Path("cpu"), "cpu.rt_period_us", "1000000")
	if _, err := os.Stat(filepath.Join(m.Path("cpu"), "cpu.idle")); err == nil {
		if err := m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{Idle: ptr[int64](1)}}); err != nil {
			t.Fatal(err)
		}
		wantFile(t, m.Path("cpu"), "cpu.idle", "1")
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
}

func TestHybridUnifiedKeys(t *testing.T) {
	requireRoot(t)
	m, err := New("/"+uniqueName("uni"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if !m.hybrid() {
		t.Skip("hybrid host only")
	}
	if !slices.Contains(strings.Fields(readCg(t, hybridRoot, "cgroup.controllers")), "hugetlb") {
		t.Skip("hugetlb is not in this hybrid host's cgroup2 (it is mounted as v1)")
	}
	hybridHugetlb(t, m)
	removeTree(t, m, 1)
	if err := m.Apply(-1); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(&specs.LinuxResources{Unified: map[string]string{"hugetlb.2MB.max": "2097152"}}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, m.paths[UnifiedKey], "hugetlb.2MB.max", "2097152")
	err = m.Set(&specs.LinuxResources{Unified: map[string]string{"memory.max": "1000000"}})
	if err == nil || !strings.Contains(err.Error(), "memory") {
		t.Errorf("unified memory.max on a hybrid host: err = %v, want a controller-not-available error", err)
	}
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
}

func TestNetworkNeedsController(t *testing.T) {
	m, err := New("/"+uniqueName("net"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if m.Path("net_cls") != "" {
		t.Skip("net_cls is mounted here")
	}
	err = m.Set(&specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: ptr[uint32](0x100001)}})
	if !errdefs.IsFailedPrecond(err) || !strings.Contains(err.Error(), "linux.resources.network.classID") {
		t.Errorf("classID without net_cls: err = %v", err)
	}
	// An empty network section asks for nothing and must pass.
	if err := m.validate(&specs.LinuxResources{Network: &specs.LinuxNetwork{}}); err != nil {
		t.Errorf("empty network section: %v", err)
	}
}
