#!/usr/bin/env bash
# Rootless `berth run --rm IMAGE true` against rootless `podman run --rm`,
# as an unprivileged user (made if missing, with a subuid range), the same
# image and the same OCI runtime (berth-runtime), warm stores, interleaved,
# medians: with --network none, and with each tool's default network
# (slirp4netns for both); then the published-port throughput of both.
# As root: it makes the user and copies the binaries where the user may
# run them. slirp4netns needs /dev/net/tun, which these machines make 0600
# (root's alone; Debian's usual mode is 0666): it is made 0666 for the
# run and put back at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
n=${N:-20}
user=${BENCH_USER:-berth-bench}
ref=127.0.0.1:5000/bench/busybox:1
[ -d "$here/../shared" ] && { curl -sf "http://127.0.0.1:5000/v2/bench/busybox/tags/list" >/dev/null || N=1 bash "$here/bench/run.sh" >/dev/null; }
id "$user" >/dev/null 2>&1 || useradd -m "$user"
bin=/opt/berth-bench-bin
mkdir -p "$bin"
for f in berth berth-monitor berth-runtime; do # a rename: the user's namespace holder runs berth
  cp "$here/bin/$f" "$bin/.$f.new" && chmod a+rx "$bin/.$f.new" && mv "$bin/.$f.new" "$bin/$f"
done
chmod a+rx "$bin"
tunmode=$(stat -c %a /dev/net/tun)
trap 'chmod "$tunmode" /dev/net/tun' EXIT
chmod 0666 /dev/net/tun
cat > "/home/$user/bench.sh" <<SH
set -euo pipefail
export XDG_RUNTIME_DIR=/tmp/xdg-$user; mkdir -p \$XDG_RUNTIME_DIR
mkdir -p ~/.config/containers
printf '[[registry]]\nlocation = "127.0.0.1:5000"\ninsecure = true\n' > ~/.config/containers/registries.conf
B="$bin/berth --registries-conf /dev/null"
P="podman --runtime $bin/berth-runtime"
\$B pull -q $ref >/dev/null; \$P pull -q $ref >/dev/null
\$B run --rm --network none $ref true; \$P run --rm --network none $ref true
now() { date +%s%N; }
for i in \$(seq 1 $n); do
  s=\$(now); \$B run --rm --network none $ref true; e=\$(now); echo "berth \$(( (e - s) / 1000 ))"
  s=\$(now); \$P run --rm --network none $ref true; e=\$(now); echo "podman \$(( (e - s) / 1000 ))"
  s=\$(now); \$B run --rm $ref true; e=\$(now); echo "berth-net \$(( (e - s) / 1000 ))"
  s=\$(now); \$P run --rm $ref true; e=\$(now); echo "podman-net \$(( (e - s) / 1000 ))"
done
# Port-mapping throughput: 256 MiB from busybox httpd in the container,
# fetched from the host through the published port, nine times each,
# alternating (2.25 GiB each), with the CPU time of each forwarder.
srv="busybox sh -c 'busybox dd if=/dev/zero of=/tmp/big bs=1M count=256 2>/dev/null; exec busybox httpd -f -p 8080 -h /tmp'"
\$P rm -f -t 0 bench-port >/dev/null 2>&1 || true # a previous run's
\$B ps -aq --filter label=berth-bench-port | xargs -r \$B rm -f >/dev/null
id=\$(eval "\$B run -d --label berth-bench-port=1 -p 127.0.0.1:18099:8080 $ref \$srv")
eval "\$P run -d --name bench-port -p 127.0.0.1:18098:8080 $ref \$srv" >/dev/null
sleep 3
# The CPU time (clock ticks) of each tool's port forwarder over the transfers:
# berth's proxy, podman's rootlessport.
cpu() { awk '{print \$14 + \$15}' /proc/\$1/stat; }
bp=\$(pgrep -u "\$(id -u)" -f "__port-proxy.*\$id" | head -1); pp=\$(pgrep -u "\$(id -u)" -n rootlessport)
for i in 1 2 3 4 5 6 7 8 9; do
  c0=\$(cpu \$bp); echo "tput \$(curl -s -o /dev/null -w '%{speed_download}' http://127.0.0.1:18099/big)"; echo "bcpu \$(( \$(cpu \$bp) - c0 ))"
  c0=\$(cpu \$pp); echo "ptput \$(curl -s -o /dev/null -w '%{speed_download}' http://127.0.0.1:18098/big)"; echo "pcpu \$(( \$(cpu \$pp) - c0 ))"
done
\$B rm -f \$id >/dev/null; \$P rm -f -t 0 bench-port >/dev/null
SH
chown "$user:$user" "/home/$user/bench.sh"
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
out=$(su - "$user" -c "bash ~/bench.sh" 2>/dev/null)
b=$(echo "$out" | awk '$1=="berth" {print $2}' | median)
p=$(echo "$out" | awk '$1=="podman" {print $2}' | median)
echo "machine: $(nproc) cores, $(uname -r); $(podman --version); rootless as $user, $n runs each, interleaved, medians"
t=$(echo "$out" | awk '$1=="tput" {print $2}' | median)
printf 'rootless run --rm (berth-runtime, no network): berth %.1f ms   podman %.1f ms   berth/podman %.3f\n' "$(echo "$b/1000" | bc -l)" "$(echo "$p/1000" | bc -l)" "$(echo "$b/$p" | bc -l)"
bn=$(echo "$out" | awk '$1=="berth-net" {print $2}' | median)
pn=$(echo "$out" | awk '$1=="podman-net" {print $2}' | median)
printf 'rootless run --rm (berth-runtime, default network: slirp4netns): berth %.1f ms   podman %.1f ms   berth/podman %.3f\n' "$(echo "$bn/1000" | bc -l)" "$(echo "$pn/1000" | bc -l)" "$(echo "$bn/$pn" | bc -l)"
pt=$(echo "$out" | awk '$1=="ptput" {print $2}' | median)
printf 'rootless published port, 256 MiB over 127.0.0.1 (medians of 9): berth %.0f MB/s   podman %.0f MB/s   berth/podman %.2f\n' "$(echo "$t/1000000" | bc -l)" "$(echo "$pt/1000000" | bc -l)" "$(echo "$t/$pt" | bc -l)"
bc_=$(echo "$out" | awk '$1=="bcpu" {s+=$2} END {print s}'); pc_=$(echo "$out" | awk '$1=="pcpu" {s+=$2} END {print s}')
tick=$(getconf CLK_TCK)
printf 'CPU of the port forwarder per GiB carried: berth proxy %.2f s   podman rootlessport %.2f s   berth/podman %.2f\n' "$(echo "$bc_/$tick/2.25" | bc -l)" "$(echo "$pc_/$tick/2.25" | bc -l)" "$(echo "$bc_/$pc_" | bc -l)"
