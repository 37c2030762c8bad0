package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/berthdev/berth/internal/libct"
	"github.com/spf13/cobra"
)

// event is runc's events JSON shape: {"type":"stats","id":"...","data":{...}}.
type event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

func eventsCmd() *cobra.Command {
	var stats bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "events [flags] CONTAINER",
		Short: "Print the container's resource usage as JSON, once (--stats) or every --interval",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return fmt.Errorf("--interval must be positive")
			}
			c, err := libct.Load(g.root, args[0])
			if err != nil {
				return err
			}
			enc := json.NewEncoder(os.Stdout)
			for {
				if c.Status() == libct.Stopped {
					if stats {
						return fmt.Errorf("container %s is not running", c.ID)
					}
					return nil
				}
				s, err := c.Stats()
				if err != nil {
					return err
				}
				if err := enc.Encode(event{Type: "stats", ID: c.ID, Data: s}); err != nil {
					return err
				}
				if stats {
					return nil
				}
				time.Sleep(interval)
			}
		},
	}
	cmd.Flags().BoolVar(&stats, "stats", false, "print the statistics once and exit")
	cmd.Flags().DurationVar(&interval, "interval", 5*time.Second, "time between statistics")
	return cmd
}
