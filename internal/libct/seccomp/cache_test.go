//go:build linux && cgo

package seccomp

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
)

// TestCompileCached: the cached program is the compiled one, a different
// profile gets its own entry, a damaged entry is compiled again, and the
// program survives its trip to init as JSON.
func TestCompileCached(t *testing.T) {
	dir := t.TempDir()
	prof := func(errno uint) *specs.LinuxSeccomp {
		return &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchX86_64},
			Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir", "rmdir"}, Action: specs.ActErrno, ErrnoRet: &errno}}}
	}
	want, err := Compile(prof(1))
	if err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ { // a miss, then a hit
		got, err := CompileCached(prof(1), dir)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("round %d: %+v, %v; want %+v", round, got, err, want)
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("cache entries: %d, want 1", len(ents))
	}
	if other, _ := CompileCached(prof(2), dir); reflect.DeepEqual(other, want) {
		t.Error("another profile got the first one's program")
	}
	path := filepath.Join(dir, ents[0].Name())
	os.WriteFile(path, []byte("damaged"), 0o600)
	if got, err := CompileCached(prof(1), dir); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("after damage: %+v, %v", got, err)
	}
	data, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	var back Program
	if err := json.Unmarshal(data, &back); err != nil || !reflect.DeepEqual(&back, want) {
		t.Errorf("JSON round trip: %+v, %v", back, err)
	}
}
