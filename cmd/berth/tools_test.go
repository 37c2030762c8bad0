package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// command is berth with the CLI's store, to run with a stdin or separate
// output streams.
func (c *cli) command(args ...string) *exec.Cmd {
	return exec.Command(berthBin, append(append([]string{}, c.args...), args...)...)
}

// syncBuffer is a buffer a command writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func exitCodeOf(t *testing.T, err error) int {
	t.Helper()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return 0
}

// TestAttach: attach gets the output of a container that prints in a loop
// and its exit code; stdin for one run with -i; the detach keys; signals
// passed on; a stopped container refused.
func TestAttach(t *testing.T) {
	c := containerCLI(t)
	c.must("run", "-d", "--name", "looper", fixture, "sh", "-c",
		"busybox sleep 0.5; i=0; while [ $i -lt 40 ]; do echo tick $i; i=$((i+1)); busybox sleep 0.05; done; exit 3")
	out, code := c.code("attach", "looper")
	if code != 3 || !strings.Contains(out, "tick 39\n") {
		t.Fatalf("attach: exit %d, output %q", code, out)
	}
	if out, code := c.code("attach", "looper"); code != 125 || !strings.Contains(out, "not running") {
		t.Fatalf("attach to an exited container: %d %q", code, out)
	}

	// Standard input: the container's (it was run with -i), not closed
	// when ours ends.
	c.must("run", "-d", "-i", "--name", "reader", fixture, "sh", "-c", "read a; echo got $a; exit 5")
	cmd := c.command("attach", "reader")
	cmd.Stdin = strings.NewReader("one\n")
	if out, err := cmd.CombinedOutput(); exitCodeOf(t, err) != 5 || !strings.Contains(string(out), "got one") {
		t.Fatalf("attach with stdin: %v %q", err, out)
	}

	// Detach keys (ctrl-p ctrl-q) leave the container running.
	c.must("run", "-d", "-i", "--name", "stay", fixture, "sh", "-c", "while read l; do echo $l; done; busybox sleep 60")
	cmd = c.command("attach", "stay")
	cmd.Stdin = strings.NewReader("before\n\x10\x11after\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("detach: %v %q", err, out)
	}
	if out := c.must("ps", "--filter", "name=stay", "--format", "{{.State}}"); out != "running\n" {
		t.Fatalf("after detaching: %q", out)
	}
	waitFor(t, func() bool { return strings.Contains(c.must("logs", "stay"), "before") })
	if out := c.must("logs", "stay"); strings.Contains(out, "after") {
		t.Errorf("what came after the detach keys reached the container: %q", out)
	}

	// --sig-proxy (the default): a signal to berth attach reaches the container.
	c.must("run", "-d", "--name", "trapper", fixture, "sh", "-c",
		"trap 'echo got-usr1; exit 9' USR1; while true; do echo alive; busybox sleep 0.1; done")
	cmd = c.command("attach", "trapper")
	var buf syncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(buf.String(), "alive") }) // attached
	cmd.Process.Signal(syscall.SIGUSR1)
	if code := exitCodeOf(t, cmd.Wait()); code != 9 || !strings.Contains(buf.String(), "got-usr1") {
		t.Fatalf("signal through attach: exit %d, %q", code, buf.String())
	}

	// And to a foreground run: TERM to berth run reaches the container.
	cmd = c.command("run", "--rm", fixture, "sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while true; do busybox sleep 0.1; done")
	var runBuf syncBuffer
	cmd.Stdout, cmd.Stderr = &runBuf, &runBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(runBuf.String(), "ready") })
	cmd.Process.Signal(syscall.SIGTERM)
	if code := exitCodeOf(t, cmd.Wait()); code != 7 || !strings.Contains(runBuf.String(), "got-term") {
		t.Fatalf("signal through run: exit %d, %q", code, runBuf.String())
	}

	// A terminal: raw mode through script(1), the detach keys, the exit code.
	if _, err := exec.LookPath("script"); err == nil {
		c.must("run", "-d", "-t", "-i", "--name", "tty", fixture, "sh")
		attachTTY := func() (*exec.Cmd, io.WriteCloser, *syncBuffer) {
			cmd := exec.Command("script", "-qec", berthBin+" "+strings.Join(c.args, " ")+" attach tty", "/dev/null")
			in, _ := cmd.StdinPipe()
			var out syncBuffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			return cmd, in, &out
		}
		cmd, in, out := attachTTY()
		io.WriteString(in, "echo hi-from-$((6*7))\n")
		waitFor(t, func() bool { return strings.Contains(out.String(), "hi-from-42") })
		// Raw mode now: ctrl-q is a key, not the terminal's flow control.
		io.WriteString(in, "\x10\x11")
		if code := exitCodeOf(t, cmd.Wait()); code != 0 {
			t.Fatalf("attach -t, detached: exit %d: %q", code, out.String())
		}
		in.Close()
		if out := c.must("ps", "--filter", "name=tty", "--format", "{{.State}}"); out != "running\n" {
			t.Fatalf("after detaching from a terminal: %q", out)
		}
		cmd, in, out = attachTTY()
		io.WriteString(in, "exit 4\n")
		if code := exitCodeOf(t, cmd.Wait()); code != 4 {
			t.Errorf("attach -t: exit %d, want the container's 4: %q", code, out.String())
		}
		in.Close()
	}
}

