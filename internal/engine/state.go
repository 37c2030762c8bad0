package engine

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/monitor"
	"github.com/berthdev/berth/internal/ociruntime"
	"github.com/berthdev/berth/internal/procfs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Container states.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusExited  = "exited"
)

// State is what a container is doing, read from its monitor's files and
// processes, so it is right even when the container was killed from
// outside or berth was not running.
type State struct {
	Status     string
	Pid        int
	ExitCode   int
	StartedAt  time.Time
	FinishedAt time.Time
	Error      string
}

// State reads c's state.
func (e *Engine) State(ctx context.Context, c metadata.Container) (State, error) {
	dir := e.dir(c.ID)
	var st State
	if b, err := os.ReadFile(filepath.Join(dir, "started")); err == nil {
		st.StartedAt, _ = time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	}
	if x, err := monitor.ReadExit(dir); err == nil {
		st.Status, st.ExitCode, st.FinishedAt, st.Error = StatusExited, x.Code, x.ExitedAt, x.Error
		return st, nil
	}
	monPid := readPid(filepath.Join(dir, monitor.MonitorPid))
	if monPid == 0 {
		st.Status = StatusCreated
		return st, nil
	}
	if procfs.Runs(monPid, c.ID) {
		st.Status, st.Pid = StatusRunning, readPid(filepath.Join(dir, monitor.PidFile))
		if st.StartedAt.IsZero() {
			st.Status = StatusCreated // created by its monitor, not started
		}
		return st, nil
	}
	// The monitor died without writing the exit (killed): the runtime
	// knows whether the container still runs.
	rt, err := ociruntime.Find(c.Runtime, e.RunRoot)
	if err == nil {
		if rs, err := rt.State(ctx, c.ID); err == nil && rs.Status == specs.StateRunning {
			st.Status, st.Pid = StatusRunning, rs.Pid
			return st, nil
		}
	}
	st.Status, st.ExitCode, st.Error = StatusExited, 255, "its monitor was killed; the exit code is unknown"
	return st, nil
}

func readPid(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// Wait blocks until c has exited and returns its exit code.
func (e *Engine) Wait(ctx context.Context, c metadata.Container) (int, error) {
	for {
		st, err := e.State(ctx, c)
		if err != nil {
			return 0, err
		}
		if st.Status == StatusExited {
			return st.ExitCode, nil
		}
		if st.Status == StatusCreated && st.StartedAt.IsZero() && readPid(filepath.Join(e.dir(c.ID), monitor.MonitorPid)) == 0 {
			return 0, fmt.Errorf("container %s was never started: %w", c.Name, errdefs.ErrFailedPrecond)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// running returns c's runtime, or ErrFailedPrecond if c is not running.
func (e *Engine) running(ctx context.Context, c metadata.Container) (*ociruntime.Runtime, error) {
	st, err := e.State(ctx, c)
	if err != nil {
		return nil, err
	}
	if st.Status != StatusRunning {
		return nil, fmt.Errorf("container %s is not running: %w", c.Name, errdefs.ErrFailedPrecond)
	}
	return ociruntime.Find(c.Runtime, e.RunRoot)
}

// ReopenLog has c's monitor open its log's path again (after the file
// was renamed away, as the kubelet rotates logs) and waits until it has.
func (e *Engine) ReopenLog(ctx context.Context, c metadata.Container) error {
	st, err := e.State(ctx, c)
	if err != nil {
		return err
	}
	pid := readPid(filepath.Join(e.dir(c.ID), monitor.MonitorPid))
	if st.Status != StatusRunning || !procfs.Runs(pid, c.ID) {
		return fmt.Errorf("container %s is not running: %w", c.Name, errdefs.ErrFailedPrecond)
	}
	if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
		return fmt.Errorf("container %s: its monitor: %w", c.Name, err)
	}
	path := e.LogPath(c)
	for i := 0; i < 100; i++ {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("container %s: the log %s was not opened again: %w", c.Name, path, errdefs.ErrUnavailable)
}
