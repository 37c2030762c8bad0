//go:build linux && cgo

package seccomp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// A loaded filter can never be removed, so every Load test runs in a child:
// the test binary re-executed with these variables set. The child loads the
// profile, runs the named probes and prints "probe=result" lines.
const (
	envChild   = "BERTH_SECCOMP_TEST_CHILD"
	envProfile = "BERTH_SECCOMP_TEST_PROFILE" // JSON; empty: load nothing
	envNNP     = "BERTH_SECCOMP_TEST_NNP"     // "1": set no_new_privs first
	envProbes  = "BERTH_SECCOMP_TEST_PROBES"  // comma-separated
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		os.Exit(childMain())
	}
	os.Exit(m.Run())
}

func childMain() int {
	runtime.LockOSThread() // as the runtime's init does before Load
	// KILL_PROCESS and TRAP end in SIGSYS; no core files in the test dir.
	_ = unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{})
	probes := strings.Split(os.Getenv(envProbes), ",")

	// A thread that exists before Load: it only gets the filter via TSYNC.
	var preThread chan chan string
	for _, p := range probes {
		if p == "getcwd-prethread" {
			preThread = startPreThread()
		}
	}

	fd := -1
	if js := os.Getenv(envProfile); js != "" {
		var cfg specs.LinuxSeccomp
		if err := json.Unmarshal([]byte(js), &cfg); err != nil {
			fmt.Printf("load=bad test profile: %v\n", err)
			return 1
		}
		if os.Getenv(envNNP) == "1" {
			if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
				fmt.Printf("load=prctl: %v\n", err)
				return 1
			}
		}
		var err error
		if fd, err = Load(&cfg); err != nil {
			fmt.Printf("load=error: %v\n", err)
			return 0
		}
		fmt.Printf("load=ok\nfd=%d\n", fd)
	}
	for _, p := range probes {
		if p == "getcwd-prethread" {
			reply := make(chan string)
			preThread <- reply
			fmt.Printf("%s=%s\n", p, <-reply)
			continue
		}
		if p != "" {
			fmt.Printf("%s=%s\n", p, probe(p, fd))
		}
	}
	return 0
}

func startPreThread() chan chan string {
	ask := make(chan chan string)
	ready := make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(ready)
		reply := <-ask
		reply <- result(unix.Getcwd(make([]byte, 4096)))
	}()
	<-ready
	return ask
}

func result(_ int, err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(unix.Errno); ok {
		return "errno=" + unix.ErrnoName(e)
	}
	return "error=" + err.Error()
}

func rawResult(_, _ uintptr, e unix.Errno) string {
	if e == 0 {
		return "ok"
	}
	return "errno=" + unix.ErrnoName(e)
}

// probe runs one syscall named "name[:arg0[:arg1]]" and reports its errno.
func probe(p string, fd int) string {
	fields := strings.Split(p, ":")
	var a [2]uintptr
	for i, s := range fields[1:] {
		v, err := strconv.ParseUint(s, 0, 64)
		if err != nil || i >= len(a) {
			return "bad probe " + p
		}
		a[i] = uintptr(v)
	}
	switch fields[0] {
	case "getcwd":
		return result(unix.Getcwd(make([]byte, 4096)))
	case "getppid":
		return rawResult(unix.RawSyscall(unix.SYS_GETPPID, 0, 0, 0))
	case "getpid":
		return rawResult(unix.RawSyscall(unix.SYS_GETPID, 0, 0, 0))
	case "mkdirat":
		return result(0, unix.Mkdirat(unix.AT_FDCWD, "/berth-seccomp-test-nonexistent/dir", 0o700))
	case "personality":
		return rawResult(unix.RawSyscall(unix.SYS_PERSONALITY, a[0], 0, 0))
	case "getpriority":
		return rawResult(unix.RawSyscall(unix.SYS_GETPRIORITY, a[0], a[1], 0))
	case "socket":
		s, err := unix.Socket(int(a[0]), int(a[1]), 0)
		if err == nil {
			unix.Close(s)
		}
		return result(s, err)
	case "nnp":
		return readStatus("NoNewPrivs")
	case "fdflags":
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			return result(0, err)
		}
		return fmt.Sprintf("cloexec:%v", flags&unix.FD_CLOEXEC != 0)
	case "agent":
		return agent(fd)
	}
	return "unknown probe " + p
}

