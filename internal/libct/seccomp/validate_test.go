//go:build linux && cgo

package seccomp

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berthdev/berth/internal/errdefs"
)

func uintp(v uint) *uint { return &v }

// validProfile uses every part of the spec, so each error case below breaks
// exactly one thing.
func validProfile() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction:    specs.ActErrno,
		DefaultErrnoRet:  uintp(38),
		Architectures:    []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Flags:            []specs.LinuxSeccompFlag{flagTsync, specs.LinuxSeccompFlagLog},
		ListenerPath:     "/run/agent.sock",
		ListenerMetadata: "opaque",
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read", "write", "berth_not_a_syscall"}, Action: specs.ActAllow},
			{Names: []string{"getcwd"}, Action: specs.ActErrno, ErrnoRet: uintp(1)},
			{Names: []string{"personality"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo},
				{Index: 0, Value: 0, Op: specs.OpEqualTo},
			}},
			{Names: []string{"clone"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 0x7e020000, ValueTwo: 0, Op: specs.OpMaskedEqual},
			}},
			{Names: []string{"mkdirat"}, Action: specs.ActNotify},
			{Names: []string{"ptrace"}, Action: specs.ActTrace, ErrnoRet: uintp(0xffff)},
		},
	}
}

// Another arch of the other byte order can never share a filter with ours.
func foreignArch() specs.Arch {
	if binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return specs.ArchS390X
	}
	return specs.ArchX86_64
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *specs.LinuxSeccomp)
		field  string // "" means valid
		msg    string
		notImp bool // also wraps errdefs.ErrNotImplemented
	}{
		{name: "valid", mutate: func(c *specs.LinuxSeccomp) {}},
		{name: "minimal", mutate: func(c *specs.LinuxSeccomp) { *c = specs.LinuxSeccomp{DefaultAction: specs.ActAllow} }},
		{name: "errnoRet zero fakes success", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[1].ErrnoRet = uintp(0) }},
		{name: "listenerPath without notify is ignored", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls = c.Syscalls[:4] }},

		{name: "no default action", mutate: func(c *specs.LinuxSeccomp) { c.DefaultAction = "" },
			field: "linux.seccomp.defaultAction", msg: "missing"},
		{name: "unknown default action", mutate: func(c *specs.LinuxSeccomp) { c.DefaultAction = "SCMP_ACT_FOO" },
			field: "linux.seccomp.defaultAction", msg: `unknown action "SCMP_ACT_FOO"`},
		{name: "notify as default", mutate: func(c *specs.LinuxSeccomp) { c.DefaultAction = specs.ActNotify },
			field: "linux.seccomp.defaultAction", msg: "cannot be the default action"},
		{name: "defaultErrnoRet with allow", mutate: func(c *specs.LinuxSeccomp) { c.DefaultAction = specs.ActAllow },
			field: "linux.seccomp.defaultErrnoRet", msg: "only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not SCMP_ACT_ALLOW"},
		{name: "defaultErrnoRet too big", mutate: func(c *specs.LinuxSeccomp) { c.DefaultErrnoRet = uintp(4096) },
			field: "linux.seccomp.defaultErrnoRet", msg: "4096 is out of range"},
		{name: "unknown arch", mutate: func(c *specs.LinuxSeccomp) { c.Architectures[1] = "SCMP_ARCH_VAX" },
			field: "linux.seccomp.architectures[1]", msg: `unknown architecture "SCMP_ARCH_VAX"`},
		{name: "arch of other byte order", mutate: func(c *specs.LinuxSeccomp) { c.Architectures = []specs.Arch{foreignArch()} },
			field: "linux.seccomp.architectures[0]", msg: "byte order", notImp: true},
		{name: "unknown flag", mutate: func(c *specs.LinuxSeccomp) { c.Flags[1] = "SECCOMP_FILTER_FLAG_FOO" },
			field: "linux.seccomp.flags[1]", msg: `unknown flag "SECCOMP_FILTER_FLAG_FOO"`},
		{name: "wait killable without notify", mutate: func(c *specs.LinuxSeccomp) {
			c.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv}
			c.Syscalls = c.Syscalls[:4]
		}, field: "linux.seccomp.flags[0]", msg: "only applies to a filter with a SCMP_ACT_NOTIFY rule"},
		{name: "notify without listenerPath", mutate: func(c *specs.LinuxSeccomp) { c.ListenerPath, c.ListenerMetadata = "", "" },
			field: "linux.seccomp.listenerPath", msg: "required because syscalls[4] uses SCMP_ACT_NOTIFY"},
		{name: "metadata without listenerPath", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls = c.Syscalls[:4]; c.ListenerPath = "" },
			field: "linux.seccomp.listenerMetadata", msg: "set without listenerPath"},
		{name: "no names", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[2].Names = nil },
			field: "linux.seccomp.syscalls[2].names", msg: "no syscall named"},
		{name: "empty name", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[0].Names[1] = "" },
			field: "linux.seccomp.syscalls[0].names[1]", msg: "empty syscall name"},
		{name: "no action", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[3].Action = "" },
			field: "linux.seccomp.syscalls[3].action", msg: "missing"},
		{name: "unknown action", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[3].Action = "SCMP_ACT_FOO" },
			field: "linux.seccomp.syscalls[3].action", msg: `unknown action "SCMP_ACT_FOO"`},
		{name: "errnoRet with allow", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[0].ErrnoRet = uintp(1) },
			field: "linux.seccomp.syscalls[0].errnoRet", msg: "not SCMP_ACT_ALLOW"},
		{name: "errnoRet with kill process", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[1].Action = specs.ActKillProcess },
			field: "linux.seccomp.syscalls[1].errnoRet", msg: "not SCMP_ACT_KILL_PROCESS"},
		{name: "errno errnoRet too big", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[1].ErrnoRet = uintp(5000) },
			field: "linux.seccomp.syscalls[1].errnoRet", msg: "5000 is out of range for SCMP_ACT_ERRNO (0-4095)"},
		{name: "trace data too big", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[5].ErrnoRet = uintp(0x10000) },
			field: "linux.seccomp.syscalls[5].errnoRet", msg: "65536 is out of range for SCMP_ACT_TRACE (0-65535)"},
		{name: "arg index 6", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[2].Args[1].Index = 6 },
			field: "linux.seccomp.syscalls[2].args[1].index", msg: "6 is out of range"},
		{name: "no operator", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[2].Args[0].Op = "" },
			field: "linux.seccomp.syscalls[2].args[0].op", msg: "missing"},
		{name: "unknown operator", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[2].Args[0].Op = "SCMP_CMP_XOR" },
			field: "linux.seccomp.syscalls[2].args[0].op", msg: `unknown operator "SCMP_CMP_XOR"`},
		{name: "valueTwo without masked compare", mutate: func(c *specs.LinuxSeccomp) { c.Syscalls[2].Args[0].ValueTwo = 3 },
			field: "linux.seccomp.syscalls[2].args[0].valueTwo", msg: "only used with SCMP_CMP_MASKED_EQ, not SCMP_CMP_EQ"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := validProfile()
			tc.mutate(cfg)
			err := Validate(cfg)
			if tc.field == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted the profile, want an error on %s", tc.field)
			}
			if !strings.HasPrefix(err.Error(), tc.field+": ") || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q, want %q naming %q", err, tc.msg, tc.field)
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error %q does not wrap ErrInvalidArgument", err)
			}
			if tc.notImp && !errdefs.IsNotImplemented(err) {
				t.Errorf("error %q does not wrap ErrNotImplemented", err)
			}
		})
	}
}

