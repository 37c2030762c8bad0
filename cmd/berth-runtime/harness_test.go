package main

// Root integration tests: they build berth-runtime once, make a busybox
// rootfs once, and drive the real binary through its command line, one
// --root state directory per test. Without root they skip and say so.
//
// BERTH_TEST_RUNTIME=/path/to/runtime runs the suite against another binary
// (runc, crun) instead of building ours: a way to check that a failing test
// asks for runc's behaviour and not for a quirk of its own.

import (
	"context"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var (
	rtBin        string // the runtime under test
	rootfsTmpl   string // busybox rootfs that bundles copy
	specTmpl     []byte // output of `berth-runtime spec`
	setupErr     error
	ctrCounter   atomic.Int64
	cmdTimeout   = 60 * time.Second
	busyboxPath  = "/bin/busybox"
	stateTimeout = 20 * time.Second
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "berth-it-")
		if err != nil {
			setupErr = err
		} else {
			defer os.RemoveAll(dir)
			setupErr = setup(dir)
		}
		// The parent of the tests' absolute cgroupsPaths, once empty.
		defer func() {
			ents, _ := os.ReadDir("/sys/fs/cgroup")
			for _, e := range ents {
				os.Remove(filepath.Join("/sys/fs/cgroup", e.Name(), "berthtest"))
			}
		}()
	}
	return m.Run()
}

func setup(dir string) error {
	rtBin = os.Getenv("BERTH_TEST_RUNTIME")
	if rtBin == "" {
		rtBin = filepath.Join(dir, "berth-runtime")
		cmd := exec.Command("go", "build", "-o", rtBin, ".")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	rootfsTmpl = filepath.Join(dir, "rootfs")
	if err := buildRootfs(rootfsTmpl); err != nil {
		return fmt.Errorf("busybox rootfs: %w", err)
	}
	sd := filepath.Join(dir, "spec")
	if err := os.Mkdir(sd, 0o755); err != nil {
		return err
	}
	cmd := exec.Command(rtBin, "spec", "--bundle", sd)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s spec: %v\n%s", rtBin, err, out)
	}
	var err error
	specTmpl, err = os.ReadFile(filepath.Join(sd, "config.json"))
	return err
}

// buildRootfs makes a rootfs from the host's static busybox: applets as
// symlinks in /bin, users root and 1000.
func buildRootfs(dir string) error {
	f, err := elf.Open(busyboxPath)
	if err != nil {
		return fmt.Errorf("%s: %w (install busybox-static)", busyboxPath, err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			f.Close()
			return fmt.Errorf("%s is dynamically linked: install busybox-static", busyboxPath)
		}
	}
	f.Close()
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "root", "home/user", "mnt", "run", "var", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	if err := os.Chown(filepath.Join(dir, "home/user"), 1000, 1000); err != nil {
		return err
	}
	data, err := os.ReadFile(busyboxPath)
	if err != nil {
		return err
	}
	bb := filepath.Join(dir, "bin/busybox")
	if err := os.WriteFile(bb, data, 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":  "root:x:0:\ntty:x:5:\nuser:x:1000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// copyTree copies the rootfs template: directories and small files are
// copied, symlinks recreated, busybox hard-linked.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		t := filepath.Join(dst, rel)
		switch {
		case fi.IsDir():
			if err := os.MkdirAll(t, 0o755); err != nil {
				return err
			}
			if err := os.Chmod(t, fi.Mode().Perm()|fi.Mode()&os.ModeSticky); err != nil {
				return err
			}
			return lchownLike(t, fi)
		case fi.Mode()&os.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, t)
		case filepath.Base(p) == "busybox":
			return os.Link(p, t)
		default:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(t, data, fi.Mode().Perm())
		}
	})
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: integration tests create namespaces, mounts and cgroups")
	}
	if setupErr != nil {
		t.Fatalf("integration setup failed: %v", setupErr)
	}
}

// result is one runtime invocation's outcome.
type result struct {
	args     []string
	out, err string
	code     int
}

func (r result) String() string {
	return fmt.Sprintf("berth-runtime %s: exit %d\nstdout: %q\nstderr: %q", strings.Join(r.args, " "), r.code, r.out, r.err)
}

// runOpts are the rarely needed knobs of one invocation.
type runOpts struct {
	stdin io.Reader
	extra []*os.File // become fds 3, 4, ...
	// stdout and stderr, when set, are file paths (truncated): the output
	// of a container started by create lands there too.
	stdout, stderr string
	dir            string // working directory of the runtime
}

var idClean = regexp.MustCompile(`[^A-Za-z0-9]+`)

