#!/usr/bin/env bash
# Runs a real kubelet (../shared/conformance/kubelet/run-static-pods.sh: static
# pods on the host and on the pod network, a restart, the teardown) against a
# berthd of its own, on a fresh store whose registries.conf maps registry.k8s.io
# to the local registry with the critest fixtures. Keeps the kubelet's log (the
# script removes its directory) in $work/kubelet.log and prints the CRI errors
# the kubelet logged. Last line: the script's "kubelet: N passed, N failed".
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$here/../shared/conformance
work=${KUBELET_WORK:-/var/tmp/berth-kubelet}
reg=127.0.0.1:5000
curl -sf "http://$reg/v2/" >/dev/null || { echo "no registry on $reg (../shared/peers/setup.sh registry)" >&2; exit 2; }
curl -sf "http://$reg/v2/e2e-test-images/busybox/tags/list" >/dev/null || bash "$shared/critest/push-images.sh" "$reg" >/dev/null
bash "$shared/kubelet/build.sh" >/dev/null
rm -rf "$work"
. "$here/contrib/scratch-berthd.sh"
start_berthd "$here" "$work" /run/berth-kubelet "$reg"
# The script's kubelet log lives in a directory it makes and removes: follow it.
touch "$work/start"
(
  for _ in $(seq 1 300); do
    d=$(find /tmp -maxdepth 1 -name 'kubelet-run.*' -newer "$work/start" | head -1)
    [ -n "$d" ] && [ -f "$d/kubelet.log" ] && exec tail -n +1 -F "$d/kubelet.log" 2>/dev/null
    sleep 0.1
  done
) > "$work/kubelet.log" &
tailer=$!
trap 'kill $tailer 2>/dev/null; stop_berthd' EXIT
bash "$shared/kubelet/run-static-pods.sh" "unix://$berthd_sock" | tee "$work/kubelet.out" | grep -v '^kubelet:' || true
sleep 0.5
# The kubelet's errors about the runtime: its CRI client's, and the calls it
# says failed (klog error lines naming the runtime service or an rpc error).
grep -E '^E[0-9]{4} ' "$work/kubelet.log" | grep -Ei 'rpc error|remote_runtime|remote_image|runtime service|CRI' > "$work/cri-errors.log" || true
echo "kubelet CRI errors: $(wc -l < "$work/cri-errors.log") (in $work/cri-errors.log)"
sed -n 's/^\(E[0-9]\{4\} [0-9:.]*\) *[0-9]* \([^]]*\]\) \(.\{0,200\}\).*/  \1 \2 \3/p' "$work/cri-errors.log" | head -20
tail -1 "$work/kubelet.out"
