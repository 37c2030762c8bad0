// Package monitor holds what berth-monitor and its clients share: the
// container log in the CRI format (with size-based rotation), the exit
// record, and the attach protocol.
//
// Attach frames, both ways: one type byte, a big-endian uint32 length,
// then the payload. Monitor to client: Stdout, Stderr, Exit (a big-endian
// int32 exit code; the last frame). Client to monitor: Stdin, CloseStdin,
// Resize (two big-endian uint16: rows, columns).
package monitor

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/fsutil"
	"golang.org/x/sys/unix"
)

// Frame types.
const (
	Stdout     byte = 1
	Stderr     byte = 2
	Exit       byte = 'x'
	Stdin      byte = 0
	CloseStdin byte = 'c'
	Resize     byte = 'r'
)

// Files in a container's directory.
const (
	ExitFile   = "exit.json"
	AttachSock = "attach.sock"
	PidFile    = "pid"
	MonitorPid = "monitor.pid"
)

// maxFrame bounds a frame a peer may send.
const maxFrame = 1 << 20

// WriteFrame writes one frame.
func WriteFrame(w io.Writer, typ byte, payload []byte) error {
	var h [5]byte
	h[0] = typ
	binary.BigEndian.PutUint32(h[1:], uint32(len(payload)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(payload)
	return err
}

// ReadFrame reads one frame.
func ReadFrame(r io.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(h[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("attach: frame of %d bytes: %w", n, errdefs.ErrInvalidArgument)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	return h[0], p, nil
}

// ExitStatus is how a container's init ended.
type ExitStatus struct {
	Code     int       `json:"exitCode"`
	Signal   int       `json:"signal,omitempty"`
	ExitedAt time.Time `json:"exitedAt"`
	// Error is set when the container could not be started at all.
	Error string `json:"error,omitempty"`
}

// WriteExit records st in dir, atomically.
func WriteExit(dir string, st ExitStatus) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return fsutil.ReplaceFile(filepath.Join(dir, ExitFile), data, 0o644)
}

// ReadExit reads dir's exit record; ErrNotFound while the container runs
// (or before it ran).
func ReadExit(dir string) (ExitStatus, error) {
	var st ExitStatus
	data, err := os.ReadFile(filepath.Join(dir, ExitFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, fmt.Errorf("exit record: %w", errdefs.ErrNotFound)
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("exit record %s: %v: %w", dir, err, errdefs.ErrInvalidArgument)
	}
	return st, nil
}

// Log writes the CRI log format: "<RFC3339Nano time> <stream> <F|P> <text>"
// per line, P for a line cut because it was too long (or ended without a
// newline when the stream closed). At maxSize bytes the file is rotated to
// path.1 (one old file is kept).
type Log struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	size    int64
	maxSize int64
	partial map[string][]byte
}

// maxLine is where a line without a newline is cut into a partial entry.
const maxLine = 16 << 10

// OpenLog opens (appends to) the log at path; maxSize 0 never rotates.
func OpenLog(path string, maxSize int64) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	fi, _ := f.Stat()
	return &Log{path: path, f: f, size: fi.Size(), maxSize: maxSize, partial: map[string][]byte{}}, nil
}

// Write logs p, read from stream ("stdout" or "stderr").
func (l *Log) Write(stream string, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := append(l.partial[stream], p...)
	for {
		i := indexByte(buf, '\n')
		if i < 0 {
			break
		}
		if err := l.line(stream, 'F', buf[:i]); err != nil {
			return err
		}
		buf = buf[i+1:]
	}
	for len(buf) >= maxLine {
		if err := l.line(stream, 'P', buf[:maxLine]); err != nil {
			return err
		}
		buf = buf[maxLine:]
	}
	l.partial[stream] = append(l.partial[stream][:0], buf...)
	return nil
}

// Close writes what is left of unterminated lines and closes the file.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, stream := range []string{"stdout", "stderr"} {
		if len(l.partial[stream]) > 0 {
			l.line(stream, 'P', l.partial[stream])
		}
	}
	return l.f.Close()
}

func (l *Log) line(stream string, tag byte, text []byte) error {
	entry := make([]byte, 0, len(text)+64)
	entry = time.Now().UTC().AppendFormat(entry, time.RFC3339Nano)
	entry = append(entry, ' ')
	entry = append(entry, stream...)
	entry = append(entry, ' ', tag, ' ')
	entry = append(entry, text...)
	entry = append(entry, '\n')
	if l.maxSize > 0 && l.size+int64(len(entry)) > l.maxSize && l.size > 0 {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(entry)
	l.size += int64(n)
	return err
}

func (l *Log) rotate() error {
	if err := os.Rename(l.path, l.path+".1"); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return err
	}
	l.f.Close()
	l.f, l.size = f, 0
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}

// DialAttach connects to the attach socket in dir. A socket's path must
// fit in 108 bytes; dir may be longer, so the path goes through an open
// descriptor of dir (/proc/self/fd/N/attach.sock).
func DialAttach(dir string) (*net.UnixConn, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: fmt.Sprintf("/proc/self/fd/%d/%s", d.Fd(), AttachSock), Net: "unix"})
}

// ReceiveTerminal accepts one connection on ln and takes the terminal
// master an OCI runtime sends on its console socket (SCM_RIGHTS).
func ReceiveTerminal(ln *net.UnixListener) (*os.File, error) {
	c, err := ln.AcceptUnix()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := c.ReadMsgUnix(make([]byte, 4096), oob)
	if err != nil {
		return nil, err
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("console socket: no terminal received: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) == 0 {
		return nil, fmt.Errorf("console socket: no terminal received: %v", err)
	}
	return os.NewFile(uintptr(fds[0]), "console"), nil
}
