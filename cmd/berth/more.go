package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/ociruntime"
	"github.com/spf13/cobra"
)

func restartCmd() *cobra.Command {
	var timeout int
	cmd := &cobra.Command{
		Use: "restart [flags] CONTAINER...", Short: "Stop and start containers", Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			return eachContainer(ctx, s, args, func(c metadata.Container) error {
				if err := s.eng.Stop(ctx, c, time.Duration(timeout)*time.Second); err != nil {
					return err
				}
				_, err := s.eng.Start(ctx, c.ID)
				return err
			})
		}),
	}
	cmd.Flags().IntVarP(&timeout, "time", "t", 10, "seconds to wait before SIGKILL")
	return cmd
}

func renameCmd() *cobra.Command {
	return &cobra.Command{
		Use: "rename CONTAINER NAME", Short: "Rename a container", Args: cobra.ExactArgs(2),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			c, err := s.meta.GetContainer(ctx, args[0])
			if err != nil {
				return err
			}
			return s.meta.RenameContainer(ctx, c.ID, args[1])
		}),
	}
}

func pauseCmd(resume bool) *cobra.Command {
	use, short := "pause", "Freeze all processes of containers"
	if resume {
		use, short = "unpause", "Thaw paused containers"
	}
	return &cobra.Command{
		Use: use + " CONTAINER...", Short: short, Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			return eachContainer(ctx, s, args, func(c metadata.Container) error { return s.eng.Pause(ctx, c, resume) })
		}),
	}
}

func containerCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "container", Short: "Manage containers"}
	prune := &cobra.Command{
		Use: "prune", Short: "Remove all stopped containers", Args: cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			list, err := s.meta.ListContainers(ctx)
			if err != nil {
				return err
			}
			for _, c := range list {
				st, err := s.eng.State(ctx, c)
				if err != nil || st.Status == engine.StatusRunning {
					continue
				}
				if err := s.eng.Remove(ctx, c, false); err != nil {
					return err
				}
				fmt.Println(c.ID)
			}
			return nil
		}),
	}
	cmd.AddCommand(prune, runCmd(), createCmd(), startCmd(), stopCmd(), killCmd(), rmCmd(), psCmd(), logsCmd(), waitCmd(),
		execCmd(), inspectCmd(), restartCmd(), renameCmd(), pauseCmd(false), pauseCmd(true), attachCmd(), topCmd(), cpCmd(), statsCmd(), portCmd())
	for _, c := range cmd.Commands() {
		if c.Name() == "ps" {
			c.Aliases = append(c.Aliases, "ls", "list")
		}
	}
	return cmd
}

func infoCmd() *cobra.Command {
	return &cobra.Command{
		Use: "info", Short: "Show versions, store paths, the cgroup layout and the runtimes found", Args: cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			kernel := "unknown"
			if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
				kernel = strings.TrimSpace(string(b))
			}
			cg := "v1"
			if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
				cg = "v2"
			} else if _, err := os.Stat("/sys/fs/cgroup/unified/cgroup.controllers"); err == nil {
				cg = "hybrid (v1, with cgroup2 at /sys/fs/cgroup/unified)"
			}
			imgs, _ := s.meta.ListImages(ctx, nil)
			ctrs, _ := s.meta.ListContainers(ctx)
			fmt.Printf("berth:\n  version: %s\n  go: %s\n", version, runtime.Version())
			fmt.Printf("host:\n  kernel: %s\n  arch: %s\n  cgroups: %s\n", kernel, runtime.GOARCH, cg)
			fmt.Printf("store:\n  root: %s\n  runroot: %s\n  images: %d\n  containers: %d\n  monitor: %s\n", g.root, g.runroot, len(imgs), len(ctrs), s.eng.Monitor)
			fmt.Println("runtimes:")
			for _, name := range []string{"berth-runtime", "runc", "crun"} {
				if rt, err := findRuntime(name); err == nil {
					fmt.Printf("  %s: %s\n", name, rt)
				}
			}
			nets, _ := s.eng.Networks.List()
			vols, _ := s.eng.ListVolumes()
			bridge := "not found"
			for _, d := range s.eng.Networks.PluginDirs {
				if fileExists(filepath.Join(d, "bridge")) {
					bridge = d
					break
				}
			}
			fmt.Printf("network:\n  cni plugins: %s\n  networks: %d\n  volumes: %d\n", bridge, len(nets), len(vols))
			return nil
		}),
	}
}

func findRuntime(name string) (string, error) {
	rt, err := ociruntime.Find(name, g.runroot)
	if err != nil {
		return "", err
	}
	return rt.Path, nil
}

func resetCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use: "reset [flags]", Short: "Remove every container and image berth made, and its store", Args: cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			if !force {
				return fmt.Errorf("this removes all of berth's containers, images and data under %s and %s: confirm with --force", g.root, g.runroot)
			}
			list, err := s.meta.ListContainers(ctx)
			if err != nil {
				return err
			}
			for _, c := range list {
				if err := s.eng.Remove(ctx, c, true); err != nil {
					return err
				}
			}
			nets, err := s.eng.Networks.List()
			if err != nil {
				return err
			}
			for _, n := range nets { // their bridges go too
				if err := s.eng.Networks.Remove(n.Name); err != nil {
					return err
				}
			}
			s.close()
			if err := os.RemoveAll(g.root); err != nil {
				return err
			}
			return os.RemoveAll(g.runroot)
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask")
	return cmd
}
