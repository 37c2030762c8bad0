package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/berthdev/berth/internal/metadata"
)

// Stats are a container's resource use at one moment, with podman's
// field names (libpod's ContainerStats). Counters are totals since the
// container started; CPU is a rate between two samples.
type Stats struct {
	ContainerID string  `json:"ContainerID"`
	Name        string  `json:"Name"`
	Running     bool    `json:"Running"`
	CPU         float64 `json:"CPU"`     // percent of one CPU since the previous sample (or since the start)
	CPUNano     uint64  `json:"CPUNano"` // CPU time used, in nanoseconds
	// SystemNano is when the sample was taken (Unix nanoseconds).
	SystemNano  int64   `json:"SystemNano"`
	MemUsage    uint64  `json:"MemUsage"` // without the page cache it could drop (inactive files), as docker counts
	MemLimit    uint64  `json:"MemLimit"` // the cgroup's limit, or the host's memory if that is less
	MemPerc     float64 `json:"MemPerc"`
	NetInput    uint64  `json:"NetInput"`
	NetOutput   uint64  `json:"NetOutput"`
	BlockInput  uint64  `json:"BlockInput"`
	BlockOutput uint64  `json:"BlockOutput"`
	PIDs        uint64  `json:"PIDs"`
	// NoCgroup: the container has no cgroup of its own (an unprivileged
	// user's without a delegated one); only PIDs and the network are known.
	NoCgroup bool `json:"NoCgroup,omitempty"`
}

// Stats samples c; prev, the previous sample of c (or nil), makes CPU the
// rate between the two. A container that does not run has zero stats.
func (e *Engine) Stats(ctx context.Context, c metadata.Container, prev *Stats) (Stats, error) {
	s := Stats{ContainerID: c.ID, Name: c.Name, SystemNano: time.Now().UnixNano()}
	st, err := e.State(ctx, c)
	if err != nil {
		return s, err
	}
	if st.Status != StatusRunning || st.Pid <= 0 {
		return s, nil
	}
	s.Running = true
	d, err := CgroupOf(st.Pid, c.ID)
	if errors.Is(err, errNoCgroup) {
		s.NoCgroup = true
		pids, _ := descendants(st.Pid)
		s.PIDs = uint64(len(pids))
		s.NetInput, s.NetOutput = netIO(st.Pid)
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("container %s: %w", c.Name, err)
	}
	cs, err := d.Stats()
	if err != nil {
		return s, fmt.Errorf("container %s: cgroup stats: %w", c.Name, err)
	}
	s.CPUNano = cs.CpuStats.CpuUsage.TotalUsage
	switch {
	case prev != nil && prev.Running && s.SystemNano > prev.SystemNano && s.CPUNano >= prev.CPUNano:
		s.CPU = 100 * float64(s.CPUNano-prev.CPUNano) / float64(s.SystemNano-prev.SystemNano)
	case !st.StartedAt.IsZero() && s.SystemNano > st.StartedAt.UnixNano():
		s.CPU = 100 * float64(s.CPUNano) / float64(s.SystemNano-st.StartedAt.UnixNano())
	}
	ms := cs.MemoryStats
	s.MemUsage = d.WorkingSet(cs)
	s.MemLimit = ms.Usage.Limit
	if total := hostMemory(); total > 0 && (s.MemLimit == 0 || s.MemLimit > total) {
		s.MemLimit = total
	}
	if s.MemLimit > 0 {
		s.MemPerc = 100 * float64(s.MemUsage) / float64(s.MemLimit)
	}
	for _, b := range cs.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(b.Op) {
		case "read":
			s.BlockInput += b.Value
		case "write":
			s.BlockOutput += b.Value
		}
	}
	s.PIDs = cs.PidsStats.Current
	if s.PIDs == 0 {
		s.PIDs = uint64(len(d.Pids()))
	}
	if cfg, err := config(c); err == nil && cfg.Network != "host" {
		s.NetInput, s.NetOutput = netIO(st.Pid)
	}
	return s, nil
}

// hostMemory is MemTotal in bytes (0 if unknown).
func hostMemory() uint64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for l := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n << 10
			}
		}
	}
	return 0
}

// netIO sums the bytes received and sent on the interfaces of pid's
// network namespace, loopback left out (what goes to itself is not I/O).
func netIO(pid int) (rx, tx uint64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/net/dev")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(name) == "lo" {
			continue // the two header lines have no colon
		}
		// receive: bytes packets errs drop fifo frame compressed multicast; transmit: bytes ...
		v := strings.Fields(rest)
		if len(v) < 9 {
			continue
		}
		r, _ := strconv.ParseUint(v[0], 10, 64)
		t, _ := strconv.ParseUint(v[8], 10, 64)
		rx, tx = rx+r, tx+t
	}
	return rx, tx
}
