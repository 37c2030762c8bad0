package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// containerCLI is a berth on a fresh store holding the fixture image as
// localhost/fixture:1 (loaded from a docker archive: no registry needed).
func containerCLI(t *testing.T) *cli {
	t.Helper()
	runtimeBin(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	c := newCLI(t)
	archive := filepath.Join(t.TempDir(), "fixture.tar")
	tag, _ := name.NewTag("localhost/fixture:1")
	if err := tarball.WriteToFile(archive, tag, fixtureImage(t, "amd64")); err != nil {
		t.Fatal(err)
	}
	c.must("load", "-q", "-i", archive)
	// reset: containers, and the networks' bridges and rules, which
	// outlive the store's directory.
	t.Cleanup(func() { c.run("system", "reset", "--force") })
	return c
}

// code runs berth and returns its output and exit code.
func (c *cli) code(args ...string) (string, int) {
	c.t.Helper()
	out, err := c.run(args...)
	if ee, ok := err.(*exec.ExitError); ok {
		return out, ee.ExitCode()
	} else if err != nil {
		c.t.Fatalf("berth %s: %v", strings.Join(args, " "), err)
	}
	return out, 0
}

const fixture = "localhost/fixture:1"

func TestRunForeground(t *testing.T) {
	c := containerCLI(t)
	if out, code := c.code("run", "--rm", fixture); code != 0 || out != "hello from layer 1\n" {
		t.Fatalf("run with the image's command: %d %q", code, out)
	}
	if out, code := c.code("run", "--rm", fixture, "sh", "-c", "echo out; echo err >&2; exit 7"); code != 7 || !strings.Contains(out, "out\n") || !strings.Contains(out, "err\n") || strings.Contains(out, "Error") {
		t.Fatalf("exit code and streams: %d %q", code, out)
	}
	// Options that shape the process.
	out, code := c.code("run", "--rm", "-e", "A=1", "-w", "/data", "--hostname", "box", "-u", "1234:5678", fixture,
		"sh", "-c", "echo $A $(pwd) $(busybox hostname) $(busybox id -u):$(busybox id -g)")
	if code != 0 || out != "1 /data box 1234:5678\n" {
		t.Fatalf("env, workdir, hostname, user: %d %q", code, out)
	}
	if out, code := c.code("run", "--rm", "--read-only", fixture, "sh", "-c", "echo x > /data/new"); code == 0 {
		t.Fatalf("--read-only: a write succeeded: %q", out)
	}
	host := t.TempDir()
	os.WriteFile(filepath.Join(host, "f"), []byte("from the host\n"), 0o644)
	if out, code := c.code("run", "--rm", "-v", host+":/mnt:ro", fixture, "sh", "-c", "cat /mnt/f; echo y > /mnt/g"); code == 0 || !strings.Contains(out, "from the host") {
		t.Fatalf("-v ro: %d %q", code, out)
	}
	if out, code := c.code("run", "--rm", "-v", host+":/mnt", fixture, "sh", "-c", "echo y > /mnt/g"); code != 0 {
		t.Fatalf("-v rw: %d %q", code, out)
	}
	if b, _ := os.ReadFile(filepath.Join(host, "g")); string(b) != "y\n" {
		t.Errorf("the container's write is not on the host: %q", b)
	}
	if out, code := c.code("run", "--rm", "--entrypoint", "/bin/busybox", fixture, "echo", "via", "entrypoint"); code != 0 || out != "via entrypoint\n" {
		t.Fatalf("--entrypoint: %d %q", code, out)
	}
	// Nothing is left of --rm containers, and the store is sound.
	if out := c.must("ps", "-a", "-q"); out != "" {
		t.Errorf("containers left after --rm: %q", out)
	}
	if out := c.must("system", "check"); !strings.Contains(out, "consistent") {
		t.Errorf("system check: %s", out)
	}
	// A terminal: -t through a pty (script(1) gives berth one).
	if _, err := exec.LookPath("script"); err == nil {
		cmd := exec.Command("script", "-qec", berthBin+" "+strings.Join(c.args, " ")+" run --rm -t "+fixture+" busybox tty", "/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "/dev/pts/") {
			t.Errorf("run -t: %v %q", err, out)
		}
		// The terminal's size at the start, and after a resize (SIGWINCH
		// to berth, a resize frame to the monitor, TIOCSWINSZ on the pty).
		cmd = exec.Command("script", "-qec", "stty rows 33 cols 101; (busybox sleep 1.5; stty rows 40 cols 120 </dev/tty) & "+
			berthBin+" "+strings.Join(c.args, " ")+" run --rm -t "+fixture+" sh -c 'busybox stty size; busybox sleep 3; busybox stty size'", "/dev/null")
		out, err = cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "33 101") || !strings.Contains(string(out), "40 120") {
			t.Errorf("run -t with a resize: %v %q", err, out)
		}
	}
}

