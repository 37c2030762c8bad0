// Package procfs reads what berth needs of /proc/PID: the fields of stat,
// and whether a pid is still the process it was.
package procfs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Stat is /proc/PID/stat from field 3 on, the fields after the command
// name (which may hold spaces and parentheses): Stat[0] is the state,
// Stat[1] the parent's pid, Stat[19] the start time in clock ticks since
// boot (which tells a process from a later one that reuses its pid).
type Stat []string

// ReadStat reads pid's stat.
func ReadStat(pid int) (Stat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 20 {
		return nil, fmt.Errorf("malformed /proc/%d/stat", pid)
	}
	return Stat(f), nil
}

// State is the process's state letter (R, S, D, Z...).
func (s Stat) State() byte { return s[0][0] }

// PPid is the parent's pid.
func (s Stat) PPid() int { n, _ := strconv.Atoi(s[1]); return n }

// StartTime is the start time in clock ticks since boot.
func (s Stat) StartTime() uint64 { n, _ := strconv.ParseUint(s[19], 10, 64); return n }

// Runs reports whether pid is a live process (not a zombie) whose command
// line holds mark (an ID or a path it was started with): a later process
// that reuses the pid does not count.
func Runs(pid int, mark string) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	// A zombie's command line reads empty.
	return err == nil && bytes.Contains(b, []byte(mark))
}

// End waits up to timeout for pid to end, when it is still the process
// marked so (Runs), first sending it sig unless that is 0. A pidfd holds
// the process, so the check, the signal and the wait are of the same one;
// the wait takes no polling. It reports whether the process is gone.
func End(pid int, mark string, sig unix.Signal, timeout time.Duration) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return true // gone already
	}
	defer unix.Close(fd)
	if !Runs(pid, mark) {
		return true
	}
	if sig != 0 && unix.PidfdSendSignal(fd, sig, nil, 0) != nil {
		return !Runs(pid, mark)
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for deadline := time.Now().Add(timeout); ; {
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		n, err := unix.Poll(fds, int(left.Milliseconds())+1)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0
	}
}
