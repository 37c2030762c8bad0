package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestNetworks: a named network where containers reach each other by
// name, a port published on 127.0.0.1 reached from the host, the same
// with each runtime, and everything released when the containers and
// the network go.
func TestNetworks(t *testing.T) {
	c := containerCLI(t)
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("needs Debian's containernetworking-plugins")
	}
	runroot := c.args[3]
	c.must("network", "create", "--subnet", "10.79.9.0/24", "testnet")
	if out := c.must("network", "ls", "--format", "{{.Name}} {{.Subnet}} {{.DNS}}"); !strings.Contains(out, "testnet 10.79.9.0/24 true\n") || !strings.Contains(out, "berth ") {
		t.Fatalf("network ls: %q", out)
	}
	if out, code := c.code("network", "create", "--subnet", "10.79.9.128/25", "other"); code != 125 || !strings.Contains(out, "overlaps") {
		t.Errorf("overlapping subnet: %d %q", code, out)
	}
	id := strings.TrimSpace(c.must("run", "-d", "--name", "web", "--network", "testnet", "-p", "127.0.0.1::8080", fixture,
		"sh", "-c", "echo hi-from-web > /data/index.html; exec busybox httpd -f -p 8080 -h /data"))
	if ip := c.must("inspect", "--format", "{{.NetworkSettings.IPAddress}}", "web"); !strings.HasPrefix(ip, "10.79.9.") {
		t.Errorf("inspect: IP %q", ip)
	}
	out := c.must("port", "web")
	m := regexp.MustCompile(`^8080/tcp -> 127\.0\.0\.1:(\d+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("port: %q", out)
	}
	get := func() string { return httpGet(t, "http://127.0.0.1:"+m[1]+"/index.html") }
	body := get()
	if body != "hi-from-web\n" {
		t.Fatalf("published port from the host: %q", body)
	}
	for _, rt := range []string{"berth-runtime", "runc", "crun"} {
		if _, err := exec.LookPath(rt); err != nil && rt != "berth-runtime" {
			continue
		}
		if ctl, _ := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); rt == "crun" && strings.TrimSpace(string(ctl)) != "" {
			continue // crun 1.8 refuses this hybrid host (see TestRuntimes)
		}
		if out, code := c.code("run", "--rm", "--runtime", rt, "--network", "testnet", fixture, "busybox", "wget", "-qO-", "http://web:8080/index.html"); code != 0 || out != "hi-from-web\n" {
			t.Errorf("%s: web by name on the named network: %d %q", rt, code, out)
		}
	}
	// A restart releases the address and attaches again: the same host port serves.
	c.must("restart", "-t", "2", "web")
	body = get()
	if body != "hi-from-web\n" {
		t.Fatalf("published port after restart: %q", body)
	}
	if out := c.must("run", "--rm", "--network", "testnet", fixture, "busybox", "wget", "-qO-", "http://web:8080/index.html"); out != "hi-from-web\n" {
		t.Errorf("web by name after its restart: %q", out)
	}
	// --dns, --dns-search and --add-host shape the files berth writes.
	out = c.must("run", "--rm", "--dns", "10.0.0.9", "--dns-search", "example.org", "--add-host", "db:10.1.2.3", fixture,
		"sh", "-c", "cat /etc/resolv.conf /etc/hosts")
	for _, want := range []string{"nameserver 10.0.0.9\n", "search example.org\n", "10.1.2.3\tdb\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("--dns/--dns-search/--add-host: %q lacks %q", out, want)
		}
	}
	// Another network does not see it.
	if out, code := c.code("run", "--rm", fixture, "busybox", "wget", "-T", "2", "-qO-", "http://web:8080/index.html"); code == 0 {
		t.Errorf("web reached from the default network: %q", out)
	}
	// Bad input: a clear error, nothing made.
	for _, args := range [][]string{
		{"run", "--rm", "--network", "none", "-p", "80", fixture, "busybox", "true"},
		{"run", "--rm", "--network", "nosuch", fixture, "busybox", "true"},
		{"run", "--rm", "-p", "99999:80", fixture, "busybox", "true"},
		{"run", "--rm", "--network", "host,testnet", fixture, "busybox", "true"},
		{"run", "--rm", "--add-host", "nocolon", fixture, "busybox", "true"},
		{"run", "--rm", "--dns", "not-an-ip", fixture, "busybox", "true"},
	} {
		if out, code := c.code(args...); code != 125 || !strings.Contains(out, "Error") {
			t.Errorf("%v: %d %q", args, code, out)
		}
	}
	if out, code := c.code("network", "rm", "testnet"); code == 0 || !strings.Contains(out, "web") {
		t.Errorf("network rm of a used network: %d %q", code, out)
	}
	if out := c.must("ps", "-a", "-q"); strings.TrimSpace(out) != id[:12] {
		t.Errorf("containers left by the failed runs: %q", out)
	}
	c.must("rm", "-f", "web")
	checkNetReleased(t, runroot, id)
	c.must("network", "rm", "testnet")
	if out, err := exec.Command("ip", "link").Output(); err == nil && strings.Contains(string(out), "10.79.9.") {
		t.Errorf("bridge left: %s", out)
	}
}

// checkNetReleased fails if anything of container id is left: its
// namespace, addresses, rules or name entries.
func checkNetReleased(t *testing.T, runroot, id string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(runroot, "netns", id)); err == nil {
		t.Errorf("network namespace of %s left", id[:12])
	}
	filepath.Walk(filepath.Join(runroot, "networks"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), id) || strings.Contains(p, id) {
				t.Errorf("%s names %s after its removal", p, id[:12])
			}
		}
		return nil
	})
	if save, err := exec.Command("iptables-save").Output(); err == nil && strings.Contains(string(save), id) {
		t.Errorf("iptables rules of %s left", id[:12])
	}
}

// TestConcurrentRuns: berth processes at once on a new store: they make
// the default network together, each container gets its own address and
// host port, and removing them at once leaves nothing.
func TestConcurrentRuns(t *testing.T) {
	c := containerCLI(t)
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("needs Debian's containernetworking-plugins")
	}
	const n = 6
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		go func() {
			out, err := c.run("run", "-d", "--name", fmt.Sprintf("p%d", i), "-p", "127.0.0.1::80", fixture, "busybox", "sleep", "60")
			if err != nil {
				out = "run: " + out
			} else {
				out = ""
			}
			errs <- out
		}()
	}
	for i := 0; i < n; i++ {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
	ips := map[string]bool{}
	ids := strings.Fields(c.must("ps", "-q", "--no-trunc"))
	for _, id := range ids {
		ip := strings.TrimSpace(c.must("inspect", "--format", "{{.NetworkSettings.IPAddress}}", id))
		if ip == "" || ips[ip] {
			t.Errorf("container %s: address %q (not its own)", id[:12], ip)
		}
		ips[ip] = true
	}
	if len(ids) != n {
		t.Fatalf("%d containers run, want %d", len(ids), n)
	}
	if out := c.must("network", "ls", "-q"); out != "berth\n" {
		t.Errorf("networks: %q", out)
	}
	for _, id := range ids {
		go func() {
			out, err := c.run("rm", "-f", id)
			if err != nil {
				out = "rm: " + out
			} else {
				out = ""
			}
			errs <- out
		}()
	}
	for range ids {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
	for _, id := range ids {
		checkNetReleased(t, c.args[3], id)
	}
}

func freeHostPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// httpGet fetches url once it answers (a server just started).
func httpGet(t *testing.T, url string) string {
	t.Helper()
	var body string
	waitFor(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return true
	})
	return body
}

// TestSlirp4netns: a container on slirp4netns (the unprivileged user's
// network, here driven by root): its own namespace with a tap device and
// slirp's resolver, a published port reached from the host, and nothing
// left after rm.
func TestSlirp4netns(t *testing.T) {
	c := containerCLI(t)
	if _, err := exec.LookPath("slirp4netns"); err != nil {
		t.Skip("slirp4netns not installed")
	}
	runroot := c.args[3]
	if out := c.must("run", "--rm", "--network", "slirp4netns", fixture, "sh", "-c", "busybox ip -4 addr show tap0; busybox cat /etc/resolv.conf"); !strings.Contains(out, "10.0.2.100/24") || !strings.Contains(out, "nameserver 10.0.2.3") {
		t.Errorf("slirp4netns network: %q", out)
	}
	port := freeHostPort(t)
	id := strings.TrimSpace(c.must("run", "-d", "--network", "slirp4netns", "-p", fmt.Sprintf("127.0.0.1:%d:8080", port), fixture,
		"sh", "-c", "echo hi-slirp > /data/i.html; exec busybox httpd -f -p 8080 -h /data"))
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/i.html", port)); body != "hi-slirp\n" {
		t.Errorf("published port through slirp4netns: %q", body)
	}
	c.must("rm", "-f", id)
	if out, _ := exec.Command("pgrep", "-f", "slirp4netns.*"+id).Output(); len(out) > 0 {
		t.Errorf("slirp4netns left running: %s", out)
	}
	checkNetReleased(t, runroot, id)
}
