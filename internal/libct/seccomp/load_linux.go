//go:build linux && cgo

package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Above this many rules a binary search over syscall numbers beats
// libseccomp's linear default; below it, libseccomp <= 2.5.4 is known to
// mishandle the tree (it breaks with zero rules), so keep the default there.
const binaryTreeMinRules = 32

// Load builds the filter described by cfg and loads it into the calling
// process, on every thread (TSYNC): a Go process has several.
//
// The caller has locked its OS thread and is about to execve. Load neither
// sets no_new_privs nor lets libseccomp set it: the caller decides that from
// process.noNewPrivileges, and without it must hold CAP_SYS_ADMIN. Every
// syscall the caller makes after Load (sending the listener fd, closing fds,
// execve) is subject to the filter.
//
// It returns the seccomp user-notification listener fd (close-on-exec) when
// a loaded rule uses SCMP_ACT_NOTIFY, else -1; the caller hands it to the
// agent at listenerPath. A nil cfg loads nothing.
func Load(cfg *specs.LinuxSeccomp) (listenerFd int, err error) {
	prog, err := Compile(cfg)
	if err != nil || prog == nil {
		return -1, err
	}
	return prog.Load()
}

// Program is a compiled filter, ready to load with no further allocation:
// the runtime compiles before it applies the process's rlimits (a tight
// RLIMIT_AS would starve libseccomp) and loads after.
type Program struct {
	insns  []unix.SockFilter
	flags  uintptr
	notify bool
}

// Compile builds cfg's filter into a BPF program; nil cfg gives nil.
func Compile(cfg *specs.LinuxSeccomp) (*Program, error) {
	if cfg == nil {
		return nil, nil
	}
	if err := Validate(cfg); err != nil {
		return nil, err
	}

	defAct := scmpAction(cfg.DefaultAction, cfg.DefaultErrnoRet)
	filter, err := libseccomp.NewFilter(defAct)
	if err != nil {
		return nil, fmt.Errorf("%s: creating the filter: %w", root, err)
	}
	defer filter.Release()

	for i, a := range cfg.Architectures {
		sa, err := libseccomp.GetArchFromString(knownArchs[a])
		if err == nil {
			err = filter.AddArch(sa)
		}
		if err != nil {
			return nil, &fieldError{field: fmt.Sprintf("%s.architectures[%d]", root, i), msg: fmt.Sprintf("adding %s", a), cause: err}
		}
	}

	flags := uintptr(unix.SECCOMP_FILTER_FLAG_TSYNC)
	waitKillable := false
	for _, f := range cfg.Flags {
		switch f {
		case specs.LinuxSeccompFlagLog:
			flags |= unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			flags |= unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case specs.LinuxSeccompFlagWaitKillableRecv:
			waitKillable = true
		}
	}

	notify, rules, err := addRules(filter, cfg, defAct)
	if err != nil {
		return nil, err
	}
	if rules > binaryTreeMinRules {
		// Only speed is at stake, and older libseccomp lacks the attribute.
		_ = filter.SetOptimize(2)
	}
	if notify {
		// TSYNC and a listener go together only with TSYNC_ESRCH.
		flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
		// The flag qualifies the listener; with no NOTIFY rule loaded
		// the kernel would refuse it on its own.
		if waitKillable {
			flags |= unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
		}
	}
	insns, err := exportBPF(filter)
	if err != nil {
		return nil, fmt.Errorf("%s: exporting the filter: %w", root, err)
	}
	return &Program{insns: insns, flags: flags, notify: notify}, nil
}

// Load installs the program on every thread of the process and returns the
// notify listener fd (close-on-exec), or -1 when the profile has no NOTIFY rule.
func (p *Program) Load() (int, error) {
	fprog := unix.SockFprog{Len: uint16(len(p.insns)), Filter: &p.insns[0]}
	fd, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, p.flags, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(p.insns)
	if errno != 0 {
		return -1, loadError(errno)
	}
	if !p.notify {
		return -1, nil
	}
	unix.CloseOnExec(int(fd))
	return int(fd), nil
}

func loadError(err error) error {
	if errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%s: loading the filter: %w (the process needs no_new_privs or CAP_SYS_ADMIN)", root, err)
	}
	return fmt.Errorf("%s: loading the filter: %w", root, err)
}

// addRules adds one or more libseccomp rules per syscall name. It reports
// whether a NOTIFY rule went in (libseccomp then asks for a listener) and how
// many rules were added.
func addRules(filter *libseccomp.ScmpFilter, cfg *specs.LinuxSeccomp, defAct libseccomp.ScmpAction) (notify bool, rules int, err error) {
	for i := range cfg.Syscalls {
		sc := &cfg.Syscalls[i]
		act := scmpAction(sc.Action, sc.ErrnoRet)
		// libseccomp refuses a rule that repeats the default action, and
		// such a rule would change nothing anyway.
		if act == defAct {
			continue
		}
		groups, err := conditionGroups(sc.Args)
		if err != nil {
			return false, 0, fmt.Errorf("%s.syscalls[%d].args: %w", root, i, err)
		}
		for j, name := range sc.Names {
			// Names libseccomp does not know belong to newer kernels (or
			// are typos we cannot tell apart): skipped, as runc does. Names
			// it knows for another architecture only resolve to a negative
			// pseudo number, which libseccomp applies where it exists.
			nr, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				continue
			}
			for _, conds := range groups {
				if err := filter.AddRuleConditional(nr, act, conds); err != nil {
					return false, 0, fmt.Errorf("%s.syscalls[%d].names[%d]: adding the %s rule for syscall %q: %w",
						root, i, j, sc.Action, name, err)
				}
				rules++
			}
			if sc.Action == specs.ActNotify {
				notify = true
			}
		}
	}
	return notify, rules, nil
}

