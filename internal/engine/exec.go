package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/ociruntime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Spec reads the OCI spec of c's bundle.
func (e *Engine) Spec(c metadata.Container) (*specs.Spec, error) {
	data, err := os.ReadFile(filepath.Join(e.dir(c.ID), "config.json"))
	if err != nil {
		return nil, fmt.Errorf("container %s: bundle: %w", c.Name, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil || spec.Process == nil {
		return nil, fmt.Errorf("container %s: bundle: %v: %w", c.Name, err, errdefs.ErrFailedPrecond)
	}
	return &spec, nil
}

// ExecConfig is a process to run in a running container.
type ExecConfig struct {
	Args    []string
	Env     []string
	User    string // uid[:gid]
	WorkDir string
	TTY     bool
	Detach  bool
	// ConsoleSocket receives the terminal's master for TTY.
	ConsoleSocket string
	// Stdin, Stdout and Stderr are the process's (berth's own when nil).
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// Exec runs a process in c, with the container's process as the template
// (environment, user, capabilities), through the runtime; the process
// inherits stdio unless it has a terminal. It returns the process's exit
// code (0 for Detach).
func (e *Engine) Exec(ctx context.Context, c metadata.Container, x ExecConfig) (int, error) {
	rt, err := e.running(ctx, c)
	if err != nil {
		return 0, err
	}
	if len(x.Args) == 0 {
		return 0, fmt.Errorf("exec: no command: %w", errdefs.ErrInvalidArgument)
	}
	dir := e.dir(c.ID)
	spec, err := e.Spec(c)
	if err != nil {
		return 0, err
	}
	p := *spec.Process
	p.Args, p.Terminal = x.Args, x.TTY
	for _, kv := range x.Env {
		k, _, _ := strings.Cut(kv, "=")
		p.Env = append(slicesDeleteEnv(p.Env, k), kv)
	}
	if x.WorkDir != "" {
		p.Cwd = x.WorkDir
	}
	if x.User != "" {
		u, g, _ := strings.Cut(x.User, ":")
		uid, err1 := strconv.ParseUint(u, 10, 32)
		gid, err2 := strconv.ParseUint(cmp.Or(g, "0"), 10, 32)
		if err1 != nil || err2 != nil {
			return 0, fmt.Errorf("exec --user %q: numeric uid[:gid]: %w", x.User, errdefs.ErrInvalidArgument)
		}
		p.User = specs.User{UID: uint32(uid), GID: uint32(gid)}
	}
	pf, err := os.CreateTemp(dir, "exec-*.json")
	if err != nil {
		return 0, err
	}
	defer os.Remove(pf.Name())
	if err := json.NewEncoder(pf).Encode(p); err != nil {
		pf.Close()
		return 0, err
	}
	pf.Close()
	pidFile := strings.TrimSuffix(pf.Name(), ".json") + ".pid"
	defer os.Remove(pidFile)
	args := []string{"exec", "--process", pf.Name(), "--pid-file", pidFile}
	if x.TTY {
		args = append(args, "--console-socket", x.ConsoleSocket)
	}
	if x.Detach {
		args = append(args, "--detach")
	}
	// Not CommandContext: the runtime's process ending does not end the
	// process in the container; when ctx ends, that one is killed.
	cmd := rt.Command(context.WithoutCancel(ctx), append(args, c.ID)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if x.Stdin != nil || x.Stdout != nil || x.Stderr != nil {
		cmd.Stdin, cmd.Stdout, cmd.Stderr = x.Stdin, x.Stdout, x.Stderr
	}
	cmd.WaitDelay = 2 * time.Second // a child of the process may hold the output open
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		if pid := readPid(pidFile); pid > 0 {
			unix.Kill(pid, unix.SIGKILL)
		}
		<-done
		return 0, fmt.Errorf("exec in %s: %w", c.Name, ctx.Err())
	}
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), nil
		}
		return 0, err
	}
	return 0, nil
}

func slicesDeleteEnv(env []string, k string) []string {
	out := env[:0:0]
	for _, e := range env {
		if !strings.HasPrefix(e, k+"=") {
			out = append(out, e)
		}
	}
	return out
}

// Pause freezes (or, with resume, thaws) c's processes through the runtime.
func (e *Engine) Pause(ctx context.Context, c metadata.Container, resume bool) error {
	rt, err := e.running(ctx, c)
	if err != nil {
		return err
	}
	verb := "pause"
	if resume {
		verb = "resume"
	}
	cmd := rt.Command(ctx, verb, c.ID)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("container %s: %s: %s: %w", c.Name, verb, strings.TrimSpace(string(out)), errdefs.ErrFailedPrecond)
	}
	return nil
}

// Paused reports whether the runtime has c frozen.
func (e *Engine) Paused(ctx context.Context, c metadata.Container) bool {
	rt, err := ociruntime.Find(c.Runtime, e.RunRoot)
	if err != nil || !rt.Has(c.ID) {
		return false
	}
	st, err := rt.State(ctx, c.ID)
	return err == nil && st.Status == "paused"
}

// Update changes a running container's resources through its runtime
// (`update --resources`).
func (e *Engine) Update(ctx context.Context, c metadata.Container, r *specs.LinuxResources) error {
	rt, err := e.running(ctx, c)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(e.dir(c.ID), "resources-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := json.NewEncoder(f).Encode(r); err != nil {
		f.Close()
		return err
	}
	f.Close()
	if out, err := rt.Command(ctx, "update", "--resources", f.Name(), c.ID).CombinedOutput(); err != nil {
		return fmt.Errorf("container %s: update: %s: %w", c.Name, strings.TrimSpace(string(out)), errdefs.ErrFailedPrecond)
	}
	return nil
}
