package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/network"
	"github.com/berthdev/berth/internal/rootless"
)

// networkConfig sets cfg's network mode, networks and published ports
// from --network, -p and -P (berth.toml's containers.network when no
// --network is given).
func (f *runFlags) networkConfig(cfg *engine.Config) error {
	var names []string
	for _, v := range f.networks {
		for n := range strings.SplitSeq(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				names = append(names, n)
			}
		}
	}
	if len(names) == 0 {
		conf, err := loadConfig()
		if err != nil {
			return err
		}
		names = []string{conf.Containers.Network}
		if rootless.Unprivileged() {
			// No bridges without privileges: slirp4netns where the user
			// may make a tap device, else loopback alone.
			// (published ports then go through berth's user-space proxy).
			names = []string{engine.NetNone}
			if err := rootless.TunUsable(); err == nil {
				names = []string{engine.NetSlirp}
			}
		}
	}
	switch names[0] {
	case engine.NetNone, engine.NetHost, engine.NetSlirp:
		if len(names) > 1 {
			return fmt.Errorf("--network %s: alone, not with other networks: %w", names[0], errdefs.ErrInvalidArgument)
		}
		cfg.Network = names[0]
	default:
		if rootless.Unprivileged() {
			return fmt.Errorf("--network %s: an unprivileged user has no bridge networks (docs/rootless.md): use slirp4netns (the default), none or host: %w", names[0], errdefs.ErrNotImplemented)
		}
		cfg.Network = engine.NetBridge
		for _, n := range names {
			if n == engine.NetNone || n == engine.NetHost {
				return fmt.Errorf("--network %s: alone, not with other networks: %w", n, errdefs.ErrInvalidArgument)
			}
			cfg.Networks = append(cfg.Networks, network.Canonical(n))
		}
	}
	for _, p := range f.publish {
		ms, err := parsePublish(p)
		if err != nil {
			return err
		}
		cfg.Ports = append(cfg.Ports, ms...)
	}
	cfg.PublishAll = f.publishAll
	if cfg.Network == engine.NetNone && (len(cfg.Ports) > 0 || cfg.PublishAll) && !rootless.Unprivileged() {
		// An unprivileged user's are proxied into its loopback.
		return fmt.Errorf("publishing ports (-p) needs a network (bridge or slirp4netns), not none: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// parsePublish reads docker's -p syntax:
// [[HOST-IP:][HOST-PORT]:]CONTAINER-PORT[/PROTO], where both ports may be
// ranges of the same length (a host range with one container port is not
// supported: the host port is then chosen from it by docker, not here).
func parsePublish(s string) ([]network.PortMapping, error) {
	bad := func(why string) error {
		return fmt.Errorf("-p %q: %s; want [[HOST-IP:][HOST-PORT]:]PORT[/tcp|udp]: %w", s, why, errdefs.ErrInvalidArgument)
	}
	spec, proto, _ := strings.Cut(s, "/")
	proto = strings.ToLower(proto)
	switch proto {
	case "":
		proto = "tcp"
	case "tcp", "udp", "sctp":
	default:
		return nil, bad("protocol " + proto)
	}
	var hostIP, hostPorts, ctrPorts string
	if i := strings.LastIndexByte(spec, ':'); i < 0 {
		ctrPorts = spec
	} else {
		ctrPorts = spec[i+1:]
		rest := spec[:i]
		if j := strings.LastIndexByte(rest, ':'); j < 0 {
			hostPorts = rest
		} else {
			hostIP, hostPorts = strings.Trim(rest[:j], "[]"), rest[j+1:]
			if ip, err := netip.ParseAddr(hostIP); err != nil || !ip.Is4() {
				return nil, bad("host IP " + strconv.Quote(hostIP) + " is not an IPv4 address")
			}
		}
	}
	c0, c1, err := portRange(ctrPorts)
	if err != nil {
		return nil, bad(err.Error())
	}
	var out []network.PortMapping
	if hostPorts == "" { // a free host port for each
		for p := c0; p <= c1; p++ {
			out = append(out, network.PortMapping{HostIP: hostIP, ContainerPort: p, Protocol: proto})
		}
		return out, nil
	}
	h0, h1, err := portRange(hostPorts)
	if err != nil {
		return nil, bad(err.Error())
	}
	if h1-h0 != c1-c0 {
		return nil, bad("the host and container ranges differ in length")
	}
	for i := 0; i <= c1-c0; i++ {
		out = append(out, network.PortMapping{HostIP: hostIP, HostPort: h0 + i, ContainerPort: c0 + i, Protocol: proto})
	}
	return out, nil
}

func portRange(s string) (int, int, error) {
	a, b, isRange := strings.Cut(s, "-")
	lo, err := strconv.Atoi(a)
	if err != nil || lo < 1 || lo > 65535 {
		return 0, 0, fmt.Errorf("port %q is not 1 to 65535", a)
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err := strconv.Atoi(b)
	if err != nil || hi < lo || hi > 65535 {
		return 0, 0, fmt.Errorf("port range %q is not LOW-HIGH within 1 to 65535", s)
	}
	return lo, hi, nil
}