// conditionGroups returns the condition lists to add as separate rules, with
// runc's semantics: conditions on distinct arguments are ANDed in one rule;
// if any argument is named twice (libseccomp refuses that in one rule, and
// profiles written for runc expect OR there), every condition becomes a rule
// of its own. No args gives one unconditional rule.
func conditionGroups(args []specs.LinuxSeccompArg) ([][]libseccomp.ScmpCondition, error) {
	if len(args) == 0 {
		return [][]libseccomp.ScmpCondition{nil}, nil
	}
	conds := make([]libseccomp.ScmpCondition, 0, len(args))
	var seen [maxArgIndex + 1]bool
	repeated := false
	for _, a := range args {
		c, err := scmpCondition(a)
		if err != nil {
			return nil, err
		}
		if seen[a.Index] {
			repeated = true
		}
		seen[a.Index] = true
		conds = append(conds, c)
	}
	if !repeated {
		return [][]libseccomp.ScmpCondition{conds}, nil
	}
	groups := make([][]libseccomp.ScmpCondition, len(conds))
	for i := range conds {
		groups[i] = conds[i : i+1]
	}
	return groups, nil
}

func scmpCondition(a specs.LinuxSeccompArg) (libseccomp.ScmpCondition, error) {
	var op libseccomp.ScmpCompareOp
	switch a.Op {
	case specs.OpNotEqual:
		op = libseccomp.CompareNotEqual
	case specs.OpLessThan:
		op = libseccomp.CompareLess
	case specs.OpLessEqual:
		op = libseccomp.CompareLessOrEqual
	case specs.OpEqualTo:
		op = libseccomp.CompareEqual
	case specs.OpGreaterEqual:
		op = libseccomp.CompareGreaterEqual
	case specs.OpGreaterThan:
		op = libseccomp.CompareGreater
	case specs.OpMaskedEqual:
		// The spec's value is the mask and valueTwo the datum, which is
		// libseccomp's (and the kernel filter's) order too.
		return libseccomp.MakeCondition(a.Index, libseccomp.CompareMaskedEqual, a.Value, a.ValueTwo)
	default:
		return libseccomp.ScmpCondition{}, fmt.Errorf("unknown operator %q", a.Op)
	}
	return libseccomp.MakeCondition(a.Index, op, a.Value)
}

// scmpAction maps a validated action. ERRNO and TRACE default to EPERM, as
// the spec says for errnoRet and as runc does.
func scmpAction(a specs.LinuxSeccompAction, errnoRet *uint) libseccomp.ScmpAction {
	ret := uint(unix.EPERM)
	if errnoRet != nil {
		ret = *errnoRet
	}
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return libseccomp.ActKillThread
	case specs.ActKillProcess:
		return libseccomp.ActKillProcess
	case specs.ActTrap:
		return libseccomp.ActTrap
	case specs.ActErrno:
		// Validate bounded ret to 16 bits; the conversion keeps those bits.
		return libseccomp.ActErrno.SetReturnCode(int16(ret))
	case specs.ActTrace:
		return libseccomp.ActTrace.SetReturnCode(int16(ret))
	case specs.ActAllow:
		return libseccomp.ActAllow
	case specs.ActLog:
		return libseccomp.ActLog
	case specs.ActNotify:
		return libseccomp.ActNotify
	}
	return libseccomp.ActInvalid
}

// loadRaw loads the filter with seccomp(2) directly, for the flags this
// libseccomp has no attribute for (WAIT_KILLABLE_RECV before 2.6). The
// program is libseccomp's own export, so only the flags differ from
// filter.Load. It is only used with a listener, which TSYNC tolerates only
// with TSYNC_ESRCH.
// exportBPF returns libseccomp's compiled program. libseccomp 2.5 can only
// write it to an fd; a memfd cannot fill up the way a pipe could.
func exportBPF(filter *libseccomp.ScmpFilter) ([]unix.SockFilter, error) {
	mfd, err := unix.MemfdCreate("berth-seccomp-bpf", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(mfd), "berth-seccomp-bpf")
	defer f.Close()
	if err := filter.ExportBPF(f); err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	raw, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return decodeBPF(raw)
}

// decodeBPF reads an exported program.
func decodeBPF(raw []byte) ([]unix.SockFilter, error) {
	// struct sock_filter: u16 code, u8 jt, u8 jf, u32 k, in host byte order.
	const insnSize = 8
	n := len(raw) / insnSize
	if n == 0 || len(raw)%insnSize != 0 || n > 0xffff {
		return nil, fmt.Errorf("unexpected program size %d bytes", len(raw))
	}
	prog := make([]unix.SockFilter, n)
	for i := range prog {
		b := raw[i*insnSize:]
		prog[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b[0:]),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:]),
		}
	}
	return prog, nil
}
