// Package network gives containers CNI networks: the networks berth knows
// (bridges with an IPv4 subnet, kept as files under the store), network
// namespaces pinned to a file, attach and detach through libcni and
// Debian's containernetworking-plugins, port mappings (portmap) and name
// resolution between containers of a named network. See docs/engine.md.
package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
)

// DefaultName is the network a container joins when it names none; it is
// made on first use. "bridge" is another name for it, as in podman.
const DefaultName = "berth"

// Network is a bridge network, as recorded in <root>/networks/NAME.json.
type Network struct {
	Name     string            `json:"name"`
	Driver   string            `json:"driver"`
	Bridge   string            `json:"bridge"`
	Subnet   string            `json:"subnet"`
	Gateway  string            `json:"gateway"`
	Internal bool              `json:"internal"`
	DNS      bool              `json:"dnsEnabled"`
	Labels   map[string]string `json:"labels,omitempty"`
	Created  time.Time         `json:"created"`
}

// Manager holds the networks of one store and attaches containers.
type Manager struct {
	// ConfDir (under --root) holds the networks' records.
	ConfDir string
	// StateDir (under --runroot) holds what lives as long as the
	// containers: IP allocations, libcni's cache, name files.
	StateDir string
	// PluginDirs are searched for CNI plugins.
	PluginDirs []string
}

