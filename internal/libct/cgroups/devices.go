package cgroups

import (
	devconfig "github.com/opencontainers/cgroups/devices/config"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultAllowedDevices returns the device rules every container gets after
// the configured ones, the same set runc appends (specconv.AllowedDevices):
// mknod of any char or block device (creating a node grants no access),
// /dev/null, zero, full, random, urandom, tty, ptmx (5:2), the pty slaves
// (136:*) and /dev/net/tun (10:200), all rwm. /dev/console (5:1) is not in
// runc's set: the container's console is a pty slave bind-mounted there.
// A fresh slice is returned, so callers may append to it.
func DefaultAllowedDevices() []specs.LinuxDeviceCgroup {
	wild := int64(-1)
	rule := func(typ string, major, minor int64, access string) specs.LinuxDeviceCgroup {
		r := specs.LinuxDeviceCgroup{Allow: true, Type: typ, Access: access}
		if major != wild {
			r.Major = &major
		}
		if minor != wild {
			r.Minor = &minor
		}
		return r
	}
	return []specs.LinuxDeviceCgroup{
		rule("c", wild, wild, "m"),
		rule("b", wild, wild, "m"),
		rule("c", 1, 3, "rwm"),      // /dev/null
		rule("c", 1, 8, "rwm"),      // /dev/random
		rule("c", 1, 7, "rwm"),      // /dev/full
		rule("c", 5, 0, "rwm"),      // /dev/tty
		rule("c", 1, 5, "rwm"),      // /dev/zero
		rule("c", 1, 9, "rwm"),      // /dev/urandom
		rule("c", 136, wild, "rwm"), // /dev/pts/*
		rule("c", 5, 2, "rwm"),      // /dev/ptmx
		rule("c", 10, 200, "rwm"),   // /dev/net/tun
	}
}

// deviceRules converts validated spec rules, keeping their order: the
// library replays them on an emulator, so the last matching rule wins as in
// the kernel, and v1's devices.list ends up exactly as configured.
func deviceRules(in []specs.LinuxDeviceCgroup) []*devconfig.Rule {
	out := make([]*devconfig.Rule, 0, len(in))
	for _, d := range in {
		r := &devconfig.Rule{
			Type:        devconfig.WildcardDevice,
			Major:       devconfig.Wildcard,
			Minor:       devconfig.Wildcard,
			Permissions: canonicalAccess(d.Access),
			Allow:       d.Allow,
		}
		if d.Type != "" {
			r.Type = devconfig.Type(d.Type[0])
		}
		if d.Major != nil {
			r.Major = *d.Major
		}
		if d.Minor != nil {
			r.Minor = *d.Minor
		}
		out = append(out, r)
	}
	return out
}

// canonicalAccess orders the letters as the kernel prints them ("rwm"):
// the library's emulator compares permissions as strings.
func canonicalAccess(a string) devconfig.Permissions {
	var out []byte
	for _, c := range []byte("rwm") {
		for i := 0; i < len(a); i++ {
			if a[i] == c {
				out = append(out, c)
				break
			}
		}
	}
	return devconfig.Permissions(out)
}
