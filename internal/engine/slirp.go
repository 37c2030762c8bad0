package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
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

// Files of a slirp4netns network: its log in the container's directory;
// its pid and API socket beside the namespaces (the container's directory
// may go before the network does).
const (
	slirpLog = "slirp4netns.log"
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

func (e *Engine) slirpPid(id string) string { return filepath.Join(e.RunRoot, "slirp", id[:16]+".pid") }

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
	if err := os.MkdirAll(filepath.Dir(sock), 0o700); err != nil {
		return err
	}
	os.Remove(sock)
	logf, err := os.Create(filepath.Join(e.dir(c.ID), slirpLog))
	if err != nil {
		return err
	}
	defer logf.Close()
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
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		readyW.Close()
		return fmt.Errorf("network slirp4netns: %w", err)
	}
	readyW.Close()
	go cmd.Wait()
	if err := os.WriteFile(e.slirpPid(c.ID), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
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
			log, _ := os.ReadFile(filepath.Join(e.dir(c.ID), slirpLog))
			return fmt.Errorf("network slirp4netns: it ended before the network was up: %s: %w", strings.TrimSpace(string(log)), errdefs.ErrUnavailable)
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
// unpins the namespace; from the files alone, so after a crash too.
func (e *Engine) slirpDown(c metadata.Container) error {
	pidFile := e.slirpPid(c.ID)
	if pid := readPid(pidFile); pid > 0 {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.Contains(string(b), "slirp4netns") {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	os.Remove(pidFile)
	os.Remove(e.slirpSock(c.ID))
	err := network.RemoveNetNS(e.netnsPath(c.ID))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// proxied: a --network none container with published ports (an
// unprivileged user's, where slirp4netns cannot run).
func proxied(cfg Config) bool {
	return (cfg.Network == NetNone || cfg.Network == "") && len(cfg.Ports) > 0
}

func (e *Engine) proxyPid(id string) string {
	return filepath.Join(e.RunRoot, "slirp", id[:16]+".proxy.pid")
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
	if err := os.MkdirAll(filepath.Join(e.RunRoot, "slirp"), 0o700); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(e.dir(c.ID), "port-proxy.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(e.PortProxy[0], append(e.PortProxy[1:], ns, string(ports))...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		network.RemoveNetNS(ns)
		return fmt.Errorf("container %s: port proxy: %w", c.Name, err)
	}
	go cmd.Wait()
	if err := os.WriteFile(e.proxyPid(c.ID), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
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
			log, _ := os.ReadFile(filepath.Join(e.dir(c.ID), "port-proxy.log"))
			e.proxyDown(c)
			return fmt.Errorf("container %s: port proxy: %s: %w", c.Name, strings.TrimSpace(string(log)), errdefs.ErrUnavailable)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// proxyDown stops c's port proxy and unpins the namespace.
func (e *Engine) proxyDown(c metadata.Container) error {
	if pid := readPid(e.proxyPid(c.ID)); pid > 0 {
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil && strings.Contains(string(b), e.netnsPath(c.ID)) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	os.Remove(e.proxyPid(c.ID))
	return network.RemoveNetNS(e.netnsPath(c.ID))
}
