// Package cgroups places one container's processes in cgroups and applies its
// linux.resources. It works on cgroup v1, v2 and hybrid hosts and builds on
// github.com/opencontainers/cgroups (fs for v1, fs2 for v2, devices for the
// device rules) so that every limit means what it means under runc; it adds
// only what the library leaves out: path resolution with a single mountinfo
// read, hugetlb and unified keys in the v2 half of a hybrid host, the spec's
// pids semantics, and validation errors that name the config field.
package cgroups

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	ocgroups "github.com/opencontainers/cgroups"
	_ "github.com/opencontainers/cgroups/devices" // installs the v1 and eBPF device setters
	"github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
	"golang.org/x/sys/unix"

	"github.com/berthdev/berth/internal/errdefs"
)

// Manager is the set of cgroups of one container. Its methods are not safe
// for concurrent use; the runtime holds the container lock around them.
type Manager struct {
	paths map[string]string // controller (or UnifiedKey) -> absolute path
	v1    *fs.Manager       // the v1 hierarchies; nil on a pure v2 host
	// v2 is the container's cgroup2 cgroup: everything on a pure v2 host,
	// only hugetlb and unified keys on a hybrid one.
	v2 *fs2.Manager
	// owned: made by Own, whose device rules are not written.
	owned bool
}

// New resolves cgroupsPath as the OCI spec says: an absolute path is taken
// from each hierarchy's root, a relative one from the runtime's own cgroup
// (its parent in v2, as runc does). An empty path means DefaultParent/<id>,
// relative, mirroring runc's default of <id>. Nothing is created until Apply.
func New(cgroupsPath, id string) (*Manager, error) {
	paths, err := resolve(cgroupsPath, id)
	if err != nil {
		return nil, err
	}
	return newManager(paths)
}

// Load rebuilds a Manager from the Paths saved in the container's state. It
// reads nothing from the host, so commands like state and kill stay cheap.
func Load(paths map[string]string) (*Manager, error) {
	if len(paths) == 0 {
		return nil, fmt.Errorf("cgroup paths: none saved: %w", errdefs.ErrInvalidArgument)
	}
	for k, p := range paths {
		// Destroy removes these directories: accept only clean cgroupfs paths.
		if filepath.Clean(p) != p || !strings.HasPrefix(p, cgroupRoot+"/") {
			return nil, fmt.Errorf("cgroup path %s=%q: not a cgroup below %s: %w", k, p, cgroupRoot, errdefs.ErrInvalidArgument)
		}
	}
	return newManager(maps.Clone(paths))
}

func newManager(paths map[string]string) (*Manager, error) {
	m := &Manager{paths: paths}
	v1 := make(map[string]string, len(paths))
	for k, p := range paths {
		if k != UnifiedKey {
			v1[k] = p
		}
	}
	var err error
	if len(v1) > 0 {
		// The fs manager wants Resources at creation; Set passes the real ones.
		if m.v1, err = fs.NewManager(&ocgroups.Cgroup{Resources: &ocgroups.Resources{}}, v1); err != nil {
			return nil, fmt.Errorf("cgroup v1 manager: %w", err)
		}
	}
	if p, ok := paths[UnifiedKey]; ok {
		if m.v2, err = fs2.NewManager(&ocgroups.Cgroup{Resources: &ocgroups.Resources{}}, p); err != nil {
			return nil, fmt.Errorf("cgroup v2 manager: %w", err)
		}
	}
	return m, nil
}

func (m *Manager) hybrid() bool { return m.v1 != nil && m.v2 != nil }

// Apply creates the cgroups and moves pid, the container's init, into them;
// pid -1 only creates them (so limits can be Set before a process joins with
// AddPid). Like runc since 1.2 it refuses a cgroup that already holds
// processes or is frozen: the container would share limits it does not own,
// or start paused. On error the caller should Destroy once pid is gone.
func (m *Manager) Apply(pid int) error {
	if err := m.checkFresh(); err != nil {
		return err
	}
	if m.v1 != nil {
		if err := m.v1.Apply(pid); err != nil {
			return fmt.Errorf("cgroups: apply pid %d: %w", pid, err)
		}
	}
	switch {
	case m.hybrid():
		// The v2 half of a hybrid host only needs the directory and the
		// process; controllers are enabled on demand by Set.
		p := m.paths[UnifiedKey]
		if err := os.MkdirAll(p, 0o755); err != nil {
			return fmt.Errorf("cgroups: apply: %w", err)
		}
		if err := ocgroups.WriteCgroupProc(p, pid); err != nil {
			return fmt.Errorf("cgroups: apply pid %d to %s: %w", pid, p, err)
		}
	case m.v2 != nil:
		if err := m.v2.Apply(pid); err != nil {
			return fmt.Errorf("cgroups: apply pid %d: %w", pid, err)
		}
	}
	return nil
}

