package network

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
)

// A network's host rules, as docker keeps them per bridge: its traffic
// is forwarded even where the FORWARD policy drops (docker sets DROP), and
// what leaves the subnet for elsewhere is masqueraded. An internal network
// gets neither: its traffic may not leave the bridge. They are made on
// the network's first attachment and marked done by a file under the
// state directory, which, like the rules, does not outlive a reboot.

func (n Network) rules() [][]string {
	comment := []string{"-m", "comment", "--comment", "berth network " + n.Name}
	if n.Internal {
		return [][]string{
			append([]string{"filter", "FORWARD", "-i", n.Bridge, "!", "-o", n.Bridge, "-j", "DROP"}, comment...),
			append([]string{"filter", "FORWARD", "-o", n.Bridge, "!", "-i", n.Bridge, "-j", "DROP"}, comment...),
		}
	}
	return [][]string{
		append([]string{"filter", "FORWARD", "-i", n.Bridge, "-j", "ACCEPT"}, comment...),
		append([]string{"filter", "FORWARD", "-o", n.Bridge, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"}, comment...),
		append([]string{"nat", "POSTROUTING", "-s", n.Subnet, "!", "-d", n.Subnet, "-j", "MASQUERADE"}, comment...),
	}
}

func (m *Manager) rulesMark(n Network) string {
	return filepath.Join(m.StateDir, "rules", n.Name+"-"+n.Bridge)
}

// hostRules makes n's rules once.
func (m *Manager) hostRules(n Network) error {
	mark := m.rulesMark(n)
	if _, err := os.Stat(mark); err == nil {
		return nil
	}
	l, err := m.lock()
	if err != nil {
		return err
	}
	defer l.Unlock()
	if _, err := os.Stat(mark); err == nil {
		return nil
	}
	for _, r := range n.rules() {
		table, chain, rule := r[0], r[1], r[2:]
		if iptables(append([]string{"-t", table, "-C", chain}, rule...)...) == nil {
			continue
		}
		if err := iptables(append([]string{"-t", table, "-I", chain}, rule...)...); err != nil {
			return fmt.Errorf("network %s: %w", n.Name, err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(mark), 0o700); err != nil {
		return err
	}
	return os.WriteFile(mark, nil, 0o600)
}

// dropHostRules removes n's rules (those that are there).
func (m *Manager) dropHostRules(n Network) {
	for _, r := range n.rules() {
		for iptables(append([]string{"-t", r[0], "-D", r[1]}, r[2:]...)...) == nil {
		}
	}
	os.Remove(m.rulesMark(n))
}

func iptables(args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		if _, lerr := exec.LookPath("iptables"); lerr != nil {
			return fmt.Errorf("iptables not found (install Debian's iptables): %w", errdefs.ErrUnavailable)
		}
		return fmt.Errorf("iptables %s: %s: %w", strings.Join(args, " "), strings.TrimSpace(string(out)), err)
	}
	return nil
}
