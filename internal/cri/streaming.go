package cri

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/berthdev/berth/internal/engine"
	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/monitor"
	"github.com/berthdev/berth/internal/network"
	"golang.org/x/sys/unix"
	"k8s.io/client-go/tools/remotecommand"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/kubelet/pkg/cri/streaming"
	utilexec "k8s.io/utils/exec"
)

// Exec, Attach and PortForward answer with a URL on berthd's stream
// server (the kubelet's streaming library: SPDY and websocket); the
// client then connects there, and the library calls streamRuntime with
// the streams. The gRPC call only checks the target and hands out a
// one-time token.

// drainWait bounds how long a finished exec's terminal output is still
// read. The kernel hangs the terminal up when the command (its session
// leader) exits, which ends the read; this is only the bound.
const drainWait = 2 * time.Second

// StartStreaming serves the streams on addr (host:port; port 0 picks a
// free one) until stop is called, and returns the host:port the URLs
// handed out name: the one actually bound, so clients reach it whatever
// port was chosen.
func (s *Server) StartStreaming(addr string) (bound string, stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("stream server %s: %w", addr, err)
	}
	cfg := streaming.DefaultConfig
	cfg.Addr = urlHost(ln.Addr().(*net.TCPAddr))
	srv, err := streaming.NewServer(cfg, streamRuntime{s})
	if err != nil {
		ln.Close()
		return "", nil, fmt.Errorf("stream server: %w", err)
	}
	s.stream = srv
	// Our own http.Server rather than the library's Start: Start binds
	// its listener itself and learns the port only then, racing the first
	// URL handed out.
	hs := &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second}
	go hs.Serve(ln)
	return cfg.Addr, func() { hs.Close() }, nil
}

// urlHost is the host:port clients dial: a wildcard bind is reached
// through loopback, since the kubelet runs on this node.
func urlHost(a *net.TCPAddr) string {
	ip := a.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
		if a.IP.To4() == nil {
			ip = net.IPv6loopback
		}
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(a.Port))
}

func (s *Server) streamServer() (streaming.Server, error) {
	if s.stream == nil {
		return nil, fmt.Errorf("the stream server is not running: %w", errdefs.ErrUnavailable)
	}
	return s.stream, nil
}

// runningContainer is the CRI container id names, if it runs.
func (s *Server) runningContainer(ctx context.Context, id string) (metadata.Container, error) {
	c, err := s.record(ctx, id, kindContainer)
	if err != nil {
		return c, err
	}
	st, err := s.eng.State(ctx, c)
	if err != nil {
		return c, err
	}
	if st.Status != engine.StatusRunning {
		return c, fmt.Errorf("container %s is not running (%s): %w", c.ID, st.Status, errdefs.ErrFailedPrecond)
	}
	return c, nil
}

// Exec returns the URL where the command runs once a client connects.
func (s *Server) Exec(ctx context.Context, req *runtime.ExecRequest) (*runtime.ExecResponse, error) {
	ss, err := s.streamServer()
	if err != nil {
		return nil, err
	}
	c, err := s.runningContainer(ctx, req.ContainerId)
	if err != nil {
		return nil, err
	}
	return ss.GetExec(&runtime.ExecRequest{ContainerId: c.ID, Cmd: req.Cmd, Tty: req.Tty,
		Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr})
}

// Attach returns the URL where a client attaches to the container's
// stdio, which its monitor holds.
func (s *Server) Attach(ctx context.Context, req *runtime.AttachRequest) (*runtime.AttachResponse, error) {
	ss, err := s.streamServer()
	if err != nil {
		return nil, err
	}
	c, err := s.runningContainer(ctx, req.ContainerId)
	if err != nil {
		return nil, err
	}
	return ss.GetAttach(&runtime.AttachRequest{ContainerId: c.ID, Tty: req.Tty,
		Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr})
}

// PortForward returns the URL through which a client reaches the pod's
// ports on its loopback.
func (s *Server) PortForward(ctx context.Context, req *runtime.PortForwardRequest) (*runtime.PortForwardResponse, error) {
	ss, err := s.streamServer()
	if err != nil {
		return nil, err
	}
	sb, _, err := s.readySandbox(ctx, req.PodSandboxId)
	if err != nil {
		return nil, err
	}
	for _, p := range req.Port {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("port forward to pod %s: port %d: %w", sb.ID, p, errdefs.ErrInvalidArgument)
		}
	}
	return ss.GetPortForward(&runtime.PortForwardRequest{PodSandboxId: sb.ID, Port: req.Port})
}

