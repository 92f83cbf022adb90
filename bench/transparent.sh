#!/usr/bin/env bash
# New-connection CPU of sluice through its transparent listener (nftables REDIRECT) against
# its explicit listener (CONNECT), for a tunneled and a bumped connection, in the same run
# and the same sluice process (SPEC §11; issue 15).
#
# Three network namespaces it creates and removes: a client (loadgen, CPU 1), a router
# where sluice runs (CPU 0, alone in a cpuacct cgroup) and the REDIRECT rule lives, and an
# origin (nginx, one worker). Every connection: new TCP connection, TLS, GET /small,
# close; tunnel.bench.test is tunneled, bump.bench.test bumped (both name the origin). Each
# repetition runs the four batches of N connections back to back; sluice's CPU is read
# from the cgroup (ns) right before and after each batch. The table holds the medians over
# the repetitions and the ratio transparent / explicit.
#
# Usage: bench/transparent.sh [N [REPS [OUT]]] (defaults 2000, 3, bench/results/transparent.md).
# Needs root, nginx, nft, ip and a release build (cargo build --release -p sluice -p sluice-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$PWD
N=${1:-2000}
REPS=${2:-3}
OUT=${3:-$REPO_DIR/bench/results/transparent.md}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
SLUICE=$TARGET_DIR/release/sluice
LOADGEN=$TARGET_DIR/release/loadgen
# shellcheck source=bench/lib/env.sh
source bench/lib/env.sh
# shellcheck source=bench/lib/measure.sh
source bench/lib/measure.sh

[[ $EUID -eq 0 ]] || die "bench/transparent.sh: needs root"
for b in "$SLUICE" "$LOADGEN"; do [[ -x $b ]] || die "build $b first"; done
for c in nginx nft ip; do command -v "$c" > /dev/null || die "needs $c"; done

tag=$$
CLIENT=sluice-bc$tag ROUTER=sluice-br$tag ORIGIN=sluice-bo$tag
NS=$CLIENT # loadgen_run (measure.sh) runs loadgen in $NS
LOADGEN_CG=""
W=$(mktemp -d)
CERTS=$W/certs

trap routed_cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------- network

routed_namespaces
veth_to_router "$CLIENT" sbc$tag 241
veth_to_router "$ORIGIN" sbo$tag 242
# ip netns exec bind-mounts /etc/netns/NS/hosts on /etc/hosts: loadgen resolves the names
# in the client namespace (transparent: it dials the origin itself).
mkdir -p "/etc/netns/$CLIENT"
printf '10.242.0.2 tunnel.bench.test bump.bench.test\n' > "/etc/netns/$CLIENT/hosts"
ip netns exec "$ROUTER" nft -f - << NFT
table inet sluice_bench {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "sbc$tag" tcp dport 443 redirect to :3130
  }
}
NFT

# ---------------------------------------------------------------------------- processes

start_small_origin 10.242.0.2

cat > "$W/hosts" << EOF
10.242.0.2 tunnel.bench.test bump.bench.test
EOF
cat > "$W/sluice.toml" << TOML
[proxy]
listen = ["10.241.0.1:3128"]
transparent_listen = ["10.241.0.1:3130"]
hosts_file = "hosts"
deny_destinations = []
[admin]
listen = ""
[tls]
ca_cert = "ca.pem"
ca_key = "ca-key.pem"
default_action = "tunnel"
upstream_roots = ["$CERTS/ca.pem"]
learn_bypass = false
[[ssl_rules]]
name = "bump"
domains = ["bump.bench.test"]
action = "bump"
[log]
access = "access.log"
TOML
cg_init
cg_make sluice
SLUICE_CG=$CG_DIR
# sluice makes its CA on first start, in the work dir (the config's folder).
NS=$ROUTER spawn 0 "$SLUICE_CG" "$W/sluice.log" "$SLUICE" run -c "$W/sluice.toml"
sluice_pid=$START_PID
for _ in $(seq 100); do grep -q "listening on" "$W/sluice.log" 2> /dev/null && break; sleep 0.1; done
grep -q "listening on" "$W/sluice.log" || { show_tail "$W/sluice.log"; die "sluice did not start"; }

# ---------------------------------------------------------------------------- batches

