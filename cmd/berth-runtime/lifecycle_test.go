package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestRunExitCode(t *testing.T) {
	c := newCtr(t, sh("echo before-exit; exit 3"))
	r := c.run()
	if r.code != 3 {
		t.Fatalf("want exit code 3: %v", r)
	}
	wantContains(t, "run output", r.out, "before-exit")
	// A foreground run removes the container.
	if st := c.rt("state", c.id); st.code == 0 {
		t.Errorf("container still exists after run: %v", st)
	}
}

func TestRunSignalExitCode(t *testing.T) {
	// A process killed by a signal reports 128+signal, as a shell does.
	// (Without a pid namespace: a pid 1 cannot be killed from inside.)
	c := newCtr(t, sh("kill -9 $$"), withoutNS(specs.PIDNamespace))
	if r := c.run(); r.code != 137 {
		t.Fatalf("want exit code 137: %v", r)
	}
}

func TestLifecycleKill(t *testing.T) {
	for _, sig := range []string{"KILL", "SIGKILL", "9"} {
		t.Run(sig, func(t *testing.T) {
			c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
			c.mustCreate()
			st := c.state()
			if st.Status != "created" || st.Pid <= 0 {
				t.Fatalf("after create: status %q pid %d, want created and a pid", st.Status, st.Pid)
			}
			if st.ID != c.id || st.Bundle != c.bundle {
				t.Errorf("state id %q bundle %q, want %q %q", st.ID, st.Bundle, c.id, c.bundle)
			}
			if _, err := os.Stat("/proc/" + strconv.Itoa(st.Pid)); err != nil {
				t.Errorf("init pid %d of the state does not exist: %v", st.Pid, err)
			}
			c.mustStart()
			st2 := c.state()
			if st2.Status != "running" || st2.Pid != st.Pid {
				t.Fatalf("after start: status %q pid %d, want running, pid %d", st2.Status, st2.Pid, st.Pid)
			}
			if r := c.rt("kill", c.id, sig); r.code != 0 {
				t.Fatalf("kill %s: %v", sig, r)
			}
			c.waitStatus("stopped")
			if r := c.rt("delete", c.id); r.code != 0 {
				t.Fatalf("delete of a stopped container: %v", r)
			}
			r := c.rt("state", c.id)
			if r.code == 0 {
				t.Fatalf("state after delete succeeded: %v", r)
			}
			wantContains(t, "state after delete", r.err, "not found")
		})
	}
}

func TestWrongStateErrors(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	c.startDetached()
	start := c.rt("start", c.id)
	if start.code == 0 {
		t.Fatalf("start of a running container succeeded: %v", start)
	}
	del := c.rt("delete", c.id)
	if del.code == 0 {
		t.Fatalf("delete of a running container without --force succeeded: %v", del)
	}
	wantContains(t, "start error", start.err, "running")
	wantContains(t, "delete error", del.err, "running")
	if strings.TrimSpace(start.err) == strings.TrimSpace(del.err) {
		t.Errorf("start and delete give the same message %q: they should say what each needs", start.err)
	}
	if st := c.state(); st.Status != "running" {
		t.Errorf("failed start/delete changed the container: status %q", st.Status)
	}
	if r := c.rt("delete", "--force", c.id); r.code != 0 {
		t.Fatalf("delete --force: %v", r)
	}
	if r := c.rt("state", c.id); r.code == 0 {
		t.Errorf("state after delete --force succeeded: %v", r)
	}
}

func TestUnknownContainer(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	for _, args := range [][]string{{"state", "nosuch"}, {"start", "nosuch"}, {"kill", "nosuch", "KILL"},
		{"delete", "nosuch"}, {"ps", "nosuch"}, {"exec", "nosuch", "true"}, {"pause", "nosuch"}} {
		r := runRuntime(t, root, runOpts{}, args...)
		if r.code == 0 {
			t.Errorf("%v", r)
			continue
		}
		wantContains(t, args[0]+" of an unknown container", r.err, "not found")
	}
}

func TestBundleWithoutConfig(t *testing.T) {
	requireRoot(t)
	root, bundle := t.TempDir(), t.TempDir()
	os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755)
	r := runRuntime(t, root, runOpts{}, "create", "--bundle", bundle, "noconfig")
	if r.code == 0 {
		t.Fatalf("create without config.json succeeded: %v", r)
	}
	wantContains(t, "create error", r.err, "config.json")
	noStateLeft(t, root)
}

