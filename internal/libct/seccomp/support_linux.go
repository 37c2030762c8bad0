//go:build linux && cgo

package seccomp

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"unsafe"

	"github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/berthdev/berth/internal/errdefs"
)

// libseccomp's API level folds together what the library and the running
// kernel can both do, so it is the one number to check features against
// (see seccomp_api_get(3)).
const (
	apiTsync      = 2 // seccomp(2) and SECCOMP_FILTER_FLAG_TSYNC
	apiLog        = 3 // SCMP_ACT_LOG, SCMP_ACT_KILL_PROCESS, SECCOMP_FILTER_FLAG_LOG
	apiSpecAllow  = 4 // SECCOMP_FILTER_FLAG_SPEC_ALLOW
	apiNotify     = 6 // SCMP_ACT_NOTIFY together with TSYNC (TSYNC_ESRCH)
	apiWaitKill   = 7 // libseccomp >= 2.6: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV attribute
	notifyKernels = "libseccomp >= 2.5.0 and Linux >= 5.7"
)

// The library probes the kernel once and caches the answer, so this is cheap.
func apiLevel() uint {
	level, err := libseccomp.GetAPI()
	if err != nil {
		return 0
	}
	return level
}

// LibseccompVersion reports the libseccomp this binary runs with, e.g. for
// the `features` command's io.github.seccomp.libseccomp.version annotation.
func LibseccompVersion() string {
	major, minor, micro := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", major, minor, micro)
}

func needAPI(level uint, what string) error {
	if have := apiLevel(); have < level {
		return fmt.Errorf("needs libseccomp API level >= %d (%s), have libseccomp %s at API level %d: %w",
			level, what, LibseccompVersion(), have, errdefs.ErrNotImplemented)
	}
	return nil
}

// Without TSYNC only the calling thread would be filtered, and a Go process
// has several threads.
func baseSupport() error {
	return needAPI(apiTsync, "seccomp(2) with SECCOMP_FILTER_FLAG_TSYNC")
}

func actionSupport(a specs.LinuxSeccompAction) error {
	switch a {
	case specs.ActLog, specs.ActKillProcess:
		return needAPI(apiLog, "libseccomp >= 2.4.0 and Linux >= 4.14")
	case specs.ActNotify:
		return needAPI(apiNotify, notifyKernels)
	}
	return nil
}

func flagSupport(f specs.LinuxSeccompFlag) error {
	switch f {
	case flagTsync:
		return needAPI(apiTsync, "Linux >= 3.17")
	case specs.LinuxSeccompFlagLog:
		return needAPI(apiLog, "libseccomp >= 2.4.0 and Linux >= 4.14")
	case specs.LinuxSeccompFlagSpecAllow:
		return needAPI(apiSpecAllow, "libseccomp >= 2.5.0 and Linux >= 4.17")
	case specs.LinuxSeccompFlagWaitKillableRecv:
		if apiLevel() >= apiWaitKill {
			return nil
		}
		// Older libseccomp lacks the attribute; Load then hands the
		// exported program to seccomp(2) itself, which needs the kernel.
		if err := needAPI(apiNotify, notifyKernels); err != nil {
			return err
		}
		return kernelWaitKillable()
	}
	return fmt.Errorf("unknown flag %q: %w", f, errdefs.ErrNotImplemented)
}

// Flags Load passes to seccomp(2) when it loads the program itself.
const rawFlags = unix.SECCOMP_FILTER_FLAG_TSYNC | unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH |
	unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV

// The kernel checks the flags before it reads the program, so a NULL program
// answers EFAULT when it knows them and EINVAL when not, and installs nothing
// (libseccomp probes flags the same way).
var kernelWaitKillable = sync.OnceValue(func() error {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, rawFlags, uintptr(unsafe.Pointer(nil)))
	if errno == unix.EFAULT {
		return nil
	}
	return fmt.Errorf("the kernel refuses SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (needs Linux >= 5.19): %v: %w",
		errno, errdefs.ErrNotImplemented)
})

// archResults tries every known architecture once on a scratch filter: only
// libseccomp knows which ones it was built with and which ones can share a
// filter with the native one (their endianness must match).
var archResults = sync.OnceValue(func() map[specs.Arch]error {
	res := make(map[specs.Arch]error, len(knownArchs))
	filter, err := libseccomp.NewFilter(libseccomp.ActAllow)
	if err != nil {
		for a := range knownArchs {
			res[a] = err
		}
		return res
	}
	defer filter.Release()
	for a, name := range knownArchs {
		sa, err := libseccomp.GetArchFromString(name)
		if err == nil {
			err = filter.AddArch(sa)
		}
		res[a] = err
	}
	return res
})

func archSupport(a specs.Arch) error {
	err := archResults()[a]
	if errors.Is(err, unix.EDOM) {
		native, _ := libseccomp.GetNativeArch()
		return fmt.Errorf("its byte order differs from the native %s: %w", native, errdefs.ErrNotImplemented)
	}
	if err != nil {
		return fmt.Errorf("%v: %w", err, errdefs.ErrNotImplemented)
	}
	return nil
}

// Features reports what this build supports, for the `features` command.
// Archs lists the architectures this libseccomp knows, including those that
// can only be used on a host of the other byte order.
func Features() *features.Seccomp {
	enabled := true
	f := &features.Seccomp{
		Enabled:        &enabled,
		Actions:        sortedKeys(knownActions),
		Operators:      sortedKeys(knownOperators),
		Archs:          []string{},
		KnownFlags:     []string{},
		SupportedFlags: []string{},
	}
	for a, err := range archResults() {
		if err == nil || errors.Is(err, unix.EDOM) {
			f.Archs = append(f.Archs, string(a))
		}
	}
	sort.Strings(f.Archs)
	for _, fl := range knownFlags {
		f.KnownFlags = append(f.KnownFlags, string(fl))
		if flagSupport(fl) == nil {
			f.SupportedFlags = append(f.SupportedFlags, string(fl))
		}
	}
	return f
}