// DefaultPluginDirs are where Debian's and upstream's plugins live.
var DefaultPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`)

// Canonical maps the names a user may give the default network to its
// name.
func Canonical(name string) string {
	if name == "" || name == "bridge" {
		return DefaultName
	}
	return name
}

func (m *Manager) path(name string) string { return filepath.Join(m.ConfDir, name+".json") }

func (m *Manager) lock() (*fsutil.Lock, error) {
	if err := os.MkdirAll(m.ConfDir, 0o700); err != nil {
		return nil, err
	}
	return fsutil.LockPath(m.ConfDir)
}

// Get returns a network by name; the default network is made if missing.
func (m *Manager) Get(name string) (Network, error) {
	name = Canonical(name)
	n, err := m.read(name)
	if name == DefaultName && errdefs.IsNotFound(err) {
		n, err = m.Create(Network{Name: DefaultName})
		if errdefs.IsAlreadyExists(err) { // another berth made it meanwhile
			return m.read(name)
		}
	}
	return n, err
}

func (m *Manager) read(name string) (Network, error) {
	if !validName.MatchString(name) {
		return Network{}, fmt.Errorf("network %q: a name is letters, digits, '_', '.' and '-', starting with a letter or digit: %w", name, errdefs.ErrInvalidArgument)
	}
	data, err := os.ReadFile(m.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return Network{}, fmt.Errorf("network %s: %w (berth network ls lists them)", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return Network{}, err
	}
	var n Network
	if err := json.Unmarshal(data, &n); err != nil {
		return Network{}, fmt.Errorf("network %s: %s: %v: %w", name, m.path(name), err, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// List returns every network, the default one included once made.
func (m *Manager) List() ([]Network, error) {
	ents, err := os.ReadDir(m.ConfDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var out []Network
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(name, ".") {
			continue
		}
		n, err := m.read(name)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

// Create records a new network. An empty Subnet gets the next free one
// (10.77.0.0/16 for the default network, 10.78.N.0/24 for the others)
// that neither another network nor a host interface uses; the gateway is
// the subnet's first address; the bridge is the next free berthN.
func (m *Manager) Create(n Network) (Network, error) {
	if n.Name == "bridge" || n.Name == "none" || n.Name == "host" || !validName.MatchString(n.Name) {
		return n, fmt.Errorf("network %q: not a name a network may have (none, host and bridge are taken; letters, digits, '_', '.' and '-'): %w", n.Name, errdefs.ErrInvalidArgument)
	}
	if n.Driver == "" {
		n.Driver = "bridge"
	}
	if n.Driver != "bridge" {
		return n, fmt.Errorf("network %s: driver %q: only bridge exists: %w", n.Name, n.Driver, errdefs.ErrInvalidArgument)
	}
	l, err := m.lock()
	if err != nil {
		return n, err
	}
	defer l.Unlock()
	// Bridges and subnets are the host's, shared by every store: one
	// machine-wide lock around choosing them and making the bridge, so
	// that two stores never take the same (a bridge not made yet is not
	// seen by the next one's choice).
	hl, err := hostLock()
	if err != nil {
		return n, err
	}
	defer hl.Unlock()
	if _, err := os.Stat(m.path(n.Name)); err == nil {
		return n, fmt.Errorf("network %s: %w", n.Name, errdefs.ErrAlreadyExists)
	}
	others, err := m.List()
	if err != nil {
		return n, err
	}
	var used []netip.Prefix
	bridges := map[string]bool{}
	for _, o := range others {
		if p, err := netip.ParsePrefix(o.Subnet); err == nil {
			used = append(used, p)
		}
		bridges[o.Bridge] = true
	}
	host := hostPrefixes()
	if n.Subnet == "" {
		p, err := freeSubnet(n.Name == DefaultName, append(used, host...))
		if err != nil {
			return n, err
		}
		n.Subnet = p.String()
	}
	subnet, err := netip.ParsePrefix(n.Subnet)
	if err != nil || !subnet.Addr().Is4() || subnet.Bits() > 30 || subnet.Bits() < 8 {
		return n, fmt.Errorf("network %s: subnet %q: want an IPv4 CIDR from /8 to /30, like 10.80.0.0/24: %w", n.Name, n.Subnet, errdefs.ErrInvalidArgument)
	}
	subnet = subnet.Masked()
	n.Subnet = subnet.String()
	for _, p := range used {
		if p.Overlaps(subnet) {
			return n, fmt.Errorf("network %s: subnet %s overlaps another network's %s: %w", n.Name, subnet, p, errdefs.ErrAlreadyExists)
		}
	}
	if n.Gateway == "" {
		n.Gateway = subnet.Addr().Next().String()
	}
	if gw, err := netip.ParseAddr(n.Gateway); err != nil || !subnet.Contains(gw) || gw == subnet.Addr() {
		return n, fmt.Errorf("network %s: gateway %q is not a host address of %s: %w", n.Name, n.Gateway, subnet, errdefs.ErrInvalidArgument)
	}
	if n.Bridge == "" {
		for i := 0; ; i++ {
			name := fmt.Sprintf("berth%d", i)
			if _, err := net.InterfaceByName(name); !bridges[name] && err != nil {
				n.Bridge = name
				break
			}
		}
	}
	if n.Created.IsZero() {
		n.Created = time.Now().UTC()
	}
	data, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return n, err
	}
	if err := makeBridge(n); err != nil {
		return n, err
	}
	if err := fsutil.WriteFileAtomic(m.path(n.Name), data, 0o600); err != nil {
		deleteLink(n.Bridge)
		return n, err
	}
	return n, nil
}

// hostLock is the machine's lock on bridge names and subnets.
func hostLock() (*fsutil.Lock, error) {
	const dir = "/run/lock/berth-networks"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return fsutil.LockPath(dir)
}

// makeBridge makes n's bridge with its gateway address now (the bridge
// plugin finds it at the first attach), so that the host's interfaces
// show the name and subnet taken. An existing bridge is left as it is.
func makeBridge(n Network) error {
	if _, err := net.InterfaceByName(n.Bridge); err == nil {
		return nil
	}
	prefix, _ := netip.ParsePrefix(n.Subnet)
	for _, args := range [][]string{
		{"link", "add", "name", n.Bridge, "type", "bridge"},
		{"addr", "add", n.Gateway + "/" + strconv.Itoa(prefix.Bits()), "dev", n.Bridge},
		{"link", "set", n.Bridge, "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			deleteLink(n.Bridge)
			return fmt.Errorf("network %s: ip %s: %s: %w", n.Name, strings.Join(args, " "), strings.TrimSpace(string(out)), err)
		}
	}
	return nil
}

// freeSubnet picks the first candidate subnet that overlaps none in used.
func freeSubnet(isDefault bool, used []netip.Prefix) (netip.Prefix, error) {
	var candidates []netip.Prefix
	if isDefault { // else one of the others', if another store's default has it
		candidates = append(candidates, netip.MustParsePrefix("10.77.0.0/16"))
	}
	for i := 0; i < 256; i++ {
		candidates = append(candidates, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 78, byte(i), 0}), 24))
	}
	for _, c := range candidates {
		if !slices.ContainsFunc(used, c.Overlaps) {
			return c, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free subnet left for a network: give one with --subnet: %w", errdefs.ErrUnavailable)
}

// hostPrefixes are the IPv4 networks of the host's interfaces (a bridge
// on one of them would cut the host off).
func hostPrefixes() []netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
			ones, _ := ipn.Mask.Size()
			addr, _ := netip.AddrFromSlice(ipn.IP.To4())
			out = append(out, netip.PrefixFrom(addr, ones).Masked())
		}
	}
	return out
}

// Remove deletes a network's record and its bridge; the caller checks
// that no container uses it.
func (m *Manager) Remove(name string) error {
	n, err := m.read(Canonical(name))
	if err != nil {
		return err
	}
	l, err := m.lock()
	if err != nil {
		return err
	}
	defer l.Unlock()
	if err := os.Remove(m.path(n.Name)); err != nil {
		return err
	}
	m.dropHostRules(n)
	deleteLink(n.Bridge)
	os.RemoveAll(filepath.Join(m.StateDir, "ipam", n.Name))
	os.RemoveAll(filepath.Join(m.StateDir, "names", n.Name))
	return nil
}
