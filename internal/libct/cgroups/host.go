package cgroups

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
	ocgroups "github.com/opencontainers/cgroups"
	"golang.org/x/sys/unix"

	"github.com/berthdev/berth/internal/errdefs"
)

const (
	cgroupRoot = "/sys/fs/cgroup"
	// UnifiedKey is the Paths key of the container's cgroup in the v2
	// hierarchy: the only key on a pure v2 host, next to the v1 controllers
	// on a hybrid one.
	UnifiedKey = "unified"
	// DefaultParent holds the container cgroups when the config names none.
	// runc's cgroupfs driver uses the bare container id, relative to its own
	// cgroup; berth does the same one level down so its containers are easy to
	// find and never collide with the runtime's sibling cgroups.
	DefaultParent = "berth"
)

// v1Controllers are the hierarchies the opencontainers/cgroups fs manager
// knows, by the names it uses as keys (a named hierarchy keeps "name=").
var v1Controllers = []string{
	"cpuset", "devices", "memory", "cpu", "cpuacct", "pids", "blkio", "hugetlb",
	"net_cls", "net_prio", "perf_event", "freezer", "rdma", "misc", "name=systemd",
}

// mount is one cgroup hierarchy as mounted in our mount namespace.
type mount struct {
	point string // where it is mounted
	root  string // the cgroup of the hierarchy shown there: "/" unless nested
}

// host is the cgroup layout of this machine. It is probed once per process:
// mountinfo is the slowest read on the start-up path (runc used to re-read it
// per controller), and the layout does not change under a running runtime.
type host struct {
	unified bool             // pure v2: one hierarchy at /sys/fs/cgroup
	v1      map[string]mount // v1 controller -> its hierarchy
	v2      *mount           // the cgroup2 mount (pure or hybrid), if any
}

var (
	hostOnce sync.Once
	hostInfo *host
	hostErr  error

	ownOnce sync.Once
	ownCg   map[string]string
	ownErr  error
)

func detectHost() (*host, error) {
	hostOnce.Do(func() { hostInfo, hostErr = probeHost() })
	return hostInfo, hostErr
}

func probeHost() (*host, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(cgroupRoot, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", cgroupRoot, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		// Everything is in one place that we already know: skip mountinfo.
		return &host{unified: true, v2: &mount{point: cgroupRoot, root: "/"}}, nil
	}
	mis, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("reading mountinfo: %w", err)
	}
	h := &host{v1: make(map[string]mount)}
	for _, mi := range mis {
		// Load accepts only paths below /sys/fs/cgroup; stray mounts elsewhere
		// (a bind mount, a tool's private copy) are not the host's layout.
		if !strings.HasPrefix(mi.Mountpoint, cgroupRoot+"/") {
			continue
		}
		m := mount{point: mi.Mountpoint, root: mi.Root}
		if mi.FSType == "cgroup2" {
			if h.v2 == nil {
				h.v2 = &m
			}
			continue
		}
		for _, opt := range strings.Split(mi.VFSOptions, ",") {
			if _, seen := h.v1[opt]; !seen && slices.Contains(v1Controllers, opt) {
				h.v1[opt] = m
			}
		}
	}
	// Without the devices controller a container could open any host
	// device, so refuse rather than run unconfined.
	if _, ok := h.v1["devices"]; !ok {
		return nil, fmt.Errorf("cgroup v1 devices controller is not mounted: %w", errdefs.ErrFailedPrecond)
	}
	return h, nil
}

// ownCgroups is /proc/self/cgroup as controller -> path ("" for v2), read
// only when a relative cgroupsPath needs it.
func ownCgroups() (map[string]string, error) {
	ownOnce.Do(func() { ownCg, ownErr = ocgroups.ParseCgroupFile("/proc/self/cgroup") })
	return ownCg, ownErr
}

// innerPath cleans cgroupsPath (or the default for id) lexically, so that
// ".." can never climb out of the hierarchy, and says whether it is relative.
func innerPath(cgroupsPath, id string) (string, bool, error) {
	p := cgroupsPath
	if p == "" {
		if id == "" || strings.Contains(id, "/") {
			return "", false, fmt.Errorf("container id %q cannot name a cgroup: %w", id, errdefs.ErrInvalidArgument)
		}
		p = DefaultParent + "/" + id
	}
	inner := filepath.Clean("/" + p)
	if inner == "/" {
		return "", false, fmt.Errorf("linux.cgroupsPath %q: names the root cgroup, which a container cannot own: %w",
			cgroupsPath, errdefs.ErrInvalidArgument)
	}
	return inner, !filepath.IsAbs(p), nil
}

// resolve maps a cgroupsPath to the container's cgroup in every hierarchy,
// following the OCI spec: absolute paths are relative to each hierarchy's
// root, relative ones to the runtime's own cgroup there.
func resolve(cgroupsPath, id string) (map[string]string, error) {
	inner, relative, err := innerPath(cgroupsPath, id)
	if err != nil {
		return nil, err
	}
	h, err := detectHost()
	if err != nil {
		return nil, err
	}
	var own map[string]string
	if relative {
		if own, err = ownCgroups(); err != nil {
			return nil, fmt.Errorf("reading own cgroup: %w", err)
		}
	}
	paths := make(map[string]string, len(h.v1)+1)
	for ctrl, m := range h.v1 {
		base := "/"
		if relative {
			base = own[ctrl]
		}
		paths[ctrl] = under(m, base, inner)
	}
	if h.v2 != nil {
		base := "/"
		if relative {
			// Like runc: a v2 cgroup holding processes (ours) cannot give
			// domain controllers to children, so start from its parent.
			base = filepath.Dir(own[""])
		}
		paths[UnifiedKey] = under(*h.v2, base, inner)
	}
	return paths, nil
}

// under places inner below base, a cgroup named as in /proc/self/cgroup,
// translated through the mount's root (they differ when nested without a
// cgroup namespace).
func under(m mount, base, inner string) string {
	rel, err := filepath.Rel(m.root, filepath.Join("/", base))
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		// Our cgroup is not visible through this mount: use the mount's root.
		rel = "."
	}
	return filepath.Join(m.point, rel, inner)
}
