package engine

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
)

// Cgroup is one cgroup's directories (a container's, a pod's). It is read from /proc/PID/cgroup,
// as the engine reads a container's, since each runtime and cgroup driver
// maps a spec's cgroupsPath its own way.
type Cgroup struct {
	path string            // in its hierarchy (cadvisor's id): the memory controller's on v1
	v1   map[string]string // controller -> directory; nil on a v2 host
	// v2 is the cgroup2 directory: all of the cgroup on a v2 host; on a
	// hybrid one the unified half, which holds only pressure (PSI) files.
	v2 string
}

// statControllers are the v1 controllers the stats read.
var statControllers = []string{"cpu", "cpuacct", "memory", "blkio", "pids", "hugetlb"}

// v1Mounts maps each v1 controller to its mount point and root. The
// hierarchies are mounted at boot, so they are read once, not for each
// container of each scrape.
var v1Mounts = sync.OnceValue(func() map[string][2]string {
	m := map[string][2]string{}
	mounts, err := cgroups.GetCgroupMounts(false)
	if err != nil {
		return m
	}
	for _, mnt := range mounts {
		for _, sub := range mnt.Subsystems {
			m[sub] = [2]string{mnt.Mountpoint, mnt.Root}
		}
	}
	return m
})

// errNoCgroup: the container has no cgroup of its own (an unprivileged
// user's without a delegated one); its process is in its user's.
var errNoCgroup = fmt.Errorf("no cgroup of its own (none is delegated to this user): %w", errdefs.ErrFailedPrecond)

// CgroupOf is the cgroup of pid, a process of container id: the cgroups
// named id (berth makes each container's as PARENT/ID), in the hierarchies
// where the container has one; a hierarchy where it has none (one not
// delegated to an unprivileged user) is left out, as its cgroup there is
// the user's, not the container's.
func CgroupOf(pid int, id string) (Cgroup, error) {
	cg, err := cgroups.ParseCgroupFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return Cgroup{}, fmt.Errorf("process %d: its cgroups: %w", pid, err)
	}
	if cgroups.IsCgroup2UnifiedMode() {
		if path.Base(cg[""]) != id {
			return Cgroup{}, errNoCgroup
		}
		return Cgroup{path: cg[""], v2: filepath.Join("/sys/fs/cgroup", cg[""])}, nil
	}
	g := Cgroup{v1: map[string]string{}}
	for _, sub := range statControllers {
		p, ok := cg[sub]
		m, mounted := v1Mounts()[sub]
		if !ok || !mounted || path.Base(p) != id {
			continue // its numbers are left out
		}
		// Paths are relative to the hierarchy's root as this process sees
		// it (a cgroup namespace, or a bind mount of a sub-tree).
		rel, err := filepath.Rel(m[1], p)
		if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
			continue
		}
		g.v1[sub] = filepath.Join(m[0], rel)
		g.path = p
	}
	if g.path == "" {
		return Cgroup{}, errNoCgroup
	}
	// The unified half is the container's own only if the runtime made it
	// alongside the v1 ones; else it is shared and its pressure is not
	// the container's.
	if p, ok := cg[""]; ok && g.path != "" && p == g.path && cgroups.IsCgroup2HybridMode() {
		g.v2 = filepath.Join("/sys/fs/cgroup/unified", p)
	}
	return g, nil
}

// parent is the cgroup above g; false when that is a hierarchy's root,
// which is the whole host's.
func (g Cgroup) Parent() (Cgroup, bool) {
	if g.path == "" || path.Dir(g.path) == "/" {
		return Cgroup{}, false
	}
	p := Cgroup{path: path.Dir(g.path)}
	if g.v1 != nil {
		p.v1 = map[string]string{}
		for k, d := range g.v1 {
			p.v1[k] = filepath.Dir(d)
		}
	}
	if g.v2 != "" {
		p.v2 = filepath.Dir(g.v2)
	}
	return p, true
}

// dir is the directory holding ctrl's files.
func (g Cgroup) Dir(ctrl string) string {
	if g.v1 == nil {
		return g.v2
	}
	return g.v1[ctrl]
}