// readySandbox is the pod id names and its infra container's pid, if the
// pod is ready.
func (s *Server) readySandbox(ctx context.Context, id string) (metadata.Container, int, error) {
	sb, err := s.sandbox(ctx, id)
	if err != nil {
		return sb, 0, err
	}
	st, err := s.eng.State(ctx, sb)
	if err != nil {
		return sb, 0, err
	}
	if st.Status != engine.StatusRunning || st.Pid == 0 {
		return sb, 0, fmt.Errorf("pod %s is not ready (its infra container is %s): %w", sb.ID, st.Status, errdefs.ErrFailedPrecond)
	}
	return sb, st.Pid, nil
}

// streamRuntime is what the stream server calls once a client has
// connected with its streams.
type streamRuntime struct{ s *Server }

var _ streaming.Runtime = streamRuntime{}

// Exec runs cmd in the container with the client's streams. A non-zero
// exit is a utilexec.ExitError: the library reports that to the client
// as the command's exit code rather than as a failure of the exec.
func (r streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	c, err := r.s.runningContainer(ctx, id)
	if err != nil {
		return err
	}
	x := engine.ExecConfig{Args: cmd, TTY: tty}
	var code int
	if tty {
		code, err = r.execTTY(ctx, c, x, in, out, resize)
	} else {
		code, err = r.execPipes(ctx, c, x, in, out, errw)
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

// execPipes runs without a terminal: the process gets the streams as its
// stdio.
func (r streamRuntime) execPipes(ctx context.Context, c metadata.Container, x engine.ExecConfig, in io.Reader, out, errw io.Writer) (int, error) {
	// Every stream is set: with none, the runtime would get berthd's own.
	x.Stdin, x.Stdout, x.Stderr = bytes.NewReader(nil), writerOr(out), writerOr(errw)
	if in != nil {
		// A pipe of our own rather than the stream itself: os/exec waits
		// for a stdin reader it copies from, and a client may keep its
		// stdin open after the command has exited.
		pr, pw, err := os.Pipe()
		if err != nil {
			return 0, err
		}
		defer pr.Close()
		defer pw.Close()
		go func() {
			io.Copy(pw, in)
			pw.Close() // the process reads EOF when the client's stdin ends
		}()
		x.Stdin = pr
	}
	return r.s.eng.Exec(ctx, c, x)
}

func writerOr(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// execTTY runs with a terminal: the runtime hands its master over a
// console socket, and the client's stdin, output and resizes go through it.
func (r streamRuntime) execTTY(ctx context.Context, c metadata.Container, x engine.ExecConfig, in io.Reader, out io.Writer, resize <-chan remotecommand.TerminalSize) (int, error) {
	dir, err := os.MkdirTemp("", "berthd-exec-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(dir, "console.sock"), Net: "unix"})
	if err != nil {
		return 0, err
	}
	defer ln.Close() // ends the accept if the runtime failed before sending
	term := &terminal{}
	done := make(chan struct{})
	defer close(done)
	go term.resizes(resize, done)
	received, drained := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(drained)
		master, err := monitor.ReceiveTerminal(ln)
		if err == nil {
			master = pollable(master)
			term.set(master)
		}
		close(received)
		if err != nil {
			return
		}
		if in != nil {
			go io.Copy(master, in)
		}
		// Ends with EIO once no process holds the terminal's other side.
		io.Copy(writerOr(out), master)
	}()
	// The runtime's own messages (a command not found, ...) are shown to
	// the client when no terminal came.
	var rtErr bytes.Buffer
	x.ConsoleSocket = ln.Addr().String()
	x.Stdin, x.Stdout, x.Stderr = bytes.NewReader(nil), io.Discard, &limitedBuffer{b: &rtErr, max: 4 << 10}
	code, err := r.s.eng.Exec(ctx, c, x)
	// The runtime has exited: a terminal it sent was accepted long since
	// (the accept waits from before the runtime starts, which sends it
	// before the command runs); without one, the accept fails now.
	ln.Close()
	<-received
	if term.get() == nil {
		if out != nil && rtErr.Len() > 0 {
			out.Write(rtErr.Bytes())
		}
	} else {
		select {
		case <-drained:
		case <-time.After(drainWait):
		}
	}
	term.close()
	return code, err
}

// terminal is an exec's pty master, which arrives after the client may
// already have sent its size.
type terminal struct {
	mu      sync.Mutex
	master  *os.File
	pending *remotecommand.TerminalSize
	closed  bool
}

func (t *terminal) set(master *os.File) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		master.Close()
		return
	}
	t.master = master
	if t.pending != nil {
		setWinsize(master, *t.pending)
	}
}

func (t *terminal) get() *os.File {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.master
}

func (t *terminal) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	if t.master != nil {
		t.master.Close()
	}
}

