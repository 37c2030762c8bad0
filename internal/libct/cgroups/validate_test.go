package cgroups

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthdev/berth/internal/errdefs"
)

// These tests create nothing, so they run without root.

func TestBadResourcesNameTheField(t *testing.T) {
	m, err := New("/"+uniqueName("bad"), "x")
	if err != nil {
		t.Fatal(err)
	}
	dev := func(typ, access string) []specs.LinuxDeviceCgroup {
		return []specs.LinuxDeviceCgroup{{Allow: true, Type: typ, Access: access}}
	}
	cases := []struct {
		field string
		r     specs.LinuxResources
	}{
		{"memory.limit", specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](-2)}}},
		{"memory.swap", specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](200 << 20), Swap: ptr[int64](100 << 20)}}},
		{"memory.swap", specs.LinuxResources{Memory: &specs.LinuxMemory{Swap: ptr[int64](-5)}}},
		{"memory.swappiness", specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: ptr[uint64](101)}}},
		{"cpu.shares", specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr[uint64](1)}}},
		{"cpu.shares", specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr[uint64](1 << 20)}}},
		{"cpu.quota", specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](-7)}}},
		{"cpu.quota", specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](10)}}},
		{"cpu.period", specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](50000), Period: ptr[uint64](0)}}},
		{"cpu.period", specs.LinuxResources{CPU: &specs.LinuxCPU{Period: ptr[uint64](5_000_000)}}},
		{"cpu.burst", specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](50000), Burst: ptr[uint64](60000)}}},
		{"cpu.realtimeRuntime", specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: ptr[int64](2000), RealtimePeriod: ptr[uint64](1000)}}},
		{"cpu.idle", specs.LinuxResources{CPU: &specs.LinuxCPU{Idle: ptr[int64](2)}}},
		{"cpu.cpus", specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0-x"}}},
		{"cpu.mems", specs.LinuxResources{CPU: &specs.LinuxCPU{Mems: "3-1"}}},
		{"pids.limit", specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr[int64](-2)}}},
		{"blockIO.weight", specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: ptr[uint16](5)}}},
		{"blockIO.weightDevice[0].weight", specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
			WeightDevice: []specs.LinuxWeightDevice{{Weight: ptr[uint16](2000)}}}}},
		{"hugepageLimits[0].pageSize", specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "3MB", Limit: 1}}}},
		{"devices[0].type", specs.LinuxResources{Devices: dev("x", "rwm")}},
		{"devices[0].access", specs.LinuxResources{Devices: dev("c", "")}},
		{"devices[0].access", specs.LinuxResources{Devices: dev("c", "rwx")}},
		{`unified["nodot"]`, specs.LinuxResources{Unified: map[string]string{"nodot": "1"}}},
	}
	for _, c := range cases {
		err := m.Set(&c.r)
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: err = %v, want invalid argument", c.field, err)
			continue
		}
		if want := "linux.resources." + c.field + ":"; !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: error %q does not start with %q", c.field, err, want)
		}
	}
	// Nothing may have been created by a rejected Set.
	for _, p := range m.Paths() {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("rejected Set created %s", p)
		}
	}
}

func TestGoodEdgeValuesPassValidation(t *testing.T) {
	m, err := New("/"+uniqueName("good"), "x")
	if err != nil {
		t.Fatal(err)
	}
	ok := []specs.LinuxResources{
		{Memory: &specs.LinuxMemory{Limit: ptr[int64](-1)}},
		{Memory: &specs.LinuxMemory{Limit: ptr[int64](1 << 20), Swap: ptr[int64](-1)}},
		{CPU: &specs.LinuxCPU{Quota: ptr[int64](-1)}},
		{CPU: &specs.LinuxCPU{Period: ptr[uint64](0)}}, // no quota: period 0 is "default"
		{CPU: &specs.LinuxCPU{Cpus: "0-1,3", Mems: "0"}},
		{Pids: &specs.LinuxPids{Limit: ptr[int64](0)}},
		{Pids: &specs.LinuxPids{Limit: ptr[int64](-1)}},
		{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "mwr"}}},
		{Devices: DefaultAllowedDevices()},
	}
	for i, r := range ok {
		if err := m.validate(&r); err != nil {
			t.Errorf("case %d: %v", i, err)
		}
	}
}

func TestPathResolution(t *testing.T) {
	h, err := detectHost()
	if err != nil {
		t.Fatal(err)
	}
	own, err := ownCgroups()
	if err != nil {
		t.Fatal(err)
	}
	name := uniqueName("path")

	abs, err := New("/"+name+"/a/../b", "x") // ".." is resolved lexically
	if err != nil {
		t.Fatal(err)
	}
	rel, err := New(name+"/../../../"+name, "x") // cannot climb out of our cgroup
	if err != nil {
		t.Fatal(err)
	}
	def, err := New("", "ctr1")
	if err != nil {
		t.Fatal(err)
	}
	for ctrl, mnt := range h.v1 {
		if got, want := abs.Path(ctrl), filepath.Join(mnt.point, name, "b"); got != want {
			t.Errorf("absolute %s = %s, want %s", ctrl, got, want)
		}
		if got, want := rel.Path(ctrl), filepath.Join(mnt.point, own[ctrl], name); got != want {
			t.Errorf("relative %s = %s, want %s", ctrl, got, want)
		}
		if got, want := def.Path(ctrl), filepath.Join(mnt.point, own[ctrl], DefaultParent, "ctr1"); got != want {
			t.Errorf("default %s = %s, want %s", ctrl, got, want)
		}
	}
	if h.v2 != nil {
		if got, want := abs.Paths()[UnifiedKey], filepath.Join(h.v2.point, name, "b"); got != want {
			t.Errorf("absolute v2 = %s, want %s", got, want)
		}
		if got, want := rel.Paths()[UnifiedKey], filepath.Join(h.v2.point, filepath.Dir(own[""]), name); got != want {
			t.Errorf("relative v2 = %s, want %s (parent of our own cgroup, as runc)", got, want)
		}
	}
	for _, bad := range []struct{ path, id string }{{"/", "x"}, {"/..", "x"}, {".", "x"}, {"", ""}, {"", "a/b"}} {
		if _, err := New(bad.path, bad.id); !errdefs.IsInvalidArgument(err) {
			t.Errorf("New(%q, %q): err = %v, want invalid argument", bad.path, bad.id, err)
		}
	}
}

func TestLoadRoundTrip(t *testing.T) {
	m, err := New("/"+uniqueName("load"), "x")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(m.Paths())
	if err != nil {
		t.Fatal(err)
	}
	var saved map[string]string
	if err := json.Unmarshal(raw, &saved); err != nil {
		t.Fatal(err)
	}
	l, err := Load(saved)
	if err != nil {
		t.Fatal(err)
	}
	for k, p := range m.Paths() {
		if l.Paths()[k] != p {
			t.Errorf("%s: loaded %q, want %q", k, l.Paths()[k], p)
		}
	}
	if (l.v1 == nil) != (m.v1 == nil) || (l.v2 == nil) != (m.v2 == nil) {
		t.Errorf("loaded manager has another layout: v1 %v/%v v2 %v/%v", l.v1 != nil, m.v1 != nil, l.v2 != nil, m.v2 != nil)
	}
	for _, bad := range []map[string]string{
		nil,
		{"memory": "/etc"},
		{"memory": "/sys/fs/cgroup"},
		{"memory": "/sys/fs/cgroup/memory/../../../etc"},
		{"memory": "memory/x"},
	} {
		if _, err := Load(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Load(%v): err = %v, want invalid argument", bad, err)
		}
	}
}
