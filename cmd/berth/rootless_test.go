package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthdev/berth/internal/testbin"
)

// TestRootless runs berth as an unprivileged user the test makes (with a
// subordinate id range, as useradd gives): berth makes and joins the
// user's namespace itself; a layer file of uid 1234 lands as the mapped
// host uid; a container runs, detached too, across commands; a file a
// container's user writes to a volume belongs to the mapped host uid; a
// limit is refused naming the missing cgroup delegation; a bridge
// network is refused clearly.
func TestRootless(t *testing.T) {
	reg := testRegistry(t)
	runtimeBin(t)
	for _, tool := range []string{"useradd", "userdel", "nsenter", "newuidmap", "su"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	const user = "berth-rl-test"
	exec.Command("pkill", "-u", user).Run()
	exec.Command("userdel", "-r", user).Run() // a previous run's
	if out, err := exec.Command("useradd", "-m", user).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	defer func() {
		exec.Command("pkill", "-KILL", "-u", user).Run() // the namespace's holder
		time.Sleep(100 * time.Millisecond)
		exec.Command("userdel", "-r", user).Run()
	}()
	sub := 0
	if data, err := os.ReadFile("/etc/subuid"); err == nil {
		for line := range strings.Lines(string(data)) {
			if p := strings.Split(strings.TrimSpace(line), ":"); len(p) == 3 && p[0] == user {
				sub, _ = strconv.Atoi(p[1])
			}
		}
	}
	if sub == 0 {
		t.Skip("useradd gave no /etc/subuid range")
	}
	// The binaries where the user may run them.
	bin, err := os.MkdirTemp("", "berth-rl-bin-") // t.TempDir's parent is root's alone
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(bin)
	os.Chmod(bin, 0o755)
	for _, b := range []string{"berth", "berth-monitor", "berth-runtime"} {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(berthBin), b))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, b), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := fmt.Sprintf("%s/berth-test/rootless-%d:1", reg, time.Now().UnixNano()%1e9)
	pushImage(t, img, fixtureImage(t, "amd64"))
	run := func(args string) (string, error) {
		out, err := exec.Command("su", "-", user, "-c", filepath.Join(bin, "berth")+" --registries-conf /dev/null "+args).CombinedOutput()
		return string(out), err
	}
	must := func(args string) string {
		t.Helper()
		out, err := run(args)
		if err != nil {
			t.Fatalf("berth %s as %s: %v\n%s", args, user, err, out)
		}
		return out
	}
	must("pull -q " + img)
	home := "/home/" + user
	owned := ""
	filepath.Walk(filepath.Join(home, ".local/share/berth/snapshots"), func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, "/data/owned") {
			owned = p
		}
		return nil
	})
	var st syscall.Stat_t
	if owned == "" || syscall.Stat(owned, &st) != nil || int(st.Uid) != sub+1234-1 || int(st.Gid) != sub+5678-1 {
		t.Errorf("layer file of 1234:5678 on the host: %s %d:%d, want %d:%d", owned, st.Uid, st.Gid, sub+1233, sub+5677)
	}
	if out := must("run --rm " + img + " busybox cat /data/owned"); out != "owned\n" {
		t.Errorf("run: %q", out)
	}
	// The layers' whiteout and opaque directory hold under the user's overlay.
	if out := must("run --rm " + img + " sh -c 'busybox ls /data/dir; busybox ls /data/gone 2>&1 || echo gone'"); !strings.HasPrefix(out, "y\n") || !strings.Contains(out, "gone") {
		t.Errorf("whiteouts in the user's overlay: %q", out)
	}
	vol := filepath.Join(home, "vol")
	os.MkdirAll(vol, 0o755)
	os.Chown(vol, sub+1233, sub+1233) // the container's 1234 may write there
	must("run --rm -u 1234 -v " + vol + ":/out " + img + " sh -c 'echo x > /out/f'")
	if err := syscall.Stat(filepath.Join(vol, "f"), &st); err != nil || int(st.Uid) != sub+1233 {
		t.Errorf("a file the container's uid 1234 wrote: owner %d (%v), want %d", st.Uid, err, sub+1233)
	}
	// Escapes: a volume's symlink to a host file, and the host's root-only
	// files bound in, are out of reach.
	os.Symlink("/etc/shadow", filepath.Join(vol, "link"))
	if out, err := run("run --rm -v " + vol + ":/out " + img + " busybox cat /out/link"); err == nil || strings.Contains(out, "root:") {
		t.Errorf("a volume's symlink to /etc/shadow read the host's: %v %q", err, out)
	}
	// The link resolves in the container: a write lands in its own /etc.
	run("run --rm -v " + vol + ":/out " + img + " sh -c 'echo pwned > /out/link'")
	if b, _ := os.ReadFile("/etc/shadow"); strings.Contains(string(b), "pwned") {
		t.Fatal("the host's /etc/shadow was written through a volume's symlink")
	}
	for _, v := range []string{"/etc/shadow:/s", "/root:/r"} {
		if out, err := run("run --rm -v " + v + " " + img + " sh -c 'busybox cat /s || busybox ls /r'"); err == nil {
			t.Errorf("-v %s: a root-only host path was read: %q", v, out)
		}
	}
	id := strings.TrimSpace(must("run -d " + img + " busybox sleep 60"))
	if out := must("exec " + id + " busybox cat /proc/self/uid_map"); !strings.Contains(out, strconv.Itoa(sub)) {
		t.Errorf("the container's uid map: %q", out)
	}
	must("rm -f " + id)
	if out, err := run("run --rm -m 20m " + img + " busybox true"); err == nil || !strings.Contains(out, "no cgroup delegated") {
		t.Errorf("a memory limit without a delegated cgroup: %v %q", err, out)
	}
	if out, err := run("run --rm --network bridge " + img + " busybox true"); err == nil || !strings.Contains(out, "no bridge networks") {
		t.Errorf("a bridge network: %v %q", err, out)
	}
	// A published port: through slirp4netns where the user may open
	// /dev/net/tun; else (these machines make it 0600) through berth's
	// user-space proxy into the container's namespace.
	port := freeHostPort(t)
	out, err := run(fmt.Sprintf("run -d -p 127.0.0.1:%d:8080 %s sh -c 'echo hi-rootless > /data/i.html; exec busybox httpd -f -p 8080 -h /data'", port, img))
	if err != nil {
		t.Fatalf("run -d -p as %s: %v %s", user, err, out)
	}
	if body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%d/i.html", port)); body != "hi-rootless\n" {
		t.Errorf("the published port from the host: %q", body)
	}
	must("rm -f " + strings.TrimSpace(out))
	if out, _ := exec.Command("pgrep", "-u", user, "-f", "port-proxy|slirp4netns").Output(); len(out) > 0 {
		t.Errorf("the port's proxy left running after rm: %s", out)
	}
}

