package main

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"

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
}

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
	if a.stdin {
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := os.Stdin.Read(buf)
				if n > 0 && monitor.WriteFrame(a.conn, monitor.Stdin, buf[:n]) != nil {
					return
				}
				if err != nil {
					monitor.WriteFrame(a.conn, monitor.CloseStdin, nil)
					return
				}
			}
		}()
	}
	for {
		typ, p, err := monitor.ReadFrame(a.conn)
		if err != nil {
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
