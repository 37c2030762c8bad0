package libct

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func wrongState(c *Container, st, want string) error {
	return fmt.Errorf("container %s is %s, not %s: %w", c.ID, st, want, errdefs.ErrFailedPrecond)
}

// Start lets a created container's init exec the process.
func (c *Container) Start() error {
	if st := c.Status(); st != Created {
		return wrongState(c, st, Created)
	}
	if !c.HasProcess {
		return fmt.Errorf("container %s has no process to start (config.json has no process): %w", c.ID, errdefs.ErrFailedPrecond)
	}
	fifoPath := filepath.Join(c.dir, fifoName)
	fd, err := unix.Open(fifoPath, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("container %s: open exec fifo: %w", c.ID, err)
	}
	defer unix.Close(fd)
	// init blocks in open(O_WRONLY) until we are here, then writes a byte.
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 100)
		if err != nil && err != unix.EINTR {
			return err
		}
		if n > 0 && pfd[0].Revents&unix.POLLIN != 0 {
			break
		}
		if !c.initAlive() {
			os.Remove(fifoPath)
			return fmt.Errorf("container %s: init exited before start", c.ID)
		}
	}
	// init keeps the fifo open until exec closes it: read to EOF. Anything
	// after the first byte is init's error.
	slog.Debug("start: init released", "id", c.ID)
	msg, err := readToEOF(fd)
	slog.Debug("start: process exec'd", "id", c.ID)
	os.Remove(fifoPath)
	if err != nil {
		return fmt.Errorf("container %s: exec fifo: %w", c.ID, err)
	}
	if len(msg) > 1 {
		return fmt.Errorf("container %s: start: %s", c.ID, msg[1:])
	}
	if h := c.Hooks; h != nil && len(h.Poststart) > 0 {
		warnHooks("poststart", h.Poststart, c.State())
	}
	return nil
}

func readToEOF(fd int) ([]byte, error) {
	var out []byte
	buf := make([]byte, 4096)
	for {
		n, err := unix.Read(fd, buf)
		if n > 0 {
			out = append(out, buf[:n]...)
			continue
		}
		if err == unix.EAGAIN || err == unix.EINTR {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			unix.Poll(pfd, -1)
			continue
		}
		if err != nil {
			return out, err
		}
		return out, nil
	}
}

func warnf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "berth-runtime: warning: "+format+"\n", args...)
}

// Signal sends sig to the init, or to every process of the container.
func (c *Container) Signal(sig unix.Signal, all bool) error {
	st := c.Status()
	if st == Stopped && !all {
		return fmt.Errorf("container %s is not running: %w", c.ID, errdefs.ErrFailedPrecond)
	}
	if !all {
		if err := c.signal(sig); err != nil {
			return err
		}
		// A frozen task dies only once thawed (cgroup v1).
		if st == Paused && sig == unix.SIGKILL {
			if m := c.cgroups(); m != nil {
				m.Thaw()
			}
		}
		return nil
	}
	m := c.cgroups()
	if m == nil {
		return c.signal(sig)
	}
	if st == Paused && sig == unix.SIGKILL {
		defer m.Thaw()
	}
	pids, err := m.Pids()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		unix.Kill(pid, sig)
	}
	return nil
}

// Delete removes a stopped (or created) container; force kills a running one first.
func (c *Container) Delete(force bool) error {
	st := c.Status()
	switch st {
	case Stopped:
	case Created:
		c.killAll()
	default:
		if !force {
			return fmt.Errorf("container %s is %s: stop it first or use --force: %w", c.ID, st, errdefs.ErrFailedPrecond)
		}
		c.killAll()
	}
	// Processes left without a pid namespace of their own die with the container.
	if !c.OwnPidNS {
		if m := c.cgroups(); m != nil {
			if pids, err := m.Pids(); err == nil {
				for _, p := range pids {
					unix.Kill(p, unix.SIGKILL)
				}
			}
		}
	}
	slog.Debug("delete: processes gone", "id", c.ID)
	if m := c.cgroups(); m != nil {
		if err := m.Destroy(); err != nil {
			warnf("container %s: remove cgroups: %v", c.ID, err)
		}
	}
	if h := c.Hooks; h != nil && len(h.Poststop) > 0 {
		st := c.State()
		st.Status = Stopped
		st.Pid = 0
		warnHooks("poststop", h.Poststop, st)
	}
	slog.Debug("delete: cgroups removed", "id", c.ID)
	return os.RemoveAll(c.dir)
}

// killAll SIGKILLs the container and waits (briefly) until init is gone.
func (c *Container) killAll() {
	if m := c.cgroups(); m != nil {
		m.Thaw()
	}
	c.Signal(unix.SIGKILL, true)
	unix.Kill(c.Pid, unix.SIGKILL)
	for i := 0; i < 1000 && c.initAlive(); i++ {
		// Our own child when run in the foreground: reap it.
		var ws unix.WaitStatus
		unix.Wait4(c.Pid, &ws, unix.WNOHANG, nil)
		time.Sleep(time.Millisecond * 5)
	}
}

// Pause freezes every process of the container.
func (c *Container) Pause() error {
	if st := c.Status(); st != Running && st != Created {
		return wrongState(c, st, Running)
	}
	m := c.cgroups()
	if m == nil {
		return fmt.Errorf("container %s has no cgroup to freeze: %w", c.ID, errdefs.ErrFailedPrecond)
	}
	return m.Freeze()
}

// Resume thaws a paused container.
func (c *Container) Resume() error {
	if st := c.Status(); st != Paused {
		return wrongState(c, st, Paused)
	}
	return c.cgroups().Thaw()
}

// Pids lists the container's processes.
func (c *Container) Pids() ([]int, error) {
	m := c.cgroups()
	if m == nil {
		if c.initAlive() {
			return []int{c.Pid}, nil
		}
		return nil, nil
	}
	return m.Pids()
}

// Update changes the container's resources and records them.
func (c *Container) Update(r *specs.LinuxResources) error {
	if st := c.Status(); st == Stopped {
		return wrongState(c, st, Running)
	}
	m := c.cgroups()
	if m == nil {
		return fmt.Errorf("container %s has no cgroups: %w", c.ID, errdefs.ErrFailedPrecond)
	}
	// Device rules are set once at create; nil leaves them as they are.
	set := *r
	set.Devices = nil
	if err := m.Set(&set); err != nil {
		return err
	}
	spec, err := c.Spec()
	if err != nil {
		return err
	}
	if spec.Linux.Resources != nil {
		r.Devices = spec.Linux.Resources.Devices
	}
	spec.Linux.Resources = r
	if err := c.setSpec(spec); err != nil {
		return err
	}
	return c.save()
}

// Stats returns the container's resource usage.
func (c *Container) Stats() (any, error) {
	m := c.cgroups()
	if m == nil {
		return nil, fmt.Errorf("container %s has no cgroups: %w", c.ID, errdefs.ErrFailedPrecond)
	}
	return m.Stats()
}
