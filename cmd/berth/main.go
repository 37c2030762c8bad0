// Command berth is the daemonless engine: images today (pull, images),
// containers next (issue 4). Global flags are podman's.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/imagesvc"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/network"
	"github.com/berthdev/berth/internal/rootless"
	"github.com/spf13/cobra"
)

var version = "dev"

type globals struct {
	root, runroot, logLevel, config, registriesConf string
}

var g globals

func main() {
	if len(os.Args) == 2 && os.Args[1] == rootless.PauseArg {
		rootless.Pause() // the holder of an unprivileged user's namespace
		return
	}
	if len(os.Args) == 4 && os.Args[1] == portProxyArg {
		servePortProxy(os.Args[2], os.Args[3]) // a rootless container's published ports
		return
	}
	// A pull's garbage is short-lived buffers: collecting less often costs
	// a few MB of memory and saves a tenth of its CPU.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	root := &cobra.Command{
		Use:           "berth",
		Short:         "Run and manage OCI containers and images, without a daemon",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	defRoot, defRunroot, defConfig := "/var/lib/berth", "/run/berth", "/etc/berth/berth.toml"
	if rootless.Unprivileged() {
		defRoot, defRunroot = rootless.Dirs()
		defConfig = rootless.Config(defConfig)
	}
	f.StringVar(&g.root, "root", defRoot, "store directory (images, snapshots, metadata)")
	f.StringVar(&g.runroot, "runroot", defRunroot, "state directory")
	f.StringVar(&g.logLevel, "log-level", "warn", "log level")
	f.StringVar(&g.config, "config", defConfig, "configuration file (an unprivileged user's: ~/.config/berth/berth.toml when there is one)")
	f.StringVar(&g.registriesConf, "registries-conf", "", "registries.conf (default /etc/berth/registries.conf, then /etc/containers/registries.conf)")
	root.AddCommand(pullCmd(), pushCmd(), imagesCmd("images"), rmiCmd("rmi"), tagCmd(), saveCmd(), loadCmd(),
		imageCmd(), systemCmd(), loginCmd(), logoutCmd(),
		runCmd(), createCmd(), startCmd(), stopCmd(), killCmd(), rmCmd(), psCmd(), logsCmd(), waitCmd(), execCmd(), inspectCmd(),
		restartCmd(), renameCmd(), pauseCmd(false), pauseCmd(true), containerCmd(), infoCmd())
	root.AddCommand(networkCmd(), portCmd(), volumeCmd())
	root.AddCommand(attachCmd(), topCmd(), cpCmd(), statsCmd())
	addCompletions(root)
	if err := root.Execute(); err != nil {
		// A container's (or exec'd command's) own exit code is passed on
		// without a message: it is not berth's error.
		var ee exitError
		if !errors.As(err, &ee) || ee.err != nil {
			fmt.Fprintln(os.Stderr, "Error:", err)
		}
		os.Exit(exitCode(err))
	}
}

// exitCode: berth's own failures are 125, as podman's.
func exitCode(err error) int {
	var e interface{ ExitCode() int }
	if errors.As(err, &e) {
		return e.ExitCode()
	}
	return 125
}

// store opens the store under --root, with the engine over it.
type store struct {
	meta *metadata.DB
	svc  *imagesvc.Service
	eng  *engine.Engine
}

func openStore(ctx context.Context) (*store, error) {
	conf, err := loadConfig()
	if err != nil {
		return nil, err
	}
	eng, err := engine.Open(ctx, engine.StoreOptions{Root: g.root, RunRoot: g.runroot, RegistriesConf: g.registriesConf,
		ParallelDownloads: conf.Images.ParallelDownloads, CNIPluginDirs: conf.Network.CNIPluginDirs, MountProgram: conf.Storage.MountProgram})
	if err != nil {
		return nil, err
	}
	if self, err := os.Executable(); err == nil {
		eng.PortProxy = []string{self, portProxyArg}
	}
	return &store{meta: eng.Meta, svc: eng.Images, eng: eng}, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (s *store) close() { s.meta.Close() }

// storeRun is a command's RunE that opens the store for fn and closes it
// after.
func storeRun(fn func(ctx context.Context, s *store, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		ctx := cmd.Context()
		phase := timer()
		// An unprivileged user's commands run in the user's namespace.
		if err := rootless.Enter(g.runroot); err != nil {
			return err
		}
		s, err := openStore(ctx)
		if err != nil {
			return err
		}
		defer s.close()
		phase("open the store")
		return fn(ctx, s, args)
	}
}

// portProxyArg makes berth an unprivileged user's port proxy.
const portProxyArg = "__port-proxy"

// servePortProxy publishes ports (JSON network.PortMapping list) of the
// network namespace at ns, until killed.
func servePortProxy(ns, ports string) {
	var ms []network.PortMapping
	if err := json.Unmarshal([]byte(ports), &ms); err != nil {
		fmt.Fprintln(os.Stderr, "berth: port proxy:", err)
		os.Exit(2)
	}
	if err := network.ServeProxy(ns, ms); err != nil {
		fmt.Fprintln(os.Stderr, "berth: port proxy:", err)
		os.Exit(1)
	}
}
