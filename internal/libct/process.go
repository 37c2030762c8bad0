package libct

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/berthdev/berth/internal/libct/seccomp"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

var rlimitTypes = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

func setRlimits(rl []specs.POSIXRlimit) error {
	for _, r := range rl {
		lim := &syscall.Rlimit{Cur: r.Soft, Max: r.Hard}
		// syscall.Setrlimit, not unix: it tells the Go runtime the limit is
		// ours, so exec does not restore the NOFILE limit Go raised.
		if err := syscall.Setrlimit(rlimitTypes[r.Type], lim); err != nil {
			return fmt.Errorf("process.rlimits %s (soft %d, hard %d): %w", r.Type, r.Soft, r.Hard, err)
		}
	}
	return nil
}

// setOOMScoreAdj writes the score. Lowering it needs CAP_SYS_RESOURCE, which
// some hosts take from root; then the inherited score stays and the runtime
// logs a warning (sent back as one, since init's stderr is the container's).
func setOOMScoreAdj(v *int, enc *json.Encoder) {
	if v == nil {
		return
	}
	if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(*v)), 0); err != nil {
		enc.Encode(syncMsg{Type: "warning", Error: fmt.Sprintf("process.oomScoreAdj %d not applied: %v", *v, err)})
	}
}

// finishProcess switches to the process's identity and security settings
// and execs it; prog is l.Seccomp compiled (the runtime's, see
// compileSeccomp). It returns only on error.
func finishProcess(p *specs.Process, l *specs.Linux, keepFds int, prog *seccomp.Program) error {
	if l.Personality != nil && l.Personality.Domain == specs.PerLinux32 {
		if _, _, e := unix.RawSyscall(unix.SYS_PERSONALITY, 0x0008, 0, 0); e != 0 {
			return fmt.Errorf("linux.personality: %w", e)
		}
	}
	if p.ApparmorProfile != "" {
		if b, _ := os.ReadFile("/sys/module/apparmor/parameters/enabled"); !strings.HasPrefix(string(b), "Y") {
			return fmt.Errorf("process.apparmorProfile %q: AppArmor is not enabled on this host", p.ApparmorProfile)
		}
		if err := os.WriteFile("/proc/self/attr/apparmor/exec", []byte("exec "+p.ApparmorProfile), 0); err != nil {
			return fmt.Errorf("process.apparmorProfile %q: %w", p.ApparmorProfile, err)
		}
	}
	env := p.Env
	path, err := lookPath(p.Args[0], env)
	if err != nil {
		return err
	}
	// Before any filter is loaded: a profile may deny getcwd or close_range.
	if err := chdir(p.Cwd); err != nil {
		return err
	}
	// Nothing of ours crosses into the container (CVE-2024-21626): every
	// descriptor above the preserved ones closes on exec.
	if err := unix.CloseRange(uint(3+keepFds), ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range: %w", err)
	}
	// The rlimits go after the compiled filter (a tight RLIMIT_AS would
	// starve libseccomp), before the filter is loaded (it may deny
	// setrlimit) and before the capabilities (raising a hard limit needs
	// CAP_SYS_RESOURCE).
	if err := setRlimits(p.Rlimits); err != nil {
		return err
	}
	if p.Capabilities != nil {
		if err := dropBounding(p.Capabilities); err != nil {
			return err
		}
	}
	// Without no_new_privs a filter can only be loaded while we still hold
	// CAP_SYS_ADMIN, so before the user switch; with it, as late as possible.
	if prog != nil && !p.NoNewPrivileges {
		if err := loadSeccomp(prog, l.Seccomp); err != nil {
			return err
		}
	}
	if err := setUser(p); err != nil {
		return err
	}
	if p.Capabilities != nil {
		if err := applyCaps(p.Capabilities); err != nil {
			return err
		}
	}
	if p.User.UID != 0 {
		// Again as the user: a directory the user may not enter fails here.
		if err := unix.Chdir(p.Cwd); err != nil {
			return fmt.Errorf("process.cwd %s: %w", p.Cwd, err)
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("process.noNewPrivileges: %w", err)
		}
	}
	if prog != nil && p.NoNewPrivileges {
		if err := loadSeccomp(prog, l.Seccomp); err != nil {
			return err
		}
	}
	if err := unix.Exec(path, p.Args, env); err != nil {
		return fmt.Errorf("exec %s: %w", p.Args[0], err)
	}
	return nil
}