// TestTop: top lists a container's processes, with podman's descriptors
// or ps options, and refuses a stopped container.
func TestTop(t *testing.T) {
	c := containerCLI(t)
	c.must("run", "-d", "--name", "sleeper", fixture, "busybox", "sleep", "60")
	out := c.must("top", "sleeper")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "USER PID PPID %CPU ELAPSED TTY TIME COMMAND" ||
		!strings.HasSuffix(lines[1], "busybox sleep 60") {
		t.Fatalf("top: %q", out)
	}
	if out := c.must("top", "sleeper", "pid,args"); !strings.Contains(out, "PID") || !strings.Contains(out, "busybox sleep 60") {
		t.Fatalf("top with descriptors: %q", out)
	}
	if out := c.must("top", "sleeper", "%p", "%c"); !strings.Contains(out, "COMMAND") || !strings.Contains(out, "busybox") {
		t.Fatalf("top with AIX descriptors: %q", out)
	}
	// ps options (docker's top): the host's processes cut down to the container's.
	out = c.must("top", "sleeper", "-ef")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 2 || !strings.Contains(lines[1], "sleep 60") {
		t.Fatalf("top -ef: %q", out)
	}
	if out, code := c.code("top", "sleeper", "--no-such-option"); code != 125 || !strings.Contains(out, "ps") {
		t.Fatalf("top with a bad ps option: %d %q", code, out)
	}
	c.must("stop", "-t", "0", "sleeper")
	if out, code := c.code("top", "sleeper"); code != 125 || !strings.Contains(out, "not running") {
		t.Fatalf("top of a stopped container: %d %q", code, out)
	}
}

// TestStats: one sample of a running container in JSON, the table and a
// template.
func TestStats(t *testing.T) {
	c := containerCLI(t)
	c.must("run", "-d", "--name", "busy", fixture, "sh", "-c", "busybox sleep 60 & busybox sleep 60; exit 0")
	c.must("run", "-d", "--name", "idle", fixture, "busybox", "sleep", "60")
	out := c.must("stats", "--no-stream", "--format", "json", "busy")
	var rows []struct {
		Name     string
		MemUsage string `json:"mem_usage"`
		Stats    struct {
			Running  bool
			MemUsage uint64
			MemLimit uint64
			PIDs     uint64
			CPUNano  uint64
		}
	}
	if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 {
		t.Fatalf("stats json: %v %q", err, out)
	}
	r := rows[0]
	if r.Name != "busy" || !r.Stats.Running || r.Stats.MemUsage == 0 || r.Stats.MemLimit < r.Stats.MemUsage || r.Stats.PIDs != 3 || r.Stats.CPUNano == 0 {
		t.Fatalf("stats: %+v (%s)", r, out)
	}
	out = c.must("stats", "--no-stream")
	if !strings.Contains(out, "MEM USAGE / LIMIT") || !strings.Contains(out, "busy") || !strings.Contains(out, "idle") {
		t.Fatalf("stats table: %q", out)
	}
	if out := c.must("stats", "--no-stream", "--format", "{{.Name}} {{.PIDS}}", "idle"); out != "idle 1\n" {
		t.Fatalf("stats template: %q", out)
	}
	if out, code := c.code("stats", "--no-stream", "nosuch"); code != 125 {
		t.Fatalf("stats of no container: %d %q", code, out)
	}
}

