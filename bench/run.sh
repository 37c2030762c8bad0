#!/usr/bin/env bash
# `berth run --rm IMAGE true` against `podman run --rm` from a warm store:
# the same busybox image (pushed to the local registry once), the same OCI
# runtime for both (berth-runtime, then runc), --network none for both,
# then each one's default network (berth: a CNI bridge; podman here:
# netavark's bridge) with berth-runtime; runs interleaved; medians. Needs podman and a registry on 127.0.0.1:5000
# (../shared/peers/setup.sh install, registry).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=$here/../shared
n=${N:-20}
work=${WORK:-/var/tmp/berth-run-bench}
ref=127.0.0.1:5000/bench/busybox:1
command -v podman >/dev/null || { echo "podman missing: run $shared/peers/setup.sh install" >&2; exit 2; }
curl -sf http://127.0.0.1:5000/v2/ >/dev/null || bash "$shared/peers/setup.sh" registry
mkdir -p "$work"
printf '[containers]\ndefault_ulimits = []\n' > "$work/containers.conf"
export CONTAINERS_CONF=$work/containers.conf
PM="podman --root $work/podman --runroot $work/podman-run --cgroup-manager cgroupfs --events-backend file"
B="$here/bin/berth --root $work/berth --runroot $work/berth-run"
if ! skopeo inspect --tls-verify=false "docker://$ref" >/dev/null 2>&1; then
  r=$(mktemp -d); mkdir -p "$r/bin" "$r/proc" "$r/dev" "$r/sys" "$r/tmp" "$r/etc"
  cp "$(command -v busybox)" "$r/bin/busybox"; for c in sh true echo; do ln -s busybox "$r/bin/$c"; done
  tar -C "$r" -cf "$work/rootfs.tar" . && rm -rf "$r"
  $PM import -q -c 'CMD ["/bin/sh"]' "$work/rootfs.tar" localhost/bench-busybox:1 >/dev/null
  $PM push -q --tls-verify=false localhost/bench-busybox:1 "docker://$ref"
fi
$PM pull -q --tls-verify=false "$ref" >/dev/null
$B pull -q "$ref" >/dev/null
now() { date +%s%N; }
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo "machine: $(nproc) cores, $(uname -r); $(podman --version); $n runs each, interleaved, medians"
for case in berth-runtime:none runc:none berth-runtime:default; do
  rt=${case%%:*}; net=${case#*:}
  rtpath=$here/bin/berth-runtime; [ "$rt" = runc ] && rtpath=$(command -v runc)
  netopt=(--network none); [ "$net" = default ] && netopt=()
  declare -A t=()
  for i in $(seq 1 "$n"); do
    s=$(now); $B run --rm --runtime "$rtpath" "${netopt[@]}" "$ref" true; e=$(now); t[berth]="${t[berth]:-} $(( (e - s) / 1000 ))"
    s=$(now); $PM run --rm --runtime "$rtpath" "${netopt[@]}" "$ref" true; e=$(now); t[podman]="${t[podman]:-} $(( (e - s) / 1000 ))"
  done
  b=$(echo "${t[berth]}" | median); p=$(echo "${t[podman]}" | median)
  printf 'runtime %-13s network %-7s berth %7.1f ms   podman %7.1f ms   berth/podman %.3f\n' "$rt" "$net" "$(echo "$b/1000" | bc -l)" "$(echo "$p/1000" | bc -l)" "$(echo "$b/$p" | bc -l)"
  unset t
done
