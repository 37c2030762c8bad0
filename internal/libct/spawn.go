package libct

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	"github.com/berthdev/berth/internal/libct/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// spawnOpts describes an init to start: the namespaces its C constructor
// enters and what it inherits.
type spawnOpts struct {
	cloneFlags  uintptr
	joins       []nsJoin
	uidMaps     []specs.LinuxIDMapping
	gidMaps     []specs.LinuxIDMapping
	timeOffsets map[string]specs.LinuxTimeOffset
	preserve    int        // fds 3..3+preserve-1 of ours go to the process unchanged
	files       []*os.File // more files for init, after the preserved ones
	stdio       [3]*os.File
	dir         string
	cgroup      *cgroups.Manager
	cgroupTasks []string // v1 "tasks" files init writes itself into (JoinPoints)
	// clone: the namespaces are all new and the kernel makes them at
	// clone, so init needs no C-side work: no round trip, no extra fork,
	// and its Go runtime starts while the runtime still sets up. Joins, a
	// time or a user namespace go through nsenter.c.
	clone bool
}

// canClone tells whether spawnOpts.clone can create these namespaces.
func canClone(o *spawnOpts) bool {
	// In a user namespace made at clone, init could no longer write the
	// host's cgroup files to join them.
	return len(o.joins) == 0 && o.cloneFlags&(unix.CLONE_NEWTIME|unix.CLONE_NEWUSER) == 0 && os.Geteuid() == 0
}

type nsJoin struct {
	flag int
	path string
}

// initProc is a started init, in its namespaces, ready for its config.
type initProc struct {
	pid  int
	sock *os.File
	dec  *json.Decoder
	enc  *json.Encoder
	cmd  *exec.Cmd
}

// fileFd returns the fd number at which init finds files[i].
func (o *spawnOpts) fileFd(i int) int { return 3 + o.preserve + i }

func spawn(o *spawnOpts) (_ *initProc, retErr error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	parent := os.NewFile(uintptr(fds[0]), "sync-parent")
	child := os.NewFile(uintptr(fds[1]), "sync-child")
	defer child.Close()
	defer func() {
		if retErr != nil {
			parent.Close()
		}
	}()
	slog.Debug("spawn: socketpair")
	exe, err := selfExe()
	slog.Debug("spawn: selfexe")
	if err != nil {
		return nil, err
	}
	defer exe.Close()

	extra := make([]*os.File, 0, o.preserve+len(o.files)+2)
	for i := 0; i < o.preserve; i++ {
		extra = append(extra, os.NewFile(uintptr(3+i), "preserved"))
	}
	extra = append(extra, o.files...)
	syncFd := 3 + len(extra)
	extra = append(extra, child)
	exeFd := 3 + len(extra)
	extra = append(extra, exe)

	// nsenter.c acts on _BERTH_INIT; a cloned init only needs its socket.
	envKey := "_BERTH_INIT="
	if o.clone {
		envKey = "_BERTH_SYNC="
	}
	cmd := &exec.Cmd{
		Path:       "/proc/self/fd/" + strconv.Itoa(exeFd),
		Args:       []string{"berth-runtime", "init"},
		Env:        []string{envKey + strconv.Itoa(syncFd)},
		Dir:        o.dir,
		Stdin:      o.stdio[0],
		Stdout:     o.stdio[1],
		Stderr:     o.stdio[2],
		ExtraFiles: extra,
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	v2 := ""
	if o.cgroup != nil {
		o.cgroupTasks, v2 = o.cgroup.JoinPoints()
	}
	if v2 != "" {
		// Cloned straight into the cgroup2 cgroup (see JoinPoints).
		dir, err := os.Open(v2)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: %w", v2, err)
		}
		defer dir.Close()
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
	}
	if o.clone {
		// The cgroup namespace waits for init to be in its cgroups.
		cmd.SysProcAttr.Cloneflags = o.cloneFlags &^ unix.CLONE_NEWCGROUP
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start init: %w", err)
	}
	slog.Debug("spawn: started")
	p := &initProc{pid: cmd.Process.Pid, sock: parent, cmd: cmd}
	defer func() {
		if retErr != nil {
			p.kill()
		}
	}()
	if o.clone {
		p.dec = json.NewDecoder(bufio.NewReader(parent))
		p.enc = json.NewEncoder(parent)
		return p, nil
	}
	if err := writeNSMessage(parent, o); err != nil {
		return p, err
	}
	r := bufio.NewReader(parent)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			cmd.Wait()
			return p, fmt.Errorf("init exited while entering namespaces")
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "maps":
			if err := writeMaps(cmd.Process.Pid, o); err != nil {
				parent.Write([]byte{'n'})
				return p, err
			}
			if _, err := parent.Write([]byte{'k'}); err != nil {
				return p, err
			}
		case strings.HasPrefix(line, "pid "):
			slog.Debug("spawn: pid received")
			pid, err := strconv.Atoi(line[4:])
			if err != nil {
				return p, fmt.Errorf("init sent %q", line)
			}
			p.pid = pid
			if pid != cmd.Process.Pid {
				// The intermediate process forked init and exits: reap it.
				cmd.Wait()
				p.cmd = nil
			}
			p.dec = json.NewDecoder(r)
			p.enc = json.NewEncoder(parent)
			return p, nil
		case strings.HasPrefix(line, "error "):
			cmd.Wait()
			return p, fmt.Errorf("init: %s", line[6:])
		default:
			return p, fmt.Errorf("init sent %q", line)
		}
	}
}