func TestDetached(t *testing.T) {
	c := containerCLI(t)
	id := strings.TrimSpace(c.must("run", "-d", "--name", "ticker", fixture, "sh", "-c",
		"trap 'echo bye; exit 0' TERM; echo started; while true; do busybox sleep 0.1; done"))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q", id)
	}
	waitFor(t, func() bool { return strings.Contains(c.must("logs", "ticker"), "started") })
	if out := c.must("ps", "--format", "{{.Name}} {{.State}}"); out != "ticker running\n" {
		t.Fatalf("ps: %q", out)
	}
	if out, code := c.code("exec", "ticker", "sh", "-c", "echo in $(busybox hostname); exit 3"); code != 3 || out != "in "+id[:12]+"\n" {
		t.Fatalf("exec: %d %q", code, out)
	}
	if _, err := exec.LookPath("script"); err == nil {
		cmd := exec.Command("script", "-qec", berthBin+" "+strings.Join(c.args, " ")+" exec -t ticker busybox tty", "/dev/null")
		if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "/dev/pts/") {
			t.Errorf("exec -t: %v %q", err, out)
		}
	}
	if out, code := c.code("rm", "ticker"); code == 0 {
		t.Fatalf("rm of a running container: %q", out)
	}
	if out, code := c.code("rmi", fixture); code == 0 {
		t.Fatalf("rmi of an image a container uses: %q", out)
	}
	c.must("pause", "ticker")
	if out := c.must("ps", "--format", "{{.State}}"); out != "paused\n" {
		t.Fatalf("after pause: %q", out)
	}
	c.must("unpause", "ticker")
	c.must("rename", "ticker", "ticker2")
	c.must("rename", "ticker2", "ticker")
	c.must("stop", "-t", "5", "ticker")
	if out := c.must("ps", "-a", "--format", "{{.Name}} {{.State}} {{.ExitCode}}"); out != "ticker exited 0\n" {
		t.Fatalf("after stop (the trap exits 0): %q", out)
	}
	if out := c.must("logs", "ticker"); !strings.HasPrefix(out, "started\n") || !strings.HasSuffix(out, "bye\n") {
		t.Fatalf("logs: %q", out)
	}
	// Started again: the same container runs again.
	c.must("start", "ticker")
	waitFor(t, func() bool { return c.must("ps", "-q") != "" })
	c.must("restart", "-t", "5", "ticker")
	if out := c.must("ps", "--format", "{{.Name}} {{.State}}"); out != "ticker running\n" {
		t.Fatalf("after restart: %q", out)
	}
	c.must("stop", "-t", "5", "ticker")
	if out := c.must("container", "prune"); !strings.Contains(out, id) {
		t.Fatalf("container prune: %q", out)
	}
	if out := c.must("ps", "-a", "-q"); out != "" {
		t.Fatalf("after prune: %q", out)
	}
	if out := c.must("info"); !strings.Contains(out, "runtimes:") || !strings.Contains(out, "berth-runtime: ") {
		t.Errorf("info: %s", out)
	}
	c.must("rmi", fixture) // no container uses it now
}

