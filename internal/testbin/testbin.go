// Package testbin builds berth's binaries for the integration tests that
// drive them as users do: the Go commands asked for, the C berth-monitor
// (as the Makefile builds it), and $BERTH_TEST_RUNTIME linked as
// berth-runtime, all in one directory (each finds the others next to
// itself).
package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Stage builds cmds (paths under root, the repository, like "cmd/berth")
// into a new temporary directory and returns it.
func Stage(root string, cmds ...string) (string, error) {
	dir, err := os.MkdirTemp("", "berth-test-bin-")
	if err != nil {
		return "", err
	}
	for _, c := range cmds {
		out := filepath.Join(dir, filepath.Base(c))
		if b, err := exec.Command("go", "build", "-o", out, "./"+filepath.Join(root, c)).CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("go build %s: %v\n%s", c, err, b)
		}
	}
	if err := buildMonitor(filepath.Join(dir, "berth-monitor"), filepath.Join(root, "cmd", "berth-monitor")); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	if rt := os.Getenv("BERTH_TEST_RUNTIME"); rt != "" {
		os.Symlink(rt, filepath.Join(dir, "berth-runtime"))
	}
	return dir, nil
}

// buildMonitor compiles the C monitor as the Makefile does: musl-gcc, or
// gcc if there is no musl, static.
func buildMonitor(out, src string) error {
	cc, err := exec.LookPath("musl-gcc")
	if err != nil {
		if cc, err = exec.LookPath("gcc"); err != nil {
			return errors.New("berth-monitor is C: no C compiler (musl-gcc or gcc) on $PATH; apt-get install musl-tools")
		}
	}
	srcs, err := filepath.Glob(filepath.Join(src, "*.c"))
	if err != nil || len(srcs) == 0 {
		return fmt.Errorf("berth-monitor: no C sources in %s: %v", src, err)
	}
	args := append([]string{"-static", "-Os", "-s", "-Wall", "-Wextra", "-Werror", "-o", out}, srcs...)
	if b, err := exec.Command(cc, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("berth-monitor: %s %s: %v\n%s", cc, strings.Join(args, " "), err, b)
	}
	return nil
}