// Own is Apply(-1) for an unprivileged runtime (run by a user, or in a user
// namespace), after runc's rootless mode: the container's cgroup is made in
// each hierarchy where the user may make it (one delegated to it, as by
// chown on v1 or systemd's Delegate=yes on v2), and the others are left
// out, as is the devices controller, whose rules only a privileged process
// may write (a user namespace cannot make device nodes anyway). It returns
// a Manager of the cgroups made, nil for none; its Path is "" for a
// controller left out.
func (m *Manager) Own() (*Manager, error) {
	kept := map[string]string{}
	denied := map[string]bool{}
	for k, p := range m.paths {
		if k == "devices" {
			continue
		}
		if _, seen := denied[p]; !seen {
			err := os.MkdirAll(p, 0o755)
			if err != nil && !errors.Is(err, os.ErrPermission) && !errors.Is(err, unix.EROFS) {
				if made, merr := newManager(kept); len(kept) > 0 && merr == nil {
					made.Destroy()
				}
				return nil, fmt.Errorf("cgroups: %w", err)
			}
			denied[p] = err != nil
		}
		if !denied[p] {
			kept[k] = p
		}
	}
	if len(kept) == 0 {
		return nil, nil
	}
	own, err := newManager(kept)
	if err != nil {
		return nil, err
	}
	own.owned = true
	if err := own.Apply(-1); err != nil {
		own.Destroy()
		return nil, err
	}
	return own, nil
}

func (m *Manager) checkFresh() error {
	// One hierarchy is enough (runc reads only "devices"): a new cgroup does
	// not exist yet, so this costs a failed open.
	dir := m.pidsDir()
	pids, err := ocgroups.GetAllPids(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("cgroups: list pids of %s: %w", dir, err)
	}
	if len(pids) > 0 {
		return fmt.Errorf("cgroups: container's cgroup %s is not empty: %d process(es) found: %w",
			dir, len(pids), errdefs.ErrFailedPrecond)
	}
	frozen, err := m.Frozen()
	if err != nil {
		return err
	}
	if frozen {
		return fmt.Errorf("cgroups: container's cgroup %s is unexpectedly frozen: %w", dir, errdefs.ErrFailedPrecond)
	}
	return nil
}

// AddPid moves pid (an exec'd process) into every cgroup of the container.
func (m *Manager) AddPid(pid int) error {
	if m.v1 != nil {
		if err := m.v1.AddPid("", pid); err != nil {
			return fmt.Errorf("cgroups: add pid %d: %w", pid, err)
		}
	}
	if m.v2 != nil {
		if err := m.v2.AddPid("", pid); err != nil {
			return fmt.Errorf("cgroups: add pid %d: %w", pid, err)
		}
	}
	return nil
}

// Freeze stops every process of the container (pause).
func (m *Manager) Freeze() error { return m.freeze(ocgroups.Frozen) }

// Thaw resumes a frozen container.
func (m *Manager) Thaw() error { return m.freeze(ocgroups.Thawed) }

func (m *Manager) freeze(state ocgroups.FreezerState) error {
	var err error
	switch {
	case m.v1 != nil:
		if m.paths["freezer"] == "" {
			return fmt.Errorf("cgroups: no freezer cgroup (the controller is not mounted, or not delegated to this user): %w", errdefs.ErrFailedPrecond)
		}
		err = m.v1.Freeze(state)
	default:
		err = m.v2.Freeze(state)
	}
	if err != nil {
		return fmt.Errorf("cgroups: set freezer to %s: %w", state, err)
	}
	return nil
}

