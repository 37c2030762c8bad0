package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/spf13/cobra"
)

func attachCmd() *cobra.Command {
	var noStdin, sigProxy bool
	var detachKeys string
	cmd := &cobra.Command{
		Use:   "attach [flags] CONTAINER",
		Short: "Attach to a running container's output (and input, if it was run with -i)",
		Args:  cobra.ExactArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			keys, err := parseDetachKeys(detachKeys)
			if err != nil {
				return err
			}
			c, err := s.meta.GetContainer(ctx, args[0])
			if err != nil {
				return err
			}
			conn, cfg, err := s.eng.Attach(ctx, c)
			if err != nil {
				// It may have exited just now: its exit code, as if we had seen it.
				if st, serr := s.eng.State(ctx, c); errdefs.IsUnavailable(err) && serr == nil && st.Status == engine.StatusExited {
					return containerExit(st.ExitCode)
				}
				return err
			}
			a := &attachment{conn: conn, stdin: cfg.Stdin && !noStdin, tty: cfg.TTY, keepStdin: true}
			if a.stdin {
				a.detachKeys = keys
			}
			if sigProxy {
				a.proxy = signalProxy(ctx, s, c)
			}
			code, err := a.stream()
			if errors.Is(err, errDetached) {
				if a.tty {
					fmt.Fprint(os.Stderr, "\r\n")
				}
				return nil
			}
			if err != nil {
				// The monitor was ending as we came: the exit is recorded.
				if st, serr := s.eng.State(ctx, c); serr == nil && st.Status == engine.StatusExited {
					return containerExit(st.ExitCode)
				}
				return err
			}
			return containerExit(code)
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&noStdin, "no-stdin", false, "do not pass standard input")
	f.BoolVar(&sigProxy, "sig-proxy", true, "pass the signals berth gets to the container (not with a terminal: keys go as input then)")
	f.StringVar(&detachKeys, "detach-keys", "ctrl-p,ctrl-q", `keys that detach and leave the container running ("" for none)`)
	return cmd
}

// containerExit is the container's exit code as berth's: nil for 0.
func containerExit(code int) error {
	if code != 0 {
		return exitError{code, nil}
	}
	return nil
}

// parseDetachKeys reads docker's --detach-keys: comma-separated keys,
// each a character or ctrl-<char> (a-z, @, [, \, ], ^, _).
func parseDetachKeys(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	var keys []byte
	for k := range strings.SplitSeq(s, ",") {
		switch {
		case len(k) == 1:
			keys = append(keys, k[0])
		case len(k) == 6 && strings.HasPrefix(strings.ToLower(k), "ctrl-"):
			ch := k[5]
			switch {
			case ch >= 'a' && ch <= 'z':
				keys = append(keys, ch-'a'+1)
			case ch >= 'A' && ch <= 'Z':
				keys = append(keys, ch-'A'+1)
			case strings.IndexByte(`@[\]^_`, ch) >= 0:
				keys = append(keys, ch-'@')
			default:
				return nil, fmt.Errorf("--detach-keys %q: ctrl- goes with a-z, @, [, \\, ], ^ or _: %w", s, errdefs.ErrInvalidArgument)
			}
		default:
			return nil, fmt.Errorf("--detach-keys %q: comma-separated characters or ctrl-<char>, e.g. ctrl-p,ctrl-q: %w", s, errdefs.ErrInvalidArgument)
		}
	}
	return keys, nil
}
