package network

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"golang.org/x/sys/unix"
)

func TestCreateValidates(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network's bridge is made with it")
	}
	m := &Manager{ConfDir: t.TempDir(), StateDir: t.TempDir()}
	t.Cleanup(func() { // the bridges are the host's
		list, _ := m.List()
		for _, n := range list {
			m.Remove(n.Name)
		}
	})
	for _, n := range []Network{
		{Name: "host"}, {Name: "bad/name"}, {Name: "x", Subnet: "10.0.0.0/31"}, {Name: "x", Subnet: "fd00::/64"},
		{Name: "x", Subnet: "10.0.0.0/24", Gateway: "10.0.1.1"}, {Name: "x", Driver: "macvlan"},
	} {
		if _, err := m.Create(n); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Create(%+v) = %v, want InvalidArgument", n, err)
		}
	}
	a, err := m.Create(Network{Name: "a", Subnet: "10.99.0.0/24", Bridge: fmt.Sprintf("bx%d", os.Getpid()%100000)})
	if err != nil || a.Gateway != "10.99.0.1" || a.Driver != "bridge" {
		t.Fatalf("Create a = %+v, %v", a, err)
	}
	if _, err := m.Create(Network{Name: "a"}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second a: %v, want AlreadyExists", err)
	}
	if _, err := m.Create(Network{Name: "b", Subnet: "10.99.0.128/25"}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("overlapping subnet: %v, want AlreadyExists", err)
	}
	b, err := m.Create(Network{Name: "b"})
	if err != nil || b.Bridge == a.Bridge || !strings.HasPrefix(b.Subnet, "10.78.") {
		t.Fatalf("Create b = %+v, %v", b, err)
	}
	if _, err := m.Get("nope"); !errdefs.IsNotFound(err) {
		t.Errorf("Get(nope) = %v, want NotFound", err)
	}
	if d, err := m.Get("bridge"); err != nil || d.Name != DefaultName {
		t.Errorf("Get(bridge) = %+v, %v: the default network is made on first use", d, err)
	}
	if list, _ := m.List(); len(list) != 3 {
		t.Errorf("List: %d networks, want 3", len(list))
	}
}

// inNetNS runs fn on a thread in the namespace pinned at path; the
// thread is thrown away after.
func inNetNS(t *testing.T, path string, fn func()) {
	t.Helper()
	done := make(chan error)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		f, err := os.Open(path)
		if err != nil {
			done <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- err
			return
		}
		fn()
		done <- nil
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestAttach puts two namespaces on a real bridge through Debian's CNI
// plugins: they reach each other by address, resolve each other's names
// through their hosts files, a published port is reached from the host's
// 127.0.0.1, and detaching leaves no address, rule or name behind.
func TestAttach(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, bridges, iptables")
	}
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("needs Debian's containernetworking-plugins")
	}
	ctx := context.Background()
	dir := t.TempDir()
	m := &Manager{ConfDir: filepath.Join(dir, "conf"), StateDir: filepath.Join(dir, "state")}
	suffix := fmt.Sprint(os.Getpid() % 10000)
	n, err := m.Create(Network{Name: "t" + suffix, Subnet: "10.79.7.0/24", Bridge: "bt" + suffix, DNS: true})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Remove(n.Name)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hostPort := l.Addr().(*net.TCPAddr).Port
	l.Close()

	reqs := map[string]Request{}
	for _, name := range []string{"a", "b"} {
		id := fmt.Sprintf("%s%063d", name, os.Getpid())
		r := Request{ContainerID: id, Names: []string{name + "-host", name}, NetNS: filepath.Join(dir, "ns-"+name),
			Networks: []string{n.Name}, HostsFile: filepath.Join(dir, "hosts-"+name)}
		if name == "a" {
			r.Ports = []PortMapping{{HostPort: hostPort, ContainerPort: 8080, Protocol: "tcp"}}
		}
		if err := os.WriteFile(r.HostsFile, []byte("127.0.0.1\tlocalhost\n"+HostsMarker), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := NewNetNS(r.NetNS); err != nil {
			t.Fatal(err)
		}
		defer RemoveNetNS(r.NetNS)
		atts, err := m.Attach(ctx, r)
		if err != nil {
			t.Fatalf("attach %s: %v", name, err)
		}
		defer m.Detach(ctx, r)
		if p, err := netip.ParsePrefix(atts[0].IP); err != nil || !netip.MustParsePrefix(n.Subnet).Contains(p.Addr()) || atts[0].IfName != "eth0" {
			t.Fatalf("attach %s: %+v", name, atts)
		}
		reqs[name] = r
	}
	hostsA, _ := os.ReadFile(reqs["a"].HostsFile)
	hostsB, _ := os.ReadFile(reqs["b"].HostsFile)
	ipOf := func(hosts []byte, name string) string {
		for line := range strings.Lines(string(hosts)) {
			if f := strings.Fields(line); len(f) > 1 && strings.Contains(" "+strings.Join(f[1:], " ")+" ", " "+name+" ") {
				return f[0]
			}
		}
		return ""
	}
	ipA := ipOf(hostsB, "a")
	if ipA == "" || ipOf(hostsA, "b") == "" || ipOf(hostsA, "a-host") != ipA {
		t.Fatalf("names not resolved:\nhosts of a:\n%s\nhosts of b:\n%s", hostsA, hostsB)
	}

	// A server in a; clients in b (by the name's address) and on the host (the published port).
	var ln net.Listener
	inNetNS(t, reqs["a"].NetNS, func() { ln, err = net.Listen("tcp4", ":8080") })
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from a\n")
			c.Close()
		}
	}()
	read := func(c net.Conn, err error) string {
		if err != nil {
			return err.Error()
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		return string(b)
	}
	var got string
	inNetNS(t, reqs["b"].NetNS, func() { got = read(net.DialTimeout("tcp4", ipA+":8080", 5*time.Second)) })
	if got != "hello from a\n" {
		t.Errorf("b -> a: %q", got)
	}
	if got = read(net.DialTimeout("tcp4", fmt.Sprintf("127.0.0.1:%d", hostPort), 5*time.Second)); got != "hello from a\n" {
		t.Errorf("host 127.0.0.1:%d -> a:8080: %q", hostPort, got)
	}

	// b leaves: a no longer resolves it; then a leaves, and nothing is left.
	if err := m.Detach(ctx, reqs["b"]); err != nil {
		t.Fatal(err)
	}
	if hostsA, _ = os.ReadFile(reqs["a"].HostsFile); ipOf(hostsA, "b") != "" {
		t.Errorf("b is still in a's hosts after it left:\n%s", hostsA)
	}
	if err := m.Detach(ctx, reqs["a"]); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(filepath.Join(m.StateDir, "ipam", n.Name))
	for _, e := range ents {
		if _, err := netip.ParseAddr(e.Name()); err == nil {
			t.Errorf("address %s still allocated after both left", e.Name())
		}
	}
	save, _ := exec.Command("iptables-save").Output()
	for _, r := range reqs {
		if strings.Contains(string(save), r.ContainerID) {
			t.Errorf("iptables rules of %s left after detach", r.ContainerID)
		}
	}
	if err := m.Remove(n.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		t.Errorf("bridge %s left after the network's removal", n.Bridge)
	}
	if save, _ := exec.Command("iptables-save").Output(); strings.Contains(string(save), "berth network "+n.Name+" ") ||
		strings.Contains(string(save), "berth network "+n.Name+"\"") {
		t.Errorf("rules of network %s left after its removal", n.Name)
	}
}
