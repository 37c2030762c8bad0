package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/network"
	"github.com/spf13/cobra"
)

// psRow is one container as ps shows it (podman's field names).
type psRow struct {
	ID        string                `json:"Id"`
	Names     []string              `json:"Names"`
	Image     string                `json:"Image"`
	ImageID   string                `json:"ImageID"`
	Command   string                `json:"Command"`
	CreatedAt time.Time             `json:"CreatedAt"`
	State     string                `json:"State"`
	Status    string                `json:"Status"`
	ExitCode  int                   `json:"ExitCode"`
	Pid       int                   `json:"Pid"`
	Labels    map[string]string     `json:"Labels"`
	Ports     []network.PortMapping `json:"Ports"`
	// Pod is the CRI pod (berthd's) the container is in, "" for none.
	Pod  string `json:"Pod"`
	Name string `json:"-"`
}

// portsText is podman's PORTS column: 0.0.0.0:8080->80/tcp, ...
func portsText(ps []network.PortMapping) string {
	var out []string
	for _, p := range ps {
		out = append(out, net.JoinHostPort(cmp.Or(p.HostIP, "0.0.0.0"), strconv.Itoa(p.HostPort))+"->"+strconv.Itoa(p.ContainerPort)+"/"+p.Protocol)
	}
	return strings.Join(out, ", ")
}

func psCmd() *cobra.Command {
	var all, quiet, noTrunc, pods bool
	var format string
	var filters []string
	cmd := &cobra.Command{
		Use: "ps [flags]", Short: "List containers", Args: cobra.NoArgs,
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			list, err := s.meta.ListContainers(ctx)
			if err != nil {
				return err
			}
			var rows []psRow
			for _, c := range list {
				st, err := s.eng.State(ctx, c)
				if err != nil {
					return err
				}
				if !all && st.Status != engine.StatusRunning {
					continue
				}
				cfg, _ := containerArgs(s, c)
				r := psRow{ID: c.ID, Names: []string{c.Name}, Name: c.Name, Image: c.Image, ImageID: c.ImageID.Encoded(),
					Command: strings.Join(cfg, " "), CreatedAt: c.CreatedAt, State: st.Status, ExitCode: st.ExitCode, Pid: st.Pid, Labels: c.Labels, Ports: engine.Ports(c), Pod: engine.PodOf(c)}
				r.Status = statusText(st)
				if st.Status == engine.StatusRunning && s.eng.Paused(ctx, c) {
					r.State, r.Status = "paused", r.Status+" (Paused)"
				}
				keep := true
				for _, f := range filters {
					k, v, _ := strings.Cut(f, "=")
					switch k {
					case "name":
						keep = keep && strings.Contains(c.Name, v)
					case "pod":
						keep = keep && r.Pod != "" && strings.HasPrefix(r.Pod, v)
					case "label":
						lk, lv, hasValue := strings.Cut(v, "=")
						got, ok := c.Labels[lk]
						keep = keep && ok && (!hasValue || got == lv)
					case "id":
						keep = keep && strings.HasPrefix(c.ID, v)
					case "status":
						keep = keep && st.Status == v
					case "ancestor":
						keep = keep && (c.Image == v || strings.Contains(c.Image, v) || strings.HasPrefix(c.ImageID.Encoded(), v))
					default:
						return fmt.Errorf("--filter %q: name, id, status or ancestor: %w", f, errdefs.ErrInvalidArgument)
					}
				}
				if keep {
					rows = append(rows, r)
				}
			}
			if quiet {
				for _, r := range rows {
					id := r.ID
					if !noTrunc {
						id = shortID(id)
					}
					fmt.Println(id)
				}
				return nil
			}
			return output(os.Stdout, format, rows, func(w io.Writer, rows []psRow) error {
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				podCol := ""
				if pods {
					podCol = "\tPOD ID"
				}
				fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES"+podCol)
				for _, r := range rows {
					id, pod := r.ID, r.Pod
					if !noTrunc {
						id, pod = shortID(id), shortID(pod)
					}
					if pods {
						pod = "\t" + pod
					} else {
						pod = ""
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s%s\n", id, r.Image, ellipsis(r.Command, 24, noTrunc), since(r.CreatedAt), r.Status, portsText(r.Ports), r.Name, pod)
				}
				return tw.Flush()
			})
		}),
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "all containers, not only running ones")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only IDs")
	cmd.Flags().BoolVar(&noTrunc, "no-trunc", false, "do not shorten")
	cmd.Flags().BoolVar(&pods, "pod", false, "show the CRI pod (berthd's) of each container")
	cmd.Flags().StringVar(&format, "format", "table", "table, json, or a Go template")
	cmd.Flags().StringArrayVarP(&filters, "filter", "f", nil, "name=, id=, status=, ancestor=")
	return cmd
}

func ellipsis(s string, n int, full bool) string {
	if full || len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

func statusText(st engine.State) string {
	switch st.Status {
	case engine.StatusRunning:
		return "Up " + strings.TrimSuffix(since(st.StartedAt), " ago")
	case engine.StatusExited:
		if st.FinishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", st.ExitCode)
		}
		return fmt.Sprintf("Exited (%d) %s", st.ExitCode, since(st.FinishedAt))
	}
	return "Created"
}

// containerArgs are the process args of c's bundle.
func containerArgs(s *store, c metadata.Container) ([]string, error) {
	spec, err := s.eng.Spec(c)
	if err != nil {
		return nil, err
	}
	return spec.Process.Args, nil
}