// resizes applies the client's sizes until done; it keeps reading after
// the master is closed, since the library blocks until they are taken.
func (t *terminal) resizes(ch <-chan remotecommand.TerminalSize, done <-chan struct{}) {
	for {
		select {
		case size, ok := <-ch:
			if !ok {
				return
			}
			t.mu.Lock()
			if t.master != nil && !t.closed {
				setWinsize(t.master, size)
			} else {
				t.pending = &size
			}
			t.mu.Unlock()
		case <-done:
			return
		}
	}
}

// pollable makes the reads of a terminal master end when it is closed.
// The runtime sends a blocking descriptor, whose read would hold a thread
// for as long as a process left in the background holds the terminal.
func pollable(f *os.File) *os.File {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return f
	}
	f.Close()
	unix.SetNonblock(fd, true)
	return os.NewFile(uintptr(fd), "pty-master")
}

func setWinsize(f *os.File, size remotecommand.TerminalSize) {
	// Through SyscallConn: f.Fd() would make the descriptor blocking again.
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Height, Col: size.Width})
	})
}

// limitedBuffer keeps the first max bytes written and drops the rest.
type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// Attach joins the container's stdio through its monitor's attach
// socket: output frames to out and errw, the client's stdin (if the
// container was made with one) and resizes to the monitor. It ends when
// the container exits, or when the client's stdin ends: for a container
// with stdin_once that closes the container's stdin, which it then
// usually exits on.
func (r streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	c, err := r.s.record(ctx, id, kindContainer)
	if err != nil {
		return err
	}
	conn, ec, err := r.s.eng.Attach(ctx, c)
	if err != nil {
		return err
	}
	defer conn.Close()
	cfg := fromLabel[runtime.ContainerConfig](c, labelConfig)
	var wmu sync.Mutex // stdin and resize frames interleave on one socket
	send := func(typ byte, p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		return monitor.WriteFrame(conn, typ, p)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case size, ok := <-resize:
				if !ok {
					return
				}
				if ec.TTY {
					var b [4]byte
					binary.BigEndian.PutUint16(b[:], size.Height)
					binary.BigEndian.PutUint16(b[2:], size.Width)
					send(monitor.Resize, b[:])
				}
			case <-done:
				return
			}
		}
	}()
	result := make(chan error, 2)
	go func() { result <- attachOutput(conn, out, errw) }()
	if in != nil && ec.Stdin {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := in.Read(buf)
				if n > 0 && send(monitor.Stdin, buf[:n]) != nil {
					return // the monitor went away: the output side says why
				}
				if err != nil {
					break
				}
			}
			if cfg.StdinOnce && !ec.TTY {
				send(monitor.CloseStdin, nil) // then wait for the exit
				return
			}
			result <- nil // this client is done; the container runs on
		}()
	}
	return <-result
}

// attachOutput copies the monitor's output frames until the exit frame.
func attachOutput(conn net.Conn, out, errw io.Writer) error {
	for {
		typ, p, err := monitor.ReadFrame(conn)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("the container's monitor went away before the container exited: %w", errdefs.ErrUnavailable)
			}
			return err
		}
		var w io.Writer
		switch typ {
		case monitor.Stdout:
			w = out
		case monitor.Stderr:
			w = errw
		case monitor.Exit:
			return nil
		}
		if w != nil {
			if _, err := w.Write(p); err != nil {
				return fmt.Errorf("client: %w", err)
			}
		}
	}
}

// PortForward connects stream to port on the pod's loopback: inside the
// pod's network namespace, or the host's for a host-network pod.
func (r streamRuntime) PortForward(ctx context.Context, id string, port int32, stream io.ReadWriteCloser) error {
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port forward to pod %s: port %d: %w", id, port, errdefs.ErrInvalidArgument)
	}
	sb, pid, err := r.s.readySandbox(ctx, id)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	cfg := fromLabel[runtime.PodSandboxConfig](sb, labelConfig)
	var conn net.Conn
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetNetwork() == runtime.NamespaceMode_NODE {
		conn, err = (&net.Dialer{Timeout: dialTimeout}).DialContext(ctx, "tcp", addr)
	} else {
		conn, err = network.DialInNetNS(nsPath(pid, "net"), "tcp", addr, dialTimeout)
	}
	if err != nil {
		return fmt.Errorf("port forward to pod %s: %w", sb.ID, err)
	}
	defer conn.Close()
	return pipe(conn.(*net.TCPConn), stream)
}

const dialTimeout = 10 * time.Second

// pipe copies both ways until the pod's side has sent all it will: the
// client's end of input half-closes the connection, so a server that
// answers after reading everything still answers.
func pipe(conn *net.TCPConn, stream io.ReadWriter) error {
	go func() {
		if _, err := io.Copy(conn, stream); err != nil {
			conn.Close() // the client is gone: stop the other way too
			return
		}
		conn.CloseWrite()
	}()
	_, err := io.Copy(stream, conn)
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}
