package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func seccompProfile(s *specs.Spec) {
	s.Linux.Seccomp = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{{
			Names:    []string{"mkdir", "mkdirat"},
			Action:   specs.ActErrno,
			ErrnoRet: ptr(uint(1)), // EPERM
		}},
	}
}

func TestSeccompErrno(t *testing.T) {
	for _, nnp := range []bool{true, false} {
		name := "noNewPrivileges"
		if !nnp {
			name = "privileged"
		}
		t.Run(name, func(t *testing.T) {
			c := newCtr(t, seccompProfile, func(s *specs.Spec) { s.Process.NoNewPrivileges = nnp },
				sh(`mkdir /tmp/x 2>&1; echo "mkdir-rc=$?"; touch /tmp/y && echo touch-ok; grep ^Seccomp: /proc/self/status`))
			out := c.mustRun()
			wantContains(t, "seccomp", out, "Operation not permitted", "mkdir-rc=1\n", "touch-ok\n")
			if got := field(out, "Seccomp"); got != "2" {
				t.Errorf("Seccomp: %q, want 2 (filter)", got)
			}
			if _, err := os.Stat(filepath.Join(c.rootfs, "tmp/x")); err == nil {
				t.Errorf("mkdir succeeded despite the filter")
			}
		})
	}
}

func TestSeccompArgs(t *testing.T) {
	// chmod to exactly 0700 is refused, any other mode works.
	c := newCtr(t, sh(`touch /tmp/f; chmod 700 /tmp/f 2>&1; echo "rc700=$?"; chmod 755 /tmp/f; echo "rc755=$?"; stat -c %a /tmp/f`),
		func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{
				DefaultAction: specs.ActAllow,
				Syscalls: []specs.LinuxSyscall{
					{Names: []string{"chmod"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(1)),
						Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0o700, Op: specs.OpEqualTo}}},
					{Names: []string{"fchmodat"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(1)),
						Args: []specs.LinuxSeccompArg{{Index: 2, Value: 0o700, Op: specs.OpEqualTo}}},
				},
			}
			// fchmod's mode is its second argument.
			s.Linux.Seccomp.Syscalls = append(s.Linux.Seccomp.Syscalls, specs.LinuxSyscall{Names: []string{"fchmod"},
				Action: specs.ActErrno, ErrnoRet: ptr(uint(1)), Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0o700, Op: specs.OpEqualTo}}})
		})
	out := c.mustRun()
	wantContains(t, "seccomp argument filter", out, "Operation not permitted", "rc700=1\n", "rc755=0\n", "755\n")
}

func TestSeccompInvalidProfile(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: "SCMP_ACT_BOGUS"}}}
	})
	r := c.create()
	if r.code == 0 {
		t.Fatalf("create with an unknown seccomp action succeeded: %v", r)
	}
	wantContains(t, "create error", r.err, "linux.seccomp", "SCMP_ACT_BOGUS")
	noStateLeft(t, c.root)
}

// cgroupDir is the host directory of a v1 controller's cgroup.
func cgroupDir(ctrl, path string) string { return filepath.Join("/sys/fs/cgroup", ctrl, path) }

func readTrim(t *testing.T, p string) string {
	t.Helper()
	return strings.TrimSpace(readFile(t, p))
}