// ctr is one container of a test: its bundle, state root and id.
type ctr struct {
	t       *testing.T
	id      string
	root    string // --root
	bundle  string
	rootfs  string
	spec    *specs.Spec
	outPath string // container stdout of create (and run --detach)
	errPath string
}

// newCtr writes a bundle with the busybox rootfs and the config of
// `berth-runtime spec` changed by mods (after terminal false and a writable
// root), and deletes the container at the end of the test.
func newCtr(t *testing.T, mods ...func(*specs.Spec)) *ctr {
	t.Helper()
	requireRoot(t)
	c := newCtrIn(t, t.TempDir(), mods...)
	return c
}

// newCtrIn is newCtr with a shared --root (several containers of one test).
func newCtrIn(t *testing.T, root string, mods ...func(*specs.Spec)) *ctr {
	t.Helper()
	requireRoot(t)
	dir := t.TempDir()
	// Everything on the way to the rootfs must be searchable for a user
	// namespace's root (an unprivileged id on the host).
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	name := idClean.ReplaceAllString(t.Name(), "-")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	c := &ctr{t: t, root: root, bundle: dir, rootfs: filepath.Join(dir, "rootfs"),
		id:      fmt.Sprintf("bt%d-%s-%d", os.Getpid(), strings.Trim(name, "-"), ctrCounter.Add(1)),
		outPath: filepath.Join(dir, "ctr.out"), errPath: filepath.Join(dir, "ctr.err")}
	if err := copyTree(rootfsTmpl, c.rootfs); err != nil {
		t.Fatalf("copy rootfs: %v", err)
	}
	s := &specs.Spec{}
	if err := json.Unmarshal(specTmpl, s); err != nil {
		t.Fatalf("spec template: %v", err)
	}
	s.Process.Terminal = false
	s.Root.Readonly = false
	s.Process.Args = []string{"true"}
	for _, m := range mods {
		m(s)
	}
	c.spec = s
	c.writeSpec()
	t.Cleanup(func() {
		r := c.rt("delete", "--force", c.id)
		if r.code != 0 {
			t.Logf("cleanup: %v", r)
		}
	})
	return c
}

// writeSpec saves c.spec as the bundle's config.json.
func (c *ctr) writeSpec() {
	c.t.Helper()
	data, err := json.MarshalIndent(c.spec, "", "\t")
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), data, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// sh makes the process `sh -c script`.
func sh(script string) func(*specs.Spec) {
	return func(s *specs.Spec) { s.Process.Args = []string{"sh", "-c", script} }
}

// withoutNS drops namespaces of the given types from the config.
func withoutNS(types ...specs.LinuxNamespaceType) func(*specs.Spec) {
	return func(s *specs.Spec) {
		var ns []specs.LinuxNamespace
		for _, n := range s.Linux.Namespaces {
			keep := true
			for _, t := range types {
				keep = keep && n.Type != t
			}
			if keep {
				ns = append(ns, n)
			}
		}
		s.Linux.Namespaces = ns
	}
}

// withNS adds (or replaces) a namespace.
func withNS(typ specs.LinuxNamespaceType, path string) func(*specs.Spec) {
	return func(s *specs.Spec) {
		withoutNS(typ)(s)
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: typ, Path: path})
	}
}

// rt runs the runtime with the container's --root.
func (c *ctr) rt(args ...string) result {
	c.t.Helper()
	return runRuntime(c.t, c.root, runOpts{}, args...)
}

func (c *ctr) rtWith(o runOpts, args ...string) result {
	c.t.Helper()
	return runRuntime(c.t, c.root, o, args...)
}

// runRuntime runs the binary with --root root (none when root is empty).
// stdout and stderr are files, not pipes: a container started by create
// keeps its stdio open long after the command returns.
func runRuntime(t *testing.T, root string, o runOpts, args ...string) result {
	t.Helper()
	full := args
	if root != "" {
		full = append([]string{"--root", root}, args...)
	}
	if o.stdout == "" {
		d := t.TempDir()
		o.stdout, o.stderr = filepath.Join(d, "out"), filepath.Join(d, "err")
	}
	open := func(p string) *os.File {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	outF, errF := open(o.stdout), open(o.stderr)
	defer outF.Close()
	defer errF.Close()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, rtBin, full...)
	cmd.Stdin = o.stdin
	cmd.ExtraFiles = o.extra
	cmd.Dir = o.dir
	cmd.Stdout, cmd.Stderr = outF, errF
	runErr := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("berth-runtime %s: no exit after %v", strings.Join(args, " "), cmdTimeout)
	}
	r := result{args: args}
	var ee *exec.ExitError
	switch {
	case runErr == nil:
	case errors.As(runErr, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("berth-runtime %s: %v", strings.Join(args, " "), runErr)
	}
	b, _ := os.ReadFile(o.stdout)
	r.out = string(b)
	b, _ = os.ReadFile(o.stderr)
	r.err = string(b)
	return r
}