func writeNSMessage(w *os.File, o *spawnOpts) error {
	var b strings.Builder
	fmt.Fprintf(&b, "clone=%d\n", o.cloneFlags)
	for _, j := range o.joins {
		fmt.Fprintf(&b, "join=%d:%s\n", j.flag, j.path)
	}
	for _, t := range o.cgroupTasks {
		fmt.Fprintf(&b, "cgroup=%s\n", t)
	}
	for clock, off := range o.timeOffsets {
		fmt.Fprintf(&b, "timens=%s %d %d\n", clock, off.Secs, off.Nanosecs)
	}
	msg := make([]byte, 4, 4+b.Len())
	binary.NativeEndian.PutUint32(msg, uint32(b.Len()))
	msg = append(msg, b.String()...)
	_, err := w.Write(msg)
	return err
}

func writeMaps(pid int, o *spawnOpts) error {
	for _, m := range []struct {
		file string
		maps []specs.LinuxIDMapping
		tool string
	}{{"uid_map", o.uidMaps, "newuidmap"}, {"gid_map", o.gidMaps, "newgidmap"}} {
		var b strings.Builder
		for _, e := range m.maps {
			fmt.Fprintf(&b, "%d %d %d\n", e.ContainerID, e.HostID, e.Size)
		}
		path := fmt.Sprintf("/proc/%d/%s", pid, m.file)
		err := os.WriteFile(path, []byte(b.String()), 0)
		if err != nil && os.Geteuid() != 0 {
			// Unprivileged: the setuid helpers may write ranges from /etc/subuid.
			args := []string{strconv.Itoa(pid)}
			for _, e := range m.maps {
				args = append(args, strconv.Itoa(int(e.ContainerID)), strconv.Itoa(int(e.HostID)), strconv.Itoa(int(e.Size)))
			}
			if out, herr := exec.Command(m.tool, args...).CombinedOutput(); herr == nil {
				err = nil
			} else {
				err = fmt.Errorf("%v; %s: %v: %s", err, m.tool, herr, strings.TrimSpace(string(out)))
			}
		}
		if err != nil {
			return fmt.Errorf("linux.%s: %w", map[string]string{"uid_map": "uidMappings", "gid_map": "gidMappings"}[m.file], err)
		}
	}
	return nil
}

// send writes the init config.
func (p *initProc) send(cfg *initConfig) error { return p.enc.Encode(cfg) }

// recv reads init's next message; an error message becomes an error.
func (p *initProc) recv(want string) error {
	m, err := p.next()
	if err != nil {
		return fmt.Errorf("init exited unexpectedly")
	}
	if m.Type == "error" {
		return fmt.Errorf("%s", m.Error)
	}
	if m.Type != want {
		return fmt.Errorf("init sent %q, expected %q", m.Type, want)
	}
	return nil
}

// next reads init's next message, logging its warnings on the way: they
// belong in the runtime's log, not in the container's output.
func (p *initProc) next() (syncMsg, error) {
	for {
		var m syncMsg
		if err := p.dec.Decode(&m); err != nil {
			return m, err
		}
		if m.Type != "warning" {
			return m, nil
		}
		slog.Warn(m.Error, "pid", p.pid)
	}
}

// waitExec waits until init has exec'd the process (its sync socket closes
// on exec) or reports why it could not.
func (p *initProc) waitExec() error {
	m, err := p.next()
	if err != nil {
		return nil
	}
	if m.Type == "error" {
		return fmt.Errorf("%s", m.Error)
	}
	return fmt.Errorf("init sent %q", m.Type)
}

func (p *initProc) kill() {
	if p.pid > 0 {
		unix.Kill(p.pid, unix.SIGKILL)
	}
	if p.cmd != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	} else if p.pid > 0 {
		var ws unix.WaitStatus
		unix.Wait4(p.pid, &ws, 0, nil)
	}
}

func (p *initProc) close() {
	if p.sock != nil {
		p.sock.Close()
	}
}
