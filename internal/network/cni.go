package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// cniVersion is what Debian 12's plugins (1.1.1) speak.
const cniVersion = "1.0.0"

// PortMapping publishes a container port on the host (portmap's
// capability argument).
type PortMapping struct {
	HostIP        string `json:"hostIP,omitempty"`
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

// Request is a container to attach to (or detach from) its networks.
type Request struct {
	ContainerID string
	// Names are what other containers of a DNS network resolve to it
	// (its name and hostname); the first is its own hostname.
	Names []string
	// NetNS is the pinned namespace (NewNetNS).
	NetNS    string
	Networks []string
	Ports    []PortMapping
	// HostsFile is the container's /etc/hosts on the host: its own
	// addresses and its peers' are kept in it.
	HostsFile string
}

// Attachment is a container's interface on one network.
type Attachment struct {
	Network string `json:"network"`
	IfName  string `json:"ifName"`
	IP      string `json:"ip"` // CIDR
	Gateway string `json:"gateway,omitempty"`
	MAC     string `json:"mac,omitempty"`
}

func ifName(i int) string { return fmt.Sprintf("eth%d", i) }

func (m *Manager) cni() *libcni.CNIConfig {
	dirs := m.PluginDirs
	if len(dirs) == 0 {
		dirs = DefaultPluginDirs
	}
	return libcni.NewCNIConfigWithCacheDir(dirs, filepath.Join(m.StateDir, "cache"), &pluginExec{RawExec: &invoke.RawExec{}})
}

// pluginExec runs plugins as libcni does, but each dies with berth: a
// plugin left running by a berth killed mid-ADD would race the DEL that
// cleans up after the crash (and add rules after it).
type pluginExec struct {
	*invoke.RawExec
	version.PluginDecoder
}

func (pluginExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, path)
	cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr = environ, bytes.NewReader(stdin), &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		msg := &types.Error{}
		if json.Unmarshal(stdout.Bytes(), msg) != nil || msg.Msg == "" {
			msg.Msg = fmt.Sprintf("%s: %v: %s", filepath.Base(path), err, strings.TrimSpace(stderr.String()))
		}
		return nil, msg
	}
	return stdout.Bytes(), nil
}

// confList is the CNI configuration of n: a bridge with host-local
// addresses, and portmap when the container publishes ports. The
// masquerading and forwarding rules are the network's, not each
// container's (hostRules): per-container rules from the bridge plugin's
// ipMasq and the firewall plugin cost ten iptables runs, about 100 ms on
// every start and removal here.
func (m *Manager) confList(n Network, ports bool) (*libcni.NetworkConfigList, error) {
	ipam := map[string]any{
		"type":    "host-local",
		"ranges":  [][]map[string]string{{{"subnet": n.Subnet, "gateway": n.Gateway}}},
		"dataDir": filepath.Join(m.StateDir, "ipam"),
	}
	if !n.Internal {
		ipam["routes"] = []map[string]string{{"dst": "0.0.0.0/0"}}
	}
	plugins := []map[string]any{{
		"type": "bridge", "bridge": n.Bridge, "isGateway": !n.Internal, "ipMasq": false,
		"hairpinMode": true, "ipam": ipam,
	}}
	if ports {
		plugins = append(plugins, map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true})
	}
	data, err := json.Marshal(map[string]any{"cniVersion": cniVersion, "name": n.Name, "plugins": plugins})
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromBytes(data)
}

func (r Request) runtimeConf(i int) *libcni.RuntimeConf {
	rc := &libcni.RuntimeConf{ContainerID: r.ContainerID, NetNS: r.NetNS, IfName: ifName(i),
		Args: [][2]string{{"IgnoreUnknown", "1"}}}
	if len(r.Ports) > 0 {
		rc.CapabilityArgs = map[string]any{"portMappings": r.Ports}
	}
	return rc
}

// Attach connects r's namespace to each of its networks in turn and
// returns the interfaces; on an error, what was attached is detached.
func (m *Manager) Attach(ctx context.Context, r Request) (_ []Attachment, retErr error) {
	defer func() {
		if retErr != nil {
			m.Detach(context.WithoutCancel(ctx), r)
		}
	}()
	cni := m.cni()
	var out []Attachment
	for i, name := range r.Networks {
		n, err := m.Get(name)
		if err != nil {
			return nil, err
		}
		if err := m.hostRules(n); err != nil {
			return nil, err
		}
		list, err := m.confList(n, len(r.Ports) > 0)
		if err != nil {
			return nil, err
		}
		res, err := cni.AddNetworkList(ctx, list, r.runtimeConf(i))
		if err != nil {
			return nil, fmt.Errorf("network %s: %w", n.Name, pluginError(err))
		}
		cur, err := types100.NewResultFromResult(res)
		if err != nil {
			return nil, fmt.Errorf("network %s: result: %w", n.Name, err)
		}
		a := Attachment{Network: n.Name, IfName: ifName(i), Gateway: n.Gateway}
		for _, ip := range cur.IPs {
			if ip.Address.IP.To4() != nil {
				a.IP = ip.Address.String()
				break
			}
		}
		for _, itf := range cur.Interfaces {
			if itf.Name == a.IfName && itf.Sandbox != "" {
				a.MAC = itf.Mac
			}
		}
		if a.IP == "" {
			return nil, fmt.Errorf("network %s: the plugins gave no IPv4 address: %w", n.Name, errdefs.ErrUnavailable)
		}
		out = append(out, a)
	}
	if err := m.join(r, out); err != nil {
		return nil, err
	}
	return out, nil
}

// Detach releases what Attach made for r (addresses, port rules,
// interfaces, name entries), in reverse order, also when Attach was cut
// short by a crash: CNI's DEL tolerates what is already gone. A network
// removed meanwhile has nothing left to release but its name files.
func (m *Manager) Detach(ctx context.Context, r Request) error {
	var errs []error
	cni := m.cni()
	for i := len(r.Networks) - 1; i >= 0; i-- {
		n, err := m.read(Canonical(r.Networks[i]))
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		list, err := m.confList(n, len(r.Ports) > 0)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := cni.DelNetworkList(ctx, list, r.runtimeConf(i)); err != nil {
			errs = append(errs, fmt.Errorf("network %s: %w", n.Name, pluginError(err)))
		}
	}
	if err := m.leave(r); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// pluginError says what to install when a plugin is missing.
func pluginError(err error) error {
	if strings.Contains(err.Error(), "failed to find plugin") {
		return fmt.Errorf("%w (install Debian's containernetworking-plugins, or set network.cni_plugin_dirs in berth.toml): %w", err, errdefs.ErrUnavailable)
	}
	return err
}
