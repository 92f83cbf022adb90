#!/usr/bin/env bash
# Delivered throughput of a tunnel, splice against copy, by transfer size, over veth pairs
# between network namespaces and over loopback, in the same run (issue 18, item 4).
#
# On loopback the TCP receive of a segment runs in the sender's context, so a spliced
# tunnel, which hands the client socket page fragments, moves part of the client's cost
# onto the proxy's CPU and the client's copy out of fragments onto the client's: a
# deployment does not look like that. Here the client (loadgen) and the origin (nginx, one
# worker) live in namespaces of their own, each linked to a router namespace by a veth pair,
# and the tunnel runs in the router: packets cross a device as they would between hosts.
# The same rows then run with everything on the router's loopback.
#
# Columns: direct (the router forwards, no proxy), splice and copy (bench's `relay`: a bare
# CONNECT tunnel over sluice's own byte paths, `sluice_proxy::relay` — copy small
# messages, splice once a read fills 16 KiB — or `sluice_proxy::relay_streams`, copy
# only), and sluice itself (a tunnel rule, as shipped). Rows: keep-alive HTTPS GETs of
# 4 KiB, 64 KiB and 1 MiB over 8 connections, and 100 MiB downloads on 1 and 8 connections.
# Figures: delivered MB/s (body bytes / wall time), the tunnel's CPU (its own cgroup) and
# the client's CPU (loadgen's cgroup: TLS and the receive copy), both in s per GB.
#
# Usage: bench/delivered.sh [REPS [OUT]] (defaults 3, bench/results/delivered.md).
# Needs root, nginx, ip and a release build (cargo build --release -p sluice -p sluice-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$PWD
REPS=${1:-3}
OUT=${2:-$REPO_DIR/bench/results/delivered.md}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
SLUICE=$TARGET_DIR/release/sluice
LOADGEN=$TARGET_DIR/release/loadgen
RELAY=$TARGET_DIR/release/relay
DURATION=5
# shellcheck source=bench/lib/env.sh
source bench/lib/env.sh
# shellcheck source=bench/lib/measure.sh
source bench/lib/measure.sh

[[ $EUID -eq 0 ]] || die "bench/delivered.sh: needs root"
for b in "$SLUICE" "$LOADGEN" "$RELAY"; do [[ -x $b ]] || die "build $b first"; done
for c in nginx ip; do command -v "$c" > /dev/null || die "needs $c"; done

tag=$$
CLIENT=sluice-dc$tag ROUTER=sluice-dr$tag ORIGIN=sluice-do$tag
W=$(mktemp -d)
CERTS=$W/certs
started=$(date +%s)

trap routed_cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------- network

routed_namespaces
veth_to_router "$CLIENT" sdc$tag 231
veth_to_router "$ORIGIN" sdo$tag 232
ip netns exec "$ROUTER" sysctl -qw net.ipv4.ip_forward=1
# bench.test is the origin across the veth pairs; on the router's loopback (the loopback
# topology) it is 127.0.0.1, where a second nginx listens.
for ns in "$CLIENT" "$ROUTER"; do
  mkdir -p "/etc/netns/$ns"
  printf '10.232.0.2 bench.test\n' > "/etc/netns/$ns/hosts"
done
printf '127.0.0.1 lo.bench.test\n' >> "/etc/netns/$ROUTER/hosts"

# ---------------------------------------------------------------------------- processes

"$LOADGEN" certs --dir "$CERTS" --domain bench.test > "$W/certs.log" 2>&1 \
  || { show_tail "$W/certs.log"; die "loadgen certs failed"; }
mkdir -p "$W/www"
for size in 4k:4096 64k:65536 1m:1048576 big:104857600; do
  head -c "${size#*:}" /dev/zero | tr '\0' 'd' > "$W/www/${size%%:*}"
done
chmod 755 "$W" "$W/www"; chmod 644 "$W/www/"*

cg_init
cg_make loadgen
LOADGEN_CG=$CG_DIR

start_origin "$ORIGIN" 10.232.0.2 origin-veth
start_origin "$ROUTER" 127.0.0.1 origin-lo

cat > "$W/sluice.toml" << TOML
[proxy]
listen = ["0.0.0.0:3130"]
hosts_file = "/etc/netns/$ROUTER/hosts"
deny_destinations = []
[admin]
listen = ""
[tls]
ca_cert = "ca.pem"
ca_key = "ca-key.pem"
default_action = "tunnel"
learn_bypass = false
[log]
access = "access.log"
TOML

