package engine

import (
	"cmp"
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
	"github.com/berthdev/berth/internal/procfs"
	"golang.org/x/sys/unix"
)

// NetSlirp is an unprivileged user's container network: the container's
// own network namespace, connected to the host's by a slirp4netns
// process (user-mode TCP/IP; Debian's slirp4netns). Published ports go
// through berth's port proxy, as with podman's rootlessport: slirp4netns's
// own forwarding moves less than half as much. It needs no privilege on
// the host.
const NetSlirp = "slirp4netns"

// slirpDNS is slirp4netns's resolver, which forwards to the host's.
const slirpDNS = "10.0.2.3"

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

// stopHelper kills c's kind of helper when its pid is still one serving
// c's namespace, and waits (up to 2 s) for it to end, so its ports are
// free when the container is gone; from the files alone, so after a
// crash too.
func (e *Engine) stopHelper(c metadata.Container, kind string) {
	pidFile, ns := e.helperPid(c.ID, kind), e.netnsPath(c.ID)
	if pid := readPid(pidFile); pid > 0 {
		procfs.End(pid, ns, unix.SIGKILL, 2*time.Second)
	}
	os.Remove(pidFile)
}

// userNet: an unprivileged user's network, made of helpers: slirp4netns,
// the port proxy, or both.
func userNet(cfg Config) bool {
	return cfg.Network == NetSlirp || (cfg.Network == NetNone || cfg.Network == "") && len(cfg.Ports) > 0
}

// userNetUp pins c's namespace and starts its helpers: slirp4netns for
// NetSlirp, the port proxy for published ports.
func (e *Engine) userNetUp(c metadata.Container, cfg Config) (retErr error) {
	if err := network.NewNetNS(e.netnsPath(c.ID)); err != nil {
		return err
	}
	defer func() {
		if retErr != nil {
			e.userNetDown(c)
		}
	}()
	if cfg.Network == NetSlirp {
		if err := e.slirpUp(c); err != nil {
			return err
		}
	}
	if len(cfg.Ports) > 0 {
		return e.proxyUp(c, cfg)
	}
	return nil
}

// userNetDown stops c's helpers and unpins its namespace.
func (e *Engine) userNetDown(c metadata.Container) error {
	e.stopHelper(c, portProxy)
	e.stopHelper(c, NetSlirp)
	return network.RemoveNetNS(e.netnsPath(c.ID))
}

// slirpUp starts slirp4netns on c's pinned namespace.
func (e *Engine) slirpUp(c metadata.Container) error {
	bin, err := exec.LookPath("slirp4netns")
	if err != nil {
		return fmt.Errorf("network slirp4netns: not installed (Debian's slirp4netns): %w", errdefs.ErrUnavailable)
	}
	ready, readyW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer ready.Close()
	// The container may not reach the host's loopback (as podman's
	// default): what listens there is the host's own.
	cmd := exec.Command(bin, "--configure", "--mtu=65520", "--disable-host-loopback", "--netns-type=path",
		"--ready-fd=3", e.netnsPath(c.ID), "tap0")
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
	return nil
}

// proxyUp starts the port proxy on c's pinned namespace.
func (e *Engine) proxyUp(c metadata.Container, cfg Config) error {
	if len(e.PortProxy) == 0 {
		return fmt.Errorf("container %s: published ports need a network: %w", c.Name, errdefs.ErrInvalidArgument)
	}
	ports, err := json.Marshal(cfg.Ports)
	if err != nil {
		return err
	}
	cmd := exec.Command(e.PortProxy[0], append(e.PortProxy[1:], e.netnsPath(c.ID), string(ports))...)
	if err := e.startHelper(c, portProxy, cmd); err != nil {
		return err
	}
	// Its listeners are up once it has bound them: wait for the first.
	p := cfg.Ports[0]
	for i := 0; i < 200; i++ {
		if conn, err := net.DialTimeout("tcp", net.JoinHostPort(cmp.Or(p.HostIP, "127.0.0.1"), strconv.Itoa(p.HostPort)), 100*time.Millisecond); err == nil {
			conn.Close()
			return nil
		}
		if !procfs.Runs(cmd.Process.Pid, e.netnsPath(c.ID)) {
			return fmt.Errorf("container %s: port proxy: %s: %w", c.Name, e.helperLog(c, portProxy), errdefs.ErrUnavailable)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

// portProxy names the port proxy's files.
const portProxy = "port-proxy"
