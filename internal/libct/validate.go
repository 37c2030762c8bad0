package libct

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berthdev/berth/internal/errdefs"
	"github.com/berthdev/berth/internal/libct/seccomp"
	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// LoadSpec reads and validates <bundle>/config.json; every error names the
// file and the field.
func LoadSpec(bundle string) (*specs.Spec, error) {
	path := filepath.Join(bundle, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("bundle %s: no config.json: %w", bundle, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("bundle %s: %w", bundle, err)
	}
	var s specs.Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%s: malformed JSON: %s: %w", path, jsonErr(data, err), errdefs.ErrInvalidArgument)
	}
	if err := Validate(&s, bundle); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &s, nil
}

// jsonErr adds the position of a syntax error and the field of a type error.
func jsonErr(data []byte, err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		line := bytes.Count(data[:se.Offset], []byte("\n")) + 1
		return fmt.Sprintf("line %d: %v", line, err)
	case errors.As(err, &te):
		return fmt.Sprintf("field %s: cannot use JSON %s as %s", te.Field, te.Value, te.Type)
	}
	return err.Error()
}

var nsTypes = map[specs.LinuxNamespaceType]int{
	specs.PIDNamespace:     unix.CLONE_NEWPID,
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.MountNamespace:   unix.CLONE_NEWNS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.UserNamespace:    unix.CLONE_NEWUSER,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// Validate checks what the runtime relies on before it touches the system.
func Validate(s *specs.Spec, bundle string) error {
	if s.Version == "" {
		return invalid("ociVersion", "missing")
	}
	if !strings.HasPrefix(s.Version, "1.") {
		return invalid("ociVersion", "%q is not a 1.x version this runtime supports", s.Version)
	}
	if s.Root == nil || s.Root.Path == "" {
		return invalid("root.path", "missing")
	}
	rootfs := s.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	if fi, err := os.Stat(rootfs); err != nil {
		return invalid("root.path", "%v", err)
	} else if !fi.IsDir() {
		return invalid("root.path", "%s is not a directory", rootfs)
	}
	if s.Linux == nil {
		return invalid("linux", "missing (this runtime runs Linux containers)")
	}
	if s.Process != nil {
		if err := validateProcess(s.Process, "process"); err != nil {
			return err
		}
	}
	for i, m := range s.Mounts {
		f := fmt.Sprintf("mounts[%d]", i)
		if m.Destination == "" {
			return invalid(f+".destination", "missing")
		}
		if strings.Contains(m.Destination, "\x00") {
			return invalid(f+".destination", "contains a NUL byte")
		}
		if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
			return invalid(f, "id-mapped mounts are not supported by berth-runtime yet")
		}
	}
	if err := validateLinux(s); err != nil {
		return err
	}
	if s.Hooks != nil {
		if err := validateHooks(s.Hooks); err != nil {
			return err
		}
	}
	return nil
}

func validateProcess(p *specs.Process, f string) error {
	if len(p.Args) == 0 && p.CommandLine == "" {
		return invalid(f+".args", "missing: the process needs a command")
	}
	if p.Cwd == "" {
		return invalid(f+".cwd", "missing")
	}
	if !filepath.IsAbs(p.Cwd) {
		return invalid(f+".cwd", "%q is not an absolute path", p.Cwd)
	}
	for i, e := range p.Env {
		if !strings.Contains(e, "=") {
			return invalid(fmt.Sprintf("%s.env[%d]", f, i), "%q is not KEY=VALUE", e)
		}
	}
	seen := map[string]bool{}
	for i, r := range p.Rlimits {
		rf := fmt.Sprintf("%s.rlimits[%d]", f, i)
		if _, ok := rlimitTypes[r.Type]; !ok {
			return invalid(rf+".type", "unknown rlimit %q", r.Type)
		}
		if seen[r.Type] {
			return invalid(rf+".type", "%s given twice", r.Type)
		}
		seen[r.Type] = true
		if r.Soft > r.Hard {
			return invalid(rf, "soft limit %d is above hard limit %d", r.Soft, r.Hard)
		}
	}
	if c := p.Capabilities; c != nil {
		for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective,
			"inheritable": c.Inheritable, "permitted": c.Permitted, "ambient": c.Ambient} {
			for i, n := range set {
				if _, err := capByName(n); err != nil {
					return invalid(fmt.Sprintf("%s.capabilities.%s[%d]", f, name, i), "%v", err)
				}
			}
		}
	}
	if p.OOMScoreAdj != nil && (*p.OOMScoreAdj < -1000 || *p.OOMScoreAdj > 1000) {
		return invalid(f+".oomScoreAdj", "%d is outside -1000..1000", *p.OOMScoreAdj)
	}
	if p.IOPriority != nil {
		return invalid(f+".ioPriority", "not supported by berth-runtime yet")
	}
	if p.Scheduler != nil {
		return invalid(f+".scheduler", "not supported by berth-runtime yet")
	}
	if p.ExecCPUAffinity != nil {
		return invalid(f+".execCPUAffinity", "not supported by berth-runtime yet")
	}
	return nil
}

// capNames is built on first use, not at package init: most runtime
// commands never look at capabilities.
var capNames = sync.OnceValue(func() map[string]capability.Cap {
	m := map[string]capability.Cap{}
	for _, c := range capability.ListKnown() {
		m["CAP_"+strings.ToUpper(c.String())] = c
	}
	return m
})

