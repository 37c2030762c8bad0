package procfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestReadStatAndRuns(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.PPid() != os.Getppid() || st.StartTime() == 0 || (st.State() != 'R' && st.State() != 'S') {
		t.Errorf("own stat: ppid %d (want %d), start %d, state %c", st.PPid(), os.Getppid(), st.StartTime(), st.State())
	}
	// A command name with a space and a parenthesis.
	cmd := sleeper(t, "x) mark-42")
	time.Sleep(100 * time.Millisecond)
	if st, err := ReadStat(cmd.Process.Pid); err != nil || st.PPid() != os.Getpid() {
		t.Errorf("a child's stat: %v %v", st, err)
	}
	if !Runs(cmd.Process.Pid, "mark-42") || Runs(cmd.Process.Pid, "other-mark") {
		t.Error("Runs: the child's mark")
	}
	cmd.Process.Kill()
	time.Sleep(100 * time.Millisecond) // dead, not reaped: a zombie
	if Runs(cmd.Process.Pid, "mark-42") {
		t.Error("Runs: a zombie counts as running")
	}
	cmd.Wait()
	if _, err := ReadStat(cmd.Process.Pid); err == nil {
		t.Error("the stat of a reaped process")
	}
}

func TestEnd(t *testing.T) {
	cmd := sleeper(t, "mark-7")
	defer cmd.Process.Kill()
	go cmd.Wait()
	time.Sleep(50 * time.Millisecond)
	pid := cmd.Process.Pid
	if !End(pid, "other-mark", unix.SIGKILL, time.Second) || !Runs(pid, "mark-7") {
		t.Fatal("End signalled a process of another mark")
	}
	if start := time.Now(); End(pid, "mark-7", 0, 100*time.Millisecond) || time.Since(start) < 100*time.Millisecond {
		t.Error("End without a signal: a running process reported gone, or no wait")
	}
	if start := time.Now(); !End(pid, "mark-7", unix.SIGTERM, 2*time.Second) || time.Since(start) > time.Second {
		t.Errorf("End with SIGTERM: not gone, or slow (%v)", time.Since(start))
	}
}

// sleeper starts a copy of sleep named name, for 5 s.
func sleeper(t *testing.T, name string) *exec.Cmd {
	prog := filepath.Join(t.TempDir(), name)
	if b, err := os.ReadFile("/bin/sleep"); err != nil || os.WriteFile(prog, b, 0o755) != nil {
		t.Skip("no /bin/sleep to copy")
	}
	cmd := exec.Command(prog, "5")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}
