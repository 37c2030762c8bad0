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
cleanup() { $B rm -a -f >/dev/null 2>&1 || true; $PM rm -a -f -t 0 >/dev/null 2>&1 || true; }
trap cleanup EXIT
cleanup
for i in $(seq 1 "$n"); do $B run -d --network none "$ref" busybox sleep 600 >/dev/null; done
sleep 1
b=$(pss berth-monitor); bc_=$(pgrep -xc berth-monitor)
for i in $(seq 1 "$n"); do $PM run -d --runtime "$rt" --network none "$ref" busybox sleep 600 >/dev/null; done
sleep 1
c=$(pss conmon); cc=$(pgrep -xc conmon)
echo "machine: $(nproc) cores, $(uname -r); $(podman --version); conmon $(conmon --version | head -1 | awk '{print $3}')"
printf 'berth-monitor: %d processes, %d kB PSS in all, %.0f kB per container\n' "$bc_" "$b" "$(echo "$b/$bc_" | bc -l)"
printf 'conmon:        %d processes, %d kB PSS in all, %.0f kB per container\n' "$cc" "$c" "$(echo "$c/$cc" | bc -l)"
