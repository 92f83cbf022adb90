#!/usr/bin/env bash
# What Redis adds to sluice's hot path (SPEC §12; issue 17): the same new connections
# through a sluice alone and through a sluice in a fleet (`[cluster] redis`, a real
# redis-server), in the same run, batches interleaved.
#
# Rows (every connection: new TCP connection, TLS 1.3, GET /small, close):
#   bump     bump.bench.test, bumped (the client-leg ticket comes from the fleet's keys)
#   learned  learned.bench.test, a learned bypass (tunnel-sni, rule learned-bypass):
#            the learned-bypass lookup on every connection
# Three network namespaces it creates and removes: a client (loadgen, CPU 1), a router
# where both sluice processes (CPU 0, each alone in a cpuacct cgroup) and redis-server
# (CPU 1) run, and an origin (nginx, one worker, CPU 1). sluice's CPU comes from its
# cgroup (ns) right before and after each batch; Redis' work during a fleet batch is
# counted as commands processed (INFO stats) and its CPU time.
#
# Usage: bench/cluster.sh [N [REPS [OUT]]] (defaults 2000, 3, bench/results/cluster.md).
# Needs root, nginx, redis-server, ip and a release build
# (cargo build --release -p sluice -p sluice-bench).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO_DIR=$PWD
N=${1:-2000}
REPS=${2:-3}
OUT=${3:-$REPO_DIR/bench/results/cluster.md}
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
SLUICE=$TARGET_DIR/release/sluice
LOADGEN=$TARGET_DIR/release/loadgen
# shellcheck source=bench/lib/env.sh
source bench/lib/env.sh
# shellcheck source=bench/lib/measure.sh
source bench/lib/measure.sh

[[ $EUID -eq 0 ]] || die "bench/cluster.sh: needs root"
for b in "$SLUICE" "$LOADGEN"; do [[ -x $b ]] || die "build $b first"; done
for c in nginx ip redis-server redis-cli curl; do command -v "$c" > /dev/null || die "needs $c"; done

tag=$$
CLIENT=sluice-kc$tag ROUTER=sluice-kr$tag ORIGIN=sluice-ko$tag
NS=$CLIENT # loadgen_run (measure.sh) runs loadgen in $NS
LOADGEN_CG=""
W=$(mktemp -d)
CERTS=$W/certs
ROUTER_IP=10.243.0.1
REDIS_PORT=6379

trap routed_cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------- network

routed_namespaces
veth_to_router "$CLIENT" skc$tag 243
veth_to_router "$ORIGIN" sko$tag 244

# ---------------------------------------------------------------------------- processes

start_small_origin 10.244.0.2

mkdir -p "$W/redis"
printf 'port %s\nbind 127.0.0.1\nsave ""\nappendonly no\ndaemonize no\ndir %s\n' \
  "$REDIS_PORT" "$W/redis" > "$W/redis/redis.conf"
NS=$ROUTER spawn 1 "" "$W/redis.log" redis-server "$W/redis/redis.conf"
redis_pid=$START_PID
NS=$ROUTER wait_listen redis "$redis_pid" "$REDIS_PORT" "$W/redis.log"
redis() { ip netns exec "$ROUTER" redis-cli -p "$REDIS_PORT" "$@"; }

