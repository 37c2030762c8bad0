package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hookScript appends "<name> <status>" to the log given as $2 and keeps the
// state JSON it got on stdin as $3/<name>.json. It works with the host's sh
// and with busybox's.
const hookScript = `PATH=/usr/bin:/bin
in=$(cat)
st=$(echo "$in" | sed -n 's/.*"status": *"\([a-z]*\)".*/\1/p')
echo "$1 $st" >> "$2"
echo "$in" > "$3/$1.json"`

func TestHooks(t *testing.T) {
	requireRoot(t)
	hostDir := t.TempDir()
	os.Chmod(hostDir, 0o755)
	script := filepath.Join(hostDir, "hook.sh")
	writeScript(t, script, hookScript)
	log := filepath.Join(hostDir, "hooks.log")
	os.WriteFile(log, nil, 0o666)
	hook := func(name string) specs.Hook {
		return specs.Hook{Path: script, Args: []string{"hook.sh", name, log, hostDir}}
	}
	// nsHook records the hook's uts and mount namespaces.
	nsScript := filepath.Join(hostDir, "ns.sh")
	writeScript(t, nsScript, `readlink /proc/self/ns/uts /proc/self/ns/mnt > "$1"`)
	nsHook := func(name string) specs.Hook {
		return specs.Hook{Path: nsScript, Args: []string{"ns.sh", filepath.Join(hostDir, name+".ns")}}
	}
	c := newCtr(t, func(s *specs.Spec) {
		s.Process.Args = []string{"sleep", "100"}
		// The startContainer hook runs in the container, after pivot_root:
		// its script and log are container paths.
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/hooks.log", Type: "bind", Source: log, Options: []string{"bind"}})
		s.Hooks = &specs.Hooks{
			Prestart:      []specs.Hook{hook("prestart"), nsHook("prestart")},
			CreateRuntime: []specs.Hook{hook("createRuntime")},
			// createContainer runs before pivot_root: host paths.
			CreateContainer: []specs.Hook{hook("createContainer"), nsHook("createContainer")},
			StartContainer:  []specs.Hook{{Path: "/hooks/hook.sh", Args: []string{"hook.sh", "startContainer", "/hooks.log", "/hooks"}}},
			Poststart:       []specs.Hook{hook("poststart")},
			Poststop:        []specs.Hook{hook("poststop")},
		}
	})
	os.MkdirAll(filepath.Join(c.rootfs, "hooks"), 0o755)
	writeScript(t, filepath.Join(c.rootfs, "hooks/hook.sh"), hookScript)

	c.mustCreate()
	pid := c.state().Pid
	// prestart sees "created": the runtime-tools suite checks that (crun does
	// so); the spec's newer hooks see "creating".
	if got := lines(readFile(t, log)); strings.Join(got, "|") != "prestart created|createRuntime creating|createContainer creating" {
		t.Errorf("hooks after create: %q", got)
	}
	for name, want := range map[string]string{"prestart": nsOf(t, os.Getpid()), "createContainer": nsOf(t, pid)} {
		if got := strings.Join(lines(readFile(t, filepath.Join(hostDir, name+".ns"))), " "); got != want {
			t.Errorf("%s hook ran in namespaces %q, want %q", name, got, want)
		}
	}
	c.mustStart()
	c.waitStatus("running")
	if r := c.rt("delete", "--force", c.id); r.code != 0 {
		t.Fatalf("delete --force: %v", r)
	}
	want := []string{"prestart created", "createRuntime creating", "createContainer creating",
		"startContainer created", "poststart running", "poststop stopped"}
	if got := lines(readFile(t, log)); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("hooks:\n got %q\nwant %q", got, want)
	}
	for _, j := range []struct{ name, dir string }{{"prestart", hostDir}, {"createRuntime", hostDir},
		{"createContainer", hostDir}, {"poststart", hostDir}, {"startContainer", filepath.Join(c.rootfs, "hooks")}} {
		var st specs.State
		data, err := os.ReadFile(filepath.Join(j.dir, j.name+".json"))
		if err != nil {
			t.Errorf("%s hook: no state saved: %v", j.name, err)
			continue
		}
		if err := json.Unmarshal(data, &st); err != nil {
			t.Errorf("%s hook: state on stdin is not JSON: %v: %q", j.name, err, data)
			continue
		}
		if st.ID != c.id || st.Bundle != c.bundle || st.Version == "" {
			t.Errorf("%s hook state: id %q bundle %q version %q", j.name, st.ID, st.Bundle, st.Version)
		}
		if j.name != "startContainer" && st.Pid != pid {
			t.Errorf("%s hook state: pid %d, want the init's %d", j.name, st.Pid, pid)
		}
	}
}

