package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
)

// addVolume reads one -v: HOST-DIR:PATH[:OPTS] (a bind mount; the host
// path is absolute or starts with "."), NAME:PATH[:OPTS] (a named volume,
// made if missing) or PATH (an anonymous volume). OPTS: ro or rw.
func addVolume(cfg *engine.Config, v string) error {
	parts := strings.Split(v, ":")
	bad := func(why string) error {
		return fmt.Errorf("-v %q: %s; want HOST-DIR:PATH[:ro], VOLUME:PATH[:ro] or PATH: %w", v, why, errdefs.ErrInvalidArgument)
	}
	if len(parts) > 3 {
		return bad("too many ':'")
	}
	if len(parts) == 1 {
		if !filepath.IsAbs(v) {
			return bad("the path in the container must be absolute")
		}
		cfg.Volumes = append(cfg.Volumes, engine.VolumeMount{Destination: v, Anonymous: true})
		return nil
	}
	src, dst := parts[0], parts[1]
	if !filepath.IsAbs(dst) {
		return bad("the path in the container must be absolute")
	}
	ro := false
	if len(parts) == 3 {
		for o := range strings.SplitSeq(parts[2], ",") {
			switch o {
			case "ro":
				ro = true
			case "rw", "z", "Z": // SELinux labels: nothing to do without SELinux
			default:
				return bad("option " + o + " (ro or rw)")
			}
		}
	}
	if !filepath.IsAbs(src) && !strings.HasPrefix(src, ".") {
		if !engine.ValidVolumeName(src) {
			return bad("volume name " + src)
		}
		cfg.Volumes = append(cfg.Volumes, engine.VolumeMount{Name: src, Destination: dst, ReadOnly: ro})
		return nil
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return err
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("-v %q: %w", v, err)
	}
	opts := []string{"rbind", "rprivate"}
	if ro {
		opts = append(opts, "ro", "rro") // submounts read-only too, as docker 25 does (runtimes without "rro" keep "ro")
	}
	cfg.Mounts = append(cfg.Mounts, specs.Mount{Destination: dst, Type: "bind", Source: abs, Options: opts})
	return nil
}

// addMount reads one --mount, docker's and podman's comma-separated
// key=value form: type (bind, volume, tmpfs or image), source (src),
// destination (dst, target), readonly (ro), and subpath for an image;
// tmpfs-size and tmpfs-mode for a tmpfs. An image mount is read-only.
func addMount(cfg *engine.Config, m string) error {
	bad := func(why string) error {
		return fmt.Errorf("--mount %q: %s: %w", m, why, errdefs.ErrInvalidArgument)
	}
	kv := map[string]string{}
	ro, rw := false, false
	for f := range strings.SplitSeq(m, ",") {
		k, v, hasValue := strings.Cut(strings.TrimSpace(f), "=")
		switch k {
		case "src":
			k = "source"
		case "dst", "target":
			k = "destination"
		case "ro", "readonly":
			switch v {
			case "", "true", "1":
				ro = true
			case "false", "0":
			default:
				return bad(k + "=" + v + ": true or false")
			}
			continue
		case "rw":
			switch v {
			case "", "true", "1":
				rw = true
			case "false", "0":
				ro = true
			default:
				return bad("rw=" + v + ": true or false")
			}
			continue
		}
		if !hasValue || v == "" {
			return bad(k + " needs a value")
		}
		if _, dup := kv[k]; dup {
			return bad(k + " given twice")
		}
		kv[k] = v
	}
	typ, src, dst := cmp.Or(kv["type"], "volume"), kv["source"], kv["destination"]
	delete(kv, "type")
	delete(kv, "source")
	delete(kv, "destination")
	if !filepath.IsAbs(dst) {
		return bad("destination: an absolute path in the container")
	}
	allowed := map[string][]string{"tmpfs": {"tmpfs-size", "tmpfs-mode"}, "image": {"subpath"}}[typ]
	for k := range kv {
		if !slices.Contains(allowed, k) {
			return bad("unknown key " + k + " for type " + typ)
		}
	}
	roOpt := ""
	if ro {
		roOpt = ":ro"
	}
	switch typ {
	case "bind":
		if src == "" {
			return bad("a bind needs a source")
		}
		if !filepath.IsAbs(src) && !strings.HasPrefix(src, ".") {
			src = "./" + src // a path, never a volume's name
		}
		return addVolume(cfg, src+":"+dst+roOpt)
	case "volume":
		if src == "" {
			return addVolume(cfg, dst)
		}
		if filepath.IsAbs(src) || strings.HasPrefix(src, ".") {
			return bad("a volume's source is its name")
		}
		return addVolume(cfg, src+":"+dst+roOpt)
	case "tmpfs":
		if src != "" {
			return bad("a tmpfs has no source")
		}
		opts := []string{"nosuid", "nodev"}
		if v := kv["tmpfs-size"]; v != "" {
			n, err := parseSize(v)
			if err != nil {
				return bad("tmpfs-size: " + err.Error())
			}
			opts = append(opts, fmt.Sprintf("size=%d", n))
		}
		if v := kv["tmpfs-mode"]; v != "" {
			if _, err := strconv.ParseUint(v, 8, 32); err != nil {
				return bad("tmpfs-mode " + v + ": octal")
			}
			opts = append(opts, "mode="+v)
		}
		if ro {
			opts = append(opts, "ro")
		}
		cfg.Mounts = append(cfg.Mounts, specs.Mount{Destination: dst, Type: "tmpfs", Source: "tmpfs", Options: opts})
		return nil
	case "image":
		if src == "" {
			return bad("an image mount needs the image as its source")
		}
		sub := kv["subpath"]
		if sub != "" {
			if !filepath.IsLocal(sub) {
				return bad("subpath " + sub + ": a relative path inside the image")
			}
			sub = filepath.Clean(sub)
		}
		if rw {
			return bad("an image mount is read-only")
		}
		cfg.ImageVolumes = append(cfg.ImageVolumes, engine.ImageVolume{Image: src, Destination: dst, SubPath: sub})
		return nil
	}
	return bad("type " + typ + ": bind, volume, tmpfs or image")
}

func volumeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "volume", Short: "Manage volumes"}
	cmd.AddCommand(volumeCreateCmd(), volumeLsCmd(), volumeRmCmd(), volumeInspectCmd(), volumePruneCmd())
	return cmd
}

func volumeCreateCmd() *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use: "create [flags] [NAME]", Short: "Make a volume (a random name without NAME)", Args: cobra.MaximumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			l, err := parseLabels(labels)
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			v, err := s.eng.CreateVolume(name, l)
			if err != nil {
				return err
			}
			fmt.Println(v.Name)
			return nil
		}),
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "KEY=VALUE label")
	return cmd
}

func volumeLsCmd() *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use: "ls [flags]", Aliases: []string{"list"}, Short: "List volumes", Args: cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			vols, err := s.eng.ListVolumes()
			if err != nil {
				return err
			}
			if quiet {
				format = "{{.Name}}"
			}
			return output(os.Stdout, format, vols, func(w io.Writer, vols []engine.Volume) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "DRIVER\tVOLUME NAME")
				for _, v := range vols {
					fmt.Fprintf(tw, "%s\t%s\n", v.Driver, v.Name)
				}
				return tw.Flush()
			})
		}),
	}
	cmd.Flags().StringVar(&format, "format", "", "table, json or a Go template")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "names only")
	return cmd
}

func volumeRmCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use: "rm [flags] VOLUME...", Aliases: []string{"remove"}, Short: "Remove volumes", Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			for _, name := range args {
				if force {
					users, err := s.eng.VolumeUsers(ctx, name)
					if err != nil {
						return err
					}
					for _, c := range users {
						if err := s.eng.Remove(ctx, c, true); err != nil {
							return err
						}
					}
				}
				if err := s.eng.RemoveVolume(ctx, name); err != nil {
					return err
				}
				fmt.Println(name)
			}
			return nil
		}),
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove the containers that use it first")
	return cmd
}

func volumeInspectCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use: "inspect [flags] VOLUME...", Short: "Show volumes in detail", Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			var out []engine.Volume
			for _, name := range args {
				v, err := s.eng.GetVolume(name)
				if err != nil {
					return err
				}
				out = append(out, v)
			}
			return output(os.Stdout, format, out, nil)
		}),
	}
	cmd.Flags().StringVarP(&format, "format", "f", "json", "json or a Go template")
	return cmd
}

func volumePruneCmd() *cobra.Command {
	return &cobra.Command{
		Use: "prune", Short: "Remove the volumes no container uses", Args: cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			names, err := s.eng.PruneVolumes(ctx)
			for _, n := range names {
				fmt.Println(n)
			}
			return err
		}),
	}
}
