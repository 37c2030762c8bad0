package engine

import (
	"fmt"
	"os/exec"

	"github.com/berthdev/berth/internal/errdefs"
)

// InitBinaries are where --init's init is looked for, in order: Debian's
// catatonit (what podman runs), then one on $PATH. catatonit forwards
// signals to the command and reaps the orphans a command that is not
// written to be PID 1 leaves as zombies.
var InitBinaries = []string{"/usr/bin/catatonit", "/usr/libexec/podman/catatonit", "catatonit"}

// initBinary is the host path of the init for a container made with
// --init, "" without.
func initBinary(want bool) (string, error) {
	if !want {
		return "", nil
	}
	for _, p := range InitBinaries {
		if path, err := exec.LookPath(p); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("--init: no init binary (looked for %v): install the catatonit package: %w", InitBinaries, errdefs.ErrNotFound)
}
