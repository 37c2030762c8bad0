package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/spf13/cobra"
)

// statsRow is one container as stats shows it: podman's columns (and
// their JSON names) as text, and the numbers behind them under "stats".
type statsRow struct {
	ID       string       `json:"id"`
	Name     string       `json:"name"`
	CPUPerc  string       `json:"cpu_percent"`
	MemUsage string       `json:"mem_usage"`
	MemPerc  string       `json:"mem_percent"`
	NetIO    string       `json:"net_io"`
	BlockIO  string       `json:"block_io"`
	PIDS     string       `json:"pids"`
	Stats    engine.Stats `json:"stats"`
}

func statsCmd() *cobra.Command {
	var noStream, all bool
	var format string
	var interval int
	cmd := &cobra.Command{
		Use:   "stats [flags] [CONTAINER...]",
		Short: "Show containers' use of CPU, memory, network, block I/O and PIDs",
		Long: "Show containers' resource use, read from their cgroups: every running container,\n" +
			"or those named. CPU % is of one CPU, between two samples --interval apart. The\n" +
			"display refreshes until Ctrl-C; --no-stream prints once.",
		RunE: storeRun(func(ctx context.Context, s *store, args []string) error {
			if interval < 1 {
				return fmt.Errorf("--interval %d: at least 1 second: %w", interval, errdefs.ErrInvalidArgument)
			}
			prev := map[string]*engine.Stats{}
			sample := func() ([]statsRow, error) {
				list, err := statsContainers(ctx, s, args, all)
				if err != nil {
					return nil, err
				}
				rows := make([]statsRow, 0, len(list))
				for _, c := range list {
					st, err := s.eng.Stats(ctx, c, prev[c.ID])
					if err != nil {
						if len(args) == 0 {
							continue // exited or removed meanwhile
						}
						return nil, err
					}
					prev[c.ID] = &st
					rows = append(rows, newStatsRow(st))
				}
				return rows, nil
			}
			// The first sample is the base of the first CPU rate.
			if _, err := sample(); err != nil {
				return err
			}
			tick := time.Duration(interval) * time.Second
			clear := !noStream && isTerminal(os.Stdout) && (format == "" || format == "table")
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(tick):
				}
				rows, err := sample()
				if err != nil {
					return err
				}
				if clear {
					fmt.Print("\033[2J\033[H") // the table in place, as docker's
				}
				if err := output(os.Stdout, format, rows, statsTable); err != nil {
					return err
				}
				if noStream {
					return nil
				}
			}
		}),
	}
	f := cmd.Flags()
	f.BoolVar(&noStream, "no-stream", false, "print once and exit")
	f.BoolVarP(&all, "all", "a", false, "all containers, not only running ones")
	f.StringVar(&format, "format", "table", "table, json, or a Go template ({{.Name}} {{.CPUPerc}} {{.MemUsage}} ..., {{.Stats.MemUsage}} in bytes)")
	f.IntVarP(&interval, "interval", "i", 1, "seconds between samples")
	return cmd
}

// statsContainers are those named (each must exist), else all running (or
// all, with --all).
func statsContainers(ctx context.Context, s *store, refs []string, all bool) ([]metadata.Container, error) {
	if len(refs) > 0 {
		out := make([]metadata.Container, 0, len(refs))
		for _, r := range refs {
			c, err := s.meta.GetContainer(ctx, r)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, nil
	}
	list, err := s.meta.ListContainers(ctx)
	if err != nil {
		return nil, err
	}
	var out []metadata.Container
	for _, c := range list {
		if st, err := s.eng.State(ctx, c); err == nil && (all || st.Status == engine.StatusRunning) {
			out = append(out, c)
		}
	}
	return out, nil
}

func newStatsRow(st engine.Stats) statsRow {
	r := statsRow{ID: shortID(st.ContainerID), Name: st.Name, Stats: st,
		CPUPerc: "--", MemUsage: "-- / --", MemPerc: "--", NetIO: "-- / --", BlockIO: "-- / --", PIDS: "--"}
	if !st.Running {
		return r
	}
	r.NetIO = humanSize(int64(st.NetInput)) + " / " + humanSize(int64(st.NetOutput))
	r.PIDS = fmt.Sprint(st.PIDs)
	if st.NoCgroup {
		return r // the rest is read from its cgroups
	}
	r.CPUPerc = fmt.Sprintf("%.2f%%", st.CPU)
	r.MemUsage = humanSize(int64(st.MemUsage)) + " / " + humanSize(int64(st.MemLimit))
	r.MemPerc = fmt.Sprintf("%.2f%%", st.MemPerc)
	r.BlockIO = humanSize(int64(st.BlockInput)) + " / " + humanSize(int64(st.BlockOutput))
	return r
}

func statsTable(w io.Writer, rows []statsRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tCPU %\tMEM USAGE / LIMIT\tMEM %\tNET I/O\tBLOCK I/O\tPIDS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Name, r.CPUPerc, r.MemUsage, r.MemPerc, r.NetIO, r.BlockIO, r.PIDS)
	}
	return tw.Flush()
}
