package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestProcessArgsEnvCwd(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) {
		s.Process.Args = []string{"sh", "-c", `echo "args=$0,$1,$2"; echo "FOO=$FOO"; echo "EMPTY=[$EMPTY]"; pwd`,
			"zero", "one two", "three"}
		s.Process.Env = []string{"PATH=/bin", "FOO=bar baz", "EMPTY="}
		s.Process.Cwd = "/home/user"
	})
	got := lines(c.mustRun())
	if len(got) != 4 || got[0] != "args=zero,one two,three" || got[1] != "FOO=bar baz" || got[2] != "EMPTY=[]" || got[3] != "/home/user" {
		t.Fatalf("process: %q", got)
	}
}

func TestProcessEnvNotLeaked(t *testing.T) {
	c := newCtr(t, sh("env"), func(s *specs.Spec) { s.Process.Env = []string{"PATH=/bin", "ONLY=this"} })
	out := c.mustRun()
	wantContains(t, "env", out, "ONLY=this\n", "PATH=/bin\n")
	wantNotContains(t, "env", out, "_BERTH", "HOME=/root\nGO", "GOCACHE", "GOPATH")
}

func TestProcessCwdCreated(t *testing.T) {
	// runc creates a missing cwd (as the process's user would need it).
	c := newCtr(t, sh("pwd"), func(s *specs.Spec) { s.Process.Cwd = "/new/work/dir" })
	if got := lines(c.mustRun()); len(got) != 1 || got[0] != "/new/work/dir" {
		t.Errorf("cwd: %q", got)
	}
}

func TestProcessUser(t *testing.T) {
	c := newCtr(t, sh("id -u; id -g; id -G; grep -E '^(Uid|Gid|Groups):' /proc/self/status; touch /tmp/owned; stat -c %u:%g /tmp/owned"),
		func(s *specs.Spec) {
			s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{5, 2000}}
		})
	out := c.mustRun()
	l := lines(out)
	if len(l) != 7 {
		t.Fatalf("id output: %q", out)
	}
	if l[0] != "1000" || l[1] != "1000" {
		t.Errorf("uid/gid: %q %q, want 1000 1000", l[0], l[1])
	}
	groups := strings.Fields(l[2])
	want := map[string]bool{"1000": true, "5": true, "2000": true}
	for _, g := range groups {
		delete(want, g)
	}
	if len(want) != 0 || len(groups) != 3 {
		t.Errorf("id -G: %q, want 1000 5 2000", l[2])
	}
	if f := strings.Fields(field(out, "Uid")); strings.Join(f, " ") != "1000 1000 1000 1000" {
		t.Errorf("Uid: %q", field(out, "Uid"))
	}
	if f := strings.Fields(field(out, "Gid")); strings.Join(f, " ") != "1000 1000 1000 1000" {
		t.Errorf("Gid: %q", field(out, "Gid"))
	}
	if f := strings.Fields(field(out, "Groups")); strings.Join(f, " ") != "5 2000" {
		t.Errorf("Groups: %q, want exactly the additionalGids 5 2000", field(out, "Groups"))
	}
	if l[6] != "1000:1000" {
		t.Errorf("a file the process creates belongs to %s", l[6])
	}
}

func TestProcessUmask(t *testing.T) {
	c := newCtr(t, sh("umask; touch /tmp/f; mkdir /tmp/d; stat -c %a /tmp/f /tmp/d"), func(s *specs.Spec) {
		s.Process.User.Umask = ptr(uint32(0o027))
	})
	got := lines(c.mustRun())
	if strings.Join(got, " ") != "0027 640 750" {
		t.Errorf("umask 027: %q, want 0027 640 750", got)
	}
}

func TestProcessRlimits(t *testing.T) {
	c := newCtr(t, sh("ulimit -n; ulimit -Hn; ulimit -c; grep 'Max open files' /proc/self/limits"), func(s *specs.Spec) {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 512, Hard: 768}, {Type: "RLIMIT_CORE", Soft: 0, Hard: 0}}
	})
	out := c.mustRun()
	l := lines(out)
	if len(l) != 4 || l[0] != "512" || l[1] != "768" || l[2] != "0" {
		t.Fatalf("rlimits: %q, want 512 768 0", l)
	}
	if f := strings.Fields(l[3]); len(f) < 5 || f[3] != "512" || f[4] != "768" {
		t.Errorf("/proc/self/limits: %q", l[3])
	}
}

// capMask is the /proc/<pid>/status hex of a set of capability numbers.
func capMask(caps ...int) string {
	var m uint64
	for _, c := range caps {
		m |= 1 << c
	}
	return fmt.Sprintf("%016x", m)
}

const (
	capChown          = 0
	capDacOverride    = 1
	capKill           = 5
	capSetgid         = 6
	capSetuid         = 7
	capNetBindService = 10
	capNetRaw         = 13
	capAuditWrite     = 29
)

