package main

import (
	"os/exec"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestPureCgroup2Host runs the runtime where /sys/fs/cgroup is a cgroup2
// mount, as on a pure v2 host: in a private mount namespace the unified
// hierarchy is mounted there. Controllers bound to v1 on this machine are
// missing from it, so the test sticks to what any cgroup2 has: the
// container's own cgroup (entered at clone), its cgroup2 mount, the pids
// in it, the freezer and removal.
func TestPureCgroup2Host(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
	c := newCtr(t, func(s *specs.Spec) { s.Linux.Resources = nil },
		sh("cat /proc/self/cgroup; grep ' /sys/fs/cgroup ' /proc/self/mountinfo; sleep 30"))
	c.spec.Linux.CgroupsPath = "/berthtest-v2/" + c.id
	c.writeSpec()
	script := `set -e
mount --make-rprivate /
mount -t cgroup2 cgroup2 /sys/fs/cgroup
rt() { "$RT" --root "$ROOT" "$@"; }
rt create --bundle "$BUNDLE" "$ID" >"$OUT" 2>&1
echo "cgroup-dir: $(cat /sys/fs/cgroup/berthtest-v2/$ID/cgroup.procs | wc -l)"
rt start "$ID"
sleep 0.3
rt ps --format json "$ID"; echo
rt pause "$ID"; echo "state: $(rt state "$ID" | grep -o '"status": "[a-z]*"')"
echo "frozen: $(cat /sys/fs/cgroup/berthtest-v2/$ID/cgroup.freeze)"
rt resume "$ID"; echo "state: $(rt state "$ID" | grep -o '"status": "[a-z]*"')"
rt delete --force "$ID"
test -d /sys/fs/cgroup/berthtest-v2/$ID && echo "cgroup left" || echo "cgroup removed"
rmdir /sys/fs/cgroup/berthtest-v2 2>/dev/null || true
`
	cmd := exec.Command("unshare", "-m", "sh", "-c", script)
	cmd.Env = append(cmd.Environ(), "RT="+rtBin, "ROOT="+c.root, "BUNDLE="+c.bundle, "ID="+c.id, "OUT="+c.outPath)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cgroup2 host run: %v\n%s\ncontainer: %s", err, out, c.output())
	}
	s := string(out)
	wantContains(t, "runtime on cgroup2", s, "cgroup-dir: 1", `"status": "paused"`, "frozen: 1",
		`"status": "running"`, "cgroup removed")
	// Inside: a cgroup namespace rooted at its cgroup, and a cgroup2 mount.
	ctrOut := c.output()
	if !strings.Contains(ctrOut, "0::/\n") || !strings.Contains(ctrOut, "cgroup2") {
		t.Errorf("container's view of cgroup2: %q", ctrOut)
	}
}
