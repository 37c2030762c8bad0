// Package seccomp turns the OCI runtime spec's linux.seccomp section into a
// seccomp BPF filter (through libseccomp) and loads it into the calling
// process just before it execs the container process.
//
// Validate is cheap and loads nothing, so `create` can reject a bad profile
// before anything is set up; Load re-validates, because it runs in the
// container's init where a half-applied profile must never happen.
package seccomp

import (
	"fmt"
	"sort"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthdev/berth/internal/errdefs"
)

const (
	// A syscall has at most six arguments (seccomp_data.args).
	maxArgIndex = 5
	// The kernel clamps SECCOMP_RET_ERRNO data to MAX_ERRNO; accepting more
	// would silently return a different errno than the profile asked for.
	maxErrno = 4095
	// SECCOMP_RET_TRACE hands the tracer the 16-bit SECCOMP_RET_DATA.
	maxTraceData = 0xffff
)

// Action names are libseccomp's (seccomp.h), as the spec requires.
var knownActions = map[specs.LinuxSeccompAction]bool{
	specs.ActKill:        true,
	specs.ActKillProcess: true,
	specs.ActKillThread:  true,
	specs.ActTrap:        true,
	specs.ActErrno:       true,
	specs.ActTrace:       true,
	specs.ActAllow:       true,
	specs.ActLog:         true,
	specs.ActNotify:      true,
}

var knownOperators = map[specs.LinuxSeccompOperator]bool{
	specs.OpNotEqual:     true,
	specs.OpLessThan:     true,
	specs.OpLessEqual:    true,
	specs.OpEqualTo:      true,
	specs.OpGreaterEqual: true,
	specs.OpGreaterThan:  true,
	specs.OpMaskedEqual:  true,
}

// Spec architecture -> the name libseccomp's GetArchFromString takes.
var knownArchs = map[specs.Arch]string{
	specs.ArchX86:         "x86",
	specs.ArchX86_64:      "amd64",
	specs.ArchX32:         "x32",
	specs.ArchARM:         "arm",
	specs.ArchAARCH64:     "arm64",
	specs.ArchMIPS:        "mips",
	specs.ArchMIPS64:      "mips64",
	specs.ArchMIPS64N32:   "mips64n32",
	specs.ArchMIPSEL:      "mipsel",
	specs.ArchMIPSEL64:    "mipsel64",
	specs.ArchMIPSEL64N32: "mipsel64n32",
	specs.ArchPPC:         "ppc",
	specs.ArchPPC64:       "ppc64",
	specs.ArchPPC64LE:     "ppc64le",
	specs.ArchS390:        "s390",
	specs.ArchS390X:       "s390x",
	specs.ArchPARISC:      "parisc",
	specs.ArchPARISC64:    "parisc64",
	specs.ArchRISCV64:     "riscv64",
	specs.ArchLOONGARCH64: "loong64",
	specs.ArchM68K:        "m68k",
	specs.ArchSH:          "sh",
	specs.ArchSHEB:        "sheb",
}

// flagTsync is not a spec constant (the spec lists it in prose only).
const flagTsync specs.LinuxSeccompFlag = "SECCOMP_FILTER_FLAG_TSYNC"

var knownFlags = []specs.LinuxSeccompFlag{
	flagTsync,
	specs.LinuxSeccompFlagLog,
	specs.LinuxSeccompFlagSpecAllow,
	specs.LinuxSeccompFlagWaitKillableRecv,
}

func isKnownFlag(f specs.LinuxSeccompFlag) bool {
	for _, k := range knownFlags {
		if f == k {
			return true
		}
	}
	return false
}

func sortedKeys[K ~string, V any](m map[K]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, string(k))
	}
	sort.Strings(out)
	return out
}

// fieldError keeps the message exactly "<field>: <what is wrong>" while still
// matching errdefs.ErrInvalidArgument (and the cause, when there is one).
type fieldError struct {
	field string
	msg   string
	cause error
}

func (e *fieldError) Error() string {
	if e.cause != nil {
		return e.field + ": " + e.msg + ": " + e.cause.Error()
	}
	return e.field + ": " + e.msg
}

func (e *fieldError) Unwrap() []error {
	if e.cause != nil {
		return []error{errdefs.ErrInvalidArgument, e.cause}
	}
	return []error{errdefs.ErrInvalidArgument}
}

func invalid(field, format string, args ...any) error {
	return &fieldError{field: field, msg: fmt.Sprintf(format, args...)}
}

func unsupported(field, what string, cause error) error {
	return &fieldError{field: field, msg: what + " is not supported by this build", cause: cause}
}

const root = "linux.seccomp"