cg_init
# Two sluice processes, the same configuration but for [cluster]: alone and fleet.
expires=$(date -u -d '+2 days' +%Y-%m-%dT%H:%M:%SZ)
start_sluice() { # NAME PROXY_PORT ADMIN_PORT CLUSTER_LINES
  local dir=$W/$1 i
  mkdir -p "$dir"
  printf '10.244.0.2 bump.bench.test learned.bench.test\n' > "$dir/hosts"
  printf '[{"sni":"learned.bench.test","reason":"client_rejected_certificate","count":3,"expires":"%s"}]\n' \
    "$expires" > "$dir/bypass.json"
  printf '%s\n' \
    '[proxy]' "listen = [\"$ROUTER_IP:$2\"]" 'hosts_file = "hosts"' 'deny_destinations = []' \
    '[admin]' "listen = \"127.0.0.1:$3\"" \
    '[tls]' 'ca_cert = "ca.pem"' 'ca_key = "ca-key.pem"' 'default_action = "bump"' \
    "upstream_roots = [\"$CERTS/ca.pem\"]" 'learn_state = "bypass.json"' \
    '[log]' 'access = "access.log"' "$4" > "$dir/sluice.toml"
  cg_make "sluice-$1"
  NS=$ROUTER spawn 0 "$CG_DIR" "$dir/sluice.log" "$SLUICE" run -c "$dir/sluice.toml"
  for i in $(seq 100); do grep -q "listening on" "$dir/sluice.log" 2> /dev/null && break; sleep 0.1; done
  grep -q "listening on" "$dir/sluice.log" || { show_tail "$dir/sluice.log"; die "sluice $1 did not start"; }
}
start_sluice alone 3128 3129 ""
ALONE_PID=$START_PID ALONE_CG=$CG_DIR
start_sluice fleet 3138 3139 "[cluster]
redis = \"redis://127.0.0.1:$REDIS_PORT/0\""
FLEET_PID=$START_PID FLEET_CG=$CG_DIR
fleet_up() { ip netns exec "$ROUTER" curl -s http://127.0.0.1:3139/metrics | grep -q '^sluice_cluster_up 1'; }
for _ in $(seq 100); do fleet_up && break; sleep 0.1; done
fleet_up || { show_tail "$W/fleet/sluice.log"; die "the fleet node did not reach Redis"; }

# ---------------------------------------------------------------------------- batches

# One batch of N sequential connections: sluice's CPU µs per connection, the wall time
# in s, and Redis commands processed and Redis CPU µs during the batch.
batch() { # ROW PROXY
  local row=$1 proxy=$2 port pid cg s0 s1 t0 t1 c0 c1 r0 r1 ok errors
  case $proxy in
    alone) port=3128 pid=$ALONE_PID cg=$ALONE_CG ;;
    fleet) port=3138 pid=$FLEET_PID cg=$FLEET_CG ;;
  esac
  c0=$(redis INFO stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p')
  r0=$(tree_cpu_ns "$redis_pid"); t0=$(date +%s%N); s0=$(cg_usage_ns "$cg" "$pid")
  loadgen_run "$row/$proxy" 900 conns --target "$row.bench.test:443" --path /small \
    --concurrency 1 --count "$N" --duration 600 --proxy "$ROUTER_IP:$port" \
    --ca "$CERTS/ca.pem" --ca "$W/alone/ca.pem" --ca "$W/fleet/ca.pem" \
    || { show_tail "$W/$proxy/sluice.log" 5; die "$row/$proxy: loadgen failed"; }
  s1=$(cg_usage_ns "$cg" "$pid"); t1=$(date +%s%N); r1=$(tree_cpu_ns "$redis_pid")
  c1=$(redis INFO stats | sed -n 's/^total_commands_processed:\([0-9]*\).*/\1/p')
  ok=$(jget "$LG_JSON" ok); errors=$(jget "$LG_JSON" errors)
  ((ok == N && errors == 0)) || die "$row/$proxy: $ok connections ok, $errors errors (of $N)"
  # The first INFO call is one of the commands counted.
  awk -v c=$((s1 - s0)) -v n="$ok" -v w=$((t1 - t0)) -v k=$((c1 - c0 - 1)) -v r=$((r1 - r0)) \
    'BEGIN { printf "%.1f\t%.1f\t%d\t%.0f\n", c / 1000 / n, w / 1e9, k, r / 1000 }'
}

N_SAVED=$N
N=100
for row in bump learned; do for proxy in alone fleet; do batch "$row" "$proxy" > /dev/null; done; done
N=$N_SAVED
for proxy in alone fleet; do
  grep -q '"rule":"learned-bypass"' "$W/$proxy/access.log" \
    || die "$proxy: no connection decided by the learned bypass"
done

: > "$W/cpu.tsv"
for rep in $(seq "$REPS"); do
  for row in bump learned; do
    # Alternate which goes first, so that drift in the machine's load falls on both.
    order="alone fleet"
    ((rep % 2 == 0)) && order="fleet alone"
    for proxy in $order; do
      fields=$(batch "$row" "$proxy")
      log "rep $rep $row/$proxy: µs/conn, wall s, Redis commands, Redis CPU µs: $(tr '\t' ' ' <<< "$fields")"
      printf '%s\t%s\t%s\t%s\n' "$row" "$proxy" "$rep" "$fields" >> "$W/cpu.tsv"
    done
  done
