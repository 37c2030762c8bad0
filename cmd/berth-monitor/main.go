// Command berth-monitor watches one container for berth, as conmon does for
// podman: it is the container's parent (a child subreaper), holds its stdio
// (pipes, or the terminal's master), writes its log in the CRI format,
// serves attach clients on a unix socket, records the exit code, and
// unmounts the container's root file system. berth starts it detached (setsid), so
// containers outlive the command that ran them.
//
// berth-monitor --id ID --dir DIR --runtime PATH --runtime-root DIR --log FILE
//
//	[--log-max-size BYTES] [--tty] [--stdin] [--rootfs DIR]
//
// File descriptor 3 is a pipe to berth: one JSON line, {"pid": N} once
// the container is created or {"error": "..."}, then closed.
package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthdev/berth/internal/monitor"
	"golang.org/x/sys/unix"
)

type options struct {
	id, dir, runtime, runtimeRoot, log, rootfs string
	logMax                                     int64
	tty, stdin                                 bool
}

func main() {
	// A monitor lives as long as its container: keep its heap small.
	debug.SetGCPercent(50)
	var o options
	flag.StringVar(&o.id, "id", "", "container ID")
	flag.StringVar(&o.dir, "dir", "", "container directory (bundle)")
	flag.StringVar(&o.runtime, "runtime", "", "OCI runtime binary")
	flag.StringVar(&o.runtimeRoot, "runtime-root", "", "the runtime's --root")
	flag.StringVar(&o.log, "log", "", "log file")
	flag.Int64Var(&o.logMax, "log-max-size", 0, "rotate the log at this size (0: never)")
	flag.BoolVar(&o.tty, "tty", false, "give the container a terminal")
	flag.BoolVar(&o.stdin, "stdin", false, "keep the container's standard input open")
	flag.StringVar(&o.rootfs, "rootfs", "", "the container's rootfs mount, unmounted after the exit")
	flag.Parse()
	syncPipe := os.NewFile(3, "sync")
	if o.id == "" || o.dir == "" || o.runtime == "" || o.log == "" {
		report(syncPipe, 0, errors.New("berth-monitor: --id, --dir, --runtime and --log are needed"))
		os.Exit(2)
	}
	m := &mon{o: o, clients: map[net.Conn]bool{}}
	if err := m.run(syncPipe); err != nil {
		fmt.Fprintln(os.Stderr, "berth-monitor:", err)
		os.Exit(1)
	}
}

func report(syncPipe *os.File, pid int, err error) {
	if syncPipe == nil {
		return
	}
	msg := map[string]any{"pid": pid}
	if err != nil {
		msg = map[string]any{"error": err.Error()}
	}
	json.NewEncoder(syncPipe).Encode(msg)
	syncPipe.Close()
}

type mon struct {
	o       options
	log     *monitor.Log
	mu      sync.Mutex
	clients map[net.Conn]bool
	stdin   *os.File // the container's stdin (pipe write end, or the tty master)
	tty     *os.File
}

func (m *mon) run(syncPipe *os.File) error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		report(syncPipe, 0, fmt.Errorf("subreaper: %w", err))
		return err
	}
	os.WriteFile(filepath.Join(m.o.dir, monitor.MonitorPid), []byte(strconv.Itoa(os.Getpid())), 0o644)
	var err error
	if m.log, err = monitor.OpenLog(m.o.log, m.o.logMax); err != nil {
		report(syncPipe, 0, err)
		return err
	}
	// Sockets are bound by relative names, in the container's directory
	// (our working directory): the absolute path may not fit in 108 bytes.
	if err := os.Chdir(m.o.dir); err != nil {
		report(syncPipe, 0, err)
		return err
	}
	sock := monitor.AttachSock
	os.Remove(sock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		report(syncPipe, 0, err)
		return err
	}
	go m.serve(ln)

	pid, outputs, err := m.create()
	if err != nil {
		report(syncPipe, 0, err)
		monitor.WriteExit(m.o.dir, monitor.ExitStatus{Code: 127, ExitedAt: time.Now().UTC(), Error: err.Error()})
		m.broadcastExit(127)
		return err
	}
	report(syncPipe, pid, nil)

	var copying sync.WaitGroup
	for stream, r := range outputs {
		copying.Add(1)
		go func() {
			defer copying.Done()
			m.copyOut(stream, r)
		}()
	}
	st := reap(pid)
	// Output still in the pipes is read; a process the container left
	// behind that keeps them open does not hold the monitor for long.
	done := make(chan struct{})
	go func() { copying.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		for _, r := range outputs {
			r.Close()
		}
	}
	m.log.Close()
	monitor.WriteExit(m.o.dir, st)
	// The runtime's record of the stopped container stays until berth
	// starts it again or removes it (`runtime delete` costs a process
	// start; `run --rm` removes right away anyway).
	if m.o.rootfs != "" {
		unix.Unmount(m.o.rootfs, unix.MNT_DETACH)
	}
	m.broadcastExit(st.Code)
	ln.Close()
	os.Remove(sock)
	return nil
}

func (m *mon) runtimeCmd(args ...string) *exec.Cmd {
	return exec.Command(m.o.runtime, append([]string{"--root", m.o.runtimeRoot}, args...)...)
}

