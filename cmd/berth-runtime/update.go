package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/libct"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/cobra"
)

func updateCmd() *cobra.Command {
	var resources string
	cmd := &cobra.Command{
		Use:   "update [flags] CONTAINER",
		Short: "Change the container's resource limits",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return locked(args[0], func(c *libct.Container) error { return update(cmd, c, resources) })
		},
	}
	f := cmd.Flags()
	f.StringVarP(&resources, "resources", "r", "", "JSON file with linux.resources (- for stdin)")
	f.String("memory", "", "memory limit in bytes (suffixes k, m, g)")
	f.String("memory-reservation", "", "memory soft limit")
	f.String("memory-swap", "", "memory plus swap limit (-1: unlimited)")
	f.String("kernel-memory", "", "ignored (not applicable to current kernels)")
	f.String("cpu-shares", "", "CPU shares")
	f.String("cpu-quota", "", "CPU CFS quota in microseconds")
	f.String("cpu-period", "", "CPU CFS period in microseconds")
	f.String("cpu-rt-runtime", "", "CPU realtime runtime in microseconds")
	f.String("cpu-rt-period", "", "CPU realtime period in microseconds")
	f.String("cpuset-cpus", "", "CPUs to use (0-3, 0,1)")
	f.String("cpuset-mems", "", "memory nodes to use")
	f.String("pids-limit", "", "maximum number of processes")
	f.String("blkio-weight", "", "block IO weight (10-1000)")
	return cmd
}

// update merges --resources and the flags into the container's resources.
func update(cmd *cobra.Command, c *libct.Container, resources string) error {
	spec, err := c.Spec()
	if err != nil {
		return err
	}
	r := &specs.LinuxResources{}
	if spec.Linux.Resources != nil {
		cp := *spec.Linux.Resources
		r = &cp
	}
	if resources != "" {
		var in io.Reader = os.Stdin
		if resources != "-" {
			f, err := os.Open(resources)
			if err != nil {
				return fmt.Errorf("--resources: %w", err)
			}
			defer f.Close()
			in = f
		}
		r = &specs.LinuxResources{}
		if err := json.NewDecoder(in).Decode(r); err != nil {
			return fmt.Errorf("--resources: malformed JSON: %v: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	if err := applyUpdateFlags(cmd, r); err != nil {
		return err
	}
	return c.Update(r)
}

func parseBytes(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	mult := int64(1)
	switch strings.ToLower(s[len(s)-1:]) {
	case "k":
		mult = 1 << 10
	case "m":
		mult = 1 << 20
	case "g":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

// applyUpdateFlags merges the command line's values into r.
func applyUpdateFlags(cmd *cobra.Command, r *specs.LinuxResources) error {
	get := func(name string) (string, bool) {
		if !cmd.Flags().Changed(name) {
			return "", false
		}
		v, _ := cmd.Flags().GetString(name)
		return v, v != ""
	}
	bad := func(name, v string, err error) error {
		return fmt.Errorf("--%s %q: %v: %w", name, v, err, errdefs.ErrInvalidArgument)
	}
	mem := func() *specs.LinuxMemory {
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		return r.Memory
	}
	cpu := func() *specs.LinuxCPU {
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		return r.CPU
	}
	for _, name := range []string{"memory", "memory-reservation", "memory-swap"} {
		if v, ok := get(name); ok {
			n, err := parseBytes(v)
			if err != nil {
				return bad(name, v, err)
			}
			switch name {
			case "memory":
				mem().Limit = &n
			case "memory-reservation":
				mem().Reservation = &n
			case "memory-swap":
				mem().Swap = &n
			}
		}
	}
	for _, name := range []string{"cpu-shares", "cpu-period", "cpu-rt-period"} {
		if v, ok := get(name); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return bad(name, v, err)
			}
			switch name {
			case "cpu-shares":
				cpu().Shares = &n
			case "cpu-period":
				cpu().Period = &n
			case "cpu-rt-period":
				cpu().RealtimePeriod = &n
			}
		}
	}
	for _, name := range []string{"cpu-quota", "cpu-rt-runtime", "pids-limit"} {
		if v, ok := get(name); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return bad(name, v, err)
			}
			switch name {
			case "cpu-quota":
				cpu().Quota = &n
			case "cpu-rt-runtime":
				cpu().RealtimeRuntime = &n
			case "pids-limit":
				r.Pids = &specs.LinuxPids{Limit: &n}
			}
		}
	}
	if v, ok := get("cpuset-cpus"); ok {
		cpu().Cpus = v
	}
	if v, ok := get("cpuset-mems"); ok {
		cpu().Mems = v
	}
	if v, ok := get("blkio-weight"); ok {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return bad("blkio-weight", v, err)
		}
		w := uint16(n)
		if r.BlockIO == nil {
			r.BlockIO = &specs.LinuxBlockIO{}
		}
		r.BlockIO.Weight = &w
	}
	return nil
}
