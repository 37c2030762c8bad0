package main

import (
	"strings"
	"syscall"
	"testing"
)

// wantContains fails unless s contains every sub.
func wantContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s: want %q in:\n%s", what, sub, s)
		}
	}
}

func wantNotContains(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			t.Errorf("%s: do not want %q in:\n%s", what, sub, s)
		}
	}
}

// lines splits output into trimmed non-empty lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// field returns the value of "Key:\tvalue" in /proc/<pid>/status output.
func field(status, key string) string {
	for _, l := range strings.Split(status, "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && k == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func ptr[T any](v T) *T { return &v }

type statInfo struct {
	uid, gid, mode uint32
	rdev           uint64
}

func mustStat(t *testing.T, p string) statInfo {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Fatalf("stat %s: %v", p, err)
	}
	return statInfo{uid: st.Uid, gid: st.Gid, mode: st.Mode, rdev: st.Rdev}
}

// TestHarnessUnit checks the harness's pure helpers; it runs without root.
func TestHarnessUnit(t *testing.T) {
	if got := field("Name:\tsh\nCapEff:\t0000000000000001\n", "CapEff"); got != "0000000000000001" {
		t.Errorf("field: got %q", got)
	}
	if got := lines(" a \n\n b\n"); len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Errorf("lines: got %q", got)
	}
	if r := (result{args: []string{"state"}, code: 1}); !strings.Contains(r.String(), "exit 1") {
		t.Errorf("result.String: %s", r)
	}
}
