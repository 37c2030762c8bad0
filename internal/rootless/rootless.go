// Package rootless lets an unprivileged user run berth: one user and
// mount namespace per user, held by a small process, mapped with the
// user's subordinate ids through newuidmap/newgidmap (Debian's uidmap),
// which every berth command joins by re-executing itself through nsenter
// (util-linux: joining a user namespace takes a single-threaded process,
// which a Go program is not). Inside, berth is that namespace's root: it
// unpacks layers with their owners, mounts overlays and runs containers
// as on a host, and what one command made the next one sees. See
// docs/rootless.md.
package rootless

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthdev/berth/internal/fsutil"
)

// Environment of a berth re-executed in the namespace.
const (
	envUID = "BERTH_ROOTLESS_UID" // the user's uid, outside
	// PauseArg makes berth the namespace's holder.
	PauseArg = "__rootless-pause"
)

// Unprivileged reports whether berth runs for an unprivileged user,
// outside its namespace or inside.
func Unprivileged() bool { return os.Geteuid() != 0 || os.Getenv(envUID) != "" }

// UID is the user's own uid (outside the namespace).
func UID() int {
	if v, err := strconv.Atoi(os.Getenv(envUID)); err == nil {
		return v
	}
	return os.Geteuid()
}

// Dirs are an unprivileged user's default --root and --runroot:
// $XDG_DATA_HOME/berth (~/.local/share/berth) and $XDG_RUNTIME_DIR/berth
// (/tmp/berth-run-UID without one).
func Dirs() (root, runroot string) {
	data := os.Getenv("XDG_DATA_HOME")
	if data == "" {
		home, _ := os.UserHomeDir()
		data = filepath.Join(home, ".local", "share")
	}
	return filepath.Join(data, "berth"), filepath.Join(runtimeDir(), "berth")
}

// Config is an unprivileged user's berth.toml: $XDG_CONFIG_HOME/berth/berth.toml
// (~/.config/berth/berth.toml) when there is one, else the system's (sys).
func Config(sys string) string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".config")
	}
	p := filepath.Join(dir, "berth", "berth.toml")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return sys
}

func runtimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return d
	}
	return fmt.Sprintf("/tmp/berth-run-%d", UID())
}

// Enter re-executes berth in the user's namespace, made if there is none
// (or its holder died, as at a reboot). It returns nil at once for root
// or when already inside; otherwise only on an error.
func Enter(runroot string) error {
	if os.Geteuid() == 0 {
		return nil
	}
	if os.Getenv("XDG_RUNTIME_DIR") == "" { // where the user's auth file is looked for, inside too
		os.Setenv("XDG_RUNTIME_DIR", runtimeDir())
	}
	if err := os.MkdirAll(runroot, 0o700); err != nil {
		return fmt.Errorf("rootless: %w", err)
	}
	pid, err := holder(runroot)
	if err != nil {
		return err
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return fmt.Errorf("rootless: nsenter not found (install Debian's util-linux): %w", err)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	// --preserve-credentials: the user's own ids are root's inside (the
	// maps say so), and with root alone mapped the namespace denies the
	// setgroups that a switch to uid 0 would make.
	args := append([]string{"nsenter", "--preserve-credentials", "-U", "-m", "-t", strconv.Itoa(pid), "--", self}, os.Args[1:]...)
	env := append(os.Environ(), envUID+"="+strconv.Itoa(os.Geteuid()))
	return syscall.Exec(nsenter, args, env)
}

// holder returns the pid of the user's namespace holder, starting one if
// there is none alive.
func holder(runroot string) (int, error) {
	lock, err := fsutil.LockPath(runroot)
	if err != nil {
		return 0, err
	}
	defer lock.Unlock()
	pidFile := filepath.Join(runroot, "ns.pid")
	if b, err := os.ReadFile(pidFile); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && isHolder(pid) {
			return pid, nil
		}
	}
	pid, err := startHolder()
	if err != nil {
		return 0, err
	}
	return pid, fsutil.WriteFileAtomic(pidFile, []byte(strconv.Itoa(pid)), 0o600)
}

// isHolder tells a live holder from a pid reused by another process.
func isHolder(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && strings.Contains(string(b), PauseArg)
}

