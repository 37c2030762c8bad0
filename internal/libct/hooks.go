package libct

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// runHooks runs hooks in order with the state on stdin; the first failure
// stops the list and is returned.
func runHooks(kind string, hooks []specs.Hook, st *specs.State) error {
	return runHookList(kind, hooks, st, false)
}

// warnHooks runs every hook (poststart, poststop): the spec wants a failure
// logged as a warning while the rest of the hooks and the lifecycle go on.
func warnHooks(kind string, hooks []specs.Hook, st *specs.State) {
	runHookList(kind, hooks, st, true)
}

func runHookList(kind string, hooks []specs.Hook, st *specs.State, warn bool) error {
	if len(hooks) == 0 {
		return nil
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	for i, h := range hooks {
		if err := runHook(h, data); err != nil {
			err = fmt.Errorf("%s hook #%d (%s): %w", kind, i, h.Path, err)
			if !warn {
				return err
			}
			warnf("%v", err)
		}
	}
	return nil
}

func runHook(h specs.Hook, state []byte) error {
	ctx := context.Background()
	if h.Timeout != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(*h.Timeout)*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, h.Path)
	if len(h.Args) > 0 {
		cmd.Args = h.Args
	} else {
		cmd.Args = []string{h.Path}
	}
	cmd.Env = h.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Stdin = bytes.NewReader(state)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	// A hook that forks a daemon keeping our pipes open must not hang us.
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("timed out after %ds", *h.Timeout)
	}
	if err != nil {
		if out.Len() > 0 {
			return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out.Bytes()))
		}
		return err
	}
	return nil
}