// TestKilledFromOutside: the container's process killed by someone else,
// and then a container whose monitor was killed: ps tells the truth and rm
// cleans up.
func TestKilledFromOutside(t *testing.T) {
	c := containerCLI(t)
	c.must("run", "-d", "--name", "victim", fixture, "busybox", "sleep", "60")
	var info []struct {
		ID    string
		State struct{ Pid int }
	}
	json.Unmarshal([]byte(c.must("inspect", "victim")), &info)
	if len(info) != 1 || info[0].State.Pid <= 0 {
		t.Fatalf("inspect: %+v", info)
	}
	syscall.Kill(info[0].State.Pid, syscall.SIGKILL)
	waitFor(t, func() bool { return c.must("ps", "-a", "--format", "{{.State}} {{.ExitCode}}") == "exited 137\n" })

	c.must("run", "-d", "--name", "orphan", fixture, "busybox", "sleep", "60")
	json.Unmarshal([]byte(c.must("inspect", "orphan")), &info)
	dir := strings.TrimSuffix(c.must("inspect", "--format", "{{.LogPath}}", "orphan"), "/ctr.log\n")
	mon, _ := os.ReadFile(filepath.Join(dir, "monitor.pid"))
	pid, _ := strconv.Atoi(strings.TrimSpace(string(mon)))
	syscall.Kill(pid, syscall.SIGKILL)
	time.Sleep(100 * time.Millisecond)
	if out := c.must("ps", "--format", "{{.Name}} {{.State}}"); out != "orphan running\n" {
		t.Errorf("with its monitor killed, the container still runs: ps says %q", out)
	}
	c.must("rm", "-f", "orphan", "victim")
	if out := c.must("ps", "-a", "-q"); out != "" {
		t.Fatalf("after rm -f: %q", out)
	}
	if out := c.must("system", "check"); !strings.Contains(out, "consistent") {
		t.Errorf("system check: %s", out)
	}
	// reset removes everything: a running container too.
	c.must("run", "-d", fixture, "busybox", "sleep", "60")
	if out, code := c.code("system", "reset"); code == 0 {
		t.Fatalf("reset without --force: %q", out)
	}
	c.must("system", "reset", "--force")
	if out := c.must("images", "-q") + c.must("ps", "-a", "-q"); out != "" {
		t.Fatalf("after reset: %q", out)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("timed out waiting")
}

// TestRuntimes: the same scenario with --runtime berth-runtime, runc and
// crun.
func TestRuntimes(t *testing.T) {
	c := containerCLI(t)
	for _, rt := range []string{"berth-runtime", "runc", "crun"} {
		t.Run(rt, func(t *testing.T) {
			if _, err := exec.LookPath(rt); err != nil && rt != "berth-runtime" {
				t.Skipf("%s not installed", rt)
			}
			if ctl, _ := os.ReadFile("/sys/fs/cgroup/unified/cgroup.controllers"); rt == "crun" && strings.TrimSpace(string(ctl)) != "" {
				t.Skip("crun 1.8 refuses a hybrid cgroup host whose cgroup2 has controllers (../shared/peers/setup.sh host moves hugetlb)")
			}
			if out, code := c.code("run", "--rm", "--runtime", rt, fixture, "sh", "-c", "cat /data/dir/y; exit 4"); code != 4 || out != "new in layer 2\n" {
				t.Fatalf("run: %d %q", code, out)
			}
			c.must("run", "-d", "--runtime", rt, "--name", "r-"+rt, fixture, "busybox", "sleep", "60")
			if out, code := c.code("exec", "r-"+rt, "busybox", "cat", "/etc/motd"); code != 0 || out != "layer 2\n" {
				t.Fatalf("exec: %d %q", code, out)
			}
			c.must("stop", "-t", "1", "r-"+rt)
			if out := c.must("ps", "-a", "--filter", "name=r-"+rt, "--format", "{{.State}} {{.ExitCode}}"); out != "exited 137\n" {
				t.Fatalf("after stop: %q", out)
			}
			c.must("rm", "r-"+rt)
		})
	}
}

// TestSeccomp: the default profile is loaded, refuses what reaches the
// host (new namespaces, mounts) and gives way to the matching capability;
// seccomp=unconfined and --privileged run without one.
func TestSeccomp(t *testing.T) {
	c := containerCLI(t)
	status := "busybox grep ^Seccomp: /proc/self/status"
	if out, _ := c.code("run", "--rm", fixture, "sh", "-c", status); !strings.Contains(out, "\t2") {
		t.Fatalf("default: %q, want a filter (2)", out)
	}
	for _, opts := range [][]string{{"--security-opt", "seccomp=unconfined"}, {"--privileged"}} {
		if out, _ := c.code(append(append([]string{"run", "--rm"}, opts...), fixture, "sh", "-c", status)...); !strings.Contains(out, "\t0") {
			t.Errorf("%v: %q, want no filter (0)", opts, out)
		}
	}
	if out, code := c.code("run", "--rm", fixture, "busybox", "unshare", "-n", "true"); code == 0 {
		t.Errorf("unshare -n under the default profile succeeded: %q", out)
	}
	if out, code := c.code("run", "--rm", "--cap-add", "SYS_ADMIN", fixture, "busybox", "unshare", "-n", "true"); code != 0 {
		t.Errorf("unshare -n with CAP_SYS_ADMIN: %d %q", code, out)
	}
	if out, code := c.code("run", "--rm", fixture, "sh", "-c", "busybox sleep 0; echo ok"); code != 0 || out != "ok\n" {
		t.Errorf("ordinary work under the default profile: %d %q", code, out)
	}
}

// TestStopSignal: stop sends the image's STOPSIGNAL, not SIGTERM.
func TestStopSignal(t *testing.T) {
	c := containerCLI(t)
	img := fixtureImage(t, "amd64")
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.Config.StopSignal = "SIGUSR1"
	img, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "stopsig.tar")
	tag, _ := name.NewTag("localhost/stopsig:1")
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	c.must("load", "-q", "-i", archive)
	c.must("run", "-d", "--name", "s", "localhost/stopsig:1", "sh", "-c",
		"trap 'exit 3' USR1; trap 'exit 4' TERM; echo up; while true; do busybox sleep 0.1; done")
	waitFor(t, func() bool { return strings.Contains(c.must("logs", "s"), "up") })
	start := time.Now()
	c.must("stop", "-t", "30", "s")
	if out := c.must("ps", "-a", "--format", "{{.ExitCode}}"); out != "3\n" || time.Since(start) > 10*time.Second {
		t.Fatalf("stop with STOPSIGNAL SIGUSR1: exit %q after %v", out, time.Since(start))
	}
}

