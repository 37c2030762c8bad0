package specgen

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/berthdev/berth/internal/errdefs"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func rootfs(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	os.MkdirAll(filepath.Join(d, "etc"), 0o755)
	os.WriteFile(filepath.Join(d, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n# comment\napp:x:1000:1000::/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(d, "etc/group"), []byte("root:x:0:\nwww:x:33:\nstaff:x:50:app,www\nvideo:x:44:app\napp:x:1000:\n"), 0o644)
	return d
}

func TestCommandAndEnv(t *testing.T) {
	img := v1.ImageConfig{Entrypoint: []string{"/entry"}, Cmd: []string{"serve"}, Env: []string{"PATH=/bin", "A=image"}, WorkingDir: "/srv"}
	cases := []struct {
		o    Options
		args []string
	}{
		{Options{Image: img}, []string{"/entry", "serve"}},
		{Options{Image: img, Args: []string{"x"}}, []string{"/entry", "x"}},
		{Options{Image: img, Entrypoint: []string{"/sh"}, EntrypointSet: true}, []string{"/sh"}},
		{Options{Image: img, EntrypointSet: true, Args: []string{"ls"}}, []string{"ls"}},
	}
	for _, c := range cases {
		c.o.ID = "0123456789abcdef"
		s, err := Generate(c.o)
		if err != nil || !slices.Equal(s.Process.Args, c.args) {
			t.Errorf("%+v: args %v %v, want %v", c.o, s.Process.Args, err, c.args)
		}
	}
	if _, err := Generate(Options{ID: "x"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no command: %v", err)
	}
	s, err := Generate(Options{ID: "0123456789abcdef", Image: img, Env: []string{"A=user", "FROMHOST", "UNSET"}, TTY: true,
		HostEnv: func(k string) (string, bool) { return "h", k == "FROMHOST" }})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"PATH=/bin", "A=user", "FROMHOST=h", "TERM=xterm", "HOSTNAME=0123456789ab", "HOME=/root"} {
		if !slices.Contains(s.Process.Env, want) {
			t.Errorf("env %v lacks %s", s.Process.Env, want)
		}
	}
	if slices.ContainsFunc(s.Process.Env, func(e string) bool { return e == "A=image" || e == "UNSET=" }) {
		t.Errorf("env %v", s.Process.Env)
	}
	if s.Process.Cwd != "/srv" || s.Hostname != "0123456789ab" {
		t.Errorf("cwd %q hostname %q", s.Process.Cwd, s.Hostname)
	}
}

func TestUsers(t *testing.T) {
	r := rootfs(t)
	cases := map[string][4]any{
		"":          {uint32(0), uint32(0), []uint32(nil), "/root"},
		"app":       {uint32(1000), uint32(1000), []uint32{50, 44}, "/home/app"},
		"www:video": {uint32(33), uint32(44), []uint32(nil), "/var/www"},
		"1000":      {uint32(1000), uint32(1000), []uint32{50, 44}, "/home/app"},
		"4242:7":    {uint32(4242), uint32(7), []uint32(nil), ""},
	}
	for in, want := range cases {
		uid, gid, groups, home, err := resolveUser(r, in)
		if err != nil || uid != want[0] || gid != want[1] || !slices.Equal(groups, want[2].([]uint32)) || home != want[3] {
			t.Errorf("%q: %d %d %v %q %v; want %v", in, uid, gid, groups, home, err, want)
		}
	}
	for _, bad := range []string{"nobody", "app:nogroup"} {
		if _, _, _, _, err := resolveUser(r, bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// /etc/passwd a symlink to the host's: read inside the rootfs, so not found.
	os.Remove(filepath.Join(r, "etc/passwd"))
	os.Symlink("/etc/passwd", filepath.Join(r, "etc/passwd"))
	if _, _, _, _, err := resolveUser(r, "root"); err == nil {
		t.Error("a symlink to the host's /etc/passwd was followed")
	}
}

func TestConfinement(t *testing.T) {
	img := v1.ImageConfig{Cmd: []string{"sh"}}
	s, err := Generate(Options{ID: "x", Image: img, CapDrop: []string{"chown"}, CapAdd: []string{"NET_ADMIN"}, Memory: 1 << 20, CPUs: 1.5, PidsLimit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != "SCMP_ACT_ERRNO" {
		t.Errorf("no default seccomp profile: %+v", s.Linux.Seccomp)
	}
	caps := s.Process.Capabilities.Bounding
	if slices.Contains(caps, "CAP_CHOWN") || !slices.Contains(caps, "CAP_NET_ADMIN") || !slices.Contains(caps, "CAP_KILL") {
		t.Errorf("capabilities %v", caps)
	}
	if len(s.Linux.MaskedPaths) == 0 || *s.Linux.Resources.Memory.Limit != 1<<20 || *s.Linux.Resources.CPU.Quota != 150000 || *s.Linux.Resources.Pids.Limit != 10 {
		t.Errorf("confinement %+v", s.Linux)
	}
	p, err := Generate(Options{ID: "x", Image: img, Privileged: true, Network: "host"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(p.Process.Capabilities.Bounding, hostCapabilities()) || len(p.Linux.MaskedPaths) != 0 || p.Hostname != "" || p.Linux.Seccomp != nil {
		t.Errorf("privileged, host network: %+v", p)
	}
	for _, ns := range p.Linux.Namespaces {
		if ns.Type == "network" || ns.Type == "uts" {
			t.Errorf("host network has a %s namespace", ns.Type)
		}
	}
	if _, err := Generate(Options{ID: "x", Image: img, CapAdd: []string{"CAP_BOGUS"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unknown capability: %v", err)
	}
	if _, err := Generate(Options{ID: "x", Image: img, WorkDir: "relative"}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("relative workdir: %v", err)
	}
}