// create runs `runtime create` with the container's stdio, and returns
// the init's pid and the output streams to copy. Without a terminal the
// runtime's own messages go to the container's stderr pipe (and so to the
// log); on failure they are read back from it for the report.
func (m *mon) create() (int, map[byte]*os.File, error) {
	pidFile := filepath.Join(m.o.dir, monitor.PidFile)
	args := []string{"create", "--bundle", m.o.dir, "--pid-file", pidFile}
	outputs := map[byte]*os.File{}
	var closeAfter []*os.File
	var rterr bytes.Buffer
	var console chan consoleResult
	cmd := m.runtimeCmd()
	if m.o.tty {
		os.Remove("console.sock")
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: "console.sock", Net: "unix"})
		if err != nil {
			return 0, nil, err
		}
		defer func() { ln.Close(); os.Remove("console.sock") }()
		console = make(chan consoleResult, 1)
		go func() { console <- receiveConsole(ln) }()
		// The runtime reaches it through our working directory: short.
		args = append(args, "--console-socket", fmt.Sprintf("/proc/%d/cwd/console.sock", os.Getpid()))
		cmd.Stderr = &rterr
	} else {
		outR, outW, err := os.Pipe()
		if err != nil {
			return 0, nil, err
		}
		errR, errW, err := os.Pipe()
		if err != nil {
			return 0, nil, err
		}
		outputs[monitor.Stdout], outputs[monitor.Stderr] = outR, errR
		cmd.Stdout, cmd.Stderr = outW, errW
		closeAfter = append(closeAfter, outW, errW)
		if m.o.stdin {
			inR, inW, err := os.Pipe()
			if err != nil {
				return 0, nil, err
			}
			cmd.Stdin, m.stdin = inR, inW
			closeAfter = append(closeAfter, inR)
		}
	}
	cmd.Args = append(cmd.Args, append(args, m.o.id)...)
	err := cmd.Run()
	for _, f := range closeAfter {
		f.Close()
	}
	if err != nil {
		msg := strings.TrimSpace(rterr.String())
		if msg == "" {
			msg = strings.TrimSpace(drainErrors(outputs[monitor.Stderr]))
		}
		return 0, nil, fmt.Errorf("%s create: %v: %s", filepath.Base(m.o.runtime), err, msg)
	}
	if console != nil {
		res := <-console
		if res.err != nil {
			return 0, nil, fmt.Errorf("terminal: %w", res.err)
		}
		m.tty, m.stdin = res.f, res.f
		outputs[monitor.Stdout] = res.f
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, nil, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return 0, nil, fmt.Errorf("pid file: %w", err)
	}
	return pid, outputs, nil
}

// drainErrors reads what a failed create wrote to the stderr pipe.
func drainErrors(r *os.File) string {
	if r == nil {
		return ""
	}
	r.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	b, _ := io.ReadAll(io.LimitReader(r, 4096))
	return string(b)
}

type consoleResult struct {
	f   *os.File
	err error
}

// receiveConsole takes the terminal master the runtime sends.
func receiveConsole(ln *net.UnixListener) consoleResult {
	f, err := monitor.ReceiveTerminal(ln)
	return consoleResult{f: f, err: err}
}

// reap waits for the container's init, reaping whatever else is
// reparented here, and returns how init ended.
func reap(pid int) monitor.ExitStatus {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// No children at all: init is gone without our seeing it.
			return monitor.ExitStatus{Code: 255, ExitedAt: time.Now().UTC(), Error: "the container's process was not seen exiting"}
		}
		if got != pid {
			continue
		}
		st := monitor.ExitStatus{ExitedAt: time.Now().UTC()}
		if ws.Signaled() {
			st.Signal = int(ws.Signal())
			st.Code = 128 + st.Signal
		} else {
			st.Code = ws.ExitStatus()
		}
		return st
	}
}

func (m *mon) copyOut(stream byte, r *os.File) {
	name := "stdout"
	if stream == monitor.Stderr {
		name = "stderr"
	}
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m.log.Write(name, buf[:n])
			m.broadcast(stream, buf[:n])
		}
		if err != nil {
			return
		}
	}
}

func (m *mon) broadcast(typ byte, p []byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for c := range m.clients {
		c.SetWriteDeadline(time.Now().Add(5 * time.Second))
		if monitor.WriteFrame(c, typ, p) != nil {
			c.Close() // a stuck client is dropped, the container is not held
			delete(m.clients, c)
		}
	}
}

func (m *mon) broadcastExit(code int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(int32(code)))
	m.broadcast(monitor.Exit, b[:])
	m.mu.Lock()
	for c := range m.clients {
		c.Close()
	}
	m.mu.Unlock()
}

// serve accepts attach clients: each gets the output from now on and may
// send input.
func (m *mon) serve(ln *net.UnixListener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		m.mu.Lock()
		m.clients[c] = true
		m.mu.Unlock()
		go m.input(c)
	}
}

func (m *mon) input(c net.Conn) {
	for {
		typ, p, err := monitor.ReadFrame(c)
		if err != nil {
			return
		}
		switch typ {
		case monitor.Stdin:
			if m.stdin != nil {
				m.stdin.Write(p)
			}
		case monitor.CloseStdin:
			if m.stdin != nil && m.tty == nil {
				m.stdin.Close()
				m.stdin = nil
			}
		case monitor.Resize:
			if m.tty != nil && len(p) == 4 {
				ws := &unix.Winsize{Row: binary.BigEndian.Uint16(p), Col: binary.BigEndian.Uint16(p[2:])}
				unix.IoctlSetWinsize(int(m.tty.Fd()), unix.TIOCSWINSZ, ws)
			}
		}
	}
}
