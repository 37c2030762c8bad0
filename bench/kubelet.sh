#!/usr/bin/env bash
# berthd against containerd under a real kubelet (v1.34.4, standalone, built by
# ../shared/conformance/kubelet/build.sh), side by side: the time from a static
# pod's manifest appearing in the kubelet's manifest directory to its container
# running (crictl ps --state Running, polled every 50 ms), K pods (default 5)
# one after another on the pod network, each torn down before the next; two
# rounds alternating the servers; the image pulled before (the time is the
# kubelet's and the runtime's, not the registry's). Each server with its own
# default runtime: berthd + berth-runtime; containerd 1.6 + runc 1.1, the
# private instance of ../shared/peers/setup.sh. The kubelet's host changes
# are undone at the end as run-static-pods.sh does.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$here/../shared
k=${K:-5}
work=${WORK:-/var/tmp/berth-kubelet-bench}
reg=127.0.0.1:5000
img=registry.k8s.io/e2e-test-images/busybox:1.29-2
curl -sf "http://$reg/v2/e2e-test-images/busybox/tags/list" >/dev/null || bash "$shared/conformance/critest/push-images.sh" "$reg" >/dev/null
bash "$shared/conformance/kubelet/build.sh" >/dev/null
kubelet=${KUBELET_CACHE:-/var/cache/kubelet}/kubelet
crictl=$(command -v crictl)
rm -rf "$work"; mkdir -p "$work"
sysctls="vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes"
declare -A saved; for s in $sysctls; do saved[$s]=$(cat /proc/sys/$s); done
pre=""; for d in /var/lib/kubelet /var/log/pods /var/log/containers; do [ -e $d ] && pre="$pre $d"; done
cg_pre=$(ls -d /sys/fs/cgroup/*/kubepods 2>/dev/null || true)
. "$here/contrib/scratch-berthd.sh"
kpid=
undo_host() {
  for s in $sysctls; do echo "${saved[$s]}" > /proc/sys/$s; done
  if [ -z "$cg_pre" ]; then for d in /sys/fs/cgroup/*/kubepods; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null; done; fi
  for d in /var/lib/kubelet /var/log/pods /var/log/containers; do case " $pre " in *" $d "*) ;; *) rm -rf $d;; esac; done
}
stop_kubelet() {
  [ -n "$kpid" ] && kill -TERM "$kpid" 2>/dev/null && wait "$kpid" 2>/dev/null || true
  kpid=
  mountpoint -q "$work/kroot" && umount "$work/kroot" || true
}
trap 'stop_kubelet; [ -n "${berthd_pid:-}" ] && stop_berthd; undo_host' EXIT
trap 'exit 1' TERM INT

# measure LABEL ENDPOINT: K pods, prints "LABEL MS" per pod.
measure() {
  local label=$1 ep=$2 C="$crictl --runtime-endpoint $2 --image-endpoint $2"
  $C pull "$img" >/dev/null 2>&1
  rm -rf "$work/manifests" "$work/kroot"; mkdir -p "$work/manifests" "$work/kroot"
  cat > "$work/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
staticPodPath: $work/manifests
fileCheckFrequency: 2s
containerRuntimeEndpoint: $ep
cgroupDriver: cgroupfs
failSwapOn: false
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
address: 127.0.0.1
port: 10350
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10348
makeIPTablesUtilChains: false
volumePluginDir: $work/kroot/volume-plugins
oomScoreAdj: 0
resolvConf: /etc/resolv.conf
YAML
  "$kubelet" --config="$work/config.yaml" --root-dir="$work/kroot" --cert-dir="$work/kroot/pki" \
    --hostname-override=kubelet-bench --v=1 >"$work/kubelet-$label.log" 2>&1 </dev/null &
  kpid=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:10348/healthz >/dev/null && break; sleep 0.2; done
  sleep 3 # the kubelet's first syncs
  for i in $(seq 1 "$k"); do
    local name=kb-$i t0 t1
    cat > "$work/manifests/.$name.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: default, labels: {kubelet-bench: "1"}}
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: $img
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
YAML
    t0=$(date +%s%N); mv "$work/manifests/.$name.yaml" "$work/manifests/$name.yaml"
    local ok=
    for _ in $(seq 1 1200); do
      if [ -n "$($C ps -q --label io.kubernetes.pod.name=$name-kubelet-bench --state Running 2>/dev/null)" ]; then ok=1; break; fi
      sleep 0.05
    done
    t1=$(date +%s%N)
    [ -n "$ok" ] && echo "$label $(( (t1 - t0) / 1000000 ))" || echo "$label timeout"
    rm -f "$work/manifests/$name.yaml"
    for _ in $(seq 1 600); do [ -z "$($C pods -q --name "$name-kubelet-bench" --state Ready 2>/dev/null)" ] && break; sleep 0.1; done
  done
  stop_kubelet
  for p in $($C pods -q --label kubelet-bench=1 2>/dev/null); do $C stopp "$p" >/dev/null 2>&1; $C rmp "$p" >/dev/null 2>&1; done
}

cd_dir=/run/peer-containerd
start_containerd() {
  if ! ctr --address "$cd_dir/containerd.sock" version >/dev/null 2>&1; then
    rm -f "$cd_dir/containerd.sock"
    bash "$shared/peers/setup.sh" containerd "$cd_dir" >/dev/null
    for _ in $(seq 1 50); do ctr --address "$cd_dir/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.2; done
  fi
}
echo "machine: $(nproc) cores, $(uname -r); $("$kubelet" --version); containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | head -1 | awk '{print $3}'); $k pods per round, 2 rounds"
for round in 1 2; do
  start_berthd "$here" "$work/berthd" /run/berth-kubelet-bench "$reg"
  measure berthd "unix://$berthd_sock" | tee -a "$work/times"
  stop_berthd; berthd_pid=
  start_containerd
  measure containerd "unix://$cd_dir/containerd.sock" | tee -a "$work/times"
done
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
b=$(awk '$1=="berthd" && $2 != "timeout" {print $2}' "$work/times" | median)
c=$(awk '$1=="containerd" && $2 != "timeout" {print $2}' "$work/times" | median)
printf 'static pod, manifest to container running (median of %d): berthd %s ms   containerd %s ms   berthd/containerd %.2f\n' "$((2 * k))" "$b" "$c" "$(echo "$b/$c" | bc -l)"
