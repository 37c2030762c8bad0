package libct

import (
	"encoding/json"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// setupConsole gives the process a new pty from the container's devpts:
// the slave becomes its stdio and controlling terminal, the master goes to
// the caller through the console socket (as runc does).
func setupConsole(sock *os.File, size *specs.Box, bindConsole bool) error {
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("process.terminal: open /dev/ptmx: %w", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		return fmt.Errorf("process.terminal: unlock pty: %w", err)
	}
	n, err := unix.IoctlGetInt(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		return fmt.Errorf("process.terminal: pty number: %w", err)
	}
	slavePath := fmt.Sprintf("/dev/pts/%d", n)
	slave, err := os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("process.terminal: open %s: %w", slavePath, err)
	}
	defer slave.Close()
	if size != nil {
		ws := &unix.Winsize{Row: uint16(size.Height), Col: uint16(size.Width)}
		if err := unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, ws); err != nil {
			return fmt.Errorf("process.consoleSize: %w", err)
		}
	}
	if bindConsole {
		if f, err := os.OpenFile("/dev/console", os.O_CREATE|os.O_WRONLY|unix.O_CLOEXEC, 0o600); err == nil {
			f.Close()
		}
		if err := unix.Mount(slavePath, "/dev/console", "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("process.terminal: bind /dev/console: %w", err)
		}
	}
	rights := unix.UnixRights(int(master.Fd()))
	if err := unix.Sendmsg(int(sock.Fd()), []byte("/dev/ptmx"), rights, nil, 0); err != nil {
		return fmt.Errorf("process.terminal: send pty master to the console socket: %w", err)
	}
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("process.terminal: setsid: %w", err)
	}
	if err := unix.IoctlSetInt(int(slave.Fd()), unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("process.terminal: controlling terminal: %w", err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(int(slave.Fd()), fd, 0); err != nil {
			return fmt.Errorf("process.terminal: dup: %w", err)
		}
	}
	return nil
}

// seccompListener is the connection to linux.seccomp.listenerPath, opened
// by the runtime on the host and handed to init.
var seccompListener *os.File
var seccompState *specs.State

// sendListener hands the notify fd to the agent with the process state.
func sendListener(s *specs.LinuxSeccomp, fd int) error {
	defer unix.Close(fd)
	if seccompListener == nil {
		return fmt.Errorf("no connection to the seccomp agent")
	}
	st := specs.ContainerProcessState{
		Version:  specs.Version,
		Fds:      []string{specs.SeccompFdName},
		Pid:      seccompState.Pid,
		Metadata: s.ListenerMetadata,
		State:    *seccompState,
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	err = unix.Sendmsg(int(seccompListener.Fd()), data, unix.UnixRights(fd), nil, 0)
	seccompListener.Close()
	return err
}