// TestCp: both ways, files and directories by docker's rules, tar
// streams, owners, a stopped container, a volume, and symbolic links in
// the container that point at /etc or up and out: they resolve inside it.
func TestCp(t *testing.T) {
	c := containerCLI(t)
	host := t.TempDir()
	vol := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(host, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	inside := func(args ...string) string {
		t.Helper()
		return c.must(append([]string{"exec", "box"}, args...)...)
	}
	c.must("run", "-d", "--name", "box", "-v", vol+":/vol", fixture, "busybox", "sleep", "60")

	// A file in, to a directory and to a new name, and out again.
	f := write("f.txt", "hello cp\n")
	os.Chown(f, 1234, 5678)
	c.must("cp", f, "box:/data")
	c.must("cp", f, "box:data/renamed.txt")
	if out := inside("busybox", "cat", "/data/f.txt", "/data/renamed.txt"); out != "hello cp\nhello cp\n" {
		t.Fatalf("cp in: %q", out)
	}
	if out := inside("busybox", "stat", "-c", "%u:%g %a", "/data/f.txt"); out != "0:0 644\n" {
		t.Errorf("cp in without -a: owner and mode %q, want the container's root", out)
	}
	c.must("cp", "-a", f, "box:/data/kept.txt")
	if out := inside("busybox", "stat", "-c", "%u:%g", "/data/kept.txt"); out != "1234:5678\n" {
		t.Errorf("cp -a in: owner %q", out)
	}
	c.must("cp", "box:/data/a", filepath.Join(host, "a.out"))
	if got := read(filepath.Join(host, "a.out")); got != "hello from layer 1\n" {
		t.Fatalf("cp out: %q", got)
	}
	c.must("cp", "box:/data/owned", host)
	c.must("cp", "-a", "box:/data/owned", filepath.Join(host, "owned-a"))
	if fi, err := os.Stat(filepath.Join(host, "owned")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
		t.Errorf("cp out without -a: the caller should own it: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(host, "owned-a")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1234 || fi.Mode().Perm() != 0o640 {
		t.Errorf("cp -a out: owner and mode kept? %v", err)
	}
	if out, code := c.code("cp", f, "box:/data/missing/"); code != 125 || !strings.Contains(out, "must exist") {
		t.Errorf("a file to a missing directory/: %d %q", code, out)
	}
	if out, code := c.code("cp", "box:/nonexistent", host); code != 125 || !strings.Contains(out, "no such file") {
		t.Errorf("a missing source: %d %q", code, out)
	}

	// Directories: created at a new name, into an existing one, "/." for contents.
	write("d/sub/x", "x\n")
	write("d/top", "top\n")
	d := filepath.Join(host, "d")
	c.must("cp", d, "box:/newdir")
	c.must("cp", d, "box:/newdir")
	c.must("cp", d+"/.", "box:/data/dir")
	if out := inside("busybox", "cat", "/newdir/sub/x", "/newdir/d/top", "/data/dir/sub/x", "/data/dir/y"); out != "x\ntop\nx\nnew in layer 2\n" {
		t.Fatalf("cp of directories in: %q", out)
	}
	if out, code := c.code("cp", d, "box:/data/a"); code != 125 || !strings.Contains(out, "directory to a file") {
		t.Errorf("a directory onto a file: %d %q", code, out)
	}
	c.must("cp", "box:/data/dir", filepath.Join(host, "outdir"))
	if got := read(filepath.Join(host, "outdir/sub/x")) + read(filepath.Join(host, "outdir/y")); got != "x\nnew in layer 2\n" {
		t.Fatalf("cp of a directory out: %q", got)
	}

	// Symbolic links in the container resolve in the container.
	name := "berth-cp-escape-" + strconv.Itoa(os.Getpid())
	t.Cleanup(func() { os.Remove("/etc/" + name); os.Remove("/etc/" + name + "-up") })
	inside("busybox", "ln", "-s", "/etc", "/link")
	inside("busybox", "ln", "-s", "../../../../../../../etc", "/data/up")
	c.must("cp", f, "box:/link/"+name)
	c.must("cp", f, "box:/data/up/"+name+"-up")
	for _, n := range []string{name, name + "-up"} {
		if _, err := os.Lstat("/etc/" + n); err == nil {
			t.Fatalf("cp through a link in the container wrote the host's /etc/%s", n)
		}
		if out := inside("busybox", "cat", "/etc/"+n); out != "hello cp\n" {
			t.Fatalf("cp through a link: the container's /etc/%s has %q", n, out)
		}
	}
	c.must("cp", "box:/link/motd", filepath.Join(host, "motd"))
	if got := read(filepath.Join(host, "motd")); got != "layer 2\n" {
		t.Fatalf("cp out through a link read %q, not the container's /etc/motd", got)
	}
	// A link as the source: copied as a link, or followed with -L.
	c.must("cp", "box:/link", filepath.Join(host, "link"))
	if l, err := os.Readlink(filepath.Join(host, "link")); err != nil || l != "/etc" {
		t.Fatalf("cp of a link: %q %v", l, err)
	}
	inside("busybox", "ln", "-s", "a", "/data/rel")
	c.must("cp", "-L", "box:/data/rel", filepath.Join(host, "followed"))
	if got := read(filepath.Join(host, "followed")); got != "hello from layer 1\n" {
		t.Fatalf("cp -L: %q", got)
	}

	// Tar streams on stdin and stdout.
	cmd := c.command("cp", "box:/data/dir", "-")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cp to -: %v %s", err, stderr.String())
	}
	var names []string
	tr := tar.NewReader(&stdout)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "dir/ dir/sub/ dir/sub/x dir/top dir/y" {
		t.Fatalf("cp to -: entries %q", names)
	}
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	tw.WriteHeader(&tar.Header{Name: "fromtar/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "fromtar/t", Typeflag: tar.TypeReg, Mode: 0o600, Size: 4})
	tw.Write([]byte("tar\n"))
	tw.Close()
	cmd = c.command("cp", "-", "box:/data")
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cp from -: %v %s", err, out)
	}
	if out := inside("busybox", "cat", "/data/fromtar/t"); out != "tar\n" {
		t.Fatalf("cp from -: %q", out)
	}
	in.Reset()
	tw = tar.NewWriter(&in)
	tw.WriteHeader(&tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o600})
	tw.Close()
	cmd = c.command("cp", "-", "box:/data")
	cmd.Stdin = &in
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "leads out") {
		t.Errorf("a tar entry with ..: %v %s", err, out)
	}

	// A volume: the host directory gets the file.
	c.must("cp", f, "box:/vol/in-volume")
	if got := read(filepath.Join(vol, "in-volume")); got != "hello cp\n" {
		t.Fatalf("cp into a volume: %q", got)
	}

	// A stopped container: its root file system and its volume's source.
	c.must("stop", "-t", "0", "box")
	c.must("cp", f, "box:/data/while-stopped")
	c.must("cp", f, "box:/vol/stopped-in-volume")
	c.must("cp", "box:/etc/motd", filepath.Join(host, "motd-stopped"))
	if got := read(filepath.Join(host, "motd-stopped")) + read(filepath.Join(vol, "stopped-in-volume")); got != "layer 2\nhello cp\n" {
		t.Fatalf("cp with a stopped container: %q", got)
	}
	if out, code := c.code("cp", f, "box:/dev/shm/x"); code != 125 || !strings.Contains(out, "only while it runs") {
		t.Errorf("cp to a tmpfs of a stopped container: %d %q", code, out)
	}
	c.must("start", "box")
	if out := inside("busybox", "cat", "/data/while-stopped", "/etc/"+name); out != "hello cp\nhello cp\n" {
		t.Fatalf("after a restart: %q", out)
	}
	if out, code := c.code("cp", f, "box2:/x"); code != 125 {
		t.Errorf("cp to no container: %d %q", code, out)
	}
	if out, code := c.code("cp", f, host); code != 125 || !strings.Contains(out, "CONTAINER:PATH") {
		t.Errorf("cp with no container: %d %q", code, out)
	}
}

