package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// devicesList is the container's devices.list on the host (cgroup v1).
func devicesList(t *testing.T, pid int) string {
	t.Helper()
	p := hostCgroup(t, pid)["devices"]
	if p == "" {
		t.Fatalf("pid %d has no devices cgroup", pid)
	}
	return readFile(t, cgroupDir("devices", p)+"/devices.list")
}

// TestDeviceCgroupDefaultDeny: whatever the config's device rules, a
// container reaches only the default devices and its own (runc starts
// from deny-all and appends its allow list).
func TestDeviceCgroupDefaultDeny(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rules []specs.LinuxDeviceCgroup
	}{
		{"config denies all", []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
		{"config has no rules", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// /dev/fuse (10:229) opens harmlessly on the host and is not
			// among the default devices.
			caps := []string{"CAP_MKNOD"}
			c := newCtr(t, sh(`mknod /tmp/fuse c 10 229 && echo mknod-ok
{ true < /tmp/fuse; } 2>/dev/null && echo FUSE-OPENED || echo fuse-denied
echo x > /dev/null && echo null-ok; exec sleep 100`), func(s *specs.Spec) {
				s.Linux.Resources.Devices = tc.rules
				s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
			})
			pid := c.startDetached()
			out := c.waitOutput("null-ok")
			wantContains(t, "devices", out, "mknod-ok", "fuse-denied")
			wantNotContains(t, "devices", out, "FUSE-OPENED")
			if l := devicesList(t, pid); strings.Contains(l, "a *:* rwm") {
				t.Errorf("the container's devices cgroup allows every device:\n%s", l)
			}
		})
	}
}

func TestUpdateKeepsDeviceRules(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	pid := c.startDetached()
	before := devicesList(t, pid)
	if r := c.rt("update", "--memory", "100m", c.id); r.code != 0 {
		t.Fatalf("update --memory: %v", r)
	}
	if after := devicesList(t, pid); after != before {
		t.Errorf("update --memory changed the device rules:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	r := c.rt("exec", c.id, "sh", "-c", "echo x > /dev/null && head -c 3 /dev/zero | wc -c")
	if r.code != 0 || strings.TrimSpace(r.out) != "3" {
		t.Errorf("default devices unusable after update: %v", r)
	}
}

func TestUpdateResourcesFile(t *testing.T) {
	for _, withResources := range []bool{true, false} {
		t.Run("config resources "+strconv.FormatBool(withResources), func(t *testing.T) {
			c := newCtr(t, func(s *specs.Spec) {
				s.Process.Args = []string{"sleep", "100"}
				if !withResources {
					s.Linux.Resources = nil
				}
			})
			pid := c.startDetached()
			f := filepath.Join(t.TempDir(), "res.json")
			os.WriteFile(f, []byte(`{"memory":{"limit":83886080},"pids":{"limit":33}}`), 0o644)
			r := c.rt("update", "--resources", f, c.id)
			if r.code != 0 {
				t.Fatalf("update --resources: %v", r)
			}
			cg := hostCgroup(t, pid)
			if got := readTrim(t, cgroupDir("memory", cg["memory"])+"/memory.limit_in_bytes"); got != "83886080" {
				t.Errorf("memory limit after update --resources: %s", got)
			}
			if got := readTrim(t, cgroupDir("pids", cg["pids"])+"/pids.max"); got != "33" {
				t.Errorf("pids limit after update --resources: %s", got)
			}
			// The update is recorded: a second, flag-only update keeps it.
			if r := c.rt("update", "--pids-limit", "44", c.id); r.code != 0 {
				t.Fatalf("update --pids-limit: %v", r)
			}
			if got := readTrim(t, cgroupDir("memory", cg["memory"])+"/memory.limit_in_bytes"); got != "83886080" {
				t.Errorf("memory limit after a later update: %s", got)
			}
			r = c.rt("exec", c.id, "sh", "-c", "echo x > /dev/null && echo null-ok")
			wantContains(t, "exec after update", r.out, "null-ok")
		})
	}
}

func TestUpdateStopped(t *testing.T) {
	c := newCtr(t, sh("true"))
	c.createStartWait()
	if r := c.rt("update", "--memory", "100m", c.id); r.code == 0 {
		t.Errorf("update of a stopped container succeeded: %v", r)
	}
}

func TestKillPaused(t *testing.T) {
	// SIGKILL does nothing to a frozen v1 cgroup until it thaws: kill of a
	// paused container must still stop it (runc thaws for SIGKILL).
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	pid := c.startDetached()
	if r := c.rt("pause", c.id); r.code != 0 {
		t.Fatalf("pause: %v", r)
	}
	if r := c.rt("kill", c.id, "KILL"); r.code != 0 {
		t.Fatalf("kill of a paused container: %v", r)
	}
	// Not waitStatus: a frozen init would make it wait its whole timeout.
	for i := 0; i < 150 && c.state().Status != "stopped"; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if st := c.state(); st.Status != "stopped" {
		t.Fatalf("status %q after kill KILL of a paused container, want stopped", st.Status)
	}
	if alive(pid) {
		t.Errorf("init %d alive", pid)
	}
}

func TestCgroupMountWithoutNamespace(t *testing.T) {
	// Without a cgroup namespace the cgroup mount shows the container's own
	// cgroups (bind mounts), not the host's roots.
	c := newCtr(t, withoutNS(specs.CgroupNamespace), func(s *specs.Spec) {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: ptr(int64(96 << 20))}
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr(int64(77))}
	}, sh("cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; ls /sys/fs/cgroup/memory | grep -c '^'"))
	out := c.mustRun()
	l := lines(out)
	if len(l) != 3 || l[0] != "100663296" || l[1] != "77" {
		t.Fatalf("cgroup files without a cgroup namespace: %q", l)
	}
}