func TestListAndPs(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	sleep := func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} }
	a := newCtrIn(t, root, sleep)
	b := newCtrIn(t, root, sleep)
	pidA := a.startDetached()
	b.mustCreate()
	pidB := b.state().Pid

	tab := a.rt("list")
	if tab.code != 0 {
		t.Fatalf("list: %v", tab)
	}
	ls := lines(tab.out)
	if len(ls) != 3 || !strings.HasPrefix(ls[0], "ID") {
		t.Fatalf("list table: want a header and 2 rows:\n%s", tab.out)
	}
	rows := map[string][]string{}
	for _, l := range ls[1:] {
		f := strings.Fields(l)
		rows[f[0]] = f
	}
	if f := rows[a.id]; len(f) < 3 || f[1] != strconv.Itoa(pidA) || f[2] != "running" {
		t.Errorf("list row of %s: %q, want pid %d running", a.id, f, pidA)
	}
	if f := rows[b.id]; len(f) < 3 || f[1] != strconv.Itoa(pidB) || f[2] != "created" {
		t.Errorf("list row of %s: %q, want pid %d created", b.id, f, pidB)
	}

	js := a.rt("list", "--format", "json")
	if js.code != 0 {
		t.Fatalf("list --format json: %v", js)
	}
	var entries []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Pid    int    `json:"pid"`
		Bundle string `json:"bundle"`
	}
	if err := json.Unmarshal([]byte(js.out), &entries); err != nil {
		t.Fatalf("list --format json: %v: %q", err, js.out)
	}
	got := map[string]string{}
	for _, e := range entries {
		got[e.ID] = e.Status + " " + strconv.Itoa(e.Pid) + " " + e.Bundle
	}
	if want := "running " + strconv.Itoa(pidA) + " " + a.bundle; got[a.id] != want {
		t.Errorf("list json %s: %q, want %q", a.id, got[a.id], want)
	}
	if want := "created " + strconv.Itoa(pidB) + " " + b.bundle; got[b.id] != want {
		t.Errorf("list json %s: %q, want %q", b.id, got[b.id], want)
	}

	ps := a.rt("ps", "--format", "json", a.id)
	if ps.code != 0 {
		t.Fatalf("ps: %v", ps)
	}
	var pids []int
	if err := json.Unmarshal([]byte(ps.out), &pids); err != nil {
		t.Fatalf("ps --format json: %v: %q", err, ps.out)
	}
	found := false
	for _, p := range pids {
		found = found || p == pidA
	}
	if !found {
		t.Errorf("ps --format json %v does not hold the init pid %d", pids, pidA)
	}
}

func TestPidFile(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	pf := filepath.Join(t.TempDir(), "pid")
	c.mustCreate("--pid-file", pf)
	data, err := os.ReadFile(pf)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	if pid := strings.TrimSpace(string(data)); pid != strconv.Itoa(c.state().Pid) {
		t.Errorf("pid file holds %q, state says %d", pid, c.state().Pid)
	}
}

func TestRunDetach(t *testing.T) {
	c := newCtr(t, sh("echo detached-out; exec sleep 100"))
	r := c.rtWith(runOpts{stdout: c.outPath, stderr: c.errPath}, "run", "--detach", "--bundle", c.bundle, c.id)
	if r.code != 0 {
		t.Fatalf("run --detach: %v", r)
	}
	st := c.state()
	if st.Status != "running" || st.Pid <= 0 {
		t.Fatalf("after run --detach: %+v", st)
	}
	// The kill must not overtake the echo on a loaded machine.
	for i := 0; i < 100 && !strings.Contains(c.output(), "detached-out"); i++ {
		time.Sleep(20 * time.Millisecond)
	}
	if r := c.rt("kill", c.id, "KILL"); r.code != 0 {
		t.Fatalf("kill: %v", r)
	}
	c.waitStatus("stopped")
	wantContains(t, "detached container output", c.output(), "detached-out")
}

func TestKillAll(t *testing.T) {
	// Without a pid namespace killing init does not take its children with
	// it: --all must reach every process of the cgroup.
	c := newCtr(t, sh("sleep 101 & sleep 102 & wait"), withoutNS(specs.PIDNamespace))
	c.startDetached()
	var pids []int
	for i := 0; i < 200 && len(pids) < 3; i++ {
		ps := c.rt("ps", "--format", "json", c.id)
		pids = nil
		json.Unmarshal([]byte(ps.out), &pids)
	}
	if len(pids) < 3 {
		t.Fatalf("want sh and two sleeps in the container, ps says %v", pids)
	}
	if r := c.rt("kill", "--all", c.id, "KILL"); r.code != 0 {
		t.Fatalf("kill --all: %v", r)
	}
	c.waitStatus("stopped")
	for _, p := range pids {
		if alive(p) {
			t.Errorf("process %d of the container survived kill --all", p)
		}
	}
}

