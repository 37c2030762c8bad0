package cri

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/opencontainers/cgroups"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// checkSink fails t for a metric without a descriptor or whose labels are
// not its descriptor's keys (what the kubelet's collector drops and
// critest fails), and returns the metrics by name and labels.
func checkSink(t *testing.T, m *metricSink) map[string]uint64 {
	t.Helper()
	descs, _ := (&Server{}).ListMetricDescriptors(context.Background(), nil)
	keys := map[string]int{}
	for _, d := range descs.Descriptors {
		keys[d.Name] = len(d.LabelKeys)
	}
	got := map[string]uint64{}
	for _, x := range m.out {
		n, ok := keys[x.Name]
		if !ok {
			t.Errorf("%s: no descriptor", x.Name)
		}
		if len(x.LabelValues) != n {
			t.Errorf("%s: %d label values for %d keys", x.Name, len(x.LabelValues), n)
		}
		got[strings.Join(append([]string{x.Name}, x.LabelValues[len(baseLabels):]...), "/")] = x.Value.GetValue()
	}
	return got
}

func TestMetricDescriptors(t *testing.T) {
	descs, err := (&Server{}).ListMetricDescriptors(context.Background(), &runtime.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, d := range descs.Descriptors {
		if seen[d.Name] || d.Help == "" || len(d.LabelKeys) < len(baseLabels) {
			t.Errorf("descriptor %s: duplicate, no help or too few labels", d.Name)
		}
		seen[d.Name] = true
		if _, ok := metricTypes[d.Name]; !ok {
			t.Errorf("%s: no type", d.Name)
		}
	}
}

func TestParseNetDev(t *testing.T) {
	const dev = `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     120       2    0    0    0     0          0         0      120       2    0    0    0     0       0          0
  eth0:    1166      13    1    2    0     0          0         0      542       7    3    4    0     0       0          0
`
	ifs, err := parseNetDev(strings.NewReader(dev))
	if err != nil {
		t.Fatal(err)
	}
	want := ifaceStats{name: "eth0", rxBytes: 1166, rxPackets: 13, rxErrors: 1, rxDropped: 2, txBytes: 542, txPackets: 7, txErrors: 3, txDropped: 4}
	if len(ifs) != 1 || ifs[0] != want {
		t.Fatalf("got %+v, want only %+v", ifs, want)
	}
}

// TestCgroupV2Metrics reads a cgroup v2 directory made of files (this
// project's machines are v1 or hybrid, so the v2 paths are checked here).
func TestCgroupV2Metrics(t *testing.T) {
	cgroups.TestMode = true // opencontainers/cgroups reads outside /sys/fs/cgroup
	defer func() { cgroups.TestMode = false }()
	dir := t.TempDir()
	files := map[string]string{
		"cgroup.procs":        fmt.Sprintln(os.Getpid()),
		"cpu.stat":            "usage_usec 3500000\nuser_usec 2000000\nsystem_usec 1500000\nnr_periods 40\nnr_throttled 7\nthrottled_usec 2100000\n",
		"cpu.max":             "20000 100000\n",
		"cpu.weight":          "40\n", // KEP 2254's weight for 1024 shares
		"cpu.pressure":        "some avg10=0.00 avg60=0.00 avg300=0.00 total=4000000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000000\n",
		"memory.stat":         "anon 4096\nfile 8192\nfile_mapped 1024\ninactive_file 2048\npgfault 12\npgmajfault 1\nkernel 512\n",
		"memory.current":      "16384\n",
		"memory.max":          "67108864\n",
		"memory.low":          "0\n",
		"memory.peak":         "20480\n",
		"memory.swap.current": "0\n",
		"memory.swap.max":     "max\n",
		"memory.events":       "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\n",
		"io.stat":             "254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
		"pids.current":        "1\n",
		"pids.max":            "max\n",
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g := engine.CgroupAt("/pod/ctr", nil, dir)
	u, err := usageOf(g)
	if err != nil {
		t.Fatal(err)
	}
	if u.cpu != 3500000000 || u.mem != 16384 || u.workingSet != 14336 || u.rss != 4096 || u.faults != 12 || u.majFaults != 1 || u.limit != 67108864 {
		t.Errorf("usage: %+v", u)
	}
	m := &metricSink{base: make([]string, len(baseLabels))}
	m.cgroup(g)
	got := checkSink(t, m)
	for k, v := range map[string]uint64{
		"container_cpu_usage_seconds_total/total": 3, "container_cpu_user_seconds_total": 2, "container_cpu_system_seconds_total": 1,
		"container_cpu_cfs_periods_total": 40, "container_cpu_cfs_throttled_periods_total": 7, "container_cpu_cfs_throttled_seconds_total": 2,
		"container_spec_cpu_period": 100000, "container_spec_cpu_quota": 20000, "container_spec_cpu_shares": 1024,
		"container_pressure_cpu_waiting_seconds_total": 4, "container_pressure_cpu_stalled_seconds_total": 1,
		"container_memory_rss": 4096, "container_memory_cache": 8192, "container_memory_mapped_file": 1024, "container_memory_swap": 0,
		"container_memory_kernel_usage": 512, "container_memory_usage_bytes": 16384, "container_memory_working_set_bytes": 14336,
		"container_memory_max_usage_bytes": 20480, "container_memory_failcnt": 5, "container_oom_events_total": 1,
		"container_memory_failures_total/pgfault/hierarchy": 12, "container_spec_memory_limit_bytes": 67108864,
		"container_spec_memory_reservation_limit_bytes": 0, "container_spec_memory_swap_limit_bytes": 0,
		"container_fs_reads_bytes_total/" + blockDevice(254, 0): 4096, "container_fs_writes_total/" + blockDevice(254, 0): 2,
		"container_processes": 1, "container_threads_max": 0,
	} {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
}

// TestCgroupV1Metrics puts a process in cgroups of its own and reads them
// back as a container's.
func TestCgroupV1Metrics(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: makes cgroups")
	}
	if cgroups.IsCgroup2UnifiedMode() {
		t.Skip("a cgroup v2 host: TestCgroupV2Metrics covers it")
	}
	name := fmt.Sprintf("berth-podstats-test-%d", os.Getpid())
	// It spins, so its CPU time is charged to the cgroup it is moved to.
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	limits := map[string]map[string]string{
		"memory": {"memory.limit_in_bytes": "67108864"}, "cpu": {"cpu.cfs_quota_us": "20000", "cpu.shares": "512"},
		"cpuacct": nil, "pids": {"pids.max": "100"}, "blkio": nil,
	}
	var made []string
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		for _, d := range made {
			os.Remove(d)
		}
	}()
	for ctrl, files := range limits {
		mnt, _, ok := engine.V1Mount(ctrl)
		if !ok {
			t.Skipf("no %s hierarchy", ctrl)
		}
		d := filepath.Join(mnt, name)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		made = append(made, d)
		for f, v := range files {
			if err := os.WriteFile(filepath.Join(d, f), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		cpuacct, _, _ := engine.V1Mount("cpuacct")
		if b, _ := os.ReadFile(filepath.Join(cpuacct, name, "cpuacct.usage")); strings.TrimSpace(string(b)) != "0" {
			break
		}
	}
	g, err := engine.CgroupOf(cmd.Process.Pid, name)
	if err != nil {
		t.Fatal(err)
	}
	if g.Path() != "/"+name {
		t.Fatalf("path %s, want /%s", g.Path(), name)
	}
	if _, ok := g.Parent(); ok {
		t.Error("a cgroup under the root has a parent of its own")
	}
	m := &metricSink{base: make([]string, len(baseLabels))}
	m.cgroup(g)
	got := checkSink(t, m)
	for k, v := range map[string]uint64{
		"container_spec_memory_limit_bytes": 67108864, "container_spec_cpu_quota": 20000, "container_spec_cpu_shares": 512,
		"container_spec_cpu_period": 100000, "container_threads_max": 100, "container_processes": 1, "container_threads": 1,
	} {
		if got[k] != v {
			t.Errorf("%s = %d, want %d", k, got[k], v)
		}
	}
	for _, k := range []string{"container_memory_usage_bytes", "container_memory_working_set_bytes", "container_cpu_usage_seconds_total/total", "container_file_descriptors"} {
		if _, ok := got[k]; !ok {
			t.Errorf("no %s", k)
		}
	}
	u, err := usageOf(g)
	if err != nil {
		t.Fatal(err)
	}
	if u.limit != 67108864 || u.procs != 1 || u.cpu == 0 {
		t.Errorf("usage: %+v", u)
	}
}