# The tunnels: CPU 0, each alone in its cgroup; PORT[column] is where it listens.
declare -A PORT=([splice]=3128 [copy]=3129 [sluice]=3130) TUNNEL_PID TUNNEL_CG
for column in splice copy; do
  cg_make "$column"; TUNNEL_CG[$column]=$CG_DIR
  NS=$ROUTER spawn 0 "$CG_DIR" "$W/$column.log" "$RELAY" --listen "0.0.0.0:${PORT[$column]}" --path "$column"
  TUNNEL_PID[$column]=$START_PID
  NS=$ROUTER wait_listen relay "$START_PID" "${PORT[$column]}" "$W/$column.log"
done
cg_make sluice; TUNNEL_CG[sluice]=$CG_DIR
NS=$ROUTER spawn 0 "$CG_DIR" "$W/sluice.log" "$SLUICE" run -c "$W/sluice.toml"
TUNNEL_PID[sluice]=$START_PID
NS=$ROUTER wait_listen sluice "$START_PID" 3130 "$W/sluice.log"

# ---------------------------------------------------------------------------- rows

COLUMNS=(direct splice copy sluice)
ROWS=(req-4k req-64k req-1m down-1 down-8)
row_title() {
  case $1 in
    req-4k) echo "keep-alive GET 4 KiB, 8 connections" ;;
    req-64k) echo "keep-alive GET 64 KiB, 8 connections" ;;
    req-1m) echo "keep-alive GET 1 MiB, 8 connections" ;;
    down-1) echo "100 MiB download, 1 connection (x4)" ;;
    down-8) echo "100 MiB download, 8 connections" ;;
  esac
}

# One measured run: prints MB/s, tunnel CPU s/GB, client CPU s/GB.
run_once() { # TOPOLOGY ROW COLUMN
  local topo=$1 row=$2 column=$3 target=bench.test:443 args=() runs=1 i bytes=0 secs=0
  local c0 c1 l0 l1 size
  [[ $topo == loopback ]] && target=lo.bench.test:443
  case $row in
    req-*) size=${row#req-}
           args=(requests --path "/$size" --concurrency 8 --http 1 --duration "$DURATION") ;;
    down-1) args=(download --path /big --concurrency 1); runs=4 ;;
    down-8) args=(download --path /big --concurrency 8) ;;
  esac
  args+=(--target "$target" --ca "$CERTS/ca.pem")
  [[ $column != direct ]] && args+=(--proxy "$PROXY_ADDR:${PORT[$column]}")
  c0=0; [[ $column != direct ]] && c0=$(cg_usage_ns "${TUNNEL_CG[$column]}" "${TUNNEL_PID[$column]}")
  l0=$(cg_usage_ns "$LOADGEN_CG" 0)
  for ((i = 0; i < runs; i++)); do
    loadgen_run "$topo/$row/$column" 300 "${args[@]}" || die "$topo/$row/$column: loadgen failed"
    (($(jget "$LG_JSON" errors) == 0)) || die "$topo/$row/$column: loadgen counted errors: $LG_JSON"
    case $row in
      req-*) bytes=$((bytes + $(jget "$LG_JSON" ok) * $(stat -c %s "$W/www/$size"))) ;;
      *) bytes=$((bytes + $(jget "$LG_JSON" bytes))) ;;
    esac
    # loadgen's secs: from the first request (connections open) to the last byte
    secs=$(awk -v a="$secs" -v b="$(jget "$LG_JSON" secs)" 'BEGIN { printf "%.6f", a + b }')
  done
  c1=0; [[ $column != direct ]] && c1=$(cg_usage_ns "${TUNNEL_CG[$column]}" "${TUNNEL_PID[$column]}")
  l1=$(cg_usage_ns "$LOADGEN_CG" 0)
  awk -v b="$bytes" -v s="$secs" -v c=$((c1 - c0)) -v l=$((l1 - l0)) -v d="$column" \
    'BEGIN { printf "%.0f\t%s\t%.3f\n", b / s / 1e6, (d == "direct") ? "—" : sprintf("%.3f", c / b), l / b }'
}