// alive tells whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

func TestConcurrentKillDelete(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	pid := c.startDetached()
	cg := cgroupDir("memory", hostCgroup(t, pid)["memory"])
	var wg sync.WaitGroup
	var mu sync.Mutex
	var results []result
	for i := 0; i < 9; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var r result
			switch i % 3 {
			case 0:
				r = c.rt("kill", c.id, "KILL")
			case 1:
				r = c.rt("delete", "--force", c.id)
			default:
				r = c.rt("state", c.id)
			}
			mu.Lock()
			results = append(results, r)
			mu.Unlock()
		}(i)
	}
	wg.Wait()
	for _, r := range results {
		if strings.Contains(r.err, "panic") || strings.Contains(r.err, "goroutine ") {
			t.Errorf("runtime panicked: %v", r)
		}
		if r.args[0] == "delete" && r.code != 0 {
			t.Errorf("delete --force failed: %v", r)
		}
	}
	if r := c.rt("state", c.id); r.code == 0 || !strings.Contains(r.err, "not found") {
		t.Errorf("container not gone after concurrent delete --force: %v", r)
	}
	if alive(pid) {
		t.Errorf("init %d still runs", pid)
	}
	if ents, _ := os.ReadDir(c.root); len(ents) != 0 {
		t.Errorf("state left under --root: %v", ents)
	}
	if _, err := os.Stat(cg); err == nil {
		t.Errorf("cgroup %s left", cg)
	}
}

func TestCreatedContainer(t *testing.T) {
	t.Run("kill", func(t *testing.T) {
		c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
		c.mustCreate()
		pid := c.state().Pid
		if r := c.rt("kill", c.id, "KILL"); r.code != 0 {
			t.Fatalf("kill of a created container: %v", r)
		}
		c.waitStatus("stopped")
		if alive(pid) {
			t.Errorf("init %d survived", pid)
		}
		if r := c.rt("start", c.id); r.code == 0 {
			t.Errorf("start of a killed container succeeded: %v", r)
		}
	})
	t.Run("delete", func(t *testing.T) {
		// runc deletes a created container without --force.
		c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
		c.mustCreate()
		pid := c.state().Pid
		if r := c.rt("delete", c.id); r.code != 0 {
			t.Fatalf("delete of a created container: %v", r)
		}
		if alive(pid) {
			t.Errorf("init %d survived delete", pid)
		}
		if r := c.rt("state", c.id); r.code == 0 {
			t.Errorf("container still there: %v", r)
		}
	})
}

func TestStartTwice(t *testing.T) {
	c := newCtr(t, sh("echo once"))
	c.mustCreate()
	c.mustStart()
	c.waitStatus("stopped")
	r := c.rt("start", c.id)
	if r.code == 0 {
		t.Fatalf("second start succeeded: %v", r)
	}
	wantContains(t, "second start", r.err, "stopped")
	if out := c.output(); strings.Count(out, "once") != 1 {
		t.Errorf("process ran %d times: %q", strings.Count(out, "once"), out)
	}
}

func TestStateAfterExternalKill(t *testing.T) {
	// Status is derived from the system: an init killed behind the
	// runtime's back is stopped.
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	pid := c.startDetached()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.waitStatus("stopped")
	if r := c.rt("delete", c.id); r.code != 0 {
		t.Errorf("delete: %v", r)
	}
}

func TestRunForwardsSignals(t *testing.T) {
	c := newCtr(t, sh(`trap "echo got-term; exit 42" TERM; echo ready; while :; do sleep 0.05; done`))
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(rtBin, "--root", c.root, "run", "--bundle", c.bundle, c.id)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for i := 0; ; i++ {
		if b, _ := os.ReadFile(out); strings.Contains(string(b), "ready") {
			break
		}
		if i > 1000 {
			cmd.Process.Kill()
			t.Fatal("container never got ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stateTimeout):
		cmd.Process.Kill()
		t.Fatal("run did not exit after SIGTERM")
	}
	b, _ := os.ReadFile(out)
	if code := cmd.ProcessState.ExitCode(); code != 42 {
		t.Errorf("run exit code %d after SIGTERM, want the container's 42; output %q", code, b)
	}
	wantContains(t, "run output", string(b), "got-term")
}
