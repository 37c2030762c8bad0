package main

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/berthdev/berth/internal/metadata"
	"github.com/berthdev/berth/internal/monitor"
	"golang.org/x/sys/unix"
)

// attachment is a connection to a container's monitor: its output goes to
// our stdout and stderr, our stdin (with -i) to the container, and the
// last frame is the exit code.
type attachment struct {
	conn  *net.UnixConn
	raw   *unix.Termios // the terminal's state before raw mode, to restore
	stdin bool
	tty   bool
	// detachKeys, typed on our stdin, end the attachment and leave the
	// container running (ctrl-p ctrl-q); none for run.
	detachKeys []byte
	// keepStdin leaves the container's stdin open when ours ends: it is
	// the container's for its whole life, not this client's (attach).
	keepStdin bool
	// proxy, if set, gets the signals berth receives (--sig-proxy).
	proxy    func(os.Signal)
	detached chan struct{}
}

// errDetached ends a stream left with the detach keys.
var errDetached = errors.New("detached from the container, which runs on")

func attach(dir string, stdin, tty bool) (*attachment, error) {
	c, err := monitor.DialAttach(dir)
	if err != nil {
		return nil, err
	}
	return &attachment{conn: c, stdin: stdin, tty: tty}, nil
}

// stream copies until the container exits and returns its exit code.
func (a *attachment) stream() (int, error) {
	defer a.conn.Close()
	if a.tty && isTerminal(os.Stdin) {
		if old, err := unix.IoctlGetTermios(0, unix.TCGETS); err == nil {
			raw := *old
			raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
			raw.Oflag &^= unix.OPOST
			raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
			raw.Cflag &^= unix.CSIZE | unix.PARENB
			raw.Cflag |= unix.CS8
			if unix.IoctlSetTermios(0, unix.TCSETS, &raw) == nil {
				a.raw = old
				defer unix.IoctlSetTermios(0, unix.TCSETS, old)
			}
		}
		a.resize()
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				a.resize()
			}
		}()
	}
	if a.proxy != nil && !a.tty {
		sigs := make(chan os.Signal, 8)
		signal.Notify(sigs, proxiedSignals...)
		defer signal.Stop(sigs)
		go func() {
			for s := range sigs {
				a.proxy(s)
			}
		}()
	}
	a.detached = make(chan struct{})
	if a.stdin {
		go a.copyStdin()
	}
	for {
		typ, p, err := monitor.ReadFrame(a.conn)
		if err != nil {
			select {
			case <-a.detached:
				return 0, errDetached
			default:
			}
			if errors.Is(err, io.EOF) {
				return 0, errors.New("the container's monitor went away before the container exited")
			}
			return 0, err
		}
		switch typ {
		case monitor.Stdout:
			os.Stdout.Write(p)
		case monitor.Stderr:
			os.Stderr.Write(p)
		case monitor.Exit:
			if len(p) == 4 {
				return int(int32(binary.BigEndian.Uint32(p))), nil
			}
			return 255, nil
		}
	}
}

// copyStdin sends our stdin to the container, watching for the detach
// keys: a key that starts them is held back until the next one shows
// whether it was them.
func (a *attachment) copyStdin() {
	buf := make([]byte, 32<<10)
	matched := 0
	for {
		n, err := os.Stdin.Read(buf)
		out := make([]byte, 0, n+len(a.detachKeys))
		for _, b := range buf[:n] {
			if len(a.detachKeys) == 0 {
				out = append(out, b)
				continue
			}
			if b == a.detachKeys[matched] {
				if matched++; matched == len(a.detachKeys) {
					monitor.WriteFrame(a.conn, monitor.Stdin, out)
					close(a.detached)
					a.conn.Close()
					return
				}
				continue
			}
			out = append(out, a.detachKeys[:matched]...)
			matched = 0
			if b == a.detachKeys[0] {
				matched = 1
				continue
			}
			out = append(out, b)
		}
		if err != nil && matched > 0 {
			out = append(out, a.detachKeys[:matched]...) // the start of them, then no more
		}
		if len(out) > 0 && monitor.WriteFrame(a.conn, monitor.Stdin, out) != nil {
			return
		}
		if err != nil {
			if !a.keepStdin {
				monitor.WriteFrame(a.conn, monitor.CloseStdin, nil)
			}
			return
		}
	}
}

// proxiedSignals are what --sig-proxy passes on: what people and scripts
// send to end or poke a process. Job control (TSTP, TTIN, ...) stays
// berth's own: a stopped berth must not stop the container.
var proxiedSignals = []os.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGQUIT, syscall.SIGTERM,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGALRM}

// signalProxy sends a signal berth gets on to c.
func signalProxy(ctx context.Context, s *store, c metadata.Container) func(os.Signal) {
	return func(sig os.Signal) {
		if n, ok := sig.(unix.Signal); ok {
			s.eng.Kill(context.WithoutCancel(ctx), c, n)
		}
	}
}

func (a *attachment) resize() {
	ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ)
	if err != nil {
		return
	}
	var b [4]byte
	binary.BigEndian.PutUint16(b[:], ws.Row)
	binary.BigEndian.PutUint16(b[2:], ws.Col)
	monitor.WriteFrame(a.conn, monitor.Resize, b[:])
}