// TestRootlessNoSubIDs: a user without subordinate ids gets root alone in
// its namespace, with a warning saying so; root-owned images run, and an
// image with files of other owners fails to unpack with a clear error.
func TestRootlessNoSubIDs(t *testing.T) {
	reg := testRegistry(t)
	runtimeBin(t)
	for _, tool := range []string{"useradd", "userdel", "nsenter", "su"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	const user = "berth-rl-nosub"
	exec.Command("pkill", "-KILL", "-u", user).Run()
	exec.Command("userdel", "-r", user).Run()
	if out, err := exec.Command("useradd", "-m", user).CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v %s", err, out)
	}
	defer func() {
		exec.Command("pkill", "-KILL", "-u", user).Run()
		time.Sleep(100 * time.Millisecond)
		exec.Command("userdel", "-r", user).Run()
	}()
	for _, f := range []string{"/etc/subuid", "/etc/subgid"} { // useradd's ranges go
		exec.Command("sed", "-i", "/^"+user+":/d", f).Run()
	}
	bin, err := os.MkdirTemp("", "berth-rl-bin-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(bin)
	os.Chmod(bin, 0o755)
	for _, b := range []string{"berth", "berth-monitor", "berth-runtime"} {
		data, _ := os.ReadFile(filepath.Join(filepath.Dir(berthBin), b))
		os.WriteFile(filepath.Join(bin, b), data, 0o755)
	}
	run := func(args string) (string, error) {
		out, err := exec.Command("su", "-", user, "-c", filepath.Join(bin, "berth")+" --registries-conf /dev/null "+args).CombinedOutput()
		return string(out), err
	}
	_, app := testbin.PushBusybox(t, reg)
	out, err := run("run --rm " + app + " busybox cat /proc/self/uid_map")
	if err != nil || !strings.Contains(out, "no subordinate ids") || !strings.Contains(out, "1\n") {
		t.Fatalf("run without subordinate ids: %v %q", err, out)
	}
	id := strings.TrimSpace(func() string { o, _ := run("run -d " + app + " sh -c 'echo logged; busybox sleep 60'"); return o }())
	if out, _ := run("ps --format {{.ID}}"); !strings.HasPrefix(id, strings.TrimSpace(out)) || out == "" {
		t.Errorf("ps: %q (started %q)", out, id)
	}
	time.Sleep(300 * time.Millisecond)
	if out, _ := run("logs " + id); out != "logged\n" {
		t.Errorf("logs: %q", out)
	}
	run("rm -f " + id)
	img := fmt.Sprintf("%s/berth-test/rootless-nosub-%d:1", reg, time.Now().UnixNano()%1e9)
	pushImage(t, img, fixtureImage(t, "amd64"))
	if out, err := run("pull -q " + img); err == nil || !strings.Contains(out, "data/owned") {
		t.Errorf("a layer with a file of uid 1234 and no subordinate ids: %v %q", err, out)
	}
}
