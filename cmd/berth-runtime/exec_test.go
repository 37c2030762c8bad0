package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// sleeper is a running container whose init sleeps, for exec tests.
func sleeper(t *testing.T, mods ...func(*specs.Spec)) (*ctr, int) {
	t.Helper()
	c := newCtr(t, append([]func(*specs.Spec){func(s *specs.Spec) {
		s.Hostname = "exec-host"
		s.Process.Args = []string{"sleep", "100"}
	}}, mods...)...)
	return c, c.startDetached()
}

func TestExec(t *testing.T) {
	c, pid := sleeper(t)
	t.Run("args and exit code", func(t *testing.T) {
		r := c.rt("exec", c.id, "sh", "-c", `echo "$0|$1|$2"; exit 5`, "zero", "one two", "three")
		if r.code != 5 {
			t.Fatalf("exec exit code: %v", r)
		}
		if got := strings.TrimSpace(r.out); got != "zero|one two|three" {
			t.Errorf("exec args: %q", got)
		}
	})
	t.Run("env", func(t *testing.T) {
		r := c.rt("exec", "--env", "FOO=bar baz", "-e", "SECOND=2", c.id, "sh", "-c", `echo "$FOO/$SECOND/$PATH"`)
		if r.code != 0 || strings.TrimSpace(r.out) != "bar baz/2/"+specPath(c.spec) {
			t.Errorf("exec --env: %v", r)
		}
	})
	t.Run("cwd", func(t *testing.T) {
		r := c.rt("exec", "--cwd", "/home/user", c.id, "pwd")
		if r.code != 0 || strings.TrimSpace(r.out) != "/home/user" {
			t.Errorf("exec --cwd: %v", r)
		}
	})
	t.Run("user", func(t *testing.T) {
		r := c.rt("exec", "--user", "1000:1000", c.id, "sh", "-c", "id -u; id -g; touch /tmp/by-user; stat -c %u:%g /tmp/by-user")
		if r.code != 0 || strings.Join(lines(r.out), " ") != "1000 1000 1000:1000" {
			t.Errorf("exec --user 1000:1000: %v", r)
		}
	})
	t.Run("namespaces", func(t *testing.T) {
		r := c.rt("exec", c.id, "sh", "-c", nsLinks+"; hostname; echo pid=$$")
		if r.code != 0 {
			t.Fatalf("exec: %v", r)
		}
		got := parseNSLinks(r.out)
		for _, n := range []string{"pid", "net", "ipc", "uts", "mnt", "cgroup"} {
			want, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + n)
			if got[n] != want {
				t.Errorf("exec'd process's %s namespace %q, the container's is %q", n, got[n], want)
			}
		}
		wantContains(t, "exec in the container's uts", r.out, "exec-host\n")
		if strings.Contains(r.out, "pid=1\n") {
			t.Errorf("exec'd process is pid 1: it replaced the container's init?")
		}
	})
	t.Run("security settings of the container", func(t *testing.T) {
		r := c.rt("exec", c.id, "grep", "-E", "^(CapBnd|CapEff|NoNewPrivs)", "/proc/self/status")
		initStatus := readFile(t, "/proc/"+strconv.Itoa(pid)+"/status")
		for _, k := range []string{"CapBnd", "CapEff", "NoNewPrivs"} {
			if got, want := field(r.out, k), field(initStatus, k); got != want || got == "" {
				t.Errorf("exec %s = %q, container init has %q", k, got, want)
			}
		}
	})
	t.Run("process file", func(t *testing.T) {
		p := specs.Process{Args: []string{"sh", "-c", "echo \"$PFILE $(pwd) $(id -u):$(id -g)\""}, Env: []string{"PATH=/bin", "PFILE=from-file"},
			Cwd: "/tmp", User: specs.User{UID: 1000, GID: 1000}}
		data, _ := json.Marshal(p)
		f := filepath.Join(t.TempDir(), "process.json")
		os.WriteFile(f, data, 0o644)
		r := c.rt("exec", "--process", f, c.id)
		if r.code != 0 || strings.TrimSpace(r.out) != "from-file /tmp 1000:1000" {
			t.Errorf("exec --process: %v", r)
		}
	})
	t.Run("tty", func(t *testing.T) {
		sock, ch := consoleSocket(t)
		r := c.rt("exec", "--tty", "--console-socket", sock, c.id, "sh", "-c", "tty; echo tty-ok")
		if r.code != 0 {
			t.Fatalf("exec --tty: %v", r)
		}
		out := strings.ReplaceAll(recvConsole(t, ch), "\r", "")
		l := lines(out)
		if len(l) != 2 || !strings.HasPrefix(l[0], "/dev/pts/") || l[1] != "tty-ok" {
			t.Errorf("exec --tty output: %q", out)
		}
	})
	t.Run("detach and pid file", func(t *testing.T) {
		pf := filepath.Join(t.TempDir(), "exec.pid")
		r := c.rt("exec", "--detach", "--pid-file", pf, c.id, "sleep", "60")
		if r.code != 0 {
			t.Fatalf("exec --detach: %v", r)
		}
		data, err := os.ReadFile(pf)
		if err != nil {
			t.Fatalf("exec --pid-file: %v", err)
		}
		epid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || !alive(epid) {
			t.Fatalf("exec --pid-file holds %q: not a live process", data)
		}
		want, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
		if got, _ := os.Readlink("/proc/" + strconv.Itoa(epid) + "/ns/pid"); got != want {
			t.Errorf("detached exec pid %d is in pid namespace %s, the container's is %s", epid, got, want)
		}
		if cmdline := readFile(t, "/proc/"+strconv.Itoa(epid)+"/cmdline"); !strings.HasPrefix(cmdline, "sleep\x0060") {
			t.Errorf("pid file names %q, not the exec'd sleep", cmdline)
		}
		if hostCgroup(t, epid)["memory"] != hostCgroup(t, pid)["memory"] {
			t.Errorf("exec'd process not in the container's cgroup: %v vs %v", hostCgroup(t, epid), hostCgroup(t, pid))
		}
		ps := c.rt("ps", "--format", "json", c.id)
		var pids []int
		json.Unmarshal([]byte(ps.out), &pids)
		found := false
		for _, p := range pids {
			found = found || p == epid
		}
		if !found {
			t.Errorf("ps %v does not list the exec'd process %d", pids, epid)
		}
	})
}

