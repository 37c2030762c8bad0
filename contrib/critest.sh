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
rm -rf "$work"
. "$here/contrib/scratch-berthd.sh"
trap stop_berthd EXIT
start_berthd "$here" "$work" /run/berth-critest "$reg"
sock=$berthd_sock
cd "$work"
CRITEST_REPORT_DIR=$work/report bash "$conf/run-critest.sh" "unix://$sock" "$@" | tee "$work/critest.out" | tail -40