func TestCgroupResources(t *testing.T) {
	requireRoot(t)
	cgPath := "/berthtest/" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatInt(ctrCounter.Add(1), 10)
	t.Cleanup(func() {
		for _, ctrl := range []string{"memory", "pids", "cpu", "cpuset", "freezer", "devices", "blkio", "cpuacct", "systemd"} {
			os.Remove(cgroupDir(ctrl, cgPath))
			os.Remove(cgroupDir(ctrl, "/berthtest"))
		}
	})
	c := newCtr(t, func(s *specs.Spec) {
		s.Linux.CgroupsPath = cgPath
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: ptr(int64(64 << 20))}
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr(int64(50))}
		s.Linux.Resources.CPU = &specs.LinuxCPU{Shares: ptr(uint64(512)), Quota: ptr(int64(50000)),
			Period: ptr(uint64(100000)), Cpus: "0"}
	}, sh(`cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes pids/pids.max cpu/cpu.shares cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us cpuset/cpuset.cpus; echo probed; exec sleep 100`))
	pid := c.startDetached()
	inside := lines(c.waitOutput("probed"))
	if strings.Join(inside, " ") != "67108864 50 512 50000 100000 0 probed" {
		t.Errorf("limits read inside the container: %q", inside)
	}
	host := map[string]string{
		"memory/memory.limit_in_bytes": "67108864", "pids/pids.max": "50", "cpu/cpu.shares": "512",
		"cpu/cpu.cfs_quota_us": "50000", "cpu/cpu.cfs_period_us": "100000", "cpuset/cpuset.cpus": "0",
	}
	for f, want := range host {
		ctrl, file, _ := strings.Cut(f, "/")
		if got := readTrim(t, filepath.Join(cgroupDir(ctrl, cgPath), file)); got != want {
			t.Errorf("host %s of %s: %q, want %q", file, cgPath, got, want)
		}
	}
	procs := readFile(t, filepath.Join(cgroupDir("memory", cgPath), "cgroup.procs"))
	wantContains(t, "memory cgroup.procs", procs, strconv.Itoa(pid)+"\n")

	if r := c.rt("update", "--memory", "128m", "--pids-limit", "99", c.id); r.code != 0 {
		t.Fatalf("update: %v", r)
	}
	if got := readTrim(t, filepath.Join(cgroupDir("memory", cgPath), "memory.limit_in_bytes")); got != "134217728" {
		t.Errorf("memory limit after update --memory 128m: %s", got)
	}
	if got := readTrim(t, filepath.Join(cgroupDir("pids", cgPath), "pids.max")); got != "99" {
		t.Errorf("pids limit after update --pids-limit 99: %s", got)
	}

	if r := c.rt("pause", c.id); r.code != 0 {
		t.Fatalf("pause: %v", r)
	}
	if st := c.state(); st.Status != "paused" {
		t.Errorf("state after pause: %q", st.Status)
	}
	if got := readTrim(t, filepath.Join(cgroupDir("freezer", cgPath), "freezer.state")); got != "FROZEN" {
		t.Errorf("freezer.state after pause: %q", got)
	}
	if r := c.rt("resume", c.id); r.code != 0 {
		t.Fatalf("resume: %v", r)
	}
	if st := c.state(); st.Status != "running" {
		t.Errorf("state after resume: %q", st.Status)
	}
	if got := readTrim(t, filepath.Join(cgroupDir("freezer", cgPath), "freezer.state")); got != "THAWED" {
		t.Errorf("freezer.state after resume: %q", got)
	}

	ev := c.rt("events", "--stats", c.id)
	if ev.code != 0 {
		t.Fatalf("events --stats: %v", ev)
	}
	dec := json.NewDecoder(strings.NewReader(ev.out))
	var e struct {
		Type string `json:"type"`
		ID   string `json:"id"`
		Data struct {
			Memory struct {
				Usage struct {
					Limit uint64 `json:"limit"`
					Usage uint64 `json:"usage"`
				} `json:"usage"`
			} `json:"memory"`
			Pids struct {
				Current uint64 `json:"current"`
				Limit   uint64 `json:"limit"`
			} `json:"pids"`
		} `json:"data"`
	}
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("events --stats is not JSON: %v: %q", err, ev.out)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		t.Errorf("events --stats printed more than one object: %q", ev.out)
	}
	if e.Type != "stats" || e.ID != c.id {
		t.Errorf("events --stats: type %q id %q", e.Type, e.ID)
	}
	if e.Data.Memory.Usage.Limit != 128<<20 || e.Data.Memory.Usage.Usage == 0 {
		t.Errorf("events --stats memory: %+v", e.Data.Memory.Usage)
	}
	if e.Data.Pids.Current != 1 || e.Data.Pids.Limit != 99 {
		t.Errorf("events --stats pids: %+v, want current 1 limit 99", e.Data.Pids)
	}

	if r := c.rt("delete", "--force", c.id); r.code != 0 {
		t.Fatalf("delete --force: %v", r)
	}
	for _, ctrl := range []string{"memory", "pids", "cpu", "cpuset", "freezer", "devices", "blkio"} {
		if _, err := os.Stat(cgroupDir(ctrl, cgPath)); err == nil {
			t.Errorf("cgroup %s left after delete", cgroupDir(ctrl, cgPath))
		}
	}
}

// hostCgroup reads /proc/<pid>/cgroup: controller -> path.
func hostCgroup(t *testing.T, pid int) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, l := range lines(readFile(t, "/proc/"+strconv.Itoa(pid)+"/cgroup")) {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 {
			for _, ctrl := range strings.Split(f[1], ",") {
				m[ctrl] = f[2]
			}
		}
	}
	return m
}