func readStatus(key string) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "error=" + err.Error()
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return "missing"
}

// agent plays the seccomp agent: it starts a grandchild (which inherits the
// filter) that calls mkdirat, receives the notification on the listener fd,
// and answers EXDEV, which the grandchild must then see.
func agent(fd int) string {
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = []string{envChild + "=1", envProbes + "=mkdirat"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "start: " + err.Error()
	}
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()

	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 20_000); n != 1 || err != nil {
		return fmt.Sprintf("no notification within 20s (poll %d, %v)", n, err)
	}
	req, err := libseccomp.NotifReceive(libseccomp.ScmpFd(fd))
	if err != nil {
		return "receive: " + err.Error()
	}
	name, _ := req.Data.Syscall.GetName()
	// req.Pid is the notifying thread's id, which lives in the grandchild.
	_, statErr := os.Stat(fmt.Sprintf("/proc/%d/task/%d", cmd.Process.Pid, req.Pid))
	valid := libseccomp.NotifIDValid(libseccomp.ScmpFd(fd), req.ID) == nil
	resp := &libseccomp.ScmpNotifResp{ID: req.ID, Error: int32(unix.EXDEV)}
	if err := libseccomp.NotifRespond(libseccomp.ScmpFd(fd), resp); err != nil {
		return "respond: " + err.Error()
	}
	waited = true
	if err := cmd.Wait(); err != nil {
		return "grandchild: " + err.Error()
	}
	return fmt.Sprintf("syscall:%s fromgrandchild:%v idvalid:%v grandchild:%s",
		name, statErr == nil, valid, strings.TrimSpace(out.String()))
}

type childRun struct {
	out    map[string]string
	stderr string
	state  *os.ProcessState
}

func runChild(t *testing.T, cfg *specs.LinuxSeccomp, nnp bool, probes ...string) childRun {
	t.Helper()
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envProfile+"="+string(js),
		envProbes+"="+strings.Join(probes, ","), "GOTRACEBACK=single")
	if nnp {
		cmd.Env = append(cmd.Env, envNNP+"=1")
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	_ = cmd.Run()
	r := childRun{out: map[string]string{}, stderr: stderr.String(), state: cmd.ProcessState}
	for _, line := range strings.Split(stdout.String(), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			r.out[k] = v
		}
	}
	t.Logf("child: %s; stdout:\n%s", cmd.ProcessState, stdout.String())
	if r.out["load"] != "ok" {
		t.Fatalf("child did not load the profile: %q (stderr: %s)", r.out["load"], r.stderr)
	}
	return r
}

func (r childRun) expect(t *testing.T, probe, want string) {
	t.Helper()
	if got, ok := r.out[probe]; !ok || got != want {
		t.Errorf("%s = %q, want %q", probe, got, want)
	}
}

func (r childRun) expectNot(t *testing.T, probe, unwanted string) {
	t.Helper()
	if got, ok := r.out[probe]; !ok || got == unwanted {
		t.Errorf("%s = %q (present %v), want anything else", probe, got, ok)
	}
}

func needAPILevel(t *testing.T, level uint) {
	t.Helper()
	if have := apiLevel(); have < level {
		t.Skipf("libseccomp %s at API level %d cannot run this (needs %d)", LibseccompVersion(), have, level)
	}
}

func errno(e syscall.Errno) string { return "errno=" + unix.ErrnoName(e) }