func TestDeleteKillsLeftovers(t *testing.T) {
	// Without a pid namespace an init can exit and leave processes in the
	// container's cgroup: delete must kill them and remove the cgroup.
	c := newCtr(t, withoutNS(specs.PIDNamespace), sh("sleep 100 & echo $! > /tmp/child; exit 0"))
	c.createStartWait()
	b, err := os.ReadFile(filepath.Join(c.rootfs, "tmp/child"))
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if !alive(child) {
		t.Fatalf("child %d not running before delete", child)
	}
	dir := cgroupDir("memory", hostCgroup(t, child)["memory"])
	if r := c.rt("delete", c.id); r.code != 0 {
		t.Fatalf("delete: %v", r)
	}
	for i := 0; i < 100 && alive(child); i++ {
		unix.Nanosleep(&unix.Timespec{Nsec: 10e6}, nil)
	}
	if alive(child) {
		t.Errorf("leftover process %d survived delete", child)
		unix.Kill(child, unix.SIGKILL)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("cgroup %s left after delete", dir)
	}
}

func TestLinuxDeviceAccess(t *testing.T) {
	// A device of linux.devices is usable (the device cgroup allows it) by
	// its owner; a fifo is created too.
	c := newCtr(t, sh("echo x > /dev/mynull && echo write-ok; stat -c %F /dev/myfifo"), func(s *specs.Spec) {
		s.Process.User = specs.User{UID: 1000, GID: 1000}
		s.Linux.Devices = append(s.Linux.Devices,
			specs.LinuxDevice{Path: "/dev/mynull", Type: "c", Major: 1, Minor: 3, FileMode: ptr(os.FileMode(0o600)), UID: ptr(uint32(1000)), GID: ptr(uint32(1000))},
			specs.LinuxDevice{Path: "/dev/myfifo", Type: "p", FileMode: ptr(os.FileMode(0o666))})
	})
	got := lines(c.mustRun())
	if strings.Join(got, "|") != "write-ok|fifo" {
		t.Errorf("linux.devices in use: %q", got)
	}
}

func TestCgroupHugetlbHybrid(t *testing.T) {
	requireRoot(t)
	ctrls, err := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers")
	if err != nil || !strings.Contains(string(ctrls), "hugetlb") {
		t.Skip("not a hybrid host with hugetlb in cgroup v2")
	}
	if _, err := os.Stat("/sys/fs/cgroup/hugetlb"); err == nil {
		t.Skip("hugetlb is a v1 controller here")
	}
	c := newCtr(t, func(s *specs.Spec) {
		s.Process.Args = []string{"sleep", "100"}
		s.Linux.Resources.HugepageLimits = []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}}
	})
	pid := c.startDetached()
	v2 := hostCgroup(t, pid)[""]
	if v2 == "" || v2 == hostCgroup(t, os.Getpid())[""] {
		t.Fatalf("container has no cgroup of its own in the v2 hierarchy: %q", v2)
	}
	dir := filepath.Join("/sys/fs/cgroup/unified", v2)
	if got := readTrim(t, dir+"/hugetlb.2MB.max"); got != strconv.Itoa(4<<20) {
		t.Errorf("hugetlb.2MB.max: %s, want %d", got, 4<<20)
	}
	if r := c.rt("delete", "--force", c.id); r.code != 0 {
		t.Fatalf("delete --force: %v", r)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("v2 cgroup %s left after delete", dir)
	}
}

func TestEventsStream(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	c.startDetached()
	out := filepath.Join(t.TempDir(), "events")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(rtBin, "--root", c.root, "events", "--interval", "50ms", c.id)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for i := 0; i < 500 && len(lines(readFile(t, out))) < 2; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if r := c.rt("kill", c.id, "KILL"); r.code != 0 {
		t.Fatalf("kill: %v", r)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("events ended with %v once the container stopped: %s", err, readFile(t, out))
		}
	case <-time.After(stateTimeout):
		cmd.Process.Kill()
		t.Fatal("events kept running after the container stopped")
	}
	l := lines(readFile(t, out))
	if len(l) < 2 {
		t.Fatalf("events printed %d lines: %q", len(l), l)
	}
	for _, x := range l {
		var e struct{ Type, ID string }
		if err := json.Unmarshal([]byte(x), &e); err != nil || e.Type != "stats" || e.ID != c.id {
			t.Errorf("events line %q: %v", x, err)
		}
	}
}
