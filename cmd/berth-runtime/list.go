package main

import (
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
)

// listEntry is runc's `list --format json` shape, which tools parse.
type listEntry struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

func listCmd() *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:     "list [flags]",
		Aliases: []string{"ls"},
		Short:   "List containers",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cs, err := libct.List(g.root)
			if err != nil {
				return err
			}
			entries := make([]listEntry, 0, len(cs))
			for _, c := range cs {
				st := c.State()
				entries = append(entries, listEntry{OCIVersion: c.OCIVersion, ID: c.ID, Pid: st.Pid,
					Status: string(st.Status), Bundle: c.Bundle, Rootfs: c.Rootfs, Created: c.Created,
					Annotations: c.Annotations, Owner: c.Owner})
			}
			switch {
			case quiet:
				for _, e := range entries {
					fmt.Println(e.ID)
				}
			case format == "json":
				return printJSON(entries)
			case format == "table":
				w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
				fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
				for _, e := range entries {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", e.ID, e.Pid, e.Status, e.Bundle,
						e.Created.Format(time.RFC3339Nano), e.Owner)
				}
				return w.Flush()
			default:
				return fmt.Errorf("--format %q: must be table or json: %w", format, errdefs.ErrInvalidArgument)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the ids")
	return cmd
}
