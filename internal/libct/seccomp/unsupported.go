//go:build !linux || !cgo

package seccomp

import (
	"fmt"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/berthdev/berth/internal/errdefs"
)

// Without cgo there is no libseccomp: a profile must fail rather than be
// dropped, so Validate and Load reject every non-nil one.
var errNoSeccomp = fmt.Errorf("built without libseccomp (needs linux and cgo): %w", errdefs.ErrNotImplemented)

func baseSupport() error                           { return errNoSeccomp }
func actionSupport(specs.LinuxSeccompAction) error { return errNoSeccomp }
func flagSupport(specs.LinuxSeccompFlag) error     { return errNoSeccomp }
func archSupport(specs.Arch) error                 { return errNoSeccomp }

// LibseccompVersion is empty: this build has no libseccomp.
func LibseccompVersion() string { return "" }

// Load rejects any profile in this build; nil loads nothing.
func Load(cfg *specs.LinuxSeccomp) (listenerFd int, err error) {
	if cfg == nil {
		return -1, nil
	}
	if err := Validate(cfg); err != nil {
		return -1, err
	}
	return -1, errNoSeccomp
}

// Program is never built without libseccomp.
type Program struct{}

// Compile rejects any profile in this build; nil gives nil.
func Compile(cfg *specs.LinuxSeccomp) (*Program, error) {
	_, err := Load(cfg)
	return nil, err
}

// CompileCached is Compile in this build.
func CompileCached(cfg *specs.LinuxSeccomp, dir string) (*Program, error) { return Compile(cfg) }

// Load is never reached: Compile returns no program.
func (p *Program) Load() (int, error) { return -1, errNoSeccomp }

// Features reports seccomp as not compiled in.
func Features() *features.Seccomp {
	enabled := false
	return &features.Seccomp{Enabled: &enabled}
}