// Frozen reports whether the container's own cgroup is frozen (a frozen
// ancestor does not count, as with runc, so the state reads "running").
func (m *Manager) Frozen() (bool, error) {
	var (
		st  ocgroups.FreezerState
		err error
	)
	if m.v1 != nil {
		st, err = m.v1.GetFreezerState()
	} else {
		st, err = m.v2.GetFreezerState()
	}
	if err != nil {
		return false, fmt.Errorf("cgroups: read freezer state: %w", err)
	}
	return st == ocgroups.Frozen, nil
}

// Pids lists every process in the container's cgroup and its sub-cgroups.
func (m *Manager) Pids() ([]int, error) {
	p := m.pidsDir()
	pids, err := ocgroups.GetAllPids(p)
	if err != nil {
		return nil, fmt.Errorf("cgroups: list pids of %s: %w", p, err)
	}
	return pids, nil
}

// pidsDir is one hierarchy that holds every process of the container.
func (m *Manager) pidsDir() string {
	if m.v1 == nil {
		return m.paths[UnifiedKey]
	}
	for _, c := range []string{"devices", "freezer", "pids", "memory"} {
		if p := m.paths[c]; p != "" {
			return p
		}
	}
	for _, k := range slices.Sorted(maps.Keys(m.paths)) {
		return m.paths[k]
	}
	return ""
}

// Destroy removes the container's cgroups and any sub-cgroups left in them.
// A cgroup still holding processes cannot be removed: that is reported, and
// a pre-existing cgroup named by cgroupsPath goes only once it is empty, as
// with runc.
func (m *Manager) Destroy() error {
	// One retry budget for all hierarchies: the library's RemovePath spends up
	// to a second per path, ten seconds on a v1 host for a live container.
	deadline := time.Now().Add(destroyBudget)
	var errs []error
	done := make(map[string]bool, len(m.paths))
	for _, k := range slices.Sorted(maps.Keys(m.paths)) {
		p := m.paths[k]
		if done[p] {
			continue // co-mounted controllers share a directory
		}
		done[p] = true
		if err := rmdirTree(p, deadline); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("cgroups: destroy: %w", err)
	}
	return nil
}

const destroyBudget = time.Second

// rmdirTree removes dir after its sub-cgroups. EBUSY is retried until the
// deadline because processes that were just killed leave their cgroup a
// moment after the runtime sees them exit.
func rmdirTree(dir string, deadline time.Time) error {
	err := unix.Rmdir(dir)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	ents, rerr := os.ReadDir(dir)
	if rerr != nil {
		if errors.Is(rerr, os.ErrNotExist) {
			return nil
		}
		return rerr
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := rmdirTree(filepath.Join(dir, e.Name()), deadline); err != nil {
				return err
			}
		}
	}
	for delay := time.Millisecond; ; delay *= 2 {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		retry := errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EINTR)
		if !retry || time.Now().Add(delay).After(deadline) {
			return &os.PathError{Op: "rmdir", Path: dir, Err: err}
		}
		time.Sleep(delay)
	}
}

// Paths returns controller -> absolute cgroup path (UnifiedKey for the v2
// cgroup), to be saved in the container state and given back to Load.
func (m *Manager) Paths() map[string]string { return maps.Clone(m.paths) }

// Path returns the cgroup of one controller; on a pure v2 host every
// controller shares the single cgroup.
func (m *Manager) Path(controller string) string {
	if m.v1 == nil {
		return m.paths[UnifiedKey]
	}
	return m.paths[controller]
}

// JoinPoints tell a new process how to enter the container's cgroups
// itself, which is much cheaper than being moved: writing a pid to
// cgroup.procs takes a global lock that waits for an RCU grace period
// (milliseconds, up to tens of them here) on every container start. A
// single-threaded process that writes "0" to a v1 hierarchy's "tasks" file
// moves only itself and skips that lock; in cgroup2 the child is cloned
// straight into its cgroup (CLONE_INTO_CGROUP). tasks lists the v1 files
// (one per hierarchy), v2 the cgroup2 directory ("" without one). The
// cgroups must exist (Apply(-1)).
func (m *Manager) JoinPoints() (tasks []string, v2 string) {
	seen := map[string]bool{}
	for k, p := range m.paths {
		if k == UnifiedKey {
			v2 = p
			continue
		}
		if !seen[p] {
			seen[p] = true
			tasks = append(tasks, filepath.Join(p, "tasks"))
		}
	}
	slices.Sort(tasks)
	return tasks, v2
}
