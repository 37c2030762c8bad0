// Package ociruntime drives an OCI runtime binary with runc's command line:
// berth-runtime by default, runc, crun, or any runtime by path.
package ociruntime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Runtime is one runtime binary with its own state directory.
type Runtime struct {
	Path string
	// Root is the runtime's --root: one per runtime, below berth's run
	// root, so berth's containers never mix with others'.
	Root string
}

// Find resolves name: a path, or a binary next to the running berth
// (berth-runtime is installed there), or one on $PATH.
func Find(name, runRoot string) (*Runtime, error) {
	if name == "" {
		name = "berth-runtime"
	}
	path := name
	if !strings.Contains(name, "/") {
		path = ""
		if self, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(self), name); isExecutable(p) {
				path = p
			}
		}
		if path == "" {
			p, err := exec.LookPath(name)
			if err != nil {
				return nil, fmt.Errorf("OCI runtime %q: not next to berth nor on $PATH (give --runtime a path): %w", name, errdefs.ErrNotFound)
			}
			path = p
		}
	}
	if !isExecutable(path) {
		return nil, fmt.Errorf("OCI runtime %s: not an executable file: %w", path, errdefs.ErrNotFound)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	return &Runtime{Path: abs, Root: filepath.Join(runRoot, "runtime", filepath.Base(abs))}, nil
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// Command is the runtime's command line for args, with --root.
func (r *Runtime) Command(ctx context.Context, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, r.Path, append([]string{"--root", r.Root}, args...)...)
}

// run runs a subcommand and returns its standard output; a failure's
// error carries what the runtime wrote to standard error.
func (r *Runtime) run(ctx context.Context, args ...string) ([]byte, error) {
	cmd := r.Command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = err.Error()
		}
		cls := errdefs.ErrFailedPrecond
		if strings.Contains(msg, "does not exist") || strings.Contains(msg, "not found") {
			cls = errdefs.ErrNotFound
		}
		return nil, fmt.Errorf("%s %s: %w", filepath.Base(r.Path), args[0], errdefs.Said(msg, cls))
	}
	return out.Bytes(), nil
}

// Start starts a created container.
func (r *Runtime) Start(ctx context.Context, id string) error {
	_, err := r.run(ctx, "start", id)
	return err
}

// Kill sends sig to the container's init (all processes with all).
func (r *Runtime) Kill(ctx context.Context, id string, sig int, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	_, err := r.run(ctx, append(args, id, strconv.Itoa(sig))...)
	return err
}

// Has reports whether the runtime keeps state for id (runc's layout,
// which crun and berth-runtime share: a directory per container below
// --root). Callers skip a Delete, a process start, when it has none.
func (r *Runtime) Has(id string) bool {
	_, err := os.Stat(filepath.Join(r.Root, id))
	return err == nil
}

// Delete removes the runtime's state of id (force: kill it first).
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	_, err := r.run(ctx, append(args, id)...)
	return err
}

// State is the runtime's view of id.
func (r *Runtime) State(ctx context.Context, id string) (specs.State, error) {
	var st specs.State
	out, err := r.run(ctx, "state", id)
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return st, fmt.Errorf("%s state %s: %v: %w", filepath.Base(r.Path), id, err, errdefs.ErrInvalidArgument)
	}
	return st, nil
}
