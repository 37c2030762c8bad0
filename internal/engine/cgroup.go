package engine

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/procfs"
	"github.com/opencontainers/cgroups"
)

// runningPid is c's init's pid, or ErrFailedPrecond (with what to do) if
// c does not run.
func (e *Engine) runningPid(ctx context.Context, c metadata.Container, what string) (int, error) {
	st, err := e.State(ctx, c)
	if err != nil {
		return 0, err
	}
	if st.Status != StatusRunning || st.Pid <= 0 {
		return 0, fmt.Errorf("%s: container %s is %s, not running: start it first: %w", what, c.Name, st.Status, errdefs.ErrFailedPrecond)
	}
	return st.Pid, nil
}

// Pids are the host pids of c's processes: those of its cgroup, or, if
// that cannot be read, its init and the init's descendants.
func (e *Engine) Pids(ctx context.Context, c metadata.Container) ([]int, error) {
	pid, err := e.runningPid(ctx, c, "top")
	if err != nil {
		return nil, err
	}
	if d, err := CgroupOf(pid, c.ID); err == nil {
		if pids := d.Pids(); len(pids) > 0 {
			return pids, nil
		}
	}
	return descendants(pid)
}

// descendants are pid and the processes below it, from /proc.
func descendants(pid int) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procfs.ReadStat(p)
		if err != nil {
			continue
		}
		children[st.PPid()] = append(children[st.PPid()], p)
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out, nil
}

// OOMKilled reports whether the kernel's OOM killer killed a process in
// c's memory cgroup: read from the cgroup its spec names (cgroupfs), which
// stays until the runtime deletes the container.
func (e *Engine) OOMKilled(c metadata.Container) bool {
	spec, err := e.Spec(c)
	if err != nil || spec.Linux == nil || spec.Linux.CgroupsPath == "" {
		return false
	}
	file, key := "memory.oom_control", "oom_kill"
	mnt, err := cgroups.FindCgroupMountpoint("", "memory")
	if cgroups.IsCgroup2UnifiedMode() || err != nil {
		mnt, file = "/sys/fs/cgroup", "memory.events"
	}
	data, err := os.ReadFile(filepath.Join(mnt, spec.Linux.CgroupsPath, file))
	if err != nil {
		return false
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == key && f[1] != "0" {
			return true
		}
	}
	return false
}

// WritableUsage is what c wrote to its root file system: the bytes
// (allocated blocks, as du counts) and inodes of its snapshot's upper
// directory.
func (e *Engine) WritableUsage(ctx context.Context, c metadata.Container) (bytes, inodes uint64, err error) {
	ms, err := e.Images.Snapshots.Mounts(ctx, c.Snapshot)
	if err != nil {
		return 0, 0, err
	}
	upper := ""
	for _, m := range ms {
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "upperdir="); ok {
				upper = v
			}
		}
	}
	if upper == "" {
		return 0, 0, nil
	}
	err = filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // removed while walked
		}
		if info, err := d.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				bytes += uint64(st.Blocks) * 512
			}
		}
		inodes++
		return nil
	})
	return bytes, inodes, err
}