func TestLoadErrno(t *testing.T) {
	needAPILevel(t, apiTsync)
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32, specs.ArchAARCH64, specs.ArchARM},
		Flags:         []specs.LinuxSeccompFlag{flagTsync},
		Syscalls: []specs.LinuxSyscall{
			// The unknown name is skipped, the known one still applies.
			{Names: []string{"berth_no_such_syscall", "getcwd"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EBADSLT))},
			{Names: []string{"mkdirat"}, Action: specs.ActErrno}, // no errnoRet: EPERM
			// Same as the default: skipped rather than refused.
			{Names: []string{"getpid"}, Action: specs.ActAllow},
			// Only exists on 32-bit x86 and arm: resolved as a pseudo number.
			{Names: []string{"socketcall"}, Action: specs.ActErrno},
		},
	}
	r := runChild(t, cfg, true, "getcwd", "getcwd-prethread", "mkdirat", "getpid")
	r.expect(t, "fd", "-1")
	r.expect(t, "getcwd", errno(unix.EBADSLT))
	r.expect(t, "getcwd-prethread", errno(unix.EBADSLT)) // TSYNC reached an older thread
	r.expect(t, "mkdirat", errno(unix.EPERM))
	r.expect(t, "getpid", "ok")
}

func TestLoadArgumentConditions(t *testing.T) {
	needAPILevel(t, apiTsync)
	blocked := uintp(uint(unix.EBADSLT))
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			// Distinct args: ANDed, only AF_UNIX datagram sockets fail.
			{Names: []string{"socket"}, Action: specs.ActErrno, ErrnoRet: blocked, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: unix.AF_UNIX, Op: specs.OpEqualTo},
				{Index: 1, Value: unix.SOCK_DGRAM, Op: specs.OpEqualTo},
			}},
			// Arg 0 twice: runc's semantics, every condition is its own rule
			// (ORed), the arg 1 condition included.
			{Names: []string{"getpriority"}, Action: specs.ActErrno, ErrnoRet: blocked, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: unix.PRIO_PROCESS, Op: specs.OpEqualTo},
				{Index: 0, Value: unix.PRIO_PGRP, Op: specs.OpEqualTo},
				{Index: 1, Value: 0x1234, Op: specs.OpMaskedEqual, ValueTwo: 0},
			}},
			// The personality query (0xffffffff) only.
			{Names: []string{"personality"}, Action: specs.ActErrno, ErrnoRet: blocked, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo},
			}},
			{Names: []string{"getppid"}, Action: specs.ActErrno, ErrnoRet: blocked, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 10, Op: specs.OpGreaterThan},
			}},
		},
	}
	r := runChild(t, cfg, true,
		"socket:1:2", "socket:1:1", "socket:2:2",
		"getpriority:0:0", "getpriority:1:0", "getpriority:2:0x1", "getpriority:2:0x4",
		"personality:0xffffffff", "personality:0",
		"getppid")
	b := errno(unix.EBADSLT)
	r.expect(t, "socket:1:2", b)
	r.expect(t, "socket:1:1", "ok")
	r.expect(t, "socket:2:2", "ok")
	r.expect(t, "getpriority:0:0", b)
	r.expect(t, "getpriority:1:0", b)
	r.expect(t, "getpriority:2:0x1", b) // (who & 0x1234) == 0
	r.expectNot(t, "getpriority:2:0x4", b)
	r.expect(t, "personality:0xffffffff", b)
	r.expect(t, "personality:0", "ok")
	r.expect(t, "getppid", "ok") // arg0 is 0, not > 10
}

func TestLoadMaskedEqual(t *testing.T) {
	needAPILevel(t, apiTsync)
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{{
			Names: []string{"getpriority"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EBADSLT)),
			Args: []specs.LinuxSeccompArg{{Index: 1, Value: 0xff00, ValueTwo: 0x4200, Op: specs.OpMaskedEqual}},
		}},
	}
	r := runChild(t, cfg, true, "getpriority:2:0x4242", "getpriority:2:0x4342")
	r.expect(t, "getpriority:2:0x4242", errno(unix.EBADSLT))
	r.expectNot(t, "getpriority:2:0x4342", errno(unix.EBADSLT))
}

