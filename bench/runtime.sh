#!/usr/bin/env bash
# berth-runtime against crun and runc on one busybox bundle running /bin/true.
# Needs the peers (../shared/peers/setup.sh install); crun 1.8 refuses a
# hybrid cgroup host whose cgroup2 has controllers, so the peers' host step
# (hugetlb moved to a v1 mount) is applied first, as the peers need it here.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${N:-30}
for p in crun runc; do command -v $p >/dev/null || { echo "$p missing: run ../shared/peers/setup.sh install" >&2; exit 2; }; done
if [ -n "$(cat /sys/fs/cgroup/unified/cgroup.controllers 2>/dev/null)" ]; then
  mkdir -p /sys/fs/cgroup/hugetlb && mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
fi
b=$(mktemp -d /tmp/berth-bench.XXXXXX)
trap 'rm -rf "$b"' EXIT
mkdir -p "$b/rootfs/bin" "$b/rootfs/proc" "$b/rootfs/sys" "$b/rootfs/dev" "$b/rootfs/tmp"
cp "$(command -v busybox)" "$b/rootfs/bin/busybox"
ln -s busybox "$b/rootfs/bin/true"
ln -s busybox "$b/rootfs/bin/sh"
(cd "$b" && "$here/bin/berth-runtime" spec)
# crun 1.8 accepts ociVersion 1.0.x/1.1.x only; the config is 1.0-compatible.
sed -i 's/"ociVersion": "[^"]*"/"ociVersion": "1.0.2"/; s/"terminal": true/"terminal": false/; s/^\t\t\t"sh"$/\t\t\t"\/bin\/true"/' "$b/config.json"
echo "machine: $(nproc) cores, $(uname -r); $(crun --version | head -1); $(runc --version | head -1)"
go run "$here/bench/runtimebench" -n "$n" -bundle "$b" "$here/bin/berth-runtime" "$(command -v crun)" "$(command -v runc)"