: > "$W/results.tsv"
for topo in veth loopback; do
  NS=$CLIENT PROXY_ADDR=10.231.0.1
  [[ $topo == loopback ]] && NS=$ROUTER PROXY_ADDR=127.0.0.1
  for row in "${ROWS[@]}"; do
    for column in "${COLUMNS[@]}"; do
      # a warm-up: connections, TLS session caches, pipes, the sender's congestion window
      DURATION_SAVED=$DURATION; DURATION=1
      [[ $row == down-* ]] || run_once "$topo" "$row" "$column" > /dev/null
      DURATION=$DURATION_SAVED
      for rep in $(seq "$REPS"); do
        fields=$(run_once "$topo" "$row" "$column")
        log "$topo $row $column rep $rep: MB/s, tunnel s/GB, client s/GB: $(tr '\t' ' ' <<< "$fields")"
        printf '%s\t%s\t%s\t%s\t%s\n' "$topo" "$row" "$column" "$rep" "$fields" >> "$W/results.tsv"
      done
    done
  done
done

# ---------------------------------------------------------------------------- table

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
cell() { # TOPOLOGY ROW COLUMN FIELD (1 MB/s, 2 tunnel s/GB, 3 client s/GB)
  if [[ $3 == direct && $4 == 2 ]]; then echo "—"; return; fi
  awk -F'\t' -v t="$1" -v r="$2" -v c="$3" -v f=$((4 + $4)) '$1 == t && $2 == r && $3 == c { print $f }' \
    "$W/results.tsv" | median
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "—" }'; }
table() { # TOPOLOGY
  local row c
  echo "| row | direct MB/s | splice MB/s | copy MB/s | sluice MB/s | splice / copy | splice CPU s/GB | copy CPU s/GB | sluice CPU s/GB | client s/GB: direct, splice, copy |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
  for row in "${ROWS[@]}"; do
    local -A mb=() cpu=() cl=()
    for c in "${COLUMNS[@]}"; do
      mb[$c]=$(cell "$1" "$row" "$c" 1); cpu[$c]=$(cell "$1" "$row" "$c" 2); cl[$c]=$(cell "$1" "$row" "$c" 3)
    done
    echo "| $(row_title "$row") | ${mb[direct]} | ${mb[splice]} | ${mb[copy]} | ${mb[sluice]} | $(ratio "${mb[splice]}" "${mb[copy]}") | ${cpu[splice]} | ${cpu[copy]} | ${cpu[sluice]} | ${cl[direct]}, ${cl[splice]}, ${cl[copy]} |"
  done
}

{
  echo "# Delivered tunnel throughput: splice against copy, veth and loopback"
  echo
  echo "\`bench/delivered.sh $REPS\` on $(date -u '+%Y-%m-%d %H:%M') UTC, $((($(date +%s) - started) / 60)) min;"
  echo "sluice commit $(git -C "$REPO_DIR" rev-parse --short=12 HEAD 2> /dev/null || echo unknown);"
  echo "kernel $(uname -r); $(nginx -v 2>&1); CPU accounting: cgroup $CG_MODE."
  echo
  echo "The tunnel (CPU 0) runs in a router namespace; loadgen and nginx (one worker) share"
  echo "CPU 1. *veth*: the client and the origin are in namespaces of their own, each behind"
  echo "a veth pair to the router. *loopback*: all three on the router's loopback. *splice*"
  echo "and *copy* are the same bare CONNECT tunnel (\`bench/src/bin/relay.rs\`) over"
  echo "\`sluice_proxy::relay\` (what sluice's tunnels run: copy a message, splice once a read"
  echo "fills 16 KiB) and \`sluice_proxy::relay_streams\` (copy only); *sluice* is the proxy"
  echo "with a tunnel rule. MB/s = body bytes delivered / loadgen's time from its first request to its last byte (10^6 bytes); CPU in s"
  echo "per GB (10^9 body bytes), the tunnel's from its cgroup, the client's (TLS and the"
  echo "receive copy) from loadgen's. Median of $REPS runs of ${DURATION} s (requests) or of"
  echo "4 × 100 MiB (1 connection) and 8 × 100 MiB (8 connections)."
  for topo in veth loopback; do
    echo
    echo "## $topo"
    echo
    table "$topo"
  done
} > "$OUT"
cat "$OUT"
