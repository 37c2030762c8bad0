#!/usr/bin/env bash
# Runs the CRI validation suite (../shared/conformance/critest) against a
# berthd of its own: a fresh store, a registries.conf that maps the hosts
# critest names to the local registry, the fixture images pushed there.
# Usage: contrib/critest.sh [extra run-critest.sh args]; prints critest's
# last line ("critest: N passed, N failed, N skipped").
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
conf=$here/../shared/conformance/critest
work=${CRITEST_WORK:-/var/tmp/berth-critest}
reg=127.0.0.1:5000
curl -sf "http://$reg/v2/" >/dev/null || { echo "no registry on $reg" >&2; exit 2; }
curl -sf "http://$reg/v2/e2e-test-images/busybox/tags/list" >/dev/null || bash "$conf/push-images.sh" "$reg" >/dev/null
rm -rf "$work"; mkdir -p "$work"
bash "$here/contrib/critest-registries.sh" "$reg" > "$work/registries.conf"
: > "$work/berthd.toml"
sock=$work/berthd.sock
"$here/bin/berthd" --listen "unix://$sock" --root "$work/root" --runroot /run/berth-critest \
  --registries-conf "$work/registries.conf" --config "$work/berthd.toml" > "$work/berthd.log" 2>&1 &
pid=$!
cleanup() {
  "$here/bin/berth" --root "$work/root" --runroot /run/berth-critest system reset --force >/dev/null 2>&1 || true
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do [ -S "$sock" ] && break; sleep 0.1; done
cd "$work"
CRITEST_REPORT_DIR=$work/report bash "$conf/run-critest.sh" "unix://$sock" "$@" | tee "$work/critest.out" | tail -40
