package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
)

// topDescriptors are podman's top descriptors as ps(1) keys with podman's
// column headers. PIDs are the host's, as ps sees them (docker's top shows
// those too); hpid, huser and hgroup are accepted as synonyms.
var topDescriptors = map[string]string{
	"args": "args=COMMAND", "comm": "comm=COMMAND", "etime": "etime=ELAPSED", "group": "group=GROUP",
	"nice": "nice=NI", "pcpu": "pcpu=%CPU", "pgid": "pgid=PGID", "pid": "pid=PID", "ppid": "ppid=PPID",
	"rgroup": "rgroup=RGROUP", "ruser": "ruser=RUSER", "time": "time=TIME", "tty": "tty=TTY",
	"user": "user=USER", "vsz": "vsz=VSZ", "rss": "rss=RSS", "state": "stat=STATE", "stime": "lstart=STIME",
	"hpid": "pid=HPID", "huser": "user=HUSER", "hgroup": "group=HGROUP", "uid": "uid=UID", "gid": "gid=GID",
	// AIX format descriptors, as podman and ps -o take them.
	"%C": "pcpu=%CPU", "%G": "group=GROUP", "%P": "ppid=PPID", "%U": "user=USER", "%a": "args=COMMAND",
	"%c": "comm=COMMAND", "%g": "rgroup=RGROUP", "%n": "nice=NI", "%p": "pid=PID", "%r": "pgid=PGID",
	"%t": "etime=ELAPSED", "%u": "ruser=RUSER", "%x": "time=TIME", "%y": "tty=TTY", "%z": "vsz=VSZ",
}

// DefaultTop is what top shows without arguments (podman's columns).
var DefaultTop = []string{"user", "pid", "ppid", "pcpu", "etime", "tty", "time", "args"}

// Top lists c's processes through the host's ps: args are podman's
// descriptors (pid, user, args, ..., also comma-separated) or, if any is
// not one, ps(1) options whose output is cut down to c's processes (docker's
// top). It returns ps's output, header first.
func (e *Engine) Top(ctx context.Context, c metadata.Container, args []string) ([]byte, error) {
	pids, err := e.Pids(ctx, c)
	if err != nil {
		return nil, err
	}
	if len(args) == 0 {
		args = DefaultTop
	}
	if fields, ok := psFields(args); ok {
		list := make([]string, len(pids))
		for i, p := range pids {
			list[i] = strconv.Itoa(p)
		}
		// One -o per field: in "-o a=X,b" the header X would run to the end.
		psArgs := []string{"-p", strings.Join(list, ",")}
		for _, f := range fields {
			psArgs = append(psArgs, "-o", f)
		}
		return runPs(ctx, psArgs)
	}
	out, err := runPs(ctx, args)
	if err != nil {
		return nil, err
	}
	return filterPs(out, pids)
}

// psFields maps args to ps -o fields if every one is a descriptor.
func psFields(args []string) ([]string, bool) {
	var fields []string
	for _, a := range args {
		for d := range strings.SplitSeq(a, ",") {
			k, ok := topDescriptors[d]
			if !ok && d != "" {
				return nil, false
			}
			if ok {
				fields = append(fields, k)
			}
		}
	}
	return fields, len(fields) > 0
}

// runPs runs ps; its exit code 1 with a header only means that no process
// matched (they all exited meanwhile), not a failure.
func runPs(ctx context.Context, args []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "ps", args...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == 1 && stderr.Len() == 0 && out.Len() > 0:
	case errors.Is(err, exec.ErrNotFound):
		return nil, fmt.Errorf("top: ps not found: install procps: %w", errdefs.ErrNotFound)
	default:
		return nil, fmt.Errorf("top: ps %s: %s: give podman's descriptors (%s, ...) or ps(1) options: %w",
			strings.Join(args, " "), strings.TrimSpace(stderr.String()), strings.Join(DefaultTop, ","), errdefs.ErrInvalidArgument)
	}
	return out.Bytes(), nil
}

// filterPs keeps ps's header and the lines of pids, found by the PID
// column.
func filterPs(out []byte, pids []int) ([]byte, error) {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	col := slices.Index(strings.Fields(lines[0]), "PID")
	if col < 0 {
		return nil, fmt.Errorf("top: ps's output has no PID column to find the container's processes by: add -o pid: %w", errdefs.ErrInvalidArgument)
	}
	var b strings.Builder
	b.WriteString(lines[0] + "\n")
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if col >= len(f) {
			continue
		}
		if p, err := strconv.Atoi(f[col]); err == nil && slices.Contains(pids, p) {
			b.WriteString(l + "\n")
		}
	}
	return []byte(b.String()), nil
}
