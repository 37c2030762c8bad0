package main

import (
	"os"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// nsLinks prints "<name> <link>" for each namespace of the shell.
const nsLinks = `for n in pid net ipc uts mnt cgroup user time; do echo "$n $(readlink /proc/self/ns/$n)"; done`

func parseNSLinks(out string) map[string]string {
	m := map[string]string{}
	for _, l := range lines(out) {
		if k, v, ok := strings.Cut(l, " "); ok {
			m[k] = v
		}
	}
	return m
}

func TestNamespacesNewAndShared(t *testing.T) {
	// The default spec's namespaces are new; ipc is dropped here and must
	// then be the host's.
	c := newCtr(t, sh(nsLinks), withoutNS(specs.IPCNamespace))
	got := parseNSLinks(c.mustRun())
	for _, n := range []string{"pid", "net", "uts", "mnt", "cgroup", "ipc", "user", "time"} {
		host, err := os.Readlink("/proc/self/ns/" + n)
		if err != nil {
			t.Fatal(err)
		}
		if got[n] == "" {
			t.Errorf("namespace %s: container printed nothing", n)
			continue
		}
		shared := n == "ipc" || n == "user" || n == "time"
		if shared && got[n] != host {
			t.Errorf("namespace %s: container has %s, want the host's %s (not in the config)", n, got[n], host)
		}
		if !shared && got[n] == host {
			t.Errorf("namespace %s: container shares the host's %s", n, host)
		}
	}
}

func TestPIDNamespace(t *testing.T) {
	c := newCtr(t, sh(`echo "pid=$$"; ls /proc | grep -c '^[0-9]'`))
	l := lines(c.mustRun())
	if len(l) != 2 || l[0] != "pid=1" {
		t.Fatalf("want init to be pid 1, got %q", l)
	}
	// sh, ls and grep: nothing of the host.
	if n, _ := strconv.Atoi(l[1]); n == 0 || n > 4 {
		t.Errorf("container sees %s processes in /proc, want only its own", l[1])
	}
}

func TestUTSNamespace(t *testing.T) {
	hostName, _ := os.Hostname()
	c := newCtr(t, sh("hostname; cat /proc/sys/kernel/domainname"), func(s *specs.Spec) {
		s.Hostname = "berth-uts-test"
		s.Domainname = "berth.example"
	})
	got := lines(c.mustRun())
	if len(got) != 2 || got[0] != "berth-uts-test" || got[1] != "berth.example" {
		t.Errorf("hostname/domainname inside: %q, want [berth-uts-test berth.example]", got)
	}
	if h, _ := os.Hostname(); h != hostName {
		t.Errorf("host name changed from %q to %q", hostName, h)
	}
}

func TestIPCNamespace(t *testing.T) {
	// A fresh ipc namespace has no System V objects and its own limits.
	c := newCtr(t, sh("cat /proc/sysvipc/shm | wc -l; cat /proc/sys/kernel/shmmni"), func(s *specs.Spec) {
		s.Linux.Sysctl = map[string]string{"kernel.shmmni": "1234"}
	})
	got := lines(c.mustRun())
	if len(got) != 2 || got[0] != "1" || got[1] != "1234" {
		t.Errorf("ipc namespace: want only the header of /proc/sysvipc/shm and shmmni 1234, got %q", got)
	}
	if b, _ := os.ReadFile("/proc/sys/kernel/shmmni"); strings.TrimSpace(string(b)) == "1234" {
		t.Errorf("the container's kernel.shmmni reached the host")
	}
}

func TestNetNamespace(t *testing.T) {
	c := newCtr(t, sh("ls /sys/class/net; echo ---; tail -n +3 /proc/net/dev | cut -d: -f1"))
	before, after, _ := strings.Cut(c.mustRun(), "---")
	if got := lines(before); len(got) != 1 || got[0] != "lo" {
		t.Errorf("/sys/class/net inside: %q, want only lo", got)
	}
	if got := lines(after); len(got) != 1 || got[0] != "lo" {
		t.Errorf("/proc/net/dev inside: %q, want only lo", got)
	}
}

func TestMountNamespace(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	c.mustCreate()
	pid := c.state().Pid
	// The container's mounts (proc, dev, ...) live in its namespace only.
	for _, mp := range mountPoints(hostMountinfo(t)) {
		if strings.HasPrefix(mp, c.bundle) {
			t.Errorf("container mount %s visible on the host", mp)
		}
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	mi := string(b)
	for _, dst := range []string{" /proc ", " /dev ", " /dev/pts ", " /dev/shm ", " /dev/mqueue ", " /sys "} {
		wantContains(t, "container mountinfo", mi, dst)
	}
	for _, mp := range mountPoints(mi) {
		if strings.HasPrefix(mp, "/tmp/") || strings.HasPrefix(mp, c.bundle) {
			t.Errorf("host path %s is a mount point in the container", mp)
		}
	}
}

// mountPoints lists the mount points (fifth field) of a mountinfo.
func mountPoints(mi string) []string {
	var out []string
	for _, l := range lines(mi) {
		if f := strings.Fields(l); len(f) > 4 {
			out = append(out, f[4])
		}
	}
	return out
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestCgroupNamespace(t *testing.T) {
	c := newCtr(t, sh("cat /proc/self/cgroup"))
	out := c.mustRun()
	l := lines(out)
	if len(l) == 0 {
		t.Fatal("empty /proc/self/cgroup")
	}
	for _, x := range l {
		if !strings.HasSuffix(x, ":/") {
			t.Errorf("with a cgroup namespace every cgroup is /, got %q", x)
		}
	}
}

func TestTimeNamespace(t *testing.T) {
	const offset = 1000000 // seconds, about 11.5 days
	c := newCtr(t, sh("cat /proc/uptime"), func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
		s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"boottime": {Secs: offset}}
	})
	hostBefore := uptime(t, readFile(t, "/proc/uptime"))
	inside := uptime(t, c.mustRun())
	hostAfter := uptime(t, readFile(t, "/proc/uptime"))
	if inside < hostBefore+offset {
		t.Errorf("uptime inside %.2f, want at least host %.2f + %d", inside, hostBefore, offset)
	}
	if inside > hostAfter+offset+1 {
		t.Errorf("uptime inside %.2f is beyond host %.2f + %d", inside, hostAfter, offset)
	}
}

func uptime(t *testing.T, s string) float64 {
	t.Helper()
	f := strings.Fields(s)
	if len(f) == 0 {
		t.Fatalf("no uptime in %q", s)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		t.Fatalf("uptime %q: %v", s, err)
	}
	return v
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func withUserNS(s *specs.Spec) {
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
	s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
}

func TestUserNamespace(t *testing.T) {
	c := newCtr(t, withUserNS, sh("id; cat /proc/self/uid_map /proc/self/gid_map; echo ok > /tmp/f && ls -ln /tmp/f; exec sleep 100"))
	pid := c.startDetached()
	c.waitOutput("/tmp/f")
	out := c.output()
	l := lines(out)
	if len(l) < 4 {
		t.Fatalf("container output: %q (stderr %q)", out, c.errOutput())
	}
	if !strings.HasPrefix(l[0], "uid=0(root) gid=0(root)") {
		t.Errorf("id inside: %q, want root", l[0])
	}
	for i, name := range []string{"uid_map", "gid_map"} {
		if f := strings.Fields(l[1+i]); strings.Join(f, " ") != "0 100000 65536" {
			t.Errorf("%s inside: %q, want 0 100000 65536", name, l[1+i])
		}
	}
	// Seen from the host, the container's root is 100000.
	status := readFile(t, "/proc/"+strconv.Itoa(pid)+"/status")
	if uids := strings.Fields(field(status, "Uid")); len(uids) == 0 || uids[0] != "100000" {
		t.Errorf("host view of the container's uid: %q, want 100000", field(status, "Uid"))
	}
	var st = mustStat(t, c.rootfs+"/tmp/f")
	if st.uid != 100000 {
		t.Errorf("file written by the container's root is owned by %d on the host, want 100000", st.uid)
	}
}

func TestJoinNamespaces(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	a := newCtrIn(t, root, func(s *specs.Spec) {
		s.Hostname = "alpha"
		s.Process.Args = []string{"sleep", "100"}
	})
	pidA := a.startDetached()
	netA, err := os.Readlink("/proc/" + strconv.Itoa(pidA) + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	b := newCtrIn(t, root, sh("readlink /proc/self/ns/net; hostname"), func(s *specs.Spec) {
		s.Hostname = ""
		withNS(specs.NetworkNamespace, "/proc/"+strconv.Itoa(pidA)+"/ns/net")(s)
		withNS(specs.UTSNamespace, "/proc/"+strconv.Itoa(pidA)+"/ns/uts")(s)
	})
	got := lines(b.mustRun())
	if len(got) != 2 || got[0] != netA {
		t.Fatalf("joined net namespace: B has %q, A has %s", got, netA)
	}
	if got[1] != "alpha" {
		t.Errorf("joined uts namespace: B's hostname %q, want A's alpha", got[1])
	}
	if st := a.state(); st.Status != "running" {
		t.Errorf("container A: %q after B ran in its namespaces", st.Status)
	}
}

func TestUserNamespaceHostNetwork(t *testing.T) {
	// sysfs cannot be mounted for a network namespace the user namespace
	// does not own: the host's /sys is bound instead, read-only.
	c := newCtr(t, withUserNS, withoutNS(specs.NetworkNamespace), sh("ls /sys/class/net; touch /sys/x 2>/dev/null || echo sys-ro; id -u"))
	out := c.mustRun()
	hostIfs, _ := os.ReadDir("/sys/class/net")
	if len(hostIfs) == 0 {
		t.Fatal("no host interfaces")
	}
	for _, e := range hostIfs {
		wantContains(t, "host interfaces inside", out, e.Name()+"\n")
	}
	wantContains(t, "user namespace", out, "sys-ro\n", "0\n")
}