func TestCapabilitiesRoot(t *testing.T) {
	// For root the kernel makes permitted and effective the bounding set at
	// exec; inheritable and ambient pass as configured.
	bnd := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_AUDIT_WRITE"}
	c := newCtr(t, sh("grep ^Cap /proc/self/status; touch /tmp/f; chown 1000 /tmp/f && echo chown-ok; cat /root/secret 2>/dev/null || echo dac-denied"),
		func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: bnd, Effective: bnd, Permitted: bnd,
				Inheritable: []string{"CAP_KILL", "CAP_NET_BIND_SERVICE"}, Ambient: []string{"CAP_KILL"}}
		})
	os.WriteFile(filepath.Join(c.rootfs, "root/secret"), []byte("x"), 0o600)
	os.Chown(filepath.Join(c.rootfs, "root/secret"), 1000, 1000)
	out := c.mustRun()
	b := capMask(capChown, capKill, capNetBindService, capAuditWrite)
	want := map[string]string{"CapBnd": b, "CapEff": b, "CapPrm": b,
		"CapInh": capMask(capKill, capNetBindService), "CapAmb": capMask(capKill)}
	for k, v := range want {
		if got := field(out, k); got != v {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	wantContains(t, "capabilities in use", out, "chown-ok", "dac-denied")
}

func TestCapabilitiesUser(t *testing.T) {
	// For a non-root user the ambient set is what survives exec: with every
	// set equal, each line of /proc/self/status shows the configured set.
	set := []string{"CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
	bnd := append([]string{"CAP_CHOWN", "CAP_SETUID"}, set...)
	c := newCtr(t, sh("grep ^Cap /proc/self/status; id -u"), func(s *specs.Spec) {
		s.Process.User = specs.User{UID: 1000, GID: 1000}
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: bnd, Effective: set, Permitted: set,
			Inheritable: set, Ambient: set}
	})
	out := c.mustRun()
	s := capMask(capKill, capNetBindService, capNetRaw)
	want := map[string]string{"CapBnd": capMask(capChown, capSetuid, capKill, capNetBindService, capNetRaw),
		"CapEff": s, "CapPrm": s, "CapInh": s, "CapAmb": s}
	for k, v := range want {
		if got := field(out, k); got != v {
			t.Errorf("%s = %s, want %s", k, got, v)
		}
	}
	wantContains(t, "user", out, "1000\n")
}

func TestCapabilitiesNone(t *testing.T) {
	// No capabilities at all: root that cannot chown.
	c := newCtr(t, sh("grep ^Cap /proc/self/status; touch /tmp/f; chown 1000 /tmp/f 2>/dev/null || echo chown-denied"),
		func(s *specs.Spec) { s.Process.Capabilities = &specs.LinuxCapabilities{} })
	out := c.mustRun()
	for _, k := range []string{"CapBnd", "CapEff", "CapPrm", "CapInh", "CapAmb"} {
		if got := field(out, k); got != capMask() {
			t.Errorf("%s = %s, want none", k, got)
		}
	}
	wantContains(t, "no capabilities", out, "chown-denied")
}

func TestNoNewPrivileges(t *testing.T) {
	for _, nnp := range []bool{true, false} {
		t.Run(fmt.Sprint(nnp), func(t *testing.T) {
			c := newCtr(t, sh("grep NoNewPrivs /proc/self/status"), func(s *specs.Spec) { s.Process.NoNewPrivileges = nnp })
			want := "0"
			if nnp {
				want = "1"
			}
			if got := field(c.mustRun(), "NoNewPrivs"); got != want {
				t.Errorf("NoNewPrivs = %q, want %s", got, want)
			}
		})
	}
}

func TestOOMScoreAdj(t *testing.T) {
	c := newCtr(t, sh("cat /proc/self/oom_score_adj"), func(s *specs.Spec) { s.Process.OOMScoreAdj = ptr(500) })
	if got := lines(c.mustRun()); len(got) != 1 || got[0] != "500" {
		t.Errorf("oom_score_adj: %q, want 500", got)
	}
}

// TestOOMScoreAdjNegative: lowering the score needs CAP_SYS_RESOURCE, which
// root lacks on some hosts (this VM answers EIO). The container still runs,
// with the score applied where the host allows it, and otherwise a warning
// in the runtime's log, never in the container's own output.
func TestOOMScoreAdjNegative(t *testing.T) {
	c := newCtr(t, sh("cat /proc/self/oom_score_adj"), func(s *specs.Spec) { s.Process.OOMScoreAdj = ptr(-500) })
	log := filepath.Join(t.TempDir(), "runtime.log")
	r := c.rt("--log", log, "--log-format", "json", "run", "--bundle", c.bundle, c.id)
	if r.code != 0 {
		t.Fatalf("run with oomScoreAdj -500: %v", r)
	}
	got := strings.TrimSpace(r.out)
	if strings.Contains(r.out, "warning") || strings.Contains(r.err, "oomScoreAdj") {
		t.Errorf("the warning reached the container's output: stdout %q stderr %q", r.out, r.err)
	}
	if got != "-500" {
		b, _ := os.ReadFile(log)
		if !strings.Contains(string(b), "oomScoreAdj -500 not applied") || !strings.Contains(string(b), `"level":"warn"`) {
			t.Errorf("score %q not applied and no warning in the runtime log: %q", got, b)
		}
	}
}

// consoleSocket listens on a unix socket for a pty master (runc's
// --console-socket protocol) and returns its path and a channel that gets
// everything read from the master until the container closes its side.
func consoleSocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	out := make(chan string, 1)
	go func() {
		defer l.Close()
		conn, err := l.AcceptUnix()
		if err != nil {
			out <- "accept: " + err.Error()
			return
		}
		defer conn.Close()
		buf := make([]byte, 64)
		oob := make([]byte, unix.CmsgSpace(4))
		_, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			out <- "recvmsg: " + err.Error()
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			out <- fmt.Sprintf("control message: %v (%d)", err, len(msgs))
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			out <- fmt.Sprintf("unix rights: %v", err)
			return
		}
		master := os.NewFile(uintptr(fds[0]), "pty-master")
		defer master.Close()
		var sb strings.Builder
		b := make([]byte, 4096)
		for {
			n, err := master.Read(b)
			sb.Write(b[:n])
			if err != nil { // EIO once every slave fd is closed
				break
			}
		}
		out <- sb.String()
	}()
	return path, out
}

