package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/network"
)

// Network modes of a container (Config.Network).
const (
	NetNone   = "none"   // its own namespace, loopback only
	NetHost   = "host"   // the host's namespace
	NetBridge = "bridge" // its own namespace on Config.Networks, through CNI
)

// networkFile (in the container's directory) lists its interfaces while
// it is attached.
const networkFile = "network.json"

// checkNetwork validates cfg's network mode, networks and ports, making
// the default network on first use.
func (e *Engine) checkNetwork(cfg *Config) error {
	switch cfg.Network {
	case "", NetNone, NetHost:
		if len(cfg.Networks) > 0 {
			return fmt.Errorf("--network %s: no named networks with it: %w", cmp.Or(cfg.Network, NetNone), errdefs.ErrInvalidArgument)
		}
		if len(cfg.Ports) > 0 {
			if cfg.Network != NetHost && len(e.PortProxy) > 0 {
				return checkPorts(cfg) // published by the user-space proxy
			}
			return fmt.Errorf("publishing ports (-p) needs a bridge network, not %s: %w", cmp.Or(cfg.Network, NetNone), errdefs.ErrInvalidArgument)
		}
		return nil
	case NetSlirp:
		if len(cfg.Networks) > 0 {
			return fmt.Errorf("network slirp4netns: no named networks with it: %w", errdefs.ErrInvalidArgument)
		}
		return checkPorts(cfg)
	case NetBridge:
	case NetJoin:
		if cfg.Pod == nil || cfg.Pod.NetNS == "" || len(cfg.Networks) > 0 || len(cfg.Ports) > 0 {
			return fmt.Errorf("network mode join: a namespace to join, and no networks or ports of its own: %w", errdefs.ErrInvalidArgument)
		}
		return nil
	default:
		return fmt.Errorf("network mode %q: want none, host or bridge: %w", cfg.Network, errdefs.ErrInvalidArgument)
	}
	if len(cfg.Networks) == 0 {
		cfg.Networks = []string{network.DefaultName}
	}
	var seen []string
	for _, name := range cfg.Networks {
		n, err := e.Networks.Get(name)
		if err != nil {
			return err
		}
		if slices.Contains(seen, n.Name) {
			return fmt.Errorf("network %s named twice: %w", n.Name, errdefs.ErrInvalidArgument)
		}
		seen = append(seen, n.Name)
	}
	cfg.Networks = seen
	return checkPorts(cfg)
}

// checkPorts validates cfg's published ports, choosing the free host
// ports left to choose.
func checkPorts(cfg *Config) error {
	for i, p := range cfg.Ports {
		if p.Protocol == "" {
			cfg.Ports[i].Protocol = "tcp"
		}
		if p.ContainerPort < 1 || p.ContainerPort > 65535 || p.HostPort < 0 || p.HostPort > 65535 {
			return fmt.Errorf("port mapping %d:%d: ports are 1 to 65535: %w", p.HostPort, p.ContainerPort, errdefs.ErrInvalidArgument)
		}
		if p.HostPort == 0 { // a free port, chosen now so that it stays
			port, err := freePort(cfg.Ports[i].Protocol, p.HostIP)
			if err != nil {
				return err
			}
			cfg.Ports[i].HostPort = port
		}
	}
	return nil
}

