package engine

import (
	"slices"
	"testing"
)

func TestTopArgs(t *testing.T) {
	if f, ok := psFields([]string{"pid,user", "%C", "args"}); !ok || !slices.Equal(f, []string{"pid=PID", "user=USER", "pcpu=%CPU", "args=COMMAND"}) {
		t.Errorf("descriptors: %v %v", f, ok)
	}
	if _, ok := psFields([]string{"-ef"}); ok {
		t.Error("-ef taken for descriptors")
	}
	out, err := filterPs([]byte("UID PID PPID CMD\nroot 1 0 init\nroot 42 1 sleep 60\nroot 420 1 other\n"), []int{42})
	if err != nil || string(out) != "UID PID PPID CMD\nroot 42 1 sleep 60\n" {
		t.Errorf("filter: %q %v", out, err)
	}
	if _, err := filterPs([]byte("USER CMD\nroot init\n"), []int{1}); err == nil {
		t.Error("no PID column: no error")
	}
}
