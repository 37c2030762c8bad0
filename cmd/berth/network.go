package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/network"
	"github.com/spf13/cobra"
)

func networkCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage CNI networks (bridges) for containers"}
	cmd.AddCommand(networkCreateCmd(), networkLsCmd(), networkRmCmd(), networkInspectCmd(), networkPruneCmd())
	return cmd
}

func networkCreateCmd() *cobra.Command {
	var n network.Network
	var labels []string
	var noDNS bool
	cmd := &cobra.Command{
		Use: "create [flags] NAME", Short: "Make a bridge network; its containers find each other by name", Args: cobra.ExactArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			n.Name, n.DNS = args[0], !noDNS
			var err error
			if n.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			n, err = s.eng.Networks.Create(n)
			if err != nil {
				return err
			}
			fmt.Println(n.Name)
			return nil
		}),
	}
	fl := cmd.Flags()
	fl.StringVar(&n.Subnet, "subnet", "", "IPv4 subnet in CIDR form (default: a free 10.78.N.0/24)")
	fl.StringVar(&n.Gateway, "gateway", "", "gateway address (default: the subnet's first)")
	fl.StringVar(&n.Driver, "driver", "bridge", "driver: bridge")
	fl.BoolVar(&n.Internal, "internal", false, "no route out of the network and no masquerading")
	fl.BoolVar(&noDNS, "disable-dns", false, "containers do not resolve each other's names")
	fl.StringArrayVar(&labels, "label", nil, "KEY=VALUE label")
	return cmd
}

func parseLabels(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := map[string]string{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("--label %q: want KEY=VALUE: %w", kv, errdefs.ErrInvalidArgument)
		}
		m[k] = v
	}
	return m, nil
}

func networkLsCmd() *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use: "ls [flags]", Aliases: []string{"list"}, Short: "List networks", Args: cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			if _, err := s.eng.Networks.Get(network.DefaultName); err != nil { // listed as podman lists its own
				return err
			}
			nets, err := s.eng.Networks.List()
			if err != nil {
				return err
			}
			if quiet {
				format = "{{.Name}}"
			}
			return output(os.Stdout, format, nets, func(w io.Writer, nets []network.Network) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tDRIVER\tSUBNET\tGATEWAY\tBRIDGE\tDNS")
				for _, n := range nets {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\n", n.Name, n.Driver, n.Subnet, n.Gateway, n.Bridge, n.DNS)
				}
				return tw.Flush()
			})
		}),
	}
	cmd.Flags().StringVar(&format, "format", "", "table, json or a Go template")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "names only")
	return cmd
}

func networkRmCmd() *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use: "rm [flags] NETWORK...", Aliases: []string{"remove"}, Short: "Remove networks", Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			for _, name := range args {
				if err := removeNetwork(ctx, s, name, force); err != nil {
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

func removeNetwork(ctx context.Context, s *store, name string, force bool) error {
	users, err := s.eng.NetworkUsers(ctx, name)
	if err != nil {
		return err
	}
	if len(users) > 0 && !force {
		return fmt.Errorf("network %s is used by container %s: remove it first, or use --force: %w", name, users[0].Name, errdefs.ErrFailedPrecond)
	}
	for _, c := range users {
		if err := s.eng.Remove(ctx, c, true); err != nil {
			return err
		}
	}
	return s.eng.Networks.Remove(name)
}

func networkInspectCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use: "inspect [flags] NETWORK...", Short: "Show networks in detail", Args: cobra.MinimumNArgs(1),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			type inspected struct {
				network.Network
				Containers map[string]string `json:"containers"` // ID -> name
			}
			var out []inspected
			for _, name := range args {
				n, err := s.eng.Networks.Get(name)
				if err != nil {
					return err
				}
				users, err := s.eng.NetworkUsers(ctx, n.Name)
				if err != nil {
					return err
				}
				in := inspected{Network: n, Containers: map[string]string{}}
				for _, c := range users {
					in.Containers[c.ID] = c.Name
				}
				out = append(out, in)
			}
			return output(os.Stdout, format, out, nil)
		}),
	}
	cmd.Flags().StringVarP(&format, "format", "f", "json", "json or a Go template")
	return cmd
}

func networkPruneCmd() *cobra.Command {
	return &cobra.Command{
		Use: "prune", Short: "Remove the networks no container uses (the default one stays)", Args: cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			nets, err := s.eng.Networks.List()
			if err != nil {
				return err
			}
			for _, n := range nets {
				users, err := s.eng.NetworkUsers(ctx, n.Name)
				if err != nil {
					return err
				}
				if n.Name == network.DefaultName || len(users) > 0 {
					continue
				}
				if err := s.eng.Networks.Remove(n.Name); err != nil {
					return err
				}
				fmt.Println(n.Name)
			}
			return nil
		}),
	}
}

func portCmd() *cobra.Command {
	return &cobra.Command{
		Use: "port CONTAINER [PORT[/PROTO]]", Short: "List a container's published ports", Args: cobra.RangeArgs(1, 2),
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			c, err := s.meta.GetContainer(ctx, args[0])
			if err != nil {
				return err
			}
			found := false
			for _, p := range engine.Ports(c) {
				if len(args) == 2 {
					port, proto, _ := strings.Cut(args[1], "/")
					if port != fmt.Sprint(p.ContainerPort) || proto != "" && proto != p.Protocol {
						continue
					}
				}
				found = true
				fmt.Println(engine.FormatPort(p))
			}
			if !found && len(args) == 2 {
				return fmt.Errorf("container %s publishes no port %s: %w", c.Name, args[1], errdefs.ErrNotFound)
			}
			return nil
		}),
	}
}
