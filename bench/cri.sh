#!/usr/bin/env bash
# berthd against containerd (CRI), side by side on this machine: N pods
# (default 100), each with one busybox container, run, created, started,
# then with all up the memory of the daemon and of the processes the pods
# added, then stopped and removed; p50/p99 per CRI call (bench/cribench).
# Each server with its own default runtime (berthd: berth-runtime;
# containerd 1.6: runc 1.1, through ../shared/peers/setup.sh's private
# instance). Images: critest's fixtures in the local registry.
# Then critest's -benchmark mode for both (CRITEST_BENCH=0 skips it).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$here/../shared
n=${N:-100}
work=${WORK:-/var/tmp/berth-cri-bench}
reg=127.0.0.1:5000
curl -sf "http://$reg/v2/e2e-test-images/busybox/tags/list" >/dev/null || bash "$shared/conformance/critest/push-images.sh" "$reg" >/dev/null
go build -o "$work/cribench" "$here/bench/cribench" 2>/dev/null || { mkdir -p "$work"; go build -o "$work/cribench" "$here/bench/cribench"; }

# berthd on a store of its own.
. "$here/contrib/scratch-berthd.sh"
trap stop_berthd EXIT
start_berthd "$here" "$work" /run/berth-cri-bench "$reg"
sock=$berthd_sock bpid=$berthd_pid
echo "machine: $(nproc) cores, $(uname -r); containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | head -1 | awk '{print $3}')"
"$work/cribench" -endpoint "unix://$sock" -n "$n" -label "berthd + berth-runtime" -server-pids "$bpid"
[ "${CRITEST_BENCH:-1}" = 0 ] || CRITEST_REPORT_DIR=$work/critest-berthd bash "$shared/conformance/critest/run-critest.sh" "unix://$sock" -benchmark 2>&1 | sed -n '/^benchmark/,$p'
stop_berthd; trap - EXIT

# containerd: the private reference instance.
cd_dir=/run/peer-containerd
if ! ctr --address "$cd_dir/containerd.sock" version >/dev/null 2>&1; then
  rm -f "$cd_dir/containerd.sock"
  bash "$shared/peers/setup.sh" containerd "$cd_dir" >/dev/null
  for _ in $(seq 1 50); do ctr --address "$cd_dir/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.2; done
fi
cpid=$(pgrep -f "containerd --config $cd_dir/config.toml" | head -1)
"$work/cribench" -endpoint "unix://$cd_dir/containerd.sock" -n "$n" -label "containerd + runc" -server-pids "$cpid"
[ "${CRITEST_BENCH:-1}" = 0 ] || CRITEST_REPORT_DIR=$work/critest-containerd bash "$shared/conformance/critest/run-critest.sh" "unix://$cd_dir/containerd.sock" -benchmark 2>&1 | sed -n '/^benchmark/,$p'