func TestValidateMessageExact(t *testing.T) {
	cfg := validProfile()
	cfg.Syscalls[3].Action = "SCMP_ACT_FOO"
	want := `linux.seccomp.syscalls[3].action: unknown action "SCMP_ACT_FOO"`
	if err := Validate(cfg); err == nil || err.Error() != want {
		t.Fatalf("got %v, want %s", err, want)
	}
	if err := Validate(nil); err != nil {
		t.Fatalf("Validate(nil): %v", err)
	}
}

// Load must refuse what Validate refuses, before touching the process.
func TestLoadInvalid(t *testing.T) {
	fd, err := Load(&specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_FOO"})
	if fd != -1 || !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Load = %d, %v; want -1 and an invalid-argument error", fd, err)
	}
	if fd, err := Load(nil); fd != -1 || err != nil {
		t.Fatalf("Load(nil) = %d, %v; want -1, nil", fd, err)
	}
}

func TestFeatures(t *testing.T) {
	f := Features()
	if f.Enabled == nil || !*f.Enabled {
		t.Fatal("seccomp not reported as enabled")
	}
	has := func(list []string, v string) bool {
		for _, s := range list {
			if s == v {
				return true
			}
		}
		return false
	}
	for _, a := range []string{"SCMP_ACT_NOTIFY", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_ERRNO"} {
		if !has(f.Actions, a) {
			t.Errorf("Actions %v lacks %s", f.Actions, a)
		}
	}
	if len(f.Operators) != 7 || !has(f.Operators, "SCMP_CMP_MASKED_EQ") {
		t.Errorf("Operators = %v", f.Operators)
	}
	if !has(f.Archs, string(foreignArch())) || has(f.Archs, "SCMP_ARCH_VAX") {
		t.Errorf("Archs = %v", f.Archs)
	}
	if len(f.KnownFlags) != 4 {
		t.Errorf("KnownFlags = %v", f.KnownFlags)
	}
	for _, fl := range f.SupportedFlags {
		if !has(f.KnownFlags, fl) {
			t.Errorf("supported flag %s is not known", fl)
		}
	}
	// Every flag this build claims must also pass Validate, and vice versa.
	for _, fl := range knownFlags {
		err := flagSupport(fl)
		if (err == nil) != has(f.SupportedFlags, string(fl)) {
			t.Errorf("flag %s: support %v but SupportedFlags %v", fl, err, f.SupportedFlags)
		}
		if err != nil && !errors.Is(err, errdefs.ErrNotImplemented) {
			t.Errorf("flag %s: %v does not wrap ErrNotImplemented", fl, err)
		}
	}
	t.Logf("libseccomp %s, API level %d, supported flags %v", LibseccompVersion(), apiLevel(), f.SupportedFlags)
}