done

# ---------------------------------------------------------------------------- table

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
cells() { # ROW PROXY [FIELD]: the repetitions, in run order
  awk -F'\t' -v r="$1" -v p="$2" -v f="${3:-4}" '$1 == r && $2 == p { print $f }' "$W/cpu.tsv"
}
# fleet / alone of each repetition (the two batches ran back to back).
paired() { # ROW
  awk -F'\t' -v r="$1" '$1 == r { v[$3 FS $2] = $4; reps[$3] = 1 }
    END { for (k in reps) printf "%.3f\n", v[k FS "fleet"] / v[k FS "alone"] }' "$W/cpu.tsv"
}
table() {
  local row a f k amin fmin
  echo "| row | alone µs/conn | fleet µs/conn | fleet / alone (medians) | fleet / alone (minima) | fleet / alone (median of the pairs) | Redis commands per fleet connection |"
  echo "|---|---|---|---|---|---|---|"
  for row in bump learned; do
    a=$(cells "$row" alone | median)
    f=$(cells "$row" fleet | median)
    amin=$(cells "$row" alone | sort -n | head -n 1)
    fmin=$(cells "$row" fleet | sort -n | head -n 1)
    k=$(cells "$row" fleet 6 | median)
    printf '| %s | %s (%s) | %s (%s) | %s | %s | %s | %s |\n' "$row" \
      "$a" "$(cells "$row" alone | paste -sd' ')" "$f" "$(cells "$row" fleet | paste -sd' ')" \
      "$(awk -v a="$f" -v b="$a" 'BEGIN { printf "%.3f", a / b }')" \
      "$(awk -v a="$fmin" -v b="$amin" 'BEGIN { printf "%.3f", a / b }')" \
      "$(paired "$row" | median)" \
      "$(awk -v k="$k" -v n="$N" 'BEGIN { printf "%.4f", k / n }')"
  done
}
mkdir -p "$(dirname "$OUT")"
{
  echo "# What Redis adds to the hot path"
  echo
  echo "\`bench/cluster.sh $N $REPS\` on $(date -u '+%Y-%m-%d %H:%M') UTC, sluice $(git -C "$REPO_DIR" rev-parse --short HEAD)"
  echo "(release build), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)),"
  echo "$(redis-server --version | cut -d' ' -f1-3)."
  echo "Two sluice processes on CPU 0, the same configuration but for \`[cluster] redis\`:"
  echo "*alone* (none) and *fleet* (a redis-server on loopback, CPU 1, with loadgen and nginx)."
  echo "Batches of $N sequential connections (loadgen conns --concurrency 1: new TCP"
  echo "connection, TLS 1.3, GET /small, close), alone and fleet alternating. *bump*: a bumped"
  echo "connection (certificate cache hit; in the fleet its client-leg session ticket is"
  echo "sealed with the fleet's key); *learned*: a name in the learned-bypass table"
  echo "(tunnel-sni, rule learned-bypass), so every connection is a learned-bypass lookup."
  echo "sluice's CPU from its cgroup ($CG_MODE cpuacct, ns) right before and after each batch."
  echo "Cells: median of $REPS repetitions (each in run order in brackets). The machine is"
  echo "shared, so a batch can be slowed by others' work: besides the ratio of the medians,"
  echo "the ratio of the minima (the least disturbed batches) and the median of the ratios of"
  echo "each repetition's two batches (run back to back). Redis commands: processed by Redis"
  echo "during a fleet batch (INFO stats; only the fleet process talks to Redis: its"
  echo "reconcile every 2 s, whatever the traffic) per connection: what a connection costs"
  echo "Redis."
  echo
  table
  echo
  echo "Every batch, in run order:"
  echo
  echo "| rep | row | sluice | µs/conn | wall s | Redis commands | Redis CPU µs |"
  echo "|---|---|---|---|---|---|---|"
  awk -F'\t' '{ printf "| %s | %s | %s | %s | %s | %s | %s |\n", $3, $1, $2, $4, $5, $6, $7 }' "$W/cpu.tsv"
} > "$OUT"
cat "$OUT"