// TestInit: with --init, catatonit is PID 1, reaps the orphans a command
// leaves, and passes stop's SIGTERM to a shell that, as PID 1 itself,
// would not die of it.
func TestInit(t *testing.T) {
	if _, err := os.Stat("/usr/bin/catatonit"); err != nil {
		t.Skip("catatonit not installed (apt-get install catatonit)")
	}
	c := containerCLI(t)
	orphan := "(busybox sleep 0.2 &); echo spawned; exec busybox sleep 60"
	zombies := func(name string) int {
		out := c.must("exec", name, "sh", "-c", "busybox cat /proc/[0-9]*/stat")
		n := 0
		for _, l := range strings.Split(out, "\n") {
			if i := strings.LastIndexByte(l, ')'); i > 0 && strings.HasPrefix(l[i+1:], " Z") {
				n++
			}
		}
		return n
	}
	c.must("run", "-d", "--init", "--name", "withinit", fixture, "sh", "-c", orphan)
	c.must("run", "-d", "--name", "without", fixture, "sh", "-c", orphan)
	waitFor(t, func() bool {
		return strings.Contains(c.must("logs", "withinit"), "spawned") && strings.Contains(c.must("logs", "without"), "spawned")
	})
	// Without an init the orphan stays a zombie (this test would show
	// nothing otherwise); by then the other one has exited too.
	waitFor(t, func() bool { return zombies("without") == 1 })
	if out := c.must("exec", "withinit", "busybox", "cat", "/proc/1/cmdline"); !strings.HasPrefix(out, "/run/berth-init\x00--\x00sh\x00") {
		t.Fatalf("PID 1 with --init: %q", out)
	}
	if n := zombies("withinit"); n != 0 {
		t.Fatalf("with --init: %d zombies", n)
	}

	// stop: SIGTERM to a shell that does not trap it. As PID 1 the kernel
	// ignores it and the timeout's SIGKILL ends it (137); under the init it
	// dies of the SIGTERM the init passes on (143).
	loop := "echo up; while true; do busybox sleep 0.1; done"
	c.must("create", "--init", "--name", "term-init", fixture, "sh", "-c", loop)
	c.must("start", "term-init")
	c.must("run", "-d", "--name", "term-pid1", fixture, "sh", "-c", loop)
	waitFor(t, func() bool {
		return strings.Contains(c.must("logs", "term-init"), "up") && strings.Contains(c.must("logs", "term-pid1"), "up")
	})
	c.must("stop", "-t", "2", "term-pid1", "term-init")
	if out := c.must("ps", "-a", "--filter", "name=term-", "--format", "{{.Name}} {{.ExitCode}}"); !strings.Contains(out, "term-pid1 137") || !strings.Contains(out, "term-init 143") {
		t.Fatalf("stop: %q", out)
	}
}

func TestCpArgsAndDetachKeys(t *testing.T) {
	for arg, want := range map[string][3]string{
		"box:/etc": {"box", "/etc", "c"}, "box:": {"box", "", "c"}, "./box:x": {"", "./box:x", ""},
		"/abs:x": {"", "/abs:x", ""}, "dir/a:b": {"", "dir/a:b", ""}, "-": {"", "-", ""}, "file": {"", "file", ""},
	} {
		ctr, p, in := splitCpArg(arg)
		if got := [3]string{ctr, p, map[bool]string{true: "c"}[in]}; got != want {
			t.Errorf("splitCpArg(%q) = %q, want %q", arg, got, want)
		}
	}
	if k, err := parseDetachKeys("ctrl-p,ctrl-q"); err != nil || string(k) != "\x10\x11" {
		t.Errorf("ctrl-p,ctrl-q: %q %v", k, err)
	}
	if k, err := parseDetachKeys("a,ctrl-@,ctrl-["); err != nil || string(k) != "a\x00\x1b" {
		t.Errorf("a,ctrl-@,ctrl-[: %q %v", k, err)
	}
	if _, err := parseDetachKeys("ctrl-1"); err == nil {
		t.Error("ctrl-1 accepted")
	}
}