// goRuntimeSyscalls is what the Go runtime and the child's printing need
// once the filter is in: more than binaryTreeMinRules, so the tree
// optimisation is exercised too.
var goRuntimeSyscalls = []string{
	"read", "write", "close", "openat", "fstat", "newfstatat", "lseek", "fcntl", "mmap", "munmap",
	"mprotect", "madvise", "brk", "futex", "sched_yield", "nanosleep", "clock_gettime", "clock_nanosleep",
	"rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack", "clone", "clone3", "gettid", "tgkill",
	"tkill", "getpid", "exit", "exit_group", "epoll_create1", "epoll_ctl", "epoll_pwait", "epoll_wait",
	"pipe2", "getrandom", "sched_getaffinity", "prlimit64", "arch_prctl", "set_robust_list", "rseq",
	"membarrier", "uname", "getrlimit", "setrlimit", "readlinkat", "getuid", "getgid", "geteuid", "getegid",
}

func TestLoadDefaultErrnoAllowList(t *testing.T) {
	needAPILevel(t, apiTsync)
	cfg := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: uintp(uint(unix.ENOANO)),
		Syscalls: []specs.LinuxSyscall{
			{Names: goRuntimeSyscalls, Action: specs.ActAllow},
			// Equals the default (same errno): skipped, not an error.
			{Names: []string{"mkdirat"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.ENOANO))},
		},
	}
	r := runChild(t, cfg, true, "getpid", "getcwd", "mkdirat", "getppid")
	r.expect(t, "getpid", "ok")
	r.expect(t, "getcwd", errno(unix.ENOANO))
	r.expect(t, "mkdirat", errno(unix.ENOANO))
	r.expect(t, "getppid", errno(unix.ENOANO))
}

func TestLoadKillProcess(t *testing.T) {
	needAPILevel(t, apiLog)
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActKillProcess}},
	}
	r := runChild(t, cfg, true, "getpid", "getppid")
	r.expect(t, "getpid", "ok")
	if _, ok := r.out["getppid"]; ok {
		t.Errorf("getppid returned (%q), want the process killed", r.out["getppid"])
	}
	ws, _ := r.state.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != unix.SIGSYS {
		t.Errorf("child ended with %v, want killed by SIGSYS", r.state)
	}
}

func TestLoadTrap(t *testing.T) {
	needAPILevel(t, apiTsync)
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"getppid"}, Action: specs.ActTrap}},
	}
	r := runChild(t, cfg, true, "getppid")
	// The Go runtime turns the SIGSYS it gets into a crash with exit code 2.
	if r.state.ExitCode() != 2 || !strings.Contains(r.stderr, "SIGSYS") {
		t.Errorf("child ended with %v, stderr %q; want the Go runtime's SIGSYS crash", r.state, r.stderr)
	}
}

func TestLoadTraceAndLog(t *testing.T) {
	needAPILevel(t, apiSpecAllow)
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         []specs.LinuxSeccompFlag{flagTsync, specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow},
		Syscalls: []specs.LinuxSyscall{
			// Without a tracer the kernel fails a TRACE syscall with ENOSYS.
			{Names: []string{"getppid"}, Action: specs.ActTrace, ErrnoRet: uintp(7)},
			{Names: []string{"getcwd"}, Action: specs.ActLog},
		},
	}
	r := runChild(t, cfg, true, "getppid", "getcwd")
	r.expect(t, "getppid", errno(unix.ENOSYS))
	r.expect(t, "getcwd", "ok")
}

// Without no_new_privs the filter needs CAP_SYS_ADMIN, and Load must not
// have set no_new_privs behind the caller's back.
func TestLoadWithoutNoNewPrivs(t *testing.T) {
	needAPILevel(t, apiTsync)
	if os.Geteuid() != 0 {
		t.Skip("loading a filter without no_new_privs needs CAP_SYS_ADMIN: run as root")
	}
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"getcwd"}, Action: specs.ActErrno}},
	}
	r := runChild(t, cfg, false, "getcwd", "nnp")
	r.expect(t, "getcwd", errno(unix.EPERM))
	r.expect(t, "nnp", "0")
}

