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

// rawConfig replaces the bundle's config.json with data.
func (c *ctr) rawConfig(data []byte) {
	c.t.Helper()
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), data, 0o644); err != nil {
		c.t.Fatal(err)
	}
}

// configAsMap is the bundle's config.json as generic JSON, to break types.
func (c *ctr) configAsMap() map[string]any {
	c.t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(readFile(c.t, filepath.Join(c.bundle, "config.json"))), &m); err != nil {
		c.t.Fatal(err)
	}
	return m
}

func TestMalformedConfig(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*specs.Spec)
		raw  func(c *ctr) []byte
		want []string // all must appear in the error
	}{
		{name: "invalid JSON", raw: func(c *ctr) []byte {
			return []byte("{\n\t\"ociVersion\": \"1.0.2\",\n\t\"process\": {,\n}\n")
		}, want: []string{"config.json", "line 3"}},
		{name: "wrong type", raw: func(c *ctr) []byte {
			m := c.configAsMap()
			m["process"] = 5
			b, _ := json.Marshal(m)
			return b
		}, want: []string{"process"}},
		{name: "missing root.path", mod: func(s *specs.Spec) { s.Root.Path = "" }, want: []string{"root.path"}},
		{name: "no root", raw: func(c *ctr) []byte {
			m := c.configAsMap()
			delete(m, "root")
			b, _ := json.Marshal(m)
			return b
		}, want: []string{"root"}},
		{name: "root.path not there", mod: func(s *specs.Spec) { s.Root.Path = "no-such-rootfs" }, want: []string{"root.path"}},
		{name: "unknown namespace", mod: func(s *specs.Spec) {
			s.Linux.Namespaces = append([]specs.LinuxNamespace{{Type: "foo"}}, s.Linux.Namespaces...)
		}, want: []string{"linux.namespaces[0].type", "foo"}},
		{name: "relative cwd", mod: func(s *specs.Spec) { s.Process.Cwd = "tmp" }, want: []string{"process.cwd"}},
		{name: "unknown capability", mod: func(s *specs.Spec) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_TEST")
		}, want: []string{"process.capabilities.bounding", "CAP_TEST"}},
		{name: "unknown rlimit", mod: func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_TEST", Soft: 1, Hard: 1}}
		}, want: []string{"process.rlimits[0].type", "RLIMIT_TEST"}},
		{name: "ociVersion 2", mod: func(s *specs.Spec) { s.Version = "2.0.0" }, want: []string{"ociVersion", "2.0.0"}},
		{name: "no args", mod: func(s *specs.Spec) { s.Process.Args = nil }, want: []string{"process.args"}},
		{name: "empty mount destination", mod: func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "", Type: "tmpfs", Source: "tmpfs"})
		}, want: []string{"mounts[7].destination"}},
		{name: "hostname without uts", mod: func(s *specs.Spec) {
			withoutNS(specs.UTSNamespace)(s)
			s.Hostname = "x"
		}, want: []string{"hostname"}},
		{name: "env without =", mod: func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "NOEQUALS") }, want: []string{"process.env[2]"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			mods := []func(*specs.Spec){}
			if tc.mod != nil {
				mods = append(mods, tc.mod)
			}
			c := newCtr(t, mods...)
			if tc.raw != nil {
				c.rawConfig(tc.raw(c))
			}
			for _, cmd := range []string{"create", "run"} {
				r := c.rt(cmd, "--bundle", c.bundle, c.id)
				if r.code == 0 {
					t.Fatalf("%s with a bad config succeeded: %v", cmd, r)
				}
				wantContains(t, cmd+" error", r.err, tc.want...)
				if strings.Contains(r.err, "panic") {
					t.Errorf("runtime panicked: %s", r.err)
				}
				noStateLeft(t, c.root)
			}
		})
	}
}

func TestDuplicateID(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	sleep := func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} }
	a := newCtrIn(t, root, sleep)
	b := newCtrIn(t, root, sleep)
	b.id = a.id
	a.mustCreate()
	r := b.create()
	if r.code == 0 {
		t.Fatalf("second create with the same id succeeded: %v", r)
	}
	wantContains(t, "duplicate id", r.err, "already exists")
	if st := a.state(); st.Status != "created" || st.Bundle != a.bundle {
		t.Errorf("the first container was disturbed: %+v", st)
	}
}

func TestInvalidID(t *testing.T) {
	requireRoot(t)
	root := t.TempDir()
	c := newCtr(t)
	for _, id := range []string{"../escape", "a/b", ".."} {
		r := runRuntime(t, root, runOpts{}, "create", "--bundle", c.bundle, id)
		if r.code == 0 {
			t.Errorf("create with id %q succeeded", id)
		}
	}
	noStateLeft(t, root)
	if _, err := os.Stat(filepath.Join(filepath.Dir(root), "escape")); err == nil {
		t.Errorf("an id escaped the state root")
	}
}

// TestFailedCreateLeavesNothing: errors found only while setting the
// container up still name the field and undo everything.
func TestFailedCreateLeavesNothing(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*specs.Spec)
		want []string
	}{
		{"missing binary", func(s *specs.Spec) { s.Process.Args = []string{"/no/such/binary"} }, []string{"process.args", "/no/such/binary"}},
		{"missing bind source", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/x", Type: "bind", Source: "/no/such/source", Options: []string{"bind"}})
		}, []string{"mounts[7]", "/no/such/source"}},
		{"bad tmpfs option", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/x", Type: "tmpfs", Source: "tmpfs", Options: []string{"size=notanumber"}})
		}, []string{"mounts[7]"}},
		{"cpuset not a list", func(s *specs.Spec) {
			s.Linux.Resources.CPU = &specs.LinuxCPU{Cpus: "abc"}
		}, []string{"linux.resources.cpu.cpus"}},
		{"cpuset beyond the host", func(s *specs.Spec) {
			s.Linux.Resources.CPU = &specs.LinuxCPU{Cpus: "63"}
		}, []string{"cpu"}},
		{"join a missing namespace", func(s *specs.Spec) {
			withNS(specs.NetworkNamespace, "/proc/999999999/ns/net")(s)
		}, []string{"linux.namespaces", "/proc/999999999/ns/net"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			requireRoot(t)
			cgPath := "/berthtest/fail-" + strings.ReplaceAll(tc.name, " ", "-") + "-" + strconv.Itoa(os.Getpid())
			c := newCtr(t, tc.mod, func(s *specs.Spec) {
				s.Linux.CgroupsPath = cgPath
				s.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr(int64(20))}
			})
			r := c.create()
			if r.code == 0 {
				t.Fatalf("create succeeded: %v", r)
			}
			wantContains(t, "create error", r.err, tc.want...)
			noStateLeft(t, c.root)
			for _, ctrl := range []string{"pids", "memory", "devices", "freezer"} {
				if _, err := os.Stat(cgroupDir(ctrl, cgPath)); err == nil {
					t.Errorf("cgroup %s left after a failed create", cgroupDir(ctrl, cgPath))
					os.Remove(cgroupDir(ctrl, cgPath))
				}
			}
		})
	}
}
