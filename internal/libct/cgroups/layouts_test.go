package cgroups

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthdev/berth/internal/errdefs"
)

const layoutEnv = "BERTH_CGROUP_TEST_LAYOUT"

// TestOtherLayouts runs the pure v2 and pure v1 code paths on a hybrid host:
// the test binary is re-run in a private mount namespace where
// /sys/fs/cgroup is the cgroup2 hierarchy alone (v2) or lacks it (v1). The
// host's mounts are untouched; the v2 run may enable hugetlb in the v2 root,
// which is undone afterwards.
func TestOtherLayouts(t *testing.T) {
	requireRoot(t)
	if os.Getenv(layoutEnv) != "" {
		t.Skip("already inside a layout run")
	}
	h, err := detectHost()
	if err != nil {
		t.Fatal(err)
	}
	if h.unified || h.v2 == nil || h.v2.point != hybridRoot {
		t.Skip("needs a hybrid host with cgroup2 at " + hybridRoot)
	}
	for _, layout := range []string{"v2", "v1"} {
		t.Run(layout, func(t *testing.T) {
			if layout == "v2" {
				restoreHugetlb(t, hybridRoot)
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestLayoutChild$", "-test.v")
			cmd.Env = append(os.Environ(), layoutEnv+"="+layout)
			// Go makes the new mount namespace's mounts private before exec.
			cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), "--- PASS: TestLayoutChild") {
				t.Fatalf("layout %s run failed (%v):\n%s", layout, err, out)
			}
			t.Logf("%s", out)
		})
	}
}

// TestLayoutChild is the half of TestOtherLayouts that runs inside the
// mount namespace.
func TestLayoutChild(t *testing.T) {
	layout := os.Getenv(layoutEnv)
	switch layout {
	case "":
		t.Skip("run by TestOtherLayouts")
	case "v2":
		if err := syscall.Mount("cgroup2", cgroupRoot, "cgroup2", 0, ""); err != nil {
			t.Fatal(err)
		}
		layoutV2(t)
	case "v1":
		if err := syscall.Unmount(hybridRoot, syscall.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
		layoutV1(t)
	}
}

// layoutV2 has only the controllers the hybrid host left to v2 (hugetlb),
// plus the pseudo-controllers: devices (eBPF) and freezer.
func layoutV2(t *testing.T) {
	h, err := detectHost()
	if err != nil || !h.unified {
		t.Fatalf("probe: %+v, %v; want unified", h, err)
	}
	m, err := New("/"+uniqueName("v2"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if p := m.Paths(); len(p) != 1 || !strings.HasPrefix(p[UnifiedKey], cgroupRoot+"/berthtest-v2-") {
		t.Fatalf("paths = %v", p)
	}
	removeTree(t, m, 1)
	sleeper := startChild(t, "sleep", "30")
	if err := m.Apply(sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	r := &specs.LinuxResources{
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rwm"}},
	}
	// Where the host mounts hugetlb as v1 (as the peers' setup does), the
	// emulated v2 layout has no hugetlb to test.
	hugetlb := fileExists(filepath.Join(m.Path(""), "hugetlb.2MB.max"))
	if hugetlb {
		r.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}}
		r.Unified = map[string]string{"hugetlb.1GB.max": "0"}
	}
	if err := m.Set(r); err != nil {
		t.Fatal(err)
	}
	if hugetlb {
		wantFile(t, m.Path(""), "hugetlb.2MB.max", "4194304")
		wantFile(t, m.Path(""), "hugetlb.1GB.max", "0")
	}
	if got := deviceProbe(t, m); got != "denied" {
		t.Errorf("eBPF device filter: /dev/zero %s, want denied", got)
	}
	if err := m.Freeze(); err != nil {
		t.Fatal(err)
	}
	if fr, err := m.Frozen(); err != nil || !fr {
		t.Errorf("Frozen() = %v, %v", fr, err)
	}
	if err := m.Thaw(); err != nil {
		t.Fatal(err)
	}
	st, err := m.Stats()
	if err != nil || st.Pids.Current != 1 {
		t.Errorf("Stats() = %+v, %v", st, err)
	}
	if err := m.Set(&specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: ptr[int64](1000)}}); !errdefs.IsFailedPrecond(err) {
		t.Errorf("realtime on v2: err = %v, want failed precondition", err)
	}
	stopChild(sleeper)
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
}

// deviceProbe starts a process in the container that tries to read
// /dev/zero (its redirections use only /dev/null).
func deviceProbe(t *testing.T, m *Manager) string {
	cmd := exec.Command("sh", "-c", "read x; if head -c1 /dev/zero >/dev/null 2>&1; then echo open; else echo denied; fi")
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	if err := m.AddPid(cmd.Process.Pid); err != nil {
		_ = cmd.Process.Kill()
		t.Fatal(err)
	}
	_, _ = in.Write([]byte("go\n"))
	line, _ := bufio.NewReader(out).ReadString('\n')
	return strings.TrimSpace(line)
}

func layoutV1(t *testing.T) {
	h, err := detectHost()
	if err != nil || h.unified || h.v2 != nil {
		t.Fatalf("probe: %+v, %v; want v1 only", h, err)
	}
	m, err := New("/"+uniqueName("v1"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.Paths()[UnifiedKey]; ok {
		t.Fatalf("pure v1 paths have a v2 cgroup: %v", m.Paths())
	}
	removeTree(t, m, 1)
	sleeper := startChild(t, "sleep", "30")
	if err := m.Apply(sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr[int64](9)},
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rwm"}}}); err != nil {
		t.Fatal(err)
	}
	wantFile(t, m.Path("pids"), "pids.max", "9")
	if got := deviceProbe(t, m); got != "denied" {
		t.Errorf("v1 device rules: /dev/zero %s, want denied", got)
	}
	cases := map[string]*specs.LinuxResources{
		"unified": {Unified: map[string]string{"pids.max": "3"}},
	}
	if m.Path("hugetlb") == "" {
		cases["hugepageLimits"] = &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1 << 21}}}
	}
	for field, r := range cases {
		if err := m.Set(r); !errdefs.IsFailedPrecond(err) || !strings.Contains(err.Error(), field) {
			t.Errorf("%s on pure v1 without it: err = %v", field, err)
		}
	}
	stopChild(sleeper)
	if err := m.Destroy(); err != nil {
		t.Fatal(err)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