func capByName(n string) (capability.Cap, error) {
	c, ok := capNames()[strings.ToUpper(n)]
	if !ok {
		return 0, fmt.Errorf("unknown capability %q", n)
	}
	return c, nil
}

func validateLinux(s *specs.Spec) error {
	l := s.Linux
	seen := map[specs.LinuxNamespaceType]bool{}
	hasUser := false
	for i, ns := range l.Namespaces {
		f := fmt.Sprintf("linux.namespaces[%d]", i)
		if _, ok := nsTypes[ns.Type]; !ok {
			return invalid(f+".type", "unknown namespace type %q", ns.Type)
		}
		if seen[ns.Type] {
			return invalid(f+".type", "namespace %s given twice", ns.Type)
		}
		seen[ns.Type] = true
		if ns.Type == specs.UserNamespace {
			hasUser = true
		}
		if ns.Path != "" {
			if !filepath.IsAbs(ns.Path) {
				return invalid(f+".path", "%q is not absolute", ns.Path)
			}
			if _, err := os.Stat(ns.Path); err != nil {
				return invalid(f+".path", "%v", err)
			}
		}
	}
	if hasUser && nsPath(l, specs.UserNamespace) == "" && (len(l.UIDMappings) == 0 || len(l.GIDMappings) == 0) {
		return invalid("linux.uidMappings", "a new user namespace needs uidMappings and gidMappings")
	}
	if !hasUser && (len(l.UIDMappings) > 0 || len(l.GIDMappings) > 0) {
		return invalid("linux.uidMappings", "mappings given without a user namespace")
	}
	if l.TimeOffsets != nil && !seen[specs.TimeNamespace] {
		return invalid("linux.timeOffsets", "given without a time namespace")
	}
	if s.Hostname != "" && !seen[specs.UTSNamespace] {
		return invalid("hostname", "setting the hostname needs a new uts namespace")
	}
	if s.Domainname != "" && !seen[specs.UTSNamespace] {
		return invalid("domainname", "setting the domainname needs a new uts namespace")
	}
	for k := range l.Sysctl {
		if err := sysctlAllowed(k, seen); err != nil {
			return invalid("linux.sysctl."+k, "%v", err)
		}
	}
	for i, d := range l.Devices {
		f := fmt.Sprintf("linux.devices[%d]", i)
		if !filepath.IsAbs(d.Path) {
			return invalid(f+".path", "%q is not absolute", d.Path)
		}
		switch d.Type {
		case "c", "u", "b", "p":
		default:
			return invalid(f+".type", "unknown device type %q", d.Type)
		}
	}
	switch l.RootfsPropagation {
	case "", "shared", "rshared", "slave", "rslave", "private", "rprivate", "unbindable", "runbindable":
	default:
		return invalid("linux.rootfsPropagation", "unknown propagation %q", l.RootfsPropagation)
	}
	if l.Seccomp != nil {
		if err := seccomp.Validate(l.Seccomp); err != nil {
			return err
		}
	}
	if l.IntelRdt != nil {
		return invalid("linux.intelRdt", "not supported by berth-runtime")
	}
	if len(l.NetDevices) > 0 {
		return invalid("linux.netDevices", "not supported by berth-runtime yet")
	}
	if l.Personality != nil {
		switch l.Personality.Domain {
		case specs.PerLinux, specs.PerLinux32:
		default:
			return invalid("linux.personality.domain", "unknown domain %q", l.Personality.Domain)
		}
	}
	return nil
}

func nsPath(l *specs.Linux, t specs.LinuxNamespaceType) string {
	for _, ns := range l.Namespaces {
		if ns.Type == t {
			return ns.Path
		}
	}
	return ""
}

func hasNS(l *specs.Linux, t specs.LinuxNamespaceType) bool {
	for _, ns := range l.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

// sysctlAllowed lets through only sysctls that belong to a namespace the
// container has, so a container never changes the host's kernel settings.
func sysctlAllowed(k string, ns map[specs.LinuxNamespaceType]bool) error {
	switch {
	case k == "kernel.msgmax" || k == "kernel.msgmnb" || k == "kernel.msgmni" || k == "kernel.sem" ||
		k == "kernel.shmall" || k == "kernel.shmmax" || k == "kernel.shmmni" || k == "kernel.shm_rmid_forced" ||
		strings.HasPrefix(k, "fs.mqueue."):
		if !ns[specs.IPCNamespace] {
			return errors.New("needs an ipc namespace")
		}
	case strings.HasPrefix(k, "net."):
		if !ns[specs.NetworkNamespace] {
			return errors.New("needs a network namespace")
		}
	case k == "kernel.hostname" || k == "kernel.domainname":
		if !ns[specs.UTSNamespace] {
			return errors.New("needs a uts namespace")
		}
	default:
		return errors.New("not a namespaced sysctl; it would change the host")
	}
	return nil
}

func validateHooks(h *specs.Hooks) error {
	for name, list := range map[string][]specs.Hook{"prestart": h.Prestart, "createRuntime": h.CreateRuntime,
		"createContainer": h.CreateContainer, "startContainer": h.StartContainer,
		"poststart": h.Poststart, "poststop": h.Poststop} {
		for i, hk := range list {
			f := fmt.Sprintf("hooks.%s[%d]", name, i)
			if !filepath.IsAbs(hk.Path) {
				return invalid(f+".path", "%q is not absolute", hk.Path)
			}
			if hk.Timeout != nil && *hk.Timeout <= 0 {
				return invalid(f+".timeout", "must be positive, got %d", *hk.Timeout)
			}
		}
	}
	return nil
}
