// Package specgen turns an image's config and the options of `berth run`
// into an OCI runtime spec: the process (command, environment, user and
// groups from the image's own /etc/passwd and /etc/group, working
// directory, terminal, rlimits), the default confinement (capabilities,
// masked and read-only paths, no new privileges on request), namespaces,
// mounts and resources. It reads the container's root file system but
// changes nothing.
package specgen

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/berthdev/berth/internal/errdefs"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Options are what a run asks for on top of the image.
type Options struct {
	ID    string
	Image v1.ImageConfig
	// Rootfs is the container's mounted root file system (read for users
	// and groups).
	Rootfs string
	// Entrypoint replaces the image's when EntrypointSet (an empty one
	// clears it); Args replace the image's Cmd when given.
	Entrypoint    []string
	EntrypointSet bool
	Args          []string
	Env           []string // KEY=VALUE, or KEY to take the value from HostEnv
	HostEnv       func(string) (string, bool)
	WorkDir       string
	User          string
	Hostname      string
	TTY, Stdin    bool
	ConsoleSize   *specs.Box // the terminal's size at the start, with TTY
	ReadOnly      bool
	Privileged    bool
	CapAdd        []string
	CapDrop       []string
	NoNewPrivs    bool
	// Seccomp is "" for the default profile (none when Privileged),
	// "unconfined", or the path of a profile (the spec's linux.seccomp
	// object, as JSON).
	Seccomp string
	// Network is "" (a new network namespace), "host", or a namespace path.
	Network string
	// Files are bind-mounted files the engine prepared (/etc/hosts,
	// /etc/resolv.conf, /etc/hostname), destination -> host path.
	Files  map[string]string
	Mounts []specs.Mount
	// Resources; zero means no limit.
	Memory     int64
	CPUs       float64
	PidsLimit  int64
	Rlimits    []specs.POSIXRlimit
	CgroupPath string
	Labels     map[string]string
	// Init is the host path of an init (catatonit) to run as PID 1 in
	// front of the command, bound read-only at InitPath; "" for none.
	Init string
	// Namespaces other than the network's to share: by type, "host"
	// (none of its own) or a path to join; a type not named gets a new
	// one. A CRI pod's containers join its infra container's.
	Namespaces map[specs.LinuxNamespaceType]string
	// What the CRI sets beyond a run's options.
	Devices        []specs.LinuxDevice
	Sysctls        map[string]string
	OOMScoreAdj    *int
	AdditionalGIDs []uint32
	// MaskedPaths and ReadonlyPaths replace the defaults when not nil.
	MaskedPaths, ReadonlyPaths *[]string
	// Resources, when set, are the container's (Memory, CPUs and
	// PidsLimit are then unused).
	Resources         *specs.LinuxResources
	Annotations       map[string]string
	RootfsPropagation string
}

// InitPath is where Options.Init appears in the container (podman's is
// /run/podman-init): under /run, away from the image's own files.
const InitPath = "/run/berth-init"

// Version is the ociVersion written: what is generated uses only fields
// of runtime-spec 1.0.2, and runtimes such as crun 1.8 refuse a version
// newer than they know.
const Version = "1.0.2-dev"

// DefaultCapabilities are podman's: what most images need, without the
// ones that reach the host (SYS_ADMIN, NET_ADMIN, SYS_MODULE, ...).
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_NET_BIND_SERVICE",
	"CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID", "CAP_SYS_CHROOT",
}

var maskedPaths = []string{
	"/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
	"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/fs/selinux", "/sys/dev/block",
}

