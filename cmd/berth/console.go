package main

import (
	"io"
	"net"
	"os"
	"path/filepath"

	"github.com/berthdev/berth/internal/monitor"
	"golang.org/x/sys/unix"
)

// consoleProxy listens on a unix socket for the terminal master an OCI
// runtime sends for `exec -t`, and then copies between it and our
// terminal (in raw mode). done stops it and restores the terminal.
func consoleProxy(interactive bool) (string, func(), error) {
	dir, err := os.MkdirTemp("", "berth-console-")
	if err != nil {
		return "", nil, err
	}
	sock := filepath.Join(dir, "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	var old *unix.Termios
	if isTerminal(os.Stdin) {
		if t, err := unix.IoctlGetTermios(0, unix.TCGETS); err == nil {
			old = t
			raw := *t
			raw.Lflag &^= unix.ECHO | unix.ICANON | unix.ISIG | unix.IEXTEN
			raw.Iflag &^= unix.ICRNL | unix.IXON
			raw.Oflag &^= unix.OPOST
			unix.IoctlSetTermios(0, unix.TCSETS, &raw)
		}
	}
	go func() {
		master, err := monitor.ReceiveTerminal(ln)
		if err != nil {
			return
		}
		if ws, err := unix.IoctlGetWinsize(0, unix.TIOCGWINSZ); err == nil {
			unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws)
		}
		if interactive {
			go io.Copy(master, os.Stdin)
		}
		io.Copy(os.Stdout, master) // ends when the process's side closes
		master.Close()
	}()
	done := func() {
		ln.Close()
		if old != nil {
			unix.IoctlSetTermios(0, unix.TCSETS, old)
		}
		os.RemoveAll(dir)
	}
	return sock, done, nil
}
