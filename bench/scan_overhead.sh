#!/usr/bin/env bash
# Anti-virus scan overhead per MiB (issue 4): the same download direct from a local
# origin, through sluice without an engine, and through sluice scanning with clamd
# (INSTREAM over TCP). Prints medians of several runs and the overhead per MiB against
# the direct download. Needs curl, python3 and clamd (crates/inspect/tests/install-engines.sh).
#
#   bench/scan_overhead.sh [SIZE_MIB] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-64}
runs=${2:-5}

cargo build --release -q -p sluice
sluice=$PWD/target/release/sluice
work=$(mktemp -d)
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 300); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# The origin: a file of random bytes behind python's HTTP server.
mkdir -p "$work/www"
head -c "$((size_mib << 20))" /dev/urandom > "$work/www/file.bin"
origin_port=$(free_port)
(cd "$work/www" && exec python3 -m http.server "$origin_port" --bind 127.0.0.1 >/dev/null 2>&1) & pids+=($!)

# clamd with one signature of its own (it needs a database to start; nothing matches).
clamd_port=$(free_port)
mkdir -p "$work/db"
echo "0123456789abcdef0123456789abcdef:68:Sluice.Bench.Nothing" > "$work/db/bench.hdb"
cat > "$work/clamd.conf" <<CONF
Foreground yes
DatabaseDirectory $work/db
TCPSocket $clamd_port
TCPAddr 127.0.0.1
StreamMaxLength 1000M
LogFile $work/clamd.log
CONF
clamd=$(command -v clamd || echo /usr/sbin/clamd)
"$clamd" --config-file="$work/clamd.conf" >/dev/null 2>&1 & pids+=($!)

started_port=""
start_sluice() { # NAME EXTRA_CONFIG; sets started_port (no subshell: its pid must be kept)
  local port; port=$(free_port)
  cat > "$work/$1.toml" <<CONF
[proxy]
listen = ["127.0.0.1:$port"]
deny_destinations = []  # the origin listens on loopback, which the default denies
[admin]
listen = ""
[tls]
ca_cert = "$work/ca.pem"
ca_key = "$work/ca-key.pem"
[log]
access = "$work/$1.log"
level = "warn"
$2
CONF
  "$sluice" run -c "$work/$1.toml" >/dev/null 2>>"$work/$1.stderr" & pids+=($!)
  wait_port "$port"
  started_port=$port
}
"$sluice" ca init --dir "$work/ca" >/dev/null 2>&1
mv "$work/ca/ca.pem" "$work/ca/ca-key.pem" "$work/"
start_sluice plain ""
plain_port=$started_port
start_sluice scan "[anti_virus]
engine = \"clamd\"
url = \"tcp://127.0.0.1:$clamd_port\"
max_scan_size = \"1GiB\"
timeout = \"300s\""
scan_port=$started_port
wait_port "$origin_port"
wait_port "$clamd_port"

url="http://127.0.0.1:$origin_port/file.bin"
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
measure() { # PROXY_ARGS...
  for _ in $(seq 1 "$runs"); do
    curl -s -o /dev/null -w '%{time_total}\n' "$@" "$url"
  done | median
}
direct=$(measure)
through=$(measure -x "http://127.0.0.1:$plain_port")
scanned=$(measure -x "http://127.0.0.1:$scan_port")
grep -q '"verdict":"allowed"' "$work/scan.log" || { echo "the scanned runs were not scanned" >&2; exit 1; }

awk -v d="$direct" -v t="$through" -v s="$scanned" -v m="$size_mib" -v r="$runs" 'BEGIN {
  printf "download of %d MiB, median of %d runs\n", m, r
  printf "%-34s %10s %14s\n", "path", "seconds", "ms per MiB"
  printf "%-34s %10.3f %14.2f\n", "direct", d, 1000*d/m
  printf "%-34s %10.3f %14.2f\n", "through sluice, no engine", t, 1000*t/m
  printf "%-34s %10.3f %14.2f\n", "through sluice, clamd scan", s, 1000*s/m
  printf "scan overhead against direct: %.2f ms per MiB (%.1fx the direct time)\n", 1000*(s-d)/m, s/d
}'
