package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/network"
)

// NetSlirp is an unprivileged user's container network: the container's
// own network namespace, connected to the host's by a slirp4netns
// process (user-mode TCP/IP; Debian's slirp4netns), which also binds the
// published ports on the host. It needs no privilege on the host.
const NetSlirp = "slirp4netns"

const (
	// slirpDNS is slirp4netns's resolver, which forwards to the host's.
	slirpDNS = "10.0.2.3"
	// slirpGuest is the container's address on slirp4netns's network.
	slirpGuest = "10.0.2.100"
)

// slirpSock is the API socket: in a short directory, a unix socket's
// path being limited to 107 bytes.
func (e *Engine) slirpSock(id string) string {
	return filepath.Join(e.RunRoot, "slirp", id[:16]+".sock")
}

// A network helper is a process that serves a container's pinned network
// namespace for the container's life (slirp4netns, the port proxy): its
// output goes to KIND.log in the container's directory, its pid beside
// the namespaces (the container's directory may go before the network).
func (e *Engine) helperPid(id, kind string) string {
	return filepath.Join(e.RunRoot, "slirp", id[:16]+"."+kind+".pid")
}

// startHelper starts cmd detached as c's kind of helper.
func (e *Engine) startHelper(c metadata.Container, kind string, cmd *exec.Cmd) error {
	if err := os.MkdirAll(filepath.Join(e.RunRoot, "slirp"), 0o700); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(e.dir(c.ID), kind+".log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("container %s: %s: %w", c.Name, kind, err)
	}
	go cmd.Wait()
	return os.WriteFile(e.helperPid(c.ID, kind), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644)
}

// helperLog is what c's kind of helper wrote.
func (e *Engine) helperLog(c metadata.Container, kind string) string {
	b, _ := os.ReadFile(filepath.Join(e.dir(c.ID), kind+".log"))
	return strings.TrimSpace(string(b))
}

// stopHelper kills c's kind of helper (when its pid is still one serving
// c's namespace) and unpins the namespace; from the files alone, so after
// a crash too.
func (e *Engine) stopHelper(c metadata.Container, kind string) error {
	pidFile, ns := e.helperPid(c.ID, kind), e.netnsPath(c.ID)
	if pid := readPid(pidFile); pid > 0 {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.Contains(string(b), ns) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	os.Remove(pidFile)
	return network.RemoveNetNS(ns)
}

// slirpUp pins c's namespace, starts slirp4netns on it and publishes
// c's ports through its API.
func (e *Engine) slirpUp(ctx context.Context, c metadata.Container, cfg Config) (retErr error) {
	bin, err := exec.LookPath("slirp4netns")
	if err != nil {
		return fmt.Errorf("network slirp4netns: not installed (Debian's slirp4netns): %w", errdefs.ErrUnavailable)
	}
	ns := e.netnsPath(c.ID)
	if err := network.NewNetNS(ns); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			e.slirpDown(c)
		}
	}()
	sock := e.slirpSock(c.ID)
	os.Remove(sock)
	ready, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer ready.Close()
	// The container may not reach the host's loopback (as podman's
	// default): what listens there is the host's own.
	cmd := exec.Command(bin, "--configure", "--mtu=65520", "--disable-host-loopback", "--netns-type=path",
		"--api-socket", sock, "--ready-fd=3", ns, "tap0")
	cmd.ExtraFiles = []*os.File{readyW}
	err = e.startHelper(c, NetSlirp, cmd)
	readyW.Close()
	if err != nil {
		return err
	}
	got := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		_, err := ready.Read(b)
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			return fmt.Errorf("network slirp4netns: it ended before the network was up: %s: %w", e.helperLog(c, NetSlirp), errdefs.ErrUnavailable)
		}
	case <-time.After(10 * time.Second):
		return fmt.Errorf("network slirp4netns: not up after 10 s: %w", errdefs.ErrUnavailable)
	}
	for _, p := range cfg.Ports {
		if err := slirpForward(sock, p); err != nil {
			return err
		}
	}
	return nil
}

// slirpForward publishes one port through slirp4netns's API.
func slirpForward(sock string, p network.PortMapping) error {
	if p.Protocol != "tcp" && p.Protocol != "udp" {
		return fmt.Errorf("port %d/%s: slirp4netns forwards tcp and udp: %w", p.ContainerPort, p.Protocol, errdefs.ErrInvalidArgument)
	}
	conn, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("network slirp4netns: its API: %w", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := map[string]any{"execute": "add_hostfwd", "arguments": map[string]any{"proto": p.Protocol,
		"host_addr": cmp.Or(p.HostIP, "0.0.0.0"), "host_port": p.HostPort, "guest_addr": slirpGuest, "guest_port": p.ContainerPort}}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return err
	}
	if uc, ok := conn.(*net.UnixConn); ok {
		uc.CloseWrite()
	}
	var resp struct {
		Error *struct {
			Desc string `json:"desc"`
		} `json:"error"`
	}
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		return fmt.Errorf("network slirp4netns: its API's answer: %w", err)
	}
	if resp.Error != nil {
		return fmt.Errorf("port %s:%d: %s: %w", cmp.Or(p.HostIP, "0.0.0.0"), p.HostPort, resp.Error.Desc, errdefs.ErrUnavailable)
	}
	return nil
}

// slirpDown stops c's slirp4netns (which releases its ports) and
// unpins the namespace.
func (e *Engine) slirpDown(c metadata.Container) error {
	os.Remove(e.slirpSock(c.ID))
	return e.stopHelper(c, NetSlirp)
}

// proxied: a --network none container with published ports (an
// unprivileged user's, where slirp4netns cannot run).
func proxied(cfg Config) bool {
	return (cfg.Network == NetNone || cfg.Network == "") && len(cfg.Ports) > 0
}

// proxyUp pins c's namespace and starts the port proxy on it.
func (e *Engine) proxyUp(c metadata.Container, cfg Config) error {
	if len(e.PortProxy) == 0 {
		return fmt.Errorf("container %s: published ports need a network: %w", c.Name, errdefs.ErrInvalidArgument)
	}
	ns := e.netnsPath(c.ID)
	if err := network.NewNetNS(ns); err != nil {
		return err
	}
	ports, err := json.Marshal(cfg.Ports)
	if err != nil {
		return err
	}
	cmd := exec.Command(e.PortProxy[0], append(e.PortProxy[1:], ns, string(ports))...)
	if err := e.startHelper(c, portProxy, cmd); err != nil {
		e.proxyDown(c)
		return err
	}
	// Its listeners are up once it has bound them: wait for the first.
	p := cfg.Ports[0]
	for i := 0; i < 200; i++ {
		if conn, err := net.DialTimeout("tcp", net.JoinHostPort(cmp.Or(p.HostIP, "127.0.0.1"), strconv.Itoa(p.HostPort)), 100*time.Millisecond); err == nil {
			conn.Close()
			return nil
		}
		if !alive(cmd.Process.Pid) {
			e.proxyDown(c)
			return fmt.Errorf("container %s: port proxy: %s: %w", c.Name, e.helperLog(c, portProxy), errdefs.ErrUnavailable)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// proxyDown stops c's port proxy and unpins the namespace.
func (e *Engine) proxyDown(c metadata.Container) error { return e.stopHelper(c, portProxy) }

// portProxy names the port proxy's files.
const portProxy = "port-proxy"