// run runs the container in the foreground and returns what it printed
// (stdout), the runtime's stderr and the exit code.
func (c *ctr) run(flags ...string) result {
	c.t.Helper()
	args := append(append([]string{"run", "--bundle", c.bundle}, flags...), c.id)
	return c.rt(args...)
}

// mustRun runs the container and fails unless it exits 0; it returns stdout.
func (c *ctr) mustRun(flags ...string) string {
	c.t.Helper()
	r := c.run(flags...)
	if r.code != 0 {
		c.t.Fatalf("run failed: %v", r)
	}
	return r.out
}

// create creates the container; its stdout goes to c.outPath and stderr to
// c.errPath (read them with output()).
func (c *ctr) create(flags ...string) result {
	c.t.Helper()
	return c.createWith(runOpts{}, flags...)
}

func (c *ctr) createWith(o runOpts, flags ...string) result {
	c.t.Helper()
	o.stdout, o.stderr = c.outPath, c.errPath
	args := append(append([]string{"create", "--bundle", c.bundle}, flags...), c.id)
	return c.rtWith(o, args...)
}

func (c *ctr) mustCreate(flags ...string) {
	c.t.Helper()
	if r := c.create(flags...); r.code != 0 {
		c.t.Fatalf("create failed: %v", r)
	}
}

func (c *ctr) mustStart() {
	c.t.Helper()
	if r := c.rt("start", c.id); r.code != 0 {
		c.t.Fatalf("start failed: %v", r)
	}
}

// startDetached creates and starts the container (its init typically a
// long sleep) and returns its init pid.
func (c *ctr) startDetached() int {
	c.t.Helper()
	c.mustCreate()
	c.mustStart()
	st := c.state()
	if st.Status != "running" {
		c.t.Fatalf("after start: status %q, want running", st.Status)
	}
	return st.Pid
}

// output is what the container printed on stdout (create mode).
func (c *ctr) output() string {
	b, _ := os.ReadFile(c.outPath)
	return string(b)
}

func (c *ctr) errOutput() string {
	b, _ := os.ReadFile(c.errPath)
	return string(b)
}

// state runs `state` and decodes it; it fails the test on error.
func (c *ctr) state() specs.State {
	c.t.Helper()
	r := c.rt("state", c.id)
	if r.code != 0 {
		c.t.Fatalf("state: %v", r)
	}
	var st specs.State
	if err := json.Unmarshal([]byte(r.out), &st); err != nil {
		c.t.Fatalf("state output is not JSON: %v: %q", err, r.out)
	}
	return st
}

// waitStatus polls `state` until the container reaches want.
func (c *ctr) waitStatus(want string) {
	c.t.Helper()
	deadline := time.Now().Add(stateTimeout)
	var last specs.State
	for time.Now().Before(deadline) {
		last = c.state()
		if string(last.Status) == want {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("container never became %q (last: %q)", want, last.Status)
}

// createStartWait creates and starts the container, waits for it to stop
// and returns its output.
func (c *ctr) createStartWait() string {
	c.t.Helper()
	c.mustCreate()
	c.mustStart()
	c.waitStatus("stopped")
	return c.output()
}

// hostMountinfo is the test process's mount table.
func hostMountinfo(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// writeScript writes an executable shell script.
func writeScript(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
}

// noStateLeft fails if anything remains under a --root after a failed create.
func noStateLeft(t *testing.T, root string) {
	t.Helper()
	ents, err := os.ReadDir(root)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if len(names) > 0 {
		t.Errorf("state left under --root after a failed create: %v", names)
	}
}

// lchownLike gives t the owner of the template entry fi.
func lchownLike(t string, fi os.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return os.Lchown(t, int(st.Uid), int(st.Gid))
}

// waitOutput polls the container's stdout (create mode) until it holds sub.
func (c *ctr) waitOutput(sub string) string {
	c.t.Helper()
	deadline := time.Now().Add(stateTimeout)
	for time.Now().Before(deadline) {
		if out := c.output(); strings.Contains(out, sub) {
			return out
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("container never printed %q; stdout %q, stderr %q", sub, c.output(), c.errOutput())
	return ""
}
