package cgroups

import (
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// benchResources is what a typical `docker run -m 256m --cpus 1.5` or CRI
// container asks for.
func benchResources() *specs.LinuxResources {
	return &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr[int64](256 << 20), Swap: ptr[int64](512 << 20)},
		CPU:    &specs.LinuxCPU{Shares: ptr[uint64](1024), Quota: ptr[int64](150000), Period: ptr[uint64](100000)},
		Pids:   &specs.LinuxPids{Limit: ptr[int64](1024)},
		Devices: append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			DefaultAllowedDevices()...),
	}
}

// BenchmarkApplySet measures what `create` spends in cgroups: New (path
// resolution, host probe cached after the first call), Apply of a real
// process and Set of typical limits. Starting, killing the process and
// Destroy are outside the timer. apply-ns and set-ns split the total.
func BenchmarkApplySet(b *testing.B) {
	requireRoot(b)
	r := benchResources()
	parent := "/" + uniqueName("bench")
	var applyNs, setNs time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		child := exec.Command("sleep", "30")
		if err := child.Start(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()

		m, err := New(parent+"/"+uniqueName("c"), "x")
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if err := m.Apply(child.Process.Pid); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := m.Set(r); err != nil {
			b.Fatal(err)
		}
		setNs += time.Since(t1)
		applyNs += t1.Sub(t0)

		b.StopTimer()
		_ = child.Process.Kill()
		_ = child.Wait()
		if err := m.Destroy(); err != nil {
			b.Fatal(err)
		}
		if i == 0 {
			b.Cleanup(func() { removeParent(m) })
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(applyNs.Nanoseconds())/float64(b.N), "apply-ns/op")
	b.ReportMetric(float64(setNs.Nanoseconds())/float64(b.N), "set-ns/op")
}

func removeParent(m *Manager) {
	for _, p := range m.Paths() {
		_ = rmdirTree(filepath.Dir(p), time.Now())
	}
}

// BenchmarkProbeHostCold is the once-per-process cost of learning the
// layout (statfs, one mountinfo read on v1/hybrid hosts, /proc/self/cgroup).
func BenchmarkProbeHostCold(b *testing.B) {
	for b.Loop() {
		hostOnce, ownOnce = sync.Once{}, sync.Once{}
		if _, err := New("", "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoad is what every command after create pays to rebuild the
// manager from saved state.
func BenchmarkLoad(b *testing.B) {
	m, err := New("/"+uniqueName("load"), "x")
	if err != nil {
		b.Fatal(err)
	}
	paths := m.Paths()
	for b.Loop() {
		if _, err := Load(paths); err != nil {
			b.Fatal(err)
		}
	}
}
