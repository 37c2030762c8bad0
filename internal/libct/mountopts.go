package libct

import (
	"strings"

	"golang.org/x/sys/unix"
)

// mountOpts is a spec mount's options split the way mount(2) wants them.
type mountOpts struct {
	flags     uintptr // MS_* for the mount itself
	clear     uintptr // flags the options switch off (rw, suid, ...)
	propagate []uintptr
	data      []string // file system specific options
	bind      bool
	recursive bool
	// recursiveRO: "rro" (runtime-spec 1.1), read-only submounts too;
	// plain "ro" is the mount's alone, as in runc.
	recursiveRO bool
}

var flagOpts = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro": {false, unix.MS_RDONLY}, "rw": {true, unix.MS_RDONLY},
	"nosuid": {false, unix.MS_NOSUID}, "suid": {true, unix.MS_NOSUID},
	"nodev": {false, unix.MS_NODEV}, "dev": {true, unix.MS_NODEV},
	"noexec": {false, unix.MS_NOEXEC}, "exec": {true, unix.MS_NOEXEC},
	"sync": {false, unix.MS_SYNCHRONOUS}, "async": {true, unix.MS_SYNCHRONOUS},
	"dirsync": {false, unix.MS_DIRSYNC}, "remount": {false, unix.MS_REMOUNT},
	"mand": {false, unix.MS_MANDLOCK}, "nomand": {true, unix.MS_MANDLOCK},
	"noatime": {false, unix.MS_NOATIME}, "atime": {true, unix.MS_NOATIME},
	"nodiratime": {false, unix.MS_NODIRATIME}, "diratime": {true, unix.MS_NODIRATIME},
	"relatime": {false, unix.MS_RELATIME}, "norelatime": {true, unix.MS_RELATIME},
	"strictatime": {false, unix.MS_STRICTATIME}, "nostrictatime": {true, unix.MS_STRICTATIME},
	"lazytime": {false, unix.MS_LAZYTIME}, "nolazytime": {true, unix.MS_LAZYTIME},
	"silent": {false, unix.MS_SILENT}, "loud": {true, unix.MS_SILENT},
}

var propOpts = map[string]uintptr{
	"private": unix.MS_PRIVATE, "rprivate": unix.MS_PRIVATE | unix.MS_REC,
	"shared": unix.MS_SHARED, "rshared": unix.MS_SHARED | unix.MS_REC,
	"slave": unix.MS_SLAVE, "rslave": unix.MS_SLAVE | unix.MS_REC,
	"unbindable": unix.MS_UNBINDABLE, "runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

func parseMountOpts(typ string, options []string) mountOpts {
	var o mountOpts
	if typ == "bind" {
		o.bind = true
	}
	for _, opt := range options {
		if f, ok := flagOpts[opt]; ok {
			if f.clear {
				o.flags &^= f.flag
				o.clear |= f.flag
			} else {
				o.flags |= f.flag
				o.clear &^= f.flag
			}
			continue
		}
		if p, ok := propOpts[opt]; ok {
			o.propagate = append(o.propagate, p)
			continue
		}
		switch opt {
		case "bind":
			o.bind = true
		case "rbind":
			o.bind, o.recursive = true, true
		case "rro":
			o.flags |= unix.MS_RDONLY
			o.clear &^= unix.MS_RDONLY
			o.recursiveRO = true
		case "":
		default:
			o.data = append(o.data, opt)
		}
	}
	return o
}

func (o mountOpts) dataString() string { return strings.Join(o.data, ",") }

// propagationFlag maps the spec's rootfsPropagation to a mount flag.
func propagationFlag(p string) uintptr { return propOpts[p] }
