package main

import (
	"encoding/json"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// seccomp_notif and seccomp_notif_resp of <linux/seccomp.h>.
type seccompNotif struct {
	ID    uint64
	Pid   uint32
	Flags uint32
	Nr    int32
	Arch  uint32
	IP    uint64
	Args  [6]uint64
}

type seccompNotifResp struct {
	ID    uint64
	Val   int64
	Error int32
	Flags uint32
}

const (
	ioctlNotifRecv = 0xc0502100 // _IOWR('!', 0, struct seccomp_notif)
	ioctlNotifSend = 0xc0182101 // _IOWR('!', 1, struct seccomp_notif_resp)
)

// TestSeccompNotify plays the seccomp agent of linux.seccomp.listenerPath:
// the runtime must hand it the listener fd with the container's process
// state and metadata, and the agent's answer must reach the container.
func TestSeccompNotify(t *testing.T) {
	for _, nnp := range []bool{true, false} {
		t.Run(map[bool]string{true: "noNewPrivileges", false: "privileged"}[nnp], func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "agent.sock")
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			type agentResult struct {
				state specs.ContainerProcessState
				nr    int32
				err   string
			}
			done := make(chan agentResult, 1)
			go func() {
				var res agentResult
				defer func() { done <- res }()
				l.SetDeadline(time.Now().Add(30 * time.Second))
				conn, err := l.AcceptUnix()
				if err != nil {
					res.err = "accept: " + err.Error()
					return
				}
				defer conn.Close()
				buf, oob := make([]byte, 64<<10), make([]byte, unix.CmsgSpace(4*4))
				n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
				if err != nil {
					res.err = "recvmsg: " + err.Error()
					return
				}
				if err := json.Unmarshal(buf[:n], &res.state); err != nil {
					res.err = "state: " + err.Error()
					return
				}
				msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
				if len(msgs) != 1 {
					res.err = "no fd passed"
					return
				}
				fds, _ := unix.ParseUnixRights(&msgs[0])
				if len(fds) != 1 {
					res.err = "want one fd"
					return
				}
				fd := fds[0]
				defer unix.Close(fd)
				var req seccompNotif
				if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ioctlNotifRecv, uintptr(unsafe.Pointer(&req))); e != 0 {
					res.err = "NOTIF_RECV: " + e.Error()
					return
				}
				res.nr = req.Nr
				resp := seccompNotifResp{ID: req.ID, Error: -int32(unix.EXDEV)}
				if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), ioctlNotifSend, uintptr(unsafe.Pointer(&resp))); e != 0 {
					res.err = "NOTIF_SEND: " + e.Error()
				}
			}()
			c := newCtr(t, func(s *specs.Spec) {
				s.Process.NoNewPrivileges = nnp
				s.Linux.Seccomp = &specs.LinuxSeccomp{
					DefaultAction:    specs.ActAllow,
					ListenerPath:     sock,
					ListenerMetadata: "agent-metadata",
					Syscalls:         []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActNotify}},
				}
			}, sh(`mkdir /tmp/notified 2>&1; echo "mkdir-rc=$?"`))
			out := c.mustRun()
			res := <-done
			if res.err != "" {
				t.Fatalf("agent: %s (container said %q)", res.err, out)
			}
			if !strings.Contains(out, "mkdir-rc=1") || !strings.Contains(out, "ross-device") {
				t.Errorf("the agent's EXDEV did not reach the container: %q", out)
			}
			st := res.state
			if st.Metadata != "agent-metadata" || len(st.Fds) != 1 || st.Fds[0] != specs.SeccompFdName ||
				st.State.ID != c.id || st.Pid <= 0 || st.State.Pid != st.Pid {
				t.Errorf("process state sent to the agent: %+v", st)
			}
			if res.nr != unix.SYS_MKDIR && res.nr != unix.SYS_MKDIRAT {
				t.Errorf("notified syscall %d, want mkdir or mkdirat", res.nr)
			}
		})
	}
}
