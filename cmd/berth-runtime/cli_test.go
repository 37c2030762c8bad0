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

func TestSpecCommand(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	if r := runRuntime(t, "", runOpts{}, "spec", "--bundle", dir); r.code != 0 {
		t.Fatalf("spec: %v", r)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatalf("spec wrote invalid JSON: %v", err)
	}
	if !strings.HasPrefix(s.Version, "1.") || s.Process == nil || len(s.Process.Args) == 0 || s.Root == nil || s.Root.Path != "rootfs" {
		t.Errorf("spec: unexpected config: version %q process %+v root %+v", s.Version, s.Process, s.Root)
	}
	// Never overwrite a user's config.
	os.WriteFile(filepath.Join(dir, "config.json"), []byte("{\"mine\":1}"), 0o644)
	r := runRuntime(t, "", runOpts{}, "spec", "--bundle", dir)
	if r.code == 0 {
		t.Fatalf("spec overwrote config.json: %v", r)
	}
	wantContains(t, "spec error", r.err, "exists")
	if b, _ := os.ReadFile(filepath.Join(dir, "config.json")); string(b) != "{\"mine\":1}" {
		t.Errorf("config.json changed: %q", b)
	}
}

func TestFeatures(t *testing.T) {
	requireRoot(t)
	r := runRuntime(t, "", runOpts{}, "features")
	if r.code != 0 {
		t.Fatalf("features: %v", r)
	}
	var f map[string]any
	if err := json.Unmarshal([]byte(r.out), &f); err != nil {
		t.Fatalf("features is not JSON: %v: %q", err, r.out)
	}
	if v, _ := f["ociVersionMax"].(string); !strings.HasPrefix(v, "1.") {
		t.Errorf("features ociVersionMax = %v", f["ociVersionMax"])
	}
	linux, _ := f["linux"].(map[string]any)
	if ns, _ := linux["namespaces"].([]any); len(ns) < 7 {
		t.Errorf("features linux.namespaces = %v", linux["namespaces"])
	}
}

func TestLogJSONOnError(t *testing.T) {
	requireRoot(t)
	log := filepath.Join(t.TempDir(), "log.json")
	r := runRuntime(t, t.TempDir(), runOpts{}, "--log", log, "--log-format", "json", "state", "nosuch")
	if r.code == 0 {
		t.Fatalf("state of an unknown container succeeded: %v", r)
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatalf("--log file not written: %v", err)
	}
	found := false
	for _, l := range lines(string(data)) {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Errorf("log line is not JSON: %q", l)
			continue
		}
		if m["level"] == "error" && strings.Contains(m["msg"].(string), "not found") {
			found = true
		}
	}
	if !found {
		t.Errorf("no {\"level\":\"error\",\"msg\":...not found...} line in %q", data)
	}
}

func TestListEmptyAndPsTable(t *testing.T) {
	requireRoot(t)
	r := runRuntime(t, filepath.Join(t.TempDir(), "missing"), runOpts{}, "list", "--format", "json")
	if r.code != 0 || strings.TrimSpace(r.out) != "[]" {
		t.Errorf("list --format json with no containers: %v", r)
	}
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	pid := c.startDetached()
	ps := c.rt("ps", c.id)
	if ps.code != 0 {
		t.Fatalf("ps: %v", ps)
	}
	l := lines(ps.out)
	if len(l) < 2 || !strings.Contains(l[0], "PID") {
		t.Fatalf("ps table: %q", ps.out)
	}
	found := false
	for _, row := range l[1:] {
		for _, f := range strings.Fields(row) {
			found = found || f == strconv.Itoa(pid)
		}
		wantContains(t, "ps row", row, "sleep")
	}
	if !found {
		t.Errorf("ps table does not show the init %d:\n%s", pid, ps.out)
	}
}

func TestKillBadSignal(t *testing.T) {
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	c.startDetached()
	for _, sig := range []string{"NOTASIGNAL", "0", "99"} {
		r := c.rt("kill", c.id, sig)
		if r.code == 0 {
			t.Errorf("kill with signal %q succeeded", sig)
		}
	}
	if st := c.state(); st.Status != "running" {
		t.Errorf("status %q after bad kills", st.Status)
	}
}

func TestRunStdio(t *testing.T) {
	c := newCtr(t, sh("cat; echo to-stderr >&2"))
	r := c.rtWith(runOpts{stdin: strings.NewReader("from-stdin\n")}, "run", "--bundle", c.bundle, c.id)
	if r.code != 0 {
		t.Fatalf("run: %v", r)
	}
	if strings.TrimSpace(r.out) != "from-stdin" {
		t.Errorf("stdin -> stdout through the container: %q", r.out)
	}
	wantContains(t, "container stderr", r.err, "to-stderr")
}

func TestKillDefaultSignalAndAnnotations(t *testing.T) {
	c := newCtr(t, sh(`trap "exit 0" TERM; echo ready; while :; do sleep 0.05; done`), func(s *specs.Spec) {
		s.Annotations = map[string]string{"org.example.key": "value-1"}
	})
	c.mustCreate("--no-new-keyring")
	c.mustStart()
	c.waitOutput("ready")
	st := c.state()
	if st.Annotations["org.example.key"] != "value-1" {
		t.Errorf("state annotations: %v", st.Annotations)
	}
	if r := c.rt("kill", c.id); r.code != 0 {
		t.Fatalf("kill without a signal: %v", r)
	}
	c.waitStatus("stopped")
}

func TestSpecRootlessRuns(t *testing.T) {
	// The --rootless config (user namespace, one mapped id, /sys bound)
	// also runs for root.
	c := newCtr(t)
	os.Remove(filepath.Join(c.bundle, "config.json"))
	if r := runRuntime(t, "", runOpts{}, "spec", "--rootless", "--bundle", c.bundle); r.code != 0 {
		t.Fatalf("spec --rootless: %v", r)
	}
	var s specs.Spec
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(c.bundle, "config.json"))), &s); err != nil {
		t.Fatal(err)
	}
	s.Process.Terminal = false
	s.Process.Args = []string{"sh", "-c", "cat /proc/self/uid_map; id -u; ls /sys/class/net"}
	c.spec = &s
	c.writeSpec()
	out := c.mustRun()
	l := lines(out)
	if len(l) < 2 || strings.Join(strings.Fields(l[0]), " ") != "0 0 1" || l[1] != "0" {
		t.Errorf("rootless config: %q", l)
	}
}

func TestRelativeBundleAndPidFile(t *testing.T) {
	// runc's usual form: cd into the bundle, no --bundle, relative paths.
	c := newCtr(t, func(s *specs.Spec) { s.Process.Args = []string{"sleep", "100"} })
	r := c.rtWith(runOpts{dir: c.bundle, stdout: c.outPath, stderr: c.errPath}, "create", "--pid-file", "init.pid", c.id)
	if r.code != 0 {
		t.Fatalf("create from inside the bundle: %v", r)
	}
	st := c.state()
	if st.Bundle != c.bundle {
		t.Errorf("state bundle %q, want the absolute %q", st.Bundle, c.bundle)
	}
	if pid := strings.TrimSpace(readFile(t, filepath.Join(c.bundle, "init.pid"))); pid != strconv.Itoa(st.Pid) {
		t.Errorf("relative --pid-file holds %q, want %d", pid, st.Pid)
	}
	// Other commands work from anywhere.
	if r := c.rtWith(runOpts{dir: "/"}, "start", c.id); r.code != 0 {
		t.Fatalf("start from /: %v", r)
	}
	if st := c.state(); st.Status != "running" {
		t.Errorf("status %q", st.Status)
	}
}
