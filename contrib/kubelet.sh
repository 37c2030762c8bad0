#!/usr/bin/env bash
# Runs a real kubelet (../shared/conformance/kubelet/run-static-pods.sh: static
# pods on the host and on the pod network, a restart, the teardown) against a
# berthd of its own, on a fresh store whose registries.conf maps registry.k8s.io
# to the local registry with the critest fixtures. Keeps the kubelet's log (the
# script removes its directory) in $work/kubelet.log and prints the CRI errors
# the kubelet logged, and checks, once both pods run, that the kubelet's stats
# summary (/stats/summary, built from berthd's container stats) has their
# containers' CPU, memory, root file system and log numbers. Last line: the
# script's "kubelet: N passed, N failed". With KUBELET_ENDPOINT (another CRI
# server's socket, e.g. ../shared/peers/setup.sh's containerd) it runs the same
# against that server instead, for the comparison in docs/conformance.md.
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
if [ -n "${KUBELET_ENDPOINT:-}" ]; then
  mkdir -p "$work"; ep=$KUBELET_ENDPOINT; stop_berthd() { :; }
else
  start_berthd "$here" "$work" /run/berth-kubelet "$reg"; ep=unix://$berthd_sock
fi
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
# The kubelet's stats summary while both pods run: read until both pods'
# containers have figures (the script stops one of them early on, to see
# the kubelet restart it), or the run ends.
cat > "$work/summary.py" <<'PY'
import json, sys
try:
    pods = json.load(open(sys.argv[1])).get("pods", [])
except (OSError, ValueError):
    pods = []
ok = sorted(p["podRef"]["name"] for p in pods for c in p.get("containers", [])
            if c.get("cpu", {}).get("usageCoreNanoSeconds", 0) > 0 and c.get("memory", {}).get("workingSetBytes", 0) > 0
            and "usedBytes" in c.get("rootfs", {}) and "usedBytes" in c.get("logs", {}))
print("kubelet stats summary: %s (containers with CPU, memory, rootfs and log figures: %s)"
      % ("ok" if len(ok) >= 2 else "not ok", ", ".join(ok) or "none"))
sys.exit(0 if len(ok) >= 2 else 1)
PY
(
  for _ in $(seq 1 240); do
    if [ "$(crictl --runtime-endpoint "$ep" ps -q --state Running 2>/dev/null | wc -l)" -ge 2 ] &&
      curl -sk https://127.0.0.1:10350/stats/summary > "$work/summary.json.new" 2>/dev/null; then
      mv "$work/summary.json.new" "$work/summary.json"
      python3 "$work/summary.py" "$work/summary.json" >/dev/null && break
    fi
    sleep 0.5
  done
) &
summary=$!
trap 'kill $tailer $summary 2>/dev/null; stop_berthd' EXIT
bash "$shared/kubelet/run-static-pods.sh" "$ep" | tee "$work/kubelet.out" | grep -v '^kubelet:' || true
sleep 0.5
# The kubelet's errors about the runtime: its CRI client's, and the calls it
# says failed (klog error lines naming the runtime service or an rpc error).
grep -E '^E[0-9]{4} ' "$work/kubelet.log" | grep -Ei 'rpc error|remote_runtime|remote_image|runtime service|CRI' > "$work/cri-errors.log" || true
echo "kubelet CRI errors: $(wc -l < "$work/cri-errors.log") (in $work/cri-errors.log)"
sed -n 's/^\(E[0-9]\{4\} [0-9:.]*\) *[0-9]* \([^]]*\]\) \(.\{0,200\}\).*/  \1 \2 \3/p' "$work/cri-errors.log" | head -20
python3 "$work/summary.py" "$work/summary.json" || true
tail -1 "$work/kubelet.out"