func specPath(s *specs.Spec) string {
	for _, e := range s.Process.Env {
		if strings.HasPrefix(e, "PATH=") {
			return e[5:]
		}
	}
	return ""
}

func TestExecStopped(t *testing.T) {
	c := newCtr(t, sh("true"))
	c.createStartWait()
	r := c.rt("exec", c.id, "true")
	if r.code == 0 {
		t.Fatalf("exec into a stopped container succeeded: %v", r)
	}
	wantContains(t, "exec error", r.err, "stopped")
}

func TestExecBadCommand(t *testing.T) {
	c, _ := sleeper(t)
	r := c.rt("exec", c.id, "/no/such/binary")
	if r.code == 0 {
		t.Fatalf("exec of a missing binary succeeded: %v", r)
	}
	wantContains(t, "exec error", r.err, "/no/such/binary")
	if st := c.state(); st.Status != "running" {
		t.Errorf("failed exec changed the container: %q", st.Status)
	}
}

func TestExecUserNamespace(t *testing.T) {
	c, pid := sleeper(t, withUserNS)
	r := c.rt("exec", c.id, "sh", "-c", "id -u; cat /proc/self/uid_map; readlink /proc/self/ns/user")
	if r.code != 0 {
		t.Fatalf("exec into a user namespace container: %v", r)
	}
	want, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/user")
	l := lines(r.out)
	if len(l) != 3 || l[0] != "0" || strings.Join(strings.Fields(l[1]), " ") != "0 100000 65536" || l[2] != want {
		t.Errorf("exec in the user namespace: %q, want 0, the mapping and %s", l, want)
	}
	r = c.rt("exec", "--user", "1000:1000", c.id, "sh", "-c", "id -u")
	if r.code != 0 || strings.TrimSpace(r.out) != "1000" {
		t.Errorf("exec --user 1000 in a user namespace: %v", r)
	}
}

func TestExecInheritsContainerSettings(t *testing.T) {
	// Without --process the exec'd process is the container's process with
	// another command: its rlimits, seccomp filter, capabilities.
	c, _ := sleeper(t, seccompProfile, func(s *specs.Spec) {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 321, Hard: 654}}
		s.Process.OOMScoreAdj = ptr(300)
	})
	r := c.rt("exec", c.id, "sh", "-c", "ulimit -n; ulimit -Hn; cat /proc/self/oom_score_adj; grep ^Seccomp: /proc/self/status; mkdir /tmp/x 2>&1; true")
	if r.code != 0 {
		t.Fatalf("exec: %v", r)
	}
	l := lines(r.out)
	if len(l) < 4 || l[0] != "321" || l[1] != "654" || l[2] != "300" {
		t.Errorf("exec'd process rlimits/oom_score_adj: %q, want 321 654 300", l)
	}
	if field(r.out, "Seccomp") != "2" {
		t.Errorf("exec'd process has no seccomp filter: %q", r.out)
	}
	wantContains(t, "seccomp in exec", r.out, "Operation not permitted")

	r = c.rt("exec", "--cap", "CAP_CHOWN", c.id, "grep", "^CapEff", "/proc/self/status")
	eff, err := strconv.ParseUint(field(r.out, "CapEff"), 16, 64)
	if r.code != 0 || err != nil || eff&(1<<capChown) == 0 {
		t.Errorf("exec --cap CAP_CHOWN: CapEff %q: %v", field(r.out, "CapEff"), r)
	}
}

func TestExecTimeNamespace(t *testing.T) {
	const offset = 2000000
	c, _ := sleeper(t, func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
		s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"boottime": {Secs: offset}}
	})
	host := uptime(t, readFile(t, "/proc/uptime"))
	r := c.rt("exec", c.id, "cat", "/proc/uptime")
	if r.code != 0 {
		t.Fatalf("exec: %v", r)
	}
	if in := uptime(t, r.out); in < host+offset {
		t.Errorf("uptime in exec %.2f, want at least %.2f + %d: not in the container's time namespace", in, host, offset)
	}
}

func TestExecPreserveFds(t *testing.T) {
	c, _ := sleeper(t)
	f, err := os.Open(c.bundle + "/config.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := c.rtWith(runOpts{extra: []*os.File{f}}, "exec", "--preserve-fds", "1", c.id, "sh", "-c", "head -c 1 <&3; echo; ls /proc/self/fd; true")
	if r.code != 0 {
		t.Fatalf("exec --preserve-fds 1: %v", r)
	}
	l := lines(r.out)
	if len(l) < 1 || l[0] != "{" {
		t.Errorf("fd 3 of exec --preserve-fds: %q", r.out)
	}
	if got := strings.Join(l[1:], " "); got != "0 1 2 3 4" {
		t.Errorf("exec'd process fds: %q, want 0-3 and ls's own", got)
	}
	r = c.rtWith(runOpts{extra: []*os.File{f}}, "exec", c.id, "sh", "-c", "ls /proc/self/fd; true")
	if got := strings.Join(lines(r.out), " "); got != "0 1 2 3" {
		t.Errorf("exec without --preserve-fds leaks fds: %q", got)
	}
}