// Validate checks cfg without loading it. Every error names the field and
// what is wrong, and wraps errdefs.ErrInvalidArgument; a feature that this
// build (libseccomp, kernel) cannot provide also wraps
// errdefs.ErrNotImplemented. Syscall names unknown to libseccomp are not an
// error: profiles list syscalls of newer kernels, and runc skips them too.
// A nil cfg means "no seccomp" and is valid.
func Validate(cfg *specs.LinuxSeccomp) error {
	if cfg == nil {
		return nil
	}
	if err := baseSupport(); err != nil {
		return &fieldError{field: root, msg: "seccomp cannot be used", cause: err}
	}
	// A notifying default would make every syscall, the runtime's own between
	// Load and execve included, wait for an agent that has not got the fd yet.
	if cfg.DefaultAction == specs.ActNotify {
		return invalid(root+".defaultAction", "%s cannot be the default action", specs.ActNotify)
	}
	if err := validateAction(root+".defaultAction", root+".defaultErrnoRet", cfg.DefaultAction, cfg.DefaultErrnoRet); err != nil {
		return err
	}
	for i, a := range cfg.Architectures {
		field := fmt.Sprintf("%s.architectures[%d]", root, i)
		if _, ok := knownArchs[a]; !ok {
			return invalid(field, "unknown architecture %q", a)
		}
		if err := archSupport(a); err != nil {
			return &fieldError{field: field, msg: fmt.Sprintf("cannot add %s to the filter", a), cause: err}
		}
	}

	notifyAt := -1
	for i := range cfg.Syscalls {
		if err := validateSyscall(i, &cfg.Syscalls[i]); err != nil {
			return err
		}
		if notifyAt < 0 && cfg.Syscalls[i].Action == specs.ActNotify {
			notifyAt = i
		}
	}

	for i, f := range cfg.Flags {
		field := fmt.Sprintf("%s.flags[%d]", root, i)
		if !isKnownFlag(f) {
			return invalid(field, "unknown flag %q", f)
		}
		if err := flagSupport(f); err != nil {
			return unsupported(field, string(f), err)
		}
		// The kernel refuses it without a listener (EINVAL); say why here.
		if f == specs.LinuxSeccompFlagWaitKillableRecv && notifyAt < 0 {
			return invalid(field, "%s only applies to a filter with a %s rule, and there is none", f, specs.ActNotify)
		}
	}

	if notifyAt >= 0 && cfg.ListenerPath == "" {
		return invalid(root+".listenerPath", "required because syscalls[%d] uses %s", notifyAt, specs.ActNotify)
	}
	if cfg.ListenerMetadata != "" && cfg.ListenerPath == "" {
		return invalid(root+".listenerMetadata", "set without listenerPath")
	}
	return nil
}

func validateSyscall(i int, sc *specs.LinuxSyscall) error {
	field := fmt.Sprintf("%s.syscalls[%d]", root, i)
	if len(sc.Names) == 0 {
		return invalid(field+".names", "no syscall named")
	}
	for j, n := range sc.Names {
		if n == "" {
			return invalid(fmt.Sprintf("%s.names[%d]", field, j), "empty syscall name")
		}
	}
	if err := validateAction(field+".action", field+".errnoRet", sc.Action, sc.ErrnoRet); err != nil {
		return err
	}
	for j, a := range sc.Args {
		af := fmt.Sprintf("%s.args[%d]", field, j)
		if a.Index > maxArgIndex {
			return invalid(af+".index", "%d is out of range (a syscall has arguments 0-%d)", a.Index, maxArgIndex)
		}
		if a.Op == "" {
			return invalid(af+".op", "missing")
		}
		if !knownOperators[a.Op] {
			return invalid(af+".op", "unknown operator %q", a.Op)
		}
		// Only the masked compare has a second operand; libseccomp would
		// ignore it elsewhere and the rule would not mean what it says.
		if a.ValueTwo != 0 && a.Op != specs.OpMaskedEqual {
			return invalid(af+".valueTwo", "only used with %s, not %s", specs.OpMaskedEqual, a.Op)
		}
	}
	return nil
}

func validateAction(field, errnoField string, a specs.LinuxSeccompAction, errnoRet *uint) error {
	if a == "" {
		return invalid(field, "missing")
	}
	if !knownActions[a] {
		return invalid(field, "unknown action %q", a)
	}
	if err := actionSupport(a); err != nil {
		return unsupported(field, string(a), err)
	}
	if errnoRet == nil {
		return nil
	}
	switch a {
	case specs.ActErrno:
		if *errnoRet > maxErrno {
			return invalid(errnoField, "%d is out of range for %s (0-%d)", *errnoRet, a, maxErrno)
		}
	case specs.ActTrace:
		if *errnoRet > maxTraceData {
			return invalid(errnoField, "%d is out of range for %s (0-%d)", *errnoRet, a, maxTraceData)
		}
	default:
		return invalid(errnoField, "only valid with %s or %s, not %s", specs.ActErrno, specs.ActTrace, a)
	}
	return nil
}