var readonlyPaths = []string{
	"/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

// Generate builds the spec.
func Generate(o Options) (*specs.Spec, error) {
	args, err := command(o)
	if err != nil {
		return nil, err
	}
	if o.Init != "" {
		// "--" so that the command's own options are not the init's.
		args = append([]string{InitPath, "--"}, args...)
	}
	uid, gid, groups, home, err := resolveUser(o.Rootfs, firstNonEmpty(o.User, o.Image.User))
	if err != nil {
		return nil, err
	}
	env, err := environment(o, home)
	if err != nil {
		return nil, err
	}
	caps, err := capabilities(o)
	if err != nil {
		return nil, err
	}
	hostname := o.Hostname
	if hostname == "" && o.Network != "host" {
		hostname = shortID(o.ID)
	}
	if o.Namespaces[specs.UTSNamespace] != "" {
		hostname = "" // the shared namespace has its name; a runtime refuses to set one there
	}
	s := &specs.Spec{
		Version: Version,
		Root:    &specs.Root{Path: o.Rootfs, Readonly: o.ReadOnly},
		Process: &specs.Process{
			Terminal:    o.TTY,
			ConsoleSize: consoleSize(o),
			Args:        args,
			Env:         env,
			Cwd:         firstNonEmpty(o.WorkDir, o.Image.WorkingDir, "/"),
			User:        specs.User{UID: uid, GID: gid, AdditionalGids: appendNew(groups, o.AdditionalGIDs)},
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: o.NoNewPrivs,
			Rlimits:         o.Rlimits,
			OOMScoreAdj:     o.OOMScoreAdj,
		},
		Hostname:    hostname,
		Mounts:      mounts(o),
		Annotations: annotations(o),
		Linux: &specs.Linux{
			CgroupsPath: o.CgroupPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			Resources: resources(o),
		},
	}
	if !strings.HasPrefix(s.Process.Cwd, "/") {
		return nil, fmt.Errorf("working directory %q: must be absolute: %w", s.Process.Cwd, errdefs.ErrInvalidArgument)
	}
	switch o.Network {
	case "":
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	case "host":
	default:
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: o.Network})
	}
	if o.Network != "host" {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UTSNamespace})
	}
	for t, mode := range o.Namespaces {
		i := slices.IndexFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
		switch {
		case mode == "host" && i >= 0:
			s.Linux.Namespaces = slices.Delete(s.Linux.Namespaces, i, i+1)
		case mode != "host" && i >= 0:
			s.Linux.Namespaces[i].Path = mode
		case mode != "host":
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t, Path: mode})
		}
	}
	s.Linux.Devices = o.Devices
	s.Linux.Sysctl = o.Sysctls
	s.Linux.RootfsPropagation = o.RootfsPropagation
	if s.Linux.Seccomp, err = seccompProfile(o, caps); err != nil {
		return nil, err
	}
	if o.Privileged {
		s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	} else {
		s.Linux.MaskedPaths = slices.Clone(maskedPaths)
		s.Linux.ReadonlyPaths = slices.Clone(readonlyPaths)
		for _, d := range o.Devices { // a device given is a device allowed
			major, minor := d.Major, d.Minor
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: "rwm"})
		}
	}
	if o.MaskedPaths != nil {
		s.Linux.MaskedPaths = *o.MaskedPaths
	}
	if o.ReadonlyPaths != nil {
		s.Linux.ReadonlyPaths = *o.ReadonlyPaths
	}
	return s, nil
}

func seccompProfile(o Options, caps []string) (*specs.LinuxSeccomp, error) {
	switch {
	case o.Seccomp == "unconfined", o.Seccomp == "" && o.Privileged:
		return nil, nil
	case o.Seccomp == "":
		return DefaultSeccomp(caps), nil
	}
	data, err := os.ReadFile(o.Seccomp)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	var p specs.LinuxSeccomp
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %v: %w", o.Seccomp, err, errdefs.ErrInvalidArgument)
	}
	if p.DefaultAction == "" {
		return nil, fmt.Errorf("seccomp profile %s: no defaultAction: %w", o.Seccomp, errdefs.ErrInvalidArgument)
	}
	return &p, nil
}

// command is docker's rule: an --entrypoint replaces the image's and drops
// its Cmd; arguments replace Cmd.
func command(o Options) ([]string, error) {
	entry, cmd := o.Image.Entrypoint, o.Image.Cmd
	if o.EntrypointSet {
		entry, cmd = o.Entrypoint, nil
	}
	if len(o.Args) > 0 {
		cmd = o.Args
	}
	args := append(slices.Clone(entry), cmd...)
	if len(args) == 0 || args[0] == "" {
		return nil, fmt.Errorf("no command: the image has no entrypoint or command; give one after the image: %w", errdefs.ErrInvalidArgument)
	}
	return args, nil
}

func environment(o Options, home string) ([]string, error) {
	var env []string
	set := func(kv string) {
		k, _, _ := strings.Cut(kv, "=")
		env = slices.DeleteFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		env = append(env, kv)
	}
	set("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	if o.TTY {
		set("TERM=xterm")
	}
	for _, e := range o.Image.Env {
		set(e)
	}
	if home != "" && !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "HOME=") }) {
		set("HOME=" + home)
	}
	if o.Hostname != "" || o.Network != "host" {
		set("HOSTNAME=" + firstNonEmpty(o.Hostname, shortID(o.ID)))
	}
	for _, e := range o.Env {
		k, _, hasValue := strings.Cut(e, "=")
		if k == "" {
			return nil, fmt.Errorf("environment %q: no name: %w", e, errdefs.ErrInvalidArgument)
		}
		if !hasValue {
			if o.HostEnv == nil {
				continue
			}
			v, ok := o.HostEnv(k)
			if !ok {
				continue // docker's rule: an unset host variable is left out
			}
			e = k + "=" + v
		}
		set(e)
	}
	return env, nil
}

