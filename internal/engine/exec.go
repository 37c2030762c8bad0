package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/ociruntime"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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
	args := []string{"exec", "--process", pf.Name()}
	if x.TTY {
		args = append(args, "--console-socket", x.ConsoleSocket)
	}
	if x.Detach {
		args = append(args, "--detach")
	}
	cmd := rt.Command(ctx, append(args, c.ID)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
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
