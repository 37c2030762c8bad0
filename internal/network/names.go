package network

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berthdev/berth/internal/fsutil"
)

// Name resolution without a DNS server: each container's /etc/hosts ends
// with a section berth keeps, its own addresses and, on networks with
// DNS, its peers'. A container joining or leaving rewrites the sections
// of the others in place (their files are bind mounts: a rename would
// not reach them). Members are files names/NETWORK/CONTAINER-ID.

// HostsMarker starts the part of a hosts file that berth rewrites.
const HostsMarker = "# berth networks\n"

type member struct {
	IP    string   `json:"ip"`
	Names []string `json:"names"`
	Hosts string   `json:"hosts"`
	// DNS is false on a network without name resolution: the
	// container sees its own entry only.
	DNS bool `json:"dns"`
}

func (m *Manager) namesDir() string { return filepath.Join(m.StateDir, "names") }

// join records r's addresses and rewrites the hosts files of r and of
// its peers.
func (m *Manager) join(r Request, atts []Attachment) error {
	l, err := m.namesLock()
	if err != nil {
		return err
	}
	defer l.Unlock()
	for _, a := range atts {
		n, err := m.read(a.Network)
		if err != nil {
			return err
		}
		p, _ := netip.ParsePrefix(a.IP)
		var names []string
		for _, name := range append(slices.Clone(r.Names), r.ContainerID[:min(12, len(r.ContainerID))]) {
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
		}
		data, _ := json.Marshal(member{IP: p.Addr().String(), Names: names, Hosts: r.HostsFile, DNS: n.DNS})
		dir := filepath.Join(m.namesDir(), a.Network)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		if err := fsutil.ReplaceFile(filepath.Join(dir, r.ContainerID), data, 0o600); err != nil {
			return err
		}
	}
	return m.rewriteHosts()
}

// leave forgets r's addresses and rewrites its peers' hosts files.
func (m *Manager) leave(r Request) error {
	l, err := m.namesLock()
	if err != nil {
		return err
	}
	defer l.Unlock()
	found := false
	for _, name := range r.Networks {
		err := os.Remove(filepath.Join(m.namesDir(), Canonical(name), r.ContainerID))
		found = found || err == nil
	}
	if !found {
		return nil
	}
	return m.rewriteHosts()
}

func (m *Manager) namesLock() (*fsutil.Lock, error) {
	if err := os.MkdirAll(m.namesDir(), 0o700); err != nil {
		return nil, err
	}
	return fsutil.LockPath(m.namesDir())
}

// rewriteHosts writes every member's section: its own entries, then its
// DNS networks' other members. There are as many members as running
// containers on bridge networks, so all of them are read.
func (m *Manager) rewriteHosts() error {
	byNet := map[string]map[string]member{}
	nets, _ := os.ReadDir(m.namesDir())
	for _, n := range nets {
		if !n.IsDir() {
			continue
		}
		files, _ := os.ReadDir(filepath.Join(m.namesDir(), n.Name()))
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(m.namesDir(), n.Name(), f.Name()))
			var mb member
			if err != nil || json.Unmarshal(data, &mb) != nil {
				continue
			}
			if byNet[n.Name()] == nil {
				byNet[n.Name()] = map[string]member{}
			}
			byNet[n.Name()][f.Name()] = mb
		}
	}
	sections := map[string]*strings.Builder{} // hosts file -> section
	for _, net := range slices.Sorted(maps.Keys(byNet)) {
		ms := byNet[net]
		ids := slices.Sorted(maps.Keys(ms))
		for _, id := range ids {
			mb := ms[id]
			b := sections[mb.Hosts]
			if b == nil {
				b = &strings.Builder{}
				sections[mb.Hosts] = b
			}
			fmt.Fprintf(b, "%s\t%s\n", mb.IP, strings.Join(mb.Names, " "))
			if !mb.DNS {
				continue
			}
			for _, peer := range ids {
				if p := ms[peer]; peer != id {
					fmt.Fprintf(b, "%s\t%s\n", p.IP, strings.Join(p.Names, " "))
				}
			}
		}
	}
	var errs []error
	for path, b := range sections {
		if err := rewriteSection(path, b.String()); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// rewriteSection replaces what follows HostsMarker in the file at path,
// in place.
func rewriteSection(path, section string) error {
	old, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	base, _, _ := strings.Cut(string(old), HostsMarker)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(base + HostsMarker + section)
	return errors.Join(err, f.Close())
}