// seccompCache is the compiled-profile cache under the runtime's root
// (':' is in no container ID).
const seccompCache = "seccomp:cache"

// compileSeccomp compiles linux.seccomp for init, through the cache: the
// runtime does it before init waits for `start`, not init after it.
func compileSeccomp(root string, l *specs.Linux) (*seccomp.Program, error) {
	if l == nil || l.Seccomp == nil {
		return nil, nil
	}
	p, err := seccomp.CompileCached(l.Seccomp, filepath.Join(root, seccompCache))
	if err != nil {
		return nil, fmt.Errorf("linux.seccomp: %w", err)
	}
	return p, nil
}

func loadSeccomp(prog *seccomp.Program, s *specs.LinuxSeccomp) error {
	fd, err := prog.Load()
	if err != nil {
		return fmt.Errorf("linux.seccomp: %w", err)
	}
	if fd >= 0 {
		if err := sendListener(s, fd); err != nil {
			return fmt.Errorf("linux.seccomp.listenerPath %s: %w", s.ListenerPath, err)
		}
	}
	return nil
}

// chdir enters the process's working directory and makes sure it lies
// inside the container: a leaked host descriptor as cwd shows up as an
// "(unreachable)" path.
func chdir(cwd string) error {
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("process.cwd %s: %w", cwd, err)
	}
	wd, err := unix.Getwd()
	if err != nil {
		return fmt.Errorf("process.cwd %s: %w", cwd, err)
	}
	if !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("process.cwd %s: outside the container (%s)", cwd, wd)
	}
	return nil
}

func setUser(p *specs.Process) error {
	u := p.User
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return err
	}
	groups := make([]int, 0, len(u.AdditionalGids))
	for _, g := range u.AdditionalGids {
		groups = append(groups, int(g))
	}
	// setgroups is denied in a rootless user namespace; an empty list is
	// then what the process has anyway.
	if err := unix.Setgroups(groups); err != nil && !(errors.Is(err, unix.EPERM) && len(groups) == 0) {
		return fmt.Errorf("process.user.additionalGids: %w", err)
	}
	if err := unix.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return fmt.Errorf("process.user.gid %d: %w", u.GID, err)
	}
	if err := unix.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return fmt.Errorf("process.user.uid %d: %w", u.UID, err)
	}
	if u.Umask != nil {
		unix.Umask(int(*u.Umask))
	}
	return nil
}

func capSet(names []string) []capability.Cap {
	out := make([]capability.Cap, 0, len(names))
	for _, n := range names {
		if c, err := capByName(n); err == nil {
			out = append(out, c)
		}
	}
	return out
}

func dropBounding(c *specs.LinuxCapabilities) error {
	caps, err := capability.NewPid2(0)
	if err != nil {
		return err
	}
	caps.Clear(capability.BOUNDS)
	caps.Set(capability.BOUNDING, capSet(c.Bounding)...)
	if err := caps.Apply(capability.BOUNDS); err != nil {
		return fmt.Errorf("process.capabilities.bounding: %w", err)
	}
	return nil
}

func applyCaps(c *specs.LinuxCapabilities) error {
	caps, err := capability.NewPid2(0)
	if err != nil {
		return err
	}
	caps.Clear(capability.CAPS | capability.AMBS)
	caps.Set(capability.EFFECTIVE, capSet(c.Effective)...)
	caps.Set(capability.PERMITTED, capSet(c.Permitted)...)
	caps.Set(capability.INHERITABLE, capSet(c.Inheritable)...)
	caps.Set(capability.AMBIENT, capSet(c.Ambient)...)
	if err := caps.Apply(capability.CAPS); err != nil {
		return fmt.Errorf("process.capabilities: %w", err)
	}
	if err := caps.Apply(capability.AMBS); err != nil {
		return fmt.Errorf("process.capabilities.ambient: %w", err)
	}
	return nil
}

// lookPath resolves the command the way execvp would, with the container's
// PATH, so a missing command fails create rather than start.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", fmt.Errorf("process.args[0] %s: %w", name, err)
		}
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			path = e[5:]
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("process.args[0] %s: executable file not found in $PATH", name)
}

func executable(p string) error {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return unix.EISDIR
	}
	if st.Mode&0o111 == 0 {
		return unix.EACCES
	}
	return nil
}
