// Command berth-runtime is an OCI runtime with runc's command line.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/libct"
	_ "github.com/berthdev/berth/internal/libct/nsenter"
	"github.com/moby/sys/userns"
	"github.com/spf13/cobra"
)

// version is set at build time.
var version = "dev"

type globals struct {
	root          string
	log           string
	logFormat     string
	debug         bool
	systemdCgroup bool
}

var g globals

func main() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libct.Init()
	}
	root := newRoot()
	if err := root.Execute(); err != nil {
		logError(err)
		os.Exit(exitCode(err))
	}
}

func exitCode(err error) int {
	if e, ok := err.(exitError); ok {
		return int(e)
	}
	return 1
}

// exitError carries a container process's exit status through cobra.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func logError(err error) {
	if _, ok := err.(exitError); ok {
		return
	}
	msg := err.Error()
	fmt.Fprintln(os.Stderr, "berth-runtime: "+msg)
	if g.log != "" {
		// containerd's shim and podman read the last error from this file.
		if f, ferr := os.OpenFile(g.log, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); ferr == nil {
			newLogger(f).Error(msg)
			f.Close()
		}
	}
}

// lazyFile opens its file for appending on the first write, so that a
// command that logs nothing does not pay for the open.
type lazyFile struct {
	path string
	f    *os.File
}

func (l *lazyFile) Write(b []byte) (int, error) {
	if l.f == nil {
		f, err := os.OpenFile(l.path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return 0, err
		}
		l.f = f
	}
	return l.f.Write(b)
}

func newLogger(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: slog.LevelWarn, ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey && len(groups) == 0 {
			// Microseconds: --debug is how step timings are read.
			a.Value = slog.StringValue(a.Value.Time().UTC().Format("2006-01-02T15:04:05.000000Z"))
		}
		if a.Key == slog.LevelKey {
			// runc's lower-case level names are what the shims parse.
			a.Value = slog.StringValue(strings.ToLower(a.Value.String()))
		}
		return a
	}}
	if g.debug {
		opts.Level = slog.LevelDebug
	}
	if g.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "berth-runtime",
		Short:         "Run OCI containers (runc-compatible command line)",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if g.systemdCgroup {
				return fmt.Errorf("--systemd-cgroup: the systemd cgroup driver is not supported by berth-runtime yet; use cgroupfs: %w", errdefs.ErrNotImplemented)
			}
			switch g.logFormat {
			case "text", "json":
			default:
				return fmt.Errorf("--log-format %q: must be text or json: %w", g.logFormat, errdefs.ErrInvalidArgument)
			}
			// Warnings (and with --debug step timings) go to --log, like
			// runc's; without it to stderr. The file opens on first write.
			var w io.Writer = os.Stderr
			if g.log != "" {
				w = &lazyFile{path: g.log}
			}
			slog.SetDefault(newLogger(w))
			slog.Debug("start", "command", cmd.Name())
			return nil
		},
	}
	root.SetVersionTemplate("berth-runtime version {{.Version}}\nspec: " + specVersion() + "\n")
	f := root.PersistentFlags()
	defRoot := "/run/berth-runtime"
	if x := os.Getenv("XDG_RUNTIME_DIR"); x != "" && unprivileged() {
		defRoot = x + "/berth-runtime"
	}
	f.StringVar(&g.root, "root", defRoot, "directory for the containers' state")
	f.StringVar(&g.log, "log", "", "log file (default: stderr only)")
	f.StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	f.BoolVar(&g.debug, "debug", false, "log debug messages")
	f.BoolVar(&g.systemdCgroup, "systemd-cgroup", false, "use systemd to manage cgroups (not supported yet)")
	f.String("criu", "", "ignored (checkpointing is not supported)")
	f.String("rootless", "auto", "ignored: rootless mode is detected")
	f.MarkHidden("criu")
	f.MarkHidden("rootless")
	root.AddCommand(createCmd(), startCmd(), runCmd(), stateCmd(), killCmd(), deleteCmd(), listCmd(),
		psCmd(), specCmd(), featuresCmd(), execCmd(), pauseCmd(), resumeCmd(), eventsCmd(), updateCmd())
	return root
}

func ctx() context.Context { return context.Background() }

// oneID checks that the command got exactly one container id.
func oneID(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%s: expected one container id, got %d arguments: %w", cmd.Name(), len(args), errdefs.ErrInvalidArgument)
	}
	return libct.ValidateID(args[0])
}

func stdio() [3]*os.File { return [3]*os.File{os.Stdin, os.Stdout, os.Stderr} }

// locked runs op on the container while holding its lock, so that
// concurrent commands on one container never interleave.
func locked(id string, op func(*libct.Container) error) error {
	c, l, err := libct.LockAndLoad(g.root, id)
	if err != nil {
		return err
	}
	defer l.Unlock()
	return op(c)
}

// unprivileged: run by a user, or by the root of a user namespace that
// an unprivileged engine made (rootless podman runs its runtime so, with
// the user's XDG_RUNTIME_DIR and USER), as runc tells them.
func unprivileged() bool {
	if os.Geteuid() != 0 {
		return true
	}
	if !userns.RunningInUserNS() {
		return false
	}
	u, ok := os.LookupEnv("USER")
	return !ok || u != "root"
}