func recvConsole(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(stateTimeout):
		t.Fatal("no output from the console socket")
		return ""
	}
}

func TestTerminal(t *testing.T) {
	c := newCtr(t, sh("tty; echo term-ok; stty size"), func(s *specs.Spec) {
		s.Process.Terminal = true
		s.Process.ConsoleSize = &specs.Box{Height: 33, Width: 111}
	})
	sock, ch := consoleSocket(t)
	c.mustCreate("--console-socket", sock)
	c.mustStart()
	out := strings.ReplaceAll(recvConsole(t, ch), "\r", "")
	l := lines(out)
	if len(l) != 3 || (l[0] != "/dev/pts/0" && l[0] != "/dev/console") || l[1] != "term-ok" {
		t.Fatalf("terminal output: %q", out)
	}
	if l[2] != "33 111" {
		t.Errorf("stty size: %q, want the consoleSize 33 111", l[2])
	}
	c.waitStatus("stopped")
}

func TestTerminalNeedsConsoleSocket(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Terminal = true })
	r := c.create()
	if r.code == 0 {
		t.Fatalf("create with terminal and no --console-socket succeeded: %v", r)
	}
	wantContains(t, "create error", r.err, "console-socket")
	noStateLeft(t, c.root)
}

func TestTerminalUserNamespace(t *testing.T) {
	c := newCtr(t, withUserNS, sh("tty; id -u"), func(s *specs.Spec) { s.Process.Terminal = true })
	sock, ch := consoleSocket(t)
	c.mustCreate("--console-socket", sock)
	c.mustStart()
	out := strings.ReplaceAll(recvConsole(t, ch), "\r", "")
	l := lines(out)
	if len(l) != 2 || (l[0] != "/dev/pts/0" && l[0] != "/dev/console") || l[1] != "0" {
		t.Fatalf("terminal in a user namespace: %q", out)
	}
}

func TestRlimitAboveHostLimit(t *testing.T) {
	// Raising a hard limit needs CAP_SYS_RESOURCE, which the runtime has
	// and the process (default capabilities) has not: the limit must be
	// set before the capabilities are dropped.
	requireRoot(t)
	if eff, _ := strconv.ParseUint(field(readFile(t, "/proc/self/status"), "CapEff"), 16, 64); eff&(1<<24) == 0 {
		t.Skip("this host gives root no CAP_SYS_RESOURCE: no one can raise a hard limit")
	}
	var cur unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &cur); err != nil {
		t.Fatal(err)
	}
	want := cur.Max + 1000
	nrOpen, _ := strconv.ParseUint(strings.TrimSpace(readFile(t, "/proc/sys/fs/nr_open")), 10, 64)
	if want > nrOpen {
		t.Skipf("hard NOFILE %d is already at fs.nr_open", cur.Max)
	}
	c := newCtr(t, sh("ulimit -n; ulimit -Hn"), func(s *specs.Spec) {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: want, Hard: want}}
	})
	w := strconv.FormatUint(want, 10)
	if got := lines(c.mustRun()); strings.Join(got, " ") != w+" "+w {
		t.Errorf("RLIMIT_NOFILE above the runtime's hard limit: %q, want %s %s", got, w, w)
	}
}