// capabilities: the default set (all for --privileged), then --cap-add and
// --cap-drop ("ALL" allowed in both), names with or without "CAP_".
func capabilities(o Options) ([]string, error) {
	caps := slices.Clone(DefaultCapabilities)
	if o.Privileged {
		caps = hostCapabilities()
	}
	norm := func(c string) (string, error) {
		c = strings.ToUpper(c)
		if c == "ALL" {
			return c, nil
		}
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if !slices.Contains(allCapabilities, c) {
			return "", fmt.Errorf("unknown capability %q: %w", c, errdefs.ErrInvalidArgument)
		}
		return c, nil
	}
	for _, c := range o.CapDrop {
		c, err := norm(c)
		if err != nil {
			return nil, err
		}
		if c == "ALL" {
			caps = nil
			continue
		}
		caps = slices.DeleteFunc(caps, func(x string) bool { return x == c })
	}
	for _, c := range o.CapAdd {
		c, err := norm(c)
		if err != nil {
			return nil, err
		}
		if c == "ALL" {
			caps = hostCapabilities()
			continue
		}
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps, nil
}

var allCapabilities = []string{
	"CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
	"CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_MODULE", "CAP_SYS_NICE", "CAP_SYS_PACCT",
	"CAP_SYS_PTRACE", "CAP_SYS_RAWIO", "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_SYSLOG", "CAP_WAKE_ALARM",
}

// hostCapabilities are the capabilities of our own bounding set: what
// "all" can mean (a host, or a sandbox around it, may hold some back, as
// this project's machines hold back CAP_SYS_RESOURCE; asking for one the
// runtime cannot have fails the container).
func hostCapabilities() []string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return slices.Clone(allCapabilities)
	}
	for _, line := range strings.Split(string(data), "\n") {
		v, ok := strings.CutPrefix(line, "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			break
		}
		var out []string
		for _, c := range allCapabilities {
			if n, ok := capNumbers[c]; ok && mask&(1<<n) != 0 {
				out = append(out, c)
			}
		}
		return out
	}
	return slices.Clone(allCapabilities)
}

// capNumbers are the capabilities' bit numbers (linux/capability.h).
var capNumbers = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
	"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10,
	"CAP_NET_BROADCAST": 11, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_PACCT": 20,
	"CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
	"CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27, "CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30,
	"CAP_SETFCAP": 31, "CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39, "CAP_CHECKPOINT_RESTORE": 40,
}

func mounts(o Options) []specs.Mount {
	ms := []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
	}
	if !gidMapped(5) {
		// In a user namespace without group 5 (tty) mapped, as a user
		// with no subgid range, devpts refuses gid=5.
		ms[2].Options = slices.DeleteFunc(slices.Clone(ms[2].Options), func(o string) bool { return o == "gid=5" })
	}
	if o.Network == "host" {
		// sysfs of the host's network namespace cannot be mounted anew.
		ms[5] = specs.Mount{Destination: "/sys", Type: "bind", Source: "/sys", Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
	}
	for _, dst := range slices.Sorted(maps.Keys(o.Files)) {
		ms = append(ms, specs.Mount{Destination: dst, Type: "bind", Source: o.Files[dst], Options: []string{"bind", "rprivate"}})
	}
	if o.Init != "" {
		ms = append(ms, specs.Mount{Destination: InitPath, Type: "bind", Source: o.Init, Options: []string{"bind", "rprivate", "ro", "nosuid", "nodev"}})
	}
	return append(ms, o.Mounts...)
}

func annotations(o Options) map[string]string {
	if len(o.Annotations) == 0 {
		return o.Labels
	}
	out := maps.Clone(o.Labels)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, o.Annotations)
	return out
}

func appendNew(a, b []uint32) []uint32 {
	for _, x := range b {
		if !slices.Contains(a, x) {
			a = append(a, x)
		}
	}
	return a
}

func resources(o Options) *specs.LinuxResources {
	if o.Resources != nil {
		r := *o.Resources
		r.Devices = append([]specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}, r.Devices...)
		return &r
	}
	r := &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}
	if o.Memory > 0 {
		m := o.Memory
		r.Memory = &specs.LinuxMemory{Limit: &m}
	}
	if o.CPUs > 0 {
		period := uint64(100000)
		quota := int64(o.CPUs * float64(period))
		r.CPU = &specs.LinuxCPU{Period: &period, Quota: &quota}
	}
	if o.PidsLimit != 0 {
		n := o.PidsLimit
		r.Pids = &specs.LinuxPids{Limit: &n}
	}
	return r
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// gidMapped reports whether gid exists in this process's user namespace:
// always in the initial one; in another, if its gid_map covers it.
func gidMapped(gid uint32) bool {
	data, err := os.ReadFile("/proc/self/gid_map")
	if err != nil {
		return true
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		start, err1 := strconv.ParseUint(f[0], 10, 32)
		n, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 == nil && err2 == nil && uint64(gid) >= start && uint64(gid) < start+n {
			return true
		}
	}
	return false
}

func consoleSize(o Options) *specs.Box {
	if !o.TTY {
		return nil
	}
	return o.ConsoleSize
}