// freePort asks the kernel for a free port on the host.
func freePort(proto, ip string) (int, error) {
	addr := net.JoinHostPort(ip, "0")
	if proto == "udp" {
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return 0, fmt.Errorf("choosing a host port: %w", err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	}
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return 0, fmt.Errorf("choosing a host port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (e *Engine) netnsPath(id string) string { return filepath.Join(e.RunRoot, "netns", id) }

func (e *Engine) netRequest(c metadata.Container, cfg Config) network.Request {
	hostname := cmp.Or(cfg.Hostname, c.ID[:12])
	names := []string{hostname}
	if c.Name != hostname {
		names = append(names, c.Name)
	}
	return network.Request{ContainerID: c.ID, Names: names, NetNS: e.netnsPath(c.ID), Networks: cfg.Networks,
		Ports: cfg.Ports, HostsFile: filepath.Join(e.dir(c.ID), "hosts")}
}

// netUp pins a new network namespace for c and attaches it in the
// background (the runtime creates the container meanwhile); the returned
// function waits for the attachment.
func (e *Engine) netUp(ctx context.Context, c metadata.Container, cfg Config) (func() error, error) {
	if userNet(cfg) {
		e.userNetDown(c) // what a crash or an exit without stop left
		return func() error { return nil }, e.userNetUp(c, cfg)
	}
	if cfg.Network != NetBridge {
		return func() error { return nil }, nil
	}
	e.netDown(ctx, c, cfg) // what a crash or an exit without stop left
	req := e.netRequest(c, cfg)
	if err := network.NewNetNS(req.NetNS); err != nil {
		return nil, err
	}
	done := make(chan error, 1)
	go func() {
		atts, err := e.Networks.Attach(ctx, req)
		if err == nil {
			var data []byte
			data, err = json.Marshal(atts)
			if err == nil {
				err = fsutil.ReplaceFile(filepath.Join(e.dir(c.ID), networkFile), data, 0o644)
			}
		}
		done <- err
	}()
	return func() error {
		if err := <-done; err != nil {
			return fmt.Errorf("container %s: %w", c.Name, err)
		}
		return nil
	}, nil
}

// netDown releases c's network resources: addresses, port rules,
// interfaces, name entries, the namespace. It works from the record
// alone, so it cleans up after a crash at any point of netUp.
func (e *Engine) netDown(ctx context.Context, c metadata.Container, cfg Config) error {
	if userNet(cfg) {
		return e.userNetDown(c)
	}
	if cfg.Network != NetBridge {
		return nil
	}
	req := e.netRequest(c, cfg)
	if _, err := os.Lstat(req.NetNS); errors.Is(err, os.ErrNotExist) {
		return nil // never attached, or released: netUp pins the namespace first, netDown removes it last
	}
	pinned := req.NetNS
	if !network.IsNetNS(pinned) {
		// A crash between making the file and pinning the namespace on it:
		// the plugins release addresses and rules without one (CNI's DEL
		// takes an empty namespace), and would refuse a plain file.
		req.NetNS = ""
	}
	err := e.Networks.Detach(ctx, req)
	os.Remove(filepath.Join(e.dir(c.ID), networkFile))
	return errors.Join(err, network.RemoveNetNS(pinned))
}

// Attachments returns c's interfaces while it is attached.
func (e *Engine) Attachments(c metadata.Container) []network.Attachment {
	var atts []network.Attachment
	if data, err := os.ReadFile(filepath.Join(e.dir(c.ID), networkFile)); err == nil {
		json.Unmarshal(data, &atts)
	}
	return atts
}

// Ports returns c's published ports.
func Ports(c metadata.Container) []network.PortMapping {
	cfg, _ := config(c)
	return cfg.Ports
}

// NetworkUsers returns the containers that name network name.
func (e *Engine) NetworkUsers(ctx context.Context, name string) ([]metadata.Container, error) {
	cs, err := e.Meta.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	name = network.Canonical(name)
	var out []metadata.Container
	for _, c := range cs {
		if cfg, err := config(c); err == nil && slices.Contains(cfg.Networks, name) {
			out = append(out, c)
		}
	}
	return out, nil
}

// resolvConf is the host's resolver configuration for the container,
// with dns and search in place of the host's when given. In its own
// network namespace a nameserver on the host's loopback cannot be
// reached, so those lines go.
func resolvConf(hostNet bool, dns, search, options []string) []byte {
	data, _ := os.ReadFile("/etc/resolv.conf")
	var b strings.Builder
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && f[0] == "nameserver" && len(dns) > 0:
			continue
		case len(f) >= 2 && f[0] == "nameserver" && !hostNet:
			if ip := net.ParseIP(f[1]); ip != nil && ip.IsLoopback() {
				continue
			}
		case len(f) >= 1 && (f[0] == "search" || f[0] == "domain") && len(search) > 0:
			continue
		case len(f) >= 1 && f[0] == "options" && len(options) > 0:
			continue
		}
		b.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			b.WriteString("\n")
		}
	}
	for _, ns := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", ns)
	}
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return []byte(b.String())
}