# One batch: N sequential new connections. Prints sluice's CPU in µs per connection, the
# wall time in s, and how many CPUs the whole machine kept busy meanwhile (root cgroup:
# sluice, loadgen, nginx and everyone else's work; 2.0 on 2 CPUs means fully loaded).
batch() { # ROW PATH
  local row=$1 path=$2 s0 s1 r0 r1 t0 t1 ok errors args=()
  args=(conns --target "$row.bench.test:443" --path /small --concurrency 1 --count "$N"
        --duration 600 --ca "$CERTS/ca.pem" --ca "$W/ca.pem")
  [[ $path == explicit ]] && args+=(--proxy 10.241.0.1:3128)
  r0=$(root_usage_ns); t0=$(date +%s%N); s0=$(cg_usage_ns "$SLUICE_CG" "$sluice_pid")
  loadgen_run "$row/$path" 900 "${args[@]}" \
    || { show_tail "$W/sluice.log" 5; show_tail "$W/nginx/error.log" 5; die "$row/$path: loadgen failed"; }
  s1=$(cg_usage_ns "$SLUICE_CG" "$sluice_pid"); t1=$(date +%s%N); r1=$(root_usage_ns)
  ok=$(jget "$LG_JSON" ok); errors=$(jget "$LG_JSON" errors)
  ((ok == N && errors == 0)) || die "$row/$path: $ok connections ok, $errors errors (of $N)"
  awk -v c=$((s1 - s0)) -v n="$ok" -v w=$((t1 - t0)) -v r=$((r1 - r0)) \
    'BEGIN { printf "%.1f\t%.1f\t%.2f\n", c / 1000 / n, w / 1e9, r / w }'
}

N_SAVED=$N
N=100
for row in tunnel bump; do for path in explicit transparent; do batch "$row" "$path" > /dev/null; done; done
N=$N_SAVED
grep -Eq '"mode": ?"transparent"' "$W/access.log" \
  || die "no transparent connection in sluice's access log: the REDIRECT did not reach sluice"
i0=$(cg_usage_ns "$SLUICE_CG" "$sluice_pid"); sleep 5; i1=$(cg_usage_ns "$SLUICE_CG" "$sluice_pid")
idle_us=$(((i1 - i0) / 1000))
log "sluice idle: $idle_us µs of CPU in 5 s"

: > "$W/cpu.tsv"
for rep in $(seq "$REPS"); do
  for row in tunnel bump; do
    for path in explicit transparent; do
      fields=$(batch "$row" "$path")
      log "rep $rep $row/$path: µs/conn, wall s, busy CPUs: $(tr '\t' ' ' <<< "$fields")"
      printf '%s\t%s\t%s\t%s\n' "$row" "$path" "$rep" "$fields" >> "$W/cpu.tsv"
    done
  done
done

# ---------------------------------------------------------------------------- table

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
cells() { # ROW PATH: the repetitions, in run order
  awk -F'\t' -v r="$1" -v p="$2" '$1 == r && $2 == p { print $4 }' "$W/cpu.tsv"
}
table() {
  local row e t
  echo "| row | explicit µs/conn | transparent µs/conn | transparent / explicit |"
  echo "|---|---|---|---|"
  for row in tunnel bump; do
    e=$(cells "$row" explicit | median); t=$(cells "$row" transparent | median)
    printf '| %s | %s (%s) | %s (%s) | %s |\n' "$row" "$e" "$(cells "$row" explicit | paste -sd' ')" \
      "$t" "$(cells "$row" transparent | paste -sd' ')" "$(awk -v a="$t" -v b="$e" 'BEGIN { printf "%.3f", a / b }')"
  done
}
{
  echo "# Transparent vs explicit: new-connection CPU"
  echo
  echo "\`bench/transparent.sh $N $REPS\` on $(date -u '+%Y-%m-%d %H:%M') UTC, sluice $(git -C "$REPO_DIR" rev-parse --short HEAD)"
  echo "(release build), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo))."
  echo "sluice on CPU 0, loadgen and nginx (one worker) on CPU 1; sluice's CPU from its cgroup"
  echo "($CG_MODE cpuacct, ns) right before and after each batch of $N sequential connections"
  echo "(loadgen conns --concurrency 1: new TCP connection, TLS 1.3, GET /small, close)."
  echo "*explicit*: CONNECT to sluice's listener; *transparent*: loadgen dials the origin and"
  echo "nftables REDIRECT in sluice's namespace hands the connection to transparent_listen."
  echo "*tunnel*: sluice relays the TLS bytes; *bump*: sluice terminates TLS with a minted"
  echo "certificate (cache hit after the warm-up) and opens its own TLS to the origin."
  echo "Cells: median of $REPS repetitions (each repetition in run order in brackets); the"
  echo "ratio is of the medians. sluice idle: $idle_us µs of CPU in 5 s."
  echo
  table
  echo
  echo "Every batch, in run order (busy: CPUs the whole machine used during the batch, of $(nproc)):"
  echo
  echo "| rep | row | path | µs/conn | wall s | busy |"
  echo "|---|---|---|---|---|---|"
  awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s |\n", $3, $1, $2, $4, $5, $6 }' "$W/cpu.tsv"
} > "$OUT"
cat "$OUT"
