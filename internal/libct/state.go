package libct

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
	"github.com/berthdev/berth/internal/libct/cgroups"
	"github.com/berthdev/berth/internal/procfs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

const (
	stateFile = "state.json"
	fifoName  = "exec.fifo"
)

// Status values of the OCI runtime spec, plus paused (runc's extension).
const (
	Creating = "creating"
	Created  = "created"
	Running  = "running"
	Paused   = "paused"
	Stopped  = "stopped"
)

// Container is one container's record under the runtime's --root.
type Container struct {
	ID          string            `json:"id"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Pid         int               `json:"pid"`
	PidStart    uint64            `json:"pid_start"`
	Created     time.Time         `json:"created"`
	CgroupPaths map[string]string `json:"cgroup_paths,omitempty"`
	Owner       string            `json:"owner,omitempty"`
	// What the frequent commands (state, start, kill, delete, list) need
	// of the config, so that they never decode the whole spec: in a fresh
	// process that costs more than everything else they do.
	OCIVersion  string            `json:"oci_version"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Hooks       *specs.Hooks      `json:"hooks,omitempty"`
	HasProcess  bool              `json:"has_process"`
	OwnPidNS    bool              `json:"own_pid_ns"`
	// RawSpec is the config as created (and updated); Spec decodes it.
	RawSpec json.RawMessage `json:"spec"`

	spec *specs.Spec
	dir  string
}

// newContainer records spec's summary fields.
func newContainer(id, dir string, spec *specs.Spec) (*Container, error) {
	raw, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	return &Container{ID: id, dir: dir, spec: spec, RawSpec: raw, OCIVersion: spec.Version,
		Annotations: spec.Annotations, Hooks: spec.Hooks, HasProcess: spec.Process != nil,
		OwnPidNS: hasNS(spec.Linux, specs.PIDNamespace) && nsPath(spec.Linux, specs.PIDNamespace) == ""}, nil
}

// Spec is the container's config, decoded on first use.
func (c *Container) Spec() (*specs.Spec, error) {
	if c.spec == nil {
		var s specs.Spec
		if err := json.Unmarshal(c.RawSpec, &s); err != nil {
			return nil, fmt.Errorf("container %s: corrupt config in state: %w", c.ID, err)
		}
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		c.spec = &s
	}
	return c.spec, nil
}

// setSpec replaces the recorded config (update).
func (c *Container) setSpec(s *specs.Spec) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	c.spec, c.RawSpec = s, raw
	return nil
}

// ValidateID refuses ids that could escape the state directory or confuse
// the tools that print them.
func ValidateID(id string) error {
	if id == "" || len(id) > 1024 || !idChars(id) || id == "." || id == ".." {
		return fmt.Errorf("container id %q: must be 1-1024 characters of [A-Za-z0-9_+.-], not . or ..: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// idChars checks [A-Za-z0-9_+.-] by hand: a regexp compiled at package
// init would cost every runtime start, whatever the command.
func idChars(id string) bool {
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// Dir is where the container's state lives.
func Dir(root, id string) string { return filepath.Join(root, id) }

// Load reads a container's record. A missing container is ErrNotFound.
func Load(root, id string) (*Container, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	dir := Dir(root, id)
	data, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
		}
		return nil, err
	}
	c := &Container{}
	if err := json.Unmarshal(data, c); err != nil {
		return nil, fmt.Errorf("container %s: corrupt state %s: %w", id, filepath.Join(dir, stateFile), err)
	}
	c.dir = dir
	return c, nil
}

// List returns every container under root, skipping entries that are not
// containers (or are being created).
func List(root string) ([]*Container, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []*Container
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		c, err := Load(root, e.Name())
		if err != nil {
			continue
		}
		out = append(out, c)
	}
	return out, nil
}

// Lock takes the container's exclusive lock; every command that changes the
// container holds it. The record is re-read under the lock because another
// command may have changed or deleted it meanwhile.
func LockAndLoad(root, id string) (*Container, *fsutil.Lock, error) {
	if err := ValidateID(id); err != nil {
		return nil, nil, err
	}
	l, err := fsutil.LockPath(Dir(root, id))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
		}
		return nil, nil, err
	}
	c, err := Load(root, id)
	if err != nil {
		l.Unlock()
		return nil, nil, err
	}
	return c, l, nil
}

func (c *Container) save() error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return fsutil.ReplaceFile(filepath.Join(c.dir, stateFile), data, 0o600)
}

// Status derives the container's status from the system, never from a
// stored field, so it is right even after a crash or an outside kill.
func (c *Container) Status() string {
	if !c.initAlive() {
		return Stopped
	}
	if _, err := os.Lstat(filepath.Join(c.dir, fifoName)); err == nil {
		return Created
	}
	if m := c.cgroups(); m != nil {
		if frozen, err := m.Frozen(); err == nil && frozen {
			return Paused
		}
	}
	return Running
}

// initAlive tells whether the container's init still runs: the pid exists,
// is not a zombie, and started when ours did (pids are reused).
func (c *Container) initAlive() bool {
	if c.Pid <= 0 {
		return false
	}
	st, err := procfs.ReadStat(c.Pid)
	if err != nil || st.State() == 'Z' || st.State() == 'X' {
		return false
	}
	return st.StartTime() == c.PidStart
}

func (c *Container) cgroups() *cgroups.Manager {
	if len(c.CgroupPaths) == 0 {
		return nil
	}
	m, err := cgroups.Load(c.CgroupPaths)
	if err != nil {
		return nil
	}
	return m
}

// State is the spec's state document.
func (c *Container) State() *specs.State {
	st := &specs.State{
		Version:     specs.Version,
		ID:          c.ID,
		Status:      specs.ContainerState(c.Status()),
		Bundle:      c.Bundle,
		Annotations: c.Annotations,
	}
	if st.Status != Stopped {
		st.Pid = c.Pid
	}
	return st
}

// signal sends sig to the init, unless it is gone (or its pid was reused).
func (c *Container) signal(sig unix.Signal) error {
	if !c.initAlive() {
		return fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecond)
	}
	return unix.Kill(c.Pid, sig)
}