// startHolder makes the namespace: a berth in new user and mount
// namespaces that waits until its id maps are written, then blocks.
func startHolder() (int, error) {
	self, err := os.Executable()
	if err != nil {
		return 0, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	defer w.Close()
	cmd := exec.Command(self, PauseArg)
	cmd.ExtraFiles = []*os.File{r}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS, Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("rootless: a user namespace: %w", err)
	}
	pid := cmd.Process.Pid
	if err := mapIDs(pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return 0, err
	}
	w.Write([]byte("go"))
	go cmd.Wait()
	return pid, nil
}

// mapIDs maps root in pid's namespace to the user, and 1..N to the
// user's first subordinate range; with no range, root alone, with a
// warning: layers with other owners will not unpack.
func mapIDs(pid int) error {
	uid, gid := os.Geteuid(), os.Getegid()
	user := strconv.Itoa(uid)
	if u, err := lookupName(uid); err == nil {
		user = u
	}
	ur, uerr := subRange("/etc/subuid", user, uid)
	gr, gerr := subRange("/etc/subgid", user, uid)
	p := strconv.Itoa(pid)
	if uerr == nil && gerr == nil {
		for _, m := range []struct {
			tool  string
			id    int
			start int
			n     int
		}{{"newuidmap", uid, ur[0], ur[1]}, {"newgidmap", gid, gr[0], gr[1]}} {
			out, err := exec.Command(m.tool, p, "0", strconv.Itoa(m.id), "1", "1", strconv.Itoa(m.start), strconv.Itoa(m.n)).CombinedOutput()
			if err != nil {
				return fmt.Errorf("rootless: %s: %v: %s (install Debian's uidmap; check /etc/subuid and /etc/subgid)", m.tool, err, strings.TrimSpace(string(out)))
			}
		}
		return nil
	}
	fmt.Fprintf(os.Stderr, "berth: warning: no subordinate ids for %s in /etc/subuid and /etc/subgid: only root is mapped in the user namespace, and images with files of other owners will not unpack\n", user)
	if err := os.WriteFile("/proc/"+p+"/uid_map", []byte(fmt.Sprintf("0 %d 1", uid)), 0); err != nil {
		return fmt.Errorf("rootless: uid_map: %w", err)
	}
	if err := os.WriteFile("/proc/"+p+"/setgroups", []byte("deny"), 0); err != nil {
		return fmt.Errorf("rootless: setgroups: %w", err)
	}
	if err := os.WriteFile("/proc/"+p+"/gid_map", []byte(fmt.Sprintf("0 %d 1", gid)), 0); err != nil {
		return fmt.Errorf("rootless: gid_map: %w", err)
	}
	return nil
}

func lookupName(uid int) (string, error) {
	f, err := os.Open("/etc/passwd")
	if err != nil {
		return "", err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if p := strings.Split(s.Text(), ":"); len(p) > 2 && p[2] == strconv.Itoa(uid) {
			return p[0], nil
		}
	}
	return "", errors.New("not in /etc/passwd")
}

// subRange is the first "name:start:count" (or uid:start:count) line.
func subRange(file, name string, uid int) ([2]int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return [2]int{}, err
	}
	for line := range strings.Lines(string(data)) {
		p := strings.Split(strings.TrimSpace(line), ":")
		if len(p) != 3 || p[0] != name && p[0] != strconv.Itoa(uid) {
			continue
		}
		start, err1 := strconv.Atoi(p[1])
		n, err2 := strconv.Atoi(p[2])
		if err1 == nil && err2 == nil && n > 0 {
			return [2]int{start, n}, nil
		}
	}
	return [2]int{}, fmt.Errorf("%s: no range for %s", file, name)
}

// Pause is the holder's life: it waits for its maps, then for ever.
func Pause() {
	sync := os.NewFile(3, "sync")
	io.ReadAll(io.LimitReader(sync, 2))
	sync.Close()
	for {
		time.Sleep(time.Hour)
	}
}

// TunUsable says whether the user may open /dev/net/tun, which slirp4netns
// needs for its tap device (hosts normally make it 0666).
func TunUsable() error {
	var st syscall.Stat_t
	if err := syscall.Stat("/dev/net/tun", &st); err != nil {
		return fmt.Errorf("/dev/net/tun: %w", err)
	}
	if st.Mode&0o006 == 0o006 || int(st.Uid) == UID() && st.Mode&0o600 == 0o600 {
		return nil
	}
	return fmt.Errorf("/dev/net/tun is not readable and writable by this user (mode %o)", st.Mode&0o777)
}
