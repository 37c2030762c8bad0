#!/usr/bin/env bash
# Cold pull of the synthetic benchmark image (bench/imagegen: 5 gzip layers,
# ~600 MB unpacked) from the local registry on 127.0.0.1:5000, side by side:
# berth pull, podman pull, containerd (ctr images pull, unpacked into its
# overlayfs snapshotter) and skopeo copy to an OCI layout (no unpacking).
# Each run starts from an empty store on a freshly made ext4 file system (a
# loop file): on a file system that has just deleted tens of thousands of
# files, ext4 spends seconds skipping recently freed inodes, whichever tool
# runs. Runs are interleaved; medians are printed with each peer's ratio to
# berth, and the disk each store uses.
# Needs the peers and a registry: ../shared/peers/setup.sh install, registry.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$here/../shared
n=${N:-5}
work=${WORK:-/var/tmp/berth-pull-bench}
ref=127.0.0.1:5000/bench/synth:1
for p in podman skopeo ctr containerd; do command -v $p >/dev/null || { echo "$p missing: run $shared/peers/setup.sh install" >&2; exit 2; }; done
curl -sf http://127.0.0.1:5000/v2/ >/dev/null || bash "$shared/peers/setup.sh" registry
mkdir -p "$work"

# The image, made once and pushed once.
if [ ! -f "$work/layout/index.json" ]; then
  rm -rf "$work/layout"
  go run "$here/bench/imagegen" -out "$work/layout"
fi
if ! skopeo inspect --tls-verify=false "docker://$ref" >/dev/null 2>&1; then
  skopeo copy -q --dest-tls-verify=false "oci:$work/layout:latest" "docker://$ref"
fi

pm_conf=$work/containers.conf
printf '[containers]\ndefault_ulimits = []\n' > "$pm_conf"
mnt=$work/mnt
cdir=$mnt/containerd
CTR="ctr -a $cdir/containerd.sock -n bench"
cpid=""
truncate -s 16G "$work/fs.img"
stop_containerd() {
  if [ -n "$cpid" ]; then kill "$cpid" 2>/dev/null || true; while kill -0 "$cpid" 2>/dev/null; do sleep 0.1; done; cpid=""; fi
}
# fresh: a new empty file system at $mnt, and for containerd its daemon on it.
fresh() {
  stop_containerd
  umount "$mnt" 2>/dev/null || true
  mkfs.ext4 -q -F -E nodiscard "$work/fs.img"
  mkdir -p "$mnt" && mount -o loop "$work/fs.img" "$mnt"
  if [ "$1" = containerd ]; then
    cpid=$(bash "$shared/peers/setup.sh" containerd "$cdir" | tail -1)
    for i in $(seq 1 100); do ctr -a "$cdir/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  fi
  sync
}
trap 'stop_containerd; umount "$mnt" 2>/dev/null || true' EXIT

now() { date +%s%N; }
pull() {
  case $1 in
  berth) "$here/bin/berth" --root "$mnt/berth" --runroot "$work/berth-run" pull -q "$ref" >/dev/null ;;
  podman) CONTAINERS_CONF=$pm_conf podman --root "$mnt/podman" --runroot "$work/podman-run" --storage-driver overlay \
            pull -q --tls-verify=false "$ref" >/dev/null ;;
  containerd) $CTR images pull --plain-http "$ref" >/dev/null ;;
  skopeo) skopeo copy -q --src-tls-verify=false "docker://$ref" "oci:$mnt/skopeo:latest" ;;
  berth-copy) "$here/bin/berth" --root "$mnt/berth-store" --runroot "$work/berth-run" image copy -q "docker://$ref" "oci:$mnt/berth-copy:latest" ;;
  esac
}
usage() {
  case $1 in
  containerd) du -sxb "$cdir/root" | cut -f1 ;;
  *) du -sxb "$mnt/$1" | cut -f1 ;;
  esac
}

# berth pull against the peers that pull and unpack; berth image copy to
# an OCI layout against skopeo copy, the same job (no unpacking).
tools=${TOOLS:-berth podman containerd berth-copy skopeo}
declare -A times disk
for i in $(seq 1 "$n"); do
  for t in $tools; do
    fresh "$t"
    s=$(now); pull "$t"; e=$(now)
    times[$t]="${times[$t]:-} $(( (e - s) / 1000000 ))"
    disk[$t]=$(usage "$t")
  done
done
stop_containerd
umount "$mnt"
rm -f "$work/fs.img"

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
echo "machine: $(nproc) cores, $(uname -r); $(podman --version); containerd $(containerd --version | awk '{print $3}'); $(skopeo --version)"
echo "image: $ref (bench/imagegen defaults), $n cold pulls each into a fresh ext4, interleaved"
printf '%-11s %10s %14s %12s %s\n' tool median_ms vs_berth disk_MB runs_ms
for t in $tools; do
  m=$(echo "${times[$t]}" | median)
  base=berth; case $t in skopeo|berth-copy) base=berth-copy ;; esac
  ratio=-; [ -n "${times[$base]:-}" ] && ratio=$(printf '%.2fx %s' "$(echo "$m / $(echo "${times[$base]}" | median)" | bc -l)" "$base")
  printf '%-11s %10d %14s %12d %s\n' "$t" "$m" "$ratio" $(( ${disk[$t]} / 1000000 )) "${times[$t]}"
done