func testNotify(t *testing.T, flags []specs.LinuxSeccompFlag) {
	needAPILevel(t, apiNotify)
	for _, f := range flags {
		if err := flagSupport(f); err != nil {
			t.Skipf("%s: %v", f, err)
		}
	}
	cfg := &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Flags:         flags,
		ListenerPath:  "/run/berth-test-agent.sock", // the caller's business, unused by Load
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdirat"}, Action: specs.ActNotify},
			{Names: []string{"getcwd"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.EBADSLT))},
		},
	}
	r := runChild(t, cfg, true, "fdflags", "getcwd", "getcwd-prethread", "agent")
	if fd, err := strconv.Atoi(r.out["fd"]); err != nil || fd < 0 {
		t.Fatalf("listener fd = %q, want a descriptor", r.out["fd"])
	}
	r.expect(t, "fdflags", "cloexec:true")
	r.expect(t, "getcwd", errno(unix.EBADSLT))
	r.expect(t, "getcwd-prethread", errno(unix.EBADSLT)) // TSYNC, with a listener too
	r.expect(t, "agent", "syscall:mkdirat fromgrandchild:true idvalid:true grandchild:mkdirat="+errno(unix.EXDEV))
}

func TestLoadNotify(t *testing.T) { testNotify(t, nil) }

// With libseccomp < 2.6 this goes through Load's own seccomp(2) call.
func TestLoadNotifyWaitKillable(t *testing.T) {
	testNotify(t, []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv, specs.LinuxSeccompFlagLog})
}

// A profile the size and shape of container engines' defaults: hundreds of
// names across three architectures, 32-bit-only names, several conditional
// rules for one syscall, and an ERRNO exception.
func TestLoadLargeProfile(t *testing.T) {
	needAPILevel(t, apiTsync)
	special := map[string]bool{"getcwd": true, "getppid": true, "socket": true, "personality": true, "clone3": true}
	var allow []string
	for nr := 0; nr < 1024; nr++ {
		name, err := libseccomp.ScmpSyscall(nr).GetName()
		if err == nil && !special[name] {
			allow = append(allow, name)
		}
	}
	allow = append(allow, "chown32", "_llseek", "socketcall", "ipc", "mmap2", "fcntl64", "berth_future_syscall")
	if len(allow) < 250 {
		t.Fatalf("only %d syscall names resolved", len(allow))
	}
	cfg := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: uintp(1),
		Architectures:   []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: allow, Action: specs.ActAllow},
			{Names: []string{"socket"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Value: unix.AF_VSOCK, Op: specs.OpNotEqual}}},
			{Names: []string{"clone3"}, Action: specs.ActErrno, ErrnoRet: uintp(uint(unix.ENOSYS))},
		},
	}
	for _, v := range []uint64{0, 8, 0x20000, 0x20008, 0xffffffff} {
		cfg.Syscalls = append(cfg.Syscalls, specs.LinuxSyscall{Names: []string{"personality"}, Action: specs.ActAllow,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: v, Op: specs.OpEqualTo}}})
	}
	if runtime.GOARCH != "amd64" {
		cfg.Architectures = nil
	}
	r := runChild(t, cfg, true, "getpid", "getcwd", "getppid", "socket:40:1", "socket:1:1", "personality:0xffffffff", "personality:0x1")
	r.expect(t, "getpid", "ok")
	r.expect(t, "getcwd", errno(unix.EPERM))
	r.expect(t, "getppid", errno(unix.EPERM))
	r.expect(t, "socket:40:1", errno(unix.EPERM))
	r.expect(t, "socket:1:1", "ok")
	r.expect(t, "personality:0xffffffff", "ok")
	r.expect(t, "personality:0x1", errno(unix.EPERM))
}
