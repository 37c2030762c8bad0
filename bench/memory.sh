#!/usr/bin/env bash
# Memory each running container adds: 50 detached `sleep` containers with
# berth (one berth-monitor each) and with podman (one conmon each), the
# same image and runtime (berth-runtime); the sum of the monitors' PSS
# (/proc/PID/smaps_rollup) divided by the number of containers. Needs what
# bench/run.sh needs (it makes the image).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${N:-50}
work=${WORK:-/var/tmp/berth-run-bench}
ref=127.0.0.1:5000/bench/busybox:1
[ -d "$work/berth" ] || N=1 bash "$here/bench/run.sh" >/dev/null
export CONTAINERS_CONF=$work/containers.conf
PM="podman --root $work/podman --runroot $work/podman-run --cgroup-manager cgroupfs --events-backend file"
B="$here/bin/berth --root $work/berth --runroot $work/berth-run"
rt=$here/bin/berth-runtime
pss() { # sum of PSS in kB of the processes named $1
  local total=0
  for p in $(pgrep -x "$1"); do
    v=$(awk '/^Pss:/ {print $2}' /proc/$p/smaps_rollup 2>/dev/null || echo 0); total=$((total + ${v:-0}))
  done
  echo $total
}
# containerd: the private one of ../shared/peers/setup.sh, driven by ctr;
# one containerd-shim-runc-v2 per task, told to use the same runtime.
cd_dir=/run/peer-containerd
CTR="ctr --address $cd_dir/containerd.sock -n berth-memory-bench"
ctr_cleanup() {
  ctr --address "$cd_dir/containerd.sock" version >/dev/null 2>&1 || return 0
  for c in $($CTR containers ls -q 2>/dev/null); do
    $CTR tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
  done
  for c in $($CTR containers ls -q 2>/dev/null); do
    for _ in 1 2 3 4 5 6 7 8 9 10; do $CTR tasks rm -f "$c" >/dev/null 2>&1 && break; sleep 0.2; done
    $CTR containers rm "$c" >/dev/null 2>&1 || true
  done
}
cleanup() { $B rm -a -f >/dev/null 2>&1 || true; $PM rm -a -f -t 0 >/dev/null 2>&1 || true; ctr_cleanup; }
trap cleanup EXIT
cleanup
for i in $(seq 1 "$n"); do $B run -d --network none "$ref" busybox sleep 600 >/dev/null; done
sleep 1
b=$(pss berth-monitor); bc_=$(pgrep -xc berth-monitor)
for i in $(seq 1 "$n"); do $PM run -d --runtime "$rt" --network none "$ref" busybox sleep 600 >/dev/null; done
sleep 1
c=$(pss conmon); cc=$(pgrep -xc conmon)
$PM rm -a -f -t 0 >/dev/null 2>&1 || true
if ! ctr --address "$cd_dir/containerd.sock" version >/dev/null 2>&1; then
  rm -f "$cd_dir/containerd.sock" # a stale socket would pass for a started containerd
  bash "$here/../shared/peers/setup.sh" containerd "$cd_dir" >/dev/null
  for _ in $(seq 1 50); do ctr --address "$cd_dir/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.2; done
fi
$CTR images pull --plain-http "$ref" >/dev/null
for i in $(seq 1 "$n"); do $CTR run -d --runc-binary "$rt" "$ref" "bench$i" busybox sleep 600 >/dev/null; done
sleep 1
s=$(pss containerd-shim); sc=$(pgrep -xc containerd-shim || true) # comm is cut at 15 characters
echo "machine: $(nproc) cores, $(uname -r); $(podman --version); conmon $(conmon --version | head -1 | awk '{print $3}')"
printf 'berth-monitor: %d processes, %d kB PSS in all, %.0f kB per container\n' "$bc_" "$b" "$(echo "$b/$bc_" | bc -l)"
printf 'conmon:        %d processes, %d kB PSS in all, %.0f kB per container\n' "$cc" "$c" "$(echo "$c/$cc" | bc -l)"
printf 'containerd-shim-runc-v2 (containerd %s): %d processes, %d kB PSS in all, %.0f kB per container\n' "$(ctr --version | awk '{print $3}')" "$sc" "$s" "$(echo "$s/${sc:-1}" | bc -l)"