// TestLogRotation: with --log-opt max-size the monitor rotates the log to
// ctr.log.1 (one old file kept) before an entry would pass the size; every
// entry is in the CRI format, none is lost between the two files, and an
// output that ends without a newline is logged as a partial (P) entry.
func TestLogRotation(t *testing.T) {
	c := containerCLI(t)
	c.must("run", "-d", "--name", "rot", "--log-opt", "max-size=1k", fixture, "sh", "-c",
		"i=0; while [ $i -lt 100 ]; do echo line-$i; i=$((i+1)); done; printf tail")
	if out := c.must("wait", "rot"); strings.TrimSpace(out) != "0" {
		t.Fatalf("wait: %q", out)
	}
	logPath := strings.TrimSpace(c.must("inspect", "--format", "{{.LogPath}}", "rot"))
	var entries []string
	for _, p := range []string{logPath + ".1", logPath} {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 || len(b) > 1024 {
			t.Errorf("%s: %d bytes, want 1 to 1024", p, len(b))
		}
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			f := strings.SplitN(l, " ", 4)
			if len(f) != 4 || f[1] != "stdout" || (f[2] != "F" && f[2] != "P") {
				t.Fatalf("%s: not a CRI log entry: %q", p, l)
			}
			if ts, err := time.Parse(time.RFC3339Nano, f[0]); err != nil || ts.Location() != time.UTC {
				t.Fatalf("%s: time of %q: %v", p, l, err)
			}
			entries = append(entries, f[2]+" "+f[3])
		}
	}
	if len(entries) < 2 || entries[len(entries)-1] != "P tail" {
		t.Fatalf("entries: %q, want the partial \"tail\" last", entries)
	}
	// The newest entries, in order, without a gap.
	first, err := strconv.Atoi(strings.TrimPrefix(entries[0], "F line-"))
	if err != nil {
		t.Fatalf("first entry kept: %q", entries[0])
	}
	for i, e := range entries[:len(entries)-1] {
		if want := "F line-" + strconv.Itoa(first+i); e != want {
			t.Fatalf("entry %d: %q, want %q", i, e, want)
		}
	}
	if first+len(entries)-1 != 100 {
		t.Errorf("the last line kept is line-%d, want line-99", first+len(entries)-2)
	}
	if out := c.must("logs", "--tail", "1", "rot"); out != "line-99\ntail" {
		t.Errorf("logs ends with the unfinished line: %q", out)
	}
	// logs -f follows the log across rotations.
	c.must("run", "-d", "--name", "slow", "--log-opt", "max-size=1k", fixture, "sh", "-c",
		"busybox sleep 1; i=0; while [ $i -lt 60 ]; do echo line-$i; i=$((i+1)); busybox usleep 10000; done")
	out := c.must("logs", "-f", "slow")
	var want strings.Builder
	for i := 0; i < 60; i++ {
		fmt.Fprintf(&want, "line-%d\n", i)
	}
	if out != want.String() {
		t.Errorf("logs -f across rotations: %q", out)
	}
}
