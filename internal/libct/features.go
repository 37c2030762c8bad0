package libct

import (
	"sort"

	"github.com/berthdev/berth/internal/libct/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

// Features reports what this runtime implements, for `features`.
func Features() *features.Features {
	t := true
	var hooks []string
	for _, h := range []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"} {
		hooks = append(hooks, h)
	}
	var opts []string
	for o := range flagOpts {
		opts = append(opts, o)
	}
	for o := range propOpts {
		opts = append(opts, o)
	}
	opts = append(opts, "bind", "rbind")
	sort.Strings(opts)
	var ns []string
	for n := range nsTypes {
		ns = append(ns, string(n))
	}
	sort.Strings(ns)
	var caps []string
	for c := range capNames() {
		caps = append(caps, c)
	}
	sort.Strings(caps)
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         hooks,
		MountOptions:  opts,
		Linux: &features.Linux{
			Namespaces:      ns,
			Capabilities:    caps,
			Cgroup:          &features.Cgroup{V1: &t, V2: &t, Systemd: new(bool), SystemdUser: new(bool)},
			Seccomp:         seccomp.Features(),
			Apparmor:        &features.Apparmor{Enabled: &t},
			Selinux:         &features.Selinux{Enabled: new(bool)},
			IntelRdt:        &features.IntelRdt{Enabled: new(bool)},
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: new(bool)}},
		},
		Annotations: map[string]string{"org.opencontainers.runtime-spec.features": "berth-runtime"},
	}
}
