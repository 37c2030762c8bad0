#!/usr/bin/env bash
# Builds a busybox bundle from Debian's busybox-static and runs it through
# berth-runtime: the README's end-to-end job.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
rt=$here/bin/berth-runtime
bb=$(command -v busybox)
if ldd "$bb" >/dev/null 2>&1; then echo "$bb is not static: install busybox-static" >&2; exit 1; fi
b=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$b"' EXIT
mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/sys" "$b/rootfs/dev" "$b/rootfs/tmp" "$b/rootfs/etc"
cp "$bb" "$b/rootfs/bin/busybox"
for a in $("$b/rootfs/bin/busybox" --list); do [ "$a" = busybox ] || ln -s busybox "$b/rootfs/bin/$a"; done
echo 'root:x:0:0:root:/root:/bin/sh' > "$b/rootfs/etc/passwd"
cd "$b"
"$rt" spec
sed -i 's/"terminal": true/"terminal": false/; s/^\t\t\t"sh"$/\t\t\t"sh", "-c", "echo hello from $(hostname), pid $$; cat \/proc\/self\/cgroup | head -3"/' config.json
"$rt" --root "$b/state" run "demo-$$"
echo "exit code: $?"
