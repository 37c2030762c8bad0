package main

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCrashRun kills berth with SIGKILL at random moments of a `run -d`
// with a published port on the default network, an anonymous volume and
// an image mount, and then, every other time, the container's monitor;
// afterwards `rm -a -f` succeeds, and no namespace, address, rule, mount,
// volume or snapshot of those containers is left (the image, no longer
// used, is removed without --force), and the store still runs containers.
func TestCrashRun(t *testing.T) {
	c := containerCLI(t)
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("needs Debian's containernetworking-plugins")
	}
	runroot := c.args[3]
	args := func(name string) []string {
		return append(append([]string{}, c.args...), "run", "-d", "--name", name, "-p", "127.0.0.1::80", "-v", "/anon",
			"--mount", "type=image,src="+fixture+",dst=/img", fixture, "busybox", "sleep", "60")
	}
	start := time.Now()
	c.must(args("measure")[len(c.args):]...)
	full := time.Since(start)
	c.must("rm", "-f", "-v", "measure")
	var ids []string
	for i := 0; i < 16; i++ {
		name := "crash" + strconv.Itoa(i)
		cmd := exec.Command(berthBin, args(name)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rand.Int64N(int64(full))))
		cmd.Process.Kill()
		cmd.Wait()
		id := strings.TrimSpace(c.must("ps", "-a", "--no-trunc", "--filter", "name="+name, "--format", "{{.ID}}"))
		if id != "" {
			ids = append(ids, id)
			if i%2 == 1 {
				if pid, err := strconv.Atoi(readTrim(filepath.Join(runroot, "containers", id, "monitor.pid"))); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if out, code := c.code("rm", "-a", "-f", "-v"); code != 0 {
			t.Fatalf("round %d: rm -a -f after the crash: %d %s", i, code, out)
		}
	}
	t.Logf("%d of 16 kills left a record to clean up", len(ids))
	// The narrowest window, made on purpose: killed after making the
	// namespace's file, before pinning the namespace on it.
	half := strings.TrimSpace(c.must("create", "-p", "127.0.0.1::80", fixture, "busybox", "true"))
	os.MkdirAll(filepath.Join(runroot, "netns"), 0o700)
	if err := os.WriteFile(filepath.Join(runroot, "netns", half), nil, 0o400); err != nil {
		t.Fatal(err)
	}
	if out, code := c.code("rm", half); code != 0 {
		t.Errorf("rm of a container whose namespace file was never pinned: %d %s", code, out)
	}
	for _, id := range ids {
		checkNetReleased(t, runroot, id)
	}
	if ents, _ := os.ReadDir(filepath.Join(runroot, "netns")); len(ents) != 0 {
		t.Errorf("namespaces left: %v", ents)
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), runroot+"/") {
		t.Errorf("mounts left under %s", runroot)
	}
	if out := c.must("volume", "ls", "-q"); out != "" {
		t.Errorf("anonymous volumes left: %q", out)
	}
	if out := c.must("system", "check"); !strings.Contains(out, "consistent") {
		t.Errorf("system check: %s", out)
	}
	if out, code := c.code("run", "--rm", "-p", "127.0.0.1::80", fixture, "busybox", "cat", "/data/a"); code != 0 || out != "hello from layer 1\n" {
		t.Fatalf("a run after the crashes: %d %q", code, out)
	}
	if out, code := c.code("rmi", fixture); code != 0 {
		t.Errorf("rmi of the image after the crashes (a view of it left?): %d %s", code, out)
	}
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// TestRunrootLost: a reboot clears the runroot (/run); a stopped
// container then starts again, with the changes its rootfs had, on its
// network, and is removed cleanly.
func TestRunrootLost(t *testing.T) {
	c := containerCLI(t)
	runroot := c.args[3]
	id := strings.TrimSpace(c.must("run", "-d", "-p", "127.0.0.1::80", fixture, "sh", "-c", "echo kept >> /data/runs; busybox sleep 60"))
	waitFor(t, func() bool { return strings.Contains(c.must("exec", id, "busybox", "cat", "/data/runs"), "kept") })
	c.must("stop", "-t", "0", id)
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for line := range strings.Lines(string(mi)) {
			if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], runroot+"/") {
				syscall.Unmount(f[4], syscall.MNT_DETACH)
			}
		}
	}
	if err := os.RemoveAll(runroot); err != nil {
		t.Fatal(err)
	}
	c.must("start", id)
	waitFor(t, func() bool { return c.must("exec", id, "busybox", "cat", "/data/runs") == "kept\nkept\n" })
	if ip := c.must("inspect", "--format", "{{.NetworkSettings.IPAddress}}", id); !strings.HasPrefix(ip, "10.") {
		t.Errorf("no address after the start: %q", ip)
	}
	c.must("rm", "-f", id)
	checkNetReleased(t, runroot, id)
}
