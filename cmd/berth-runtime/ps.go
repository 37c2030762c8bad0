package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
)

func psCmd() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "ps [flags] CONTAINER [ps options]",
		Short: "List the container's processes",
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return fmt.Errorf("ps: expected a container id: %w", errdefs.ErrInvalidArgument)
			}
			return libct.ValidateID(args[0])
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := libct.Load(g.root, args[0])
			if err != nil {
				return err
			}
			pids, err := c.Pids()
			if err != nil {
				return err
			}
			switch format {
			case "json":
				if pids == nil {
					pids = []int{}
				}
				return printJSON(pids)
			case "table":
			default:
				return fmt.Errorf("--format %q: must be table or json: %w", format, errdefs.ErrInvalidArgument)
			}
			psArgs := args[1:]
			if len(psArgs) == 0 {
				psArgs = []string{"-ef"}
			}
			out, err := exec.Command("ps", psArgs...).Output()
			if err != nil {
				return fmt.Errorf("ps %s: %w", strings.Join(psArgs, " "), err)
			}
			lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			col := -1
			for i, h := range strings.Fields(lines[0]) {
				if h == "PID" {
					col = i
				}
			}
			if col < 0 {
				return fmt.Errorf("ps %s: output has no PID column", strings.Join(psArgs, " "))
			}
			in := map[int]bool{}
			for _, p := range pids {
				in[p] = true
			}
			fmt.Fprintln(os.Stdout, lines[0])
			for _, l := range lines[1:] {
				f := strings.Fields(l)
				if len(f) > col {
					if p, err := strconv.Atoi(f[col]); err == nil && in[p] {
						fmt.Fprintln(os.Stdout, l)
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "table or json")
	cmd.Flags().SetInterspersed(false)
	return cmd
}