func TestCgroupDefaultPathRemoved(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	pid := c.startDetached()
	cg := hostCgroup(t, pid)
	own := hostCgroup(t, os.Getpid())
	var dirs []string
	for _, ctrl := range []string{"memory", "pids", "devices", "freezer", "cpu"} {
		p := cg[ctrl]
		if p == "" || p == own[ctrl] || !strings.Contains(p, c.id) {
			t.Errorf("container %s cgroup %q: want its own, named after the id", ctrl, p)
			continue
		}
		d := cgroupDir(ctrl, p)
		if _, err := os.Stat(d); err != nil {
			t.Errorf("container cgroup: %v", err)
		}
		dirs = append(dirs, d)
	}
	if r := c.rt("kill", c.id, "KILL"); r.code != 0 {
		t.Fatalf("kill: %v", r)
	}
	c.waitStatus("stopped")
	if r := c.rt("delete", c.id); r.code != 0 {
		t.Fatalf("delete: %v", r)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			t.Errorf("cgroup %s left after delete", d)
		}
	}
}

func TestCgroupPidsLimitEnforced(t *testing.T) {
	c := newCtr(t, sh(`i=0; while [ $i -lt 12 ]; do sleep 30 & i=$((i+1)); done 2>&1; echo started`), func(s *specs.Spec) {
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr(int64(5))}
	})
	r := c.run()
	if !strings.Contains(r.out+r.err, "can't fork") && !strings.Contains(r.out+r.err, "Resource temporarily unavailable") {
		t.Errorf("12 processes under pids.max 5: no fork failure: %v", r)
	}
}

func TestDeletePaused(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	pid := c.startDetached()
	if r := c.rt("pause", c.id); r.code != 0 {
		t.Fatalf("pause: %v", r)
	}
	if r := c.rt("delete", c.id); r.code == 0 {
		t.Errorf("delete of a paused container without --force succeeded: %v", r)
	}
	if r := c.rt("delete", "--force", c.id); r.code != 0 {
		t.Fatalf("delete --force of a paused container: %v", r)
	}
	if alive(pid) {
		t.Errorf("init %d of the paused container survived delete --force", pid)
	}
	if r := c.rt("state", c.id); r.code == 0 {
		t.Errorf("container still there: %v", r)
	}
}

func TestSeccompErrnoValues(t *testing.T) {
	for _, tc := range []struct {
		name  string
		errno *uint
		want  string
	}{
		{"default EPERM", nil, "Operation not permitted"},
		{"EACCES", ptr(uint(13)), "Permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCtr(t, sh("mkdir /tmp/x 2>&1; true"), func(s *specs.Spec) {
				s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
					Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: tc.errno}}}
			})
			wantContains(t, "mkdir under seccomp", c.mustRun(), tc.want)
		})
	}
}

func TestSeccompAfterRuntimeSetup(t *testing.T) {
	// A filter that forbids changing rlimits binds the container's process,
	// not the runtime's own setup: the configured rlimits still apply (runc
	// sets them before loading the filter).
	c := newCtr(t, sh("ulimit -n; ulimit -Hn; ulimit -n 100 2>&1 || echo set-denied"), func(s *specs.Spec) {
		s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 512, Hard: 768}}
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"setrlimit"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(1))},
			// prlimit64 with a new limit (reading, with NULL, stays allowed).
			{Names: []string{"prlimit64"}, Action: specs.ActErrno, ErrnoRet: ptr(uint(1)),
				Args: []specs.LinuxSeccompArg{{Index: 2, Value: 0, Op: specs.OpNotEqual}}},
		}}
	})
	out := c.mustRun()
	l := lines(out)
	if len(l) < 3 || l[0] != "512" || l[1] != "768" {
		t.Errorf("rlimits under a filter forbidding setrlimit: %q, want 512 768", l)
	}
	wantContains(t, "filter active in the container", out, "set-denied")
}

func TestSeccompActionsAndUnknownSyscalls(t *testing.T) {
	// Unknown syscall names are skipped, as runc does for profiles written
	// for newer kernels; SCMP_ACT_KILL kills the caller with SIGSYS.
	c := newCtr(t, sh(`mkdir /tmp/x; echo "mkdir-rc=$?"; chmod 700 /tmp; echo "chmod-rc=$?"`), func(s *specs.Spec) {
		s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"no_such_syscall_berth", "mkdir", "mkdirat"}, Action: specs.ActKill},
			{Names: []string{"chmod", "fchmodat"}, Action: specs.ActLog},
		}}
	})
	out := c.mustRun()
	wantContains(t, "seccomp actions", out, "mkdir-rc=159\n", "chmod-rc=0\n")
}
