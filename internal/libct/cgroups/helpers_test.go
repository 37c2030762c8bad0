package cgroups

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups; run the tests as root to exercise them")
	}
}

// uniqueName keeps parallel or repeated runs from sharing cgroups.
func uniqueName(prefix string) string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "berthtest-" + prefix + "-" + hex.EncodeToString(b)
}

// startChild runs a process that the test can move between cgroups; it is
// killed and reaped at cleanup if the test has not done so.
func startChild(t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", args, err)
	}
	t.Cleanup(func() { stopChild(cmd) })
	return cmd
}

func stopChild(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
}

func readCg(t testing.TB, dir, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	return strings.TrimSpace(string(b))
}

func wantFile(t testing.TB, dir, file, want string) {
	t.Helper()
	if got := readCg(t, dir, file); got != want {
		t.Errorf("%s/%s = %q, want %q", dir, file, got, want)
	}
}

// removeTree removes test cgroups bottom-up at cleanup, including parents
// the test named (Destroy removes only the container's own cgroup).
func removeTree(t testing.TB, m *Manager, levels int) {
	t.Cleanup(func() {
		for _, p := range m.Paths() {
			for range levels {
				_ = syscall.Rmdir(p)
				p = filepath.Dir(p)
			}
		}
	})
}

// firstDisk names a real block device ("major:minor") for blkio throttles.
func firstDisk(t testing.TB) (int64, int64, bool) {
	ents, _ := os.ReadDir("/sys/block")
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "loop") || strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/sys/block", n, "dev"))
		if err != nil {
			continue
		}
		var maj, min int64
		if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &maj, &min); err == nil {
			return maj, min, true
		}
	}
	return 0, 0, false
}

func ptr[T any](v T) *T { return &v }