// nsOf is "<uts link> <mnt link>" of a process.
func nsOf(t *testing.T, pid int) string {
	t.Helper()
	var out []string
	for _, n := range []string{"uts", "mnt"} {
		l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, l)
	}
	return strings.Join(out, " ")
}

// absCgroup gives the container an absolute cgroupsPath and returns it.
func absCgroup(t *testing.T, s *specs.Spec) string {
	p := fmt.Sprintf("/berthtest/%d-%d", os.Getpid(), ctrCounter.Add(1))
	s.Linux.CgroupsPath = p
	return p
}

// cgroupGone fails if the container's cgroups remain.
func cgroupGone(t *testing.T, path string) {
	t.Helper()
	for _, ctrl := range []string{"memory", "pids", "devices", "freezer", "cpu"} {
		if _, err := os.Stat(cgroupDir(ctrl, path)); err == nil {
			t.Errorf("cgroup %s left", cgroupDir(ctrl, path))
			os.Remove(cgroupDir(ctrl, path))
		}
	}
}

func TestHookTimeout(t *testing.T) {
	requireRoot(t)
	script := filepath.Join(t.TempDir(), "slow.sh")
	writeScript(t, script, "sleep 5")
	var cg string
	c := newCtr(t, func(s *specs.Spec) {
		cg = absCgroup(t, s)
		s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: script, Timeout: ptr(1)}}}
	})
	r := c.create()
	if r.code == 0 {
		t.Fatalf("create with a hook past its timeout succeeded: %v", r)
	}
	wantContains(t, "create error", r.err, "prestart")
	if !strings.Contains(r.err, "timed out") && !strings.Contains(r.err, "timeout") {
		t.Errorf("create error does not say the hook timed out: %q", r.err)
	}
	noStateLeft(t, c.root)
	cgroupGone(t, cg)
}

func TestHookFailures(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	fail := filepath.Join(dir, "fail.sh")
	writeScript(t, fail, "echo hook-said-no >&2; exit 7")
	t.Run("createRuntime fails create", func(t *testing.T) {
		var cg string
		c := newCtr(t, func(s *specs.Spec) {
			cg = absCgroup(t, s)
			s.Process.Args = []string{"sleep", "100"}
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: fail}}}
		})
		r := c.create()
		if r.code == 0 {
			t.Fatalf("create with a failing createRuntime hook succeeded: %v", r)
		}
		wantContains(t, "create error", r.err, "createRuntime", "hook-said-no")
		noStateLeft(t, c.root)
		cgroupGone(t, cg)
	})
	t.Run("poststart only warns", func(t *testing.T) {
		c := newCtr(t, func(s *specs.Spec) {
			s.Process.Args = []string{"sleep", "100"}
			s.Hooks = &specs.Hooks{Poststart: []specs.Hook{{Path: fail}}}
		})
		c.mustCreate()
		r := c.rt("start", c.id)
		if r.code != 0 {
			t.Fatalf("start failed because of a poststart hook: %v", r)
		}
		wantContains(t, "start warning", r.err, "poststart")
		if st := c.state(); st.Status != "running" {
			t.Errorf("status after a failing poststart hook: %q, want running", st.Status)
		}
	})
	t.Run("poststop only warns", func(t *testing.T) {
		c := newCtr(t, func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: fail}}}
		})
		c.createStartWait()
		r := c.rt("delete", c.id)
		if r.code != 0 {
			t.Fatalf("delete failed because of a poststop hook: %v", r)
		}
		if st := c.rt("state", c.id); st.code == 0 {
			t.Errorf("container still there after delete: %v", st)
		}
	})
}

func TestHookEnvAndArgs(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "env.sh")
	out := filepath.Join(dir, "out")
	writeScript(t, script, `echo "args=$0 $1 $2" > `+out+`; echo "HOOKVAR=$HOOKVAR" >> `+out+`; env | grep -c = >> `+out)
	c := newCtr(t, func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: script, Args: []string{"env.sh", "a1", "a2"}, Env: []string{"HOOKVAR=v1"}}}}
	})
	c.mustCreate()
	got := lines(readFile(t, out))
	if len(got) != 3 || got[0] != "args="+script+" a1 a2" && got[0] != "args=env.sh a1 a2" || got[1] != "HOOKVAR=v1" {
		t.Errorf("hook args/env: %q", got)
	}
}