// FormatPort is how a mapping prints: 80/tcp -> 0.0.0.0:8080.
func FormatPort(p network.PortMapping) string {
	return strconv.Itoa(p.ContainerPort) + "/" + p.Protocol + " -> " + net.JoinHostPort(cmp.Or(p.HostIP, "0.0.0.0"), strconv.Itoa(p.HostPort))
}

// exposed maps an image's EXPOSE ports ("80/tcp") to mappings on free
// host ports.
func exposed(ports map[string]struct{}) []network.PortMapping {
	var out []network.PortMapping
	for _, p := range slices.Sorted(maps.Keys(ports)) {
		port, proto, _ := strings.Cut(p, "/")
		n, err := strconv.Atoi(port)
		if err != nil {
			continue
		}
		out = append(out, network.PortMapping{ContainerPort: n, Protocol: cmp.Or(proto, "tcp")})
	}
	return out
}

// etcFiles writes the container's /etc/hosts, /etc/resolv.conf and
// /etc/hostname. On the host's network the host's hosts and resolv.conf
// are bound as they are (so the container follows changes to them),
// unless --add-host or --dns asks for more: then copies with it.
func etcFiles(dir, hostname string, cfg Config) (map[string]string, error) {
	files := map[string]string{}
	extra := len(cfg.AddHosts) > 0 || len(cfg.DNS) > 0 || len(cfg.DNSSearch) > 0 || len(cfg.DNSOptions) > 0
	if cfg.Network == NetHost && !extra {
		for _, f := range []string{"/etc/hosts", "/etc/resolv.conf"} {
			if _, err := os.Stat(f); err == nil {
				files[f] = f
			}
		}
		return files, nil
	}
	var hosts strings.Builder
	if cfg.Network == NetHost {
		b, _ := os.ReadFile("/etc/hosts")
		hosts.Write(b)
	} else {
		hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	}
	for _, h := range cfg.AddHosts {
		name, ip, _ := strings.Cut(h, ":")
		fmt.Fprintf(&hosts, "%s\t%s\n", ip, name)
	}
	switch cfg.Network {
	case NetBridge:
		hosts.WriteString(network.HostsMarker) // its addresses and its peers' follow when attached
	case NetHost:
	default:
		fmt.Fprintf(&hosts, "127.0.1.1\t%s\n", hostname)
	}
	dns := cfg.DNS
	if cfg.Network == NetSlirp && len(dns) == 0 {
		dns = []string{slirpDNS} // the host's resolvers, through slirp4netns
	}
	content := map[string][]byte{"hosts": []byte(hosts.String()), "resolv.conf": resolvConf(cfg.Network == NetHost, dns, cfg.DNSSearch, cfg.DNSOptions)}
	if cfg.Network != NetHost {
		content["hostname"] = []byte(hostname + "\n")
	}
	for name, data := range content {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		files["/etc/"+name] = p
	}
	return files, nil
}

// CheckDNSOptions validates --dns, --dns-search and --add-host.
func CheckDNSOptions(cfg Config) error {
	for _, ip := range cfg.DNS {
		if net.ParseIP(ip) == nil {
			return fmt.Errorf("--dns %q: not an IP address: %w", ip, errdefs.ErrInvalidArgument)
		}
	}
	for _, h := range cfg.AddHosts {
		name, ip, ok := strings.Cut(h, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t\n") || net.ParseIP(ip) == nil {
			return fmt.Errorf("--add-host %q: want NAME:IP: %w", h, errdefs.ErrInvalidArgument)
		}
	}
	for _, d := range cfg.DNSSearch {
		if d == "" || strings.ContainsAny(d, " \t\n") {
			return fmt.Errorf("--dns-search %q: not a domain: %w", d, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
