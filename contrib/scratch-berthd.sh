# Sourced by contrib/critest.sh and bench/cri.sh: a berthd on a fresh
# store under WORK, with a registries.conf that maps the registries
# critest names (registry.k8s.io, k8s.gcr.io, gcr.io, public.ecr.aws) to
# the local registry REG over plain HTTP, keeping repository paths.
#   start_berthd HERE WORK RUNROOT REG   sets berthd_sock and berthd_pid
#   stop_berthd                          removes what it made, stops it
start_berthd() {
  local here=$1 work=$2 reg=$4
  berthd_here=$1 berthd_work=$2 berthd_runroot=$3
  rm -rf "$work/root"; mkdir -p "$work"
  {
    echo 'unqualified-search-registries = []'
    for h in registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws; do
      printf '[[registry]]\nprefix = "%s"\nlocation = "%s"\ninsecure = true\n' "$h" "$reg"
    done
  } > "$work/registries.conf"
  : > "$work/berthd.toml"
  berthd_sock=$work/berthd.sock
  "$here/bin/berthd" --listen "unix://$berthd_sock" --root "$work/root" --runroot "$berthd_runroot" \
    --registries-conf "$work/registries.conf" --config "$work/berthd.toml" > "$work/berthd.log" 2>&1 &
  berthd_pid=$!
  for _ in $(seq 1 100); do [ -S "$berthd_sock" ] && return 0; sleep 0.1; done
  echo "berthd did not start: $(tail -3 "$work/berthd.log")" >&2
  return 1
}

stop_berthd() {
  "$berthd_here/bin/berth" --root "$berthd_work/root" --runroot "$berthd_runroot" system reset --force >/dev/null 2>&1 || true
  kill "$berthd_pid" 2>/dev/null || true
  wait "$berthd_pid" 2>/dev/null || true
}