// read is the trimmed content of a cgroup file ("" when it is not there).
func (g Cgroup) Read(ctrl, file string) string {
	d := g.Dir(ctrl)
	if d == "" {
		return ""
	}
	b, err := os.ReadFile(filepath.Join(d, file))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// keyed is the value of key in a "key value" cgroup file.
func (g Cgroup) Keyed(ctrl, file, key string) (uint64, bool) {
	for line := range strings.Lines(g.Read(ctrl, file)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key {
			v, err := strconv.ParseUint(f[1], 10, 64)
			return v, err == nil
		}
	}
	return 0, false
}

// stats reads the controllers through opencontainers/cgroups: fs for v1,
// fs2 for a v2 host; on a hybrid host the pressure comes from the
// unified half.
func (g Cgroup) Stats() (*cgroups.Stats, error) {
	cg := &cgroups.Cgroup{Resources: &cgroups.Resources{}}
	if g.v1 == nil {
		m, err := fs2.NewManager(cg, g.v2)
		if err != nil {
			return nil, err
		}
		return m.GetStats()
	}
	paths := map[string]string{}
	for k, d := range g.v1 {
		// Its hugetlb reads the reservations (.rsvd) where there are
		// some; podmetrics.go reads the usage itself.
		if k != "hugetlb" {
			paths[k] = d
		}
	}
	m, err := fs.NewManager(cg, paths)
	if err != nil {
		return nil, err
	}
	st, err := m.GetStats()
	if err != nil {
		return nil, err
	}
	if g.v2 != "" {
		if m2, err := fs2.NewManager(cg, g.v2); err == nil {
			// Only the PSI files are there; the errors are the
			// controllers that are not.
			if s2, _ := m2.Stats(&cgroups.StatsOptions{Controllers: cgroups.CPU | cgroups.Memory | cgroups.IO}); s2 != nil {
				st.CpuStats.PSI, st.MemoryStats.PSI, st.BlkioStats.PSI = s2.CpuStats.PSI, s2.MemoryStats.PSI, s2.BlkioStats.PSI
			}
		}
	}
	return st, nil
}

// memStat is a memory.stat counter by its v1 name, hierarchical (the
// total_ one on v1; v2's are always hierarchical, some under another name).
func (g Cgroup) MemStat(st *cgroups.Stats, name string) (uint64, bool) {
	key := "total_" + name
	if g.v1 == nil {
		key = name
		if v2, ok := map[string]string{"rss": "anon", "cache": "file", "mapped_file": "file_mapped"}[name]; ok {
			key = v2
		}
	}
	v, ok := st.MemoryStats.Stats[key]
	return v, ok
}

// pids are the processes in g and the cgroups below it.
func (g Cgroup) Pids() []int {
	dir := g.v2
	if g.v1 != nil {
		dir = ""
		for _, sub := range []string{"pids", "memory", "cpuacct", "cpu"} {
			if dir = g.v1[sub]; dir != "" {
				break
			}
		}
	}
	if dir == "" {
		return nil
	}
	pids, _ := cgroups.GetAllPids(dir)
	return pids
}

// workingSet is the memory the kernel could not easily reclaim: the usage
// without the inactive page cache, as the kubelet and docker count it.
func (g Cgroup) WorkingSet(st *cgroups.Stats) uint64 {
	ws := st.MemoryStats.Usage.Usage
	if inactive, ok := g.MemStat(st, "inactive_file"); ok && inactive < ws {
		ws -= inactive
	}
	return ws
}

// CgroupAt is the cgroup at path (in its hierarchy) with the given
// directories: what a caller that knows them (a test) builds.
func CgroupAt(path string, v1 map[string]string, v2 string) Cgroup {
	return Cgroup{path: path, v1: v1, v2: v2}
}

// Path is the cgroup's path in its hierarchy (the memory controller's on
// v1): cadvisor's id.
func (g Cgroup) Path() string { return g.path }

// IsV2 reports a cgroup of a v2 host (no v1 directories).
func (g Cgroup) IsV2() bool { return g.v1 == nil }

// V1Mount is where v1 controller ctrl's hierarchy is mounted, and its root.
func V1Mount(ctrl string) (mountpoint, root string, ok bool) {
	m, ok := v1Mounts()[ctrl]
	return m[0], m[1], ok
}
