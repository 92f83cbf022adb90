#!/usr/bin/env bash
# Tunnel new-connection CPU of sluice through its transparent listener (nftables REDIRECT)
# against its explicit listener, in the same run and the same process (SPEC §11; issue 15).
# Three network namespaces it creates and removes: a client, a router where sluice runs and
# the REDIRECT rule lives, and an origin (openssl s_server on 443). N sequential curl
# connections each way: new TCP connection, TLS, GET, close. sluice's CPU (utime + stime
# from /proc, clock ticks) is read before and after each batch.
# Usage: bench/transparent.sh [N] (default 400). Needs root, curl, openssl, nft, ip, and a
# release build (cargo build --release -p sluice).
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-400}
bin=${CARGO_TARGET_DIR:-$PWD/target}/release/sluice
[[ $EUID -eq 0 ]] || { echo "bench/transparent.sh: needs root" >&2; exit 1; }
[[ -x $bin ]] || { echo "bench/transparent.sh: build $bin first" >&2; exit 1; }

tag=$$
c=sluice-bc$tag r=sluice-br$tag o=sluice-bo$tag
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  ip netns delete "$c" 2>/dev/null || true
  ip netns delete "$o" 2>/dev/null || true
  ip netns delete "$r" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

for ns in "$c" "$r" "$o"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
link() { # NS END SECOND: a veth pair NS <-> router, 10.SECOND.0.1 on the router end
  ip link add "$2" type veth peer name "$2i"
  ip link set "$2i" netns "$1"
  ip link set "$2" netns "$r"
  ip -n "$r" addr add "10.$3.0.1/24" dev "$2"
  ip -n "$r" link set "$2" up
  ip -n "$1" addr add "10.$3.0.2/24" dev "$2i"
  ip -n "$1" link set "$2i" up
  ip -n "$1" route add default via "10.$3.0.1"
}
link "$c" sbc$tag 241
link "$o" sbo$tag 242

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -subj /CN=origin.bench -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
ip netns exec "$o" openssl s_server -quiet -accept 443 -cert "$work/cert.pem" \
  -key "$work/key.pem" -www >/dev/null 2>&1 &
pids+=($!)

cat > "$work/sluice.toml" <<TOML
[proxy]
listen = ["10.241.0.1:3128"]
transparent_listen = ["10.241.0.1:3130"]
deny_destinations = []
[admin]
listen = ""
[tls]
ca_cert = "ca.pem"
ca_key = "ca-key.pem"
default_action = "tunnel"
[log]
access = "access.log"
TOML
root=$PWD
cd "$work"
# ip netns exec executes sluice in place: $! is sluice's own PID.
ip netns exec "$r" "$bin" run -c sluice.toml 2>"$work/stderr" &
sluice=$!
pids+=("$sluice")
cd "$root"
for _ in $(seq 100); do grep -q "listening on" "$work/stderr" 2>/dev/null && break; sleep 0.1; done
grep -q "listening on" "$work/stderr" || { cat "$work/stderr"; exit 1; }
# The REDIRECT rule lives in the router namespace, with sluice.
ip netns exec "$r" nft -f - <<NFT
table inet sluice_bench {
  chain pre {
    type nat hook prerouting priority dstnat; policy accept;
    iifname "sbc$tag" tcp dport 443 redirect to :3130
  }
}
NFT

ticks() { awk '{ print $14 + $15 }' "/proc/$sluice/stat"; }
batch() { # LABEL CURL-ARGS...: N connections, sluice CPU per connection
  local label=$1; shift
  local before after start end
  before=$(ticks); start=$(date +%s.%N)
  for _ in $(seq "$n"); do
    ip netns exec "$c" curl -sk --noproxy '*' "$@" -o /dev/null https://10.242.0.2/ \
      || { echo "$label: curl failed" >&2; exit 1; }
  done
  after=$(ticks); end=$(date +%s.%N)
  awk -v l="$label" -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$n" \
      -v s="$start" -v e="$end" \
    'BEGIN { printf "%-12s %5d conns  sluice CPU %7.1f us/conn  (%.1f s wall)\n", l, n, t / hz * 1e6 / n, e - s }'
}
batch warm-up -x http://10.241.0.1:3128 >/dev/null
# sluice's CPU while idle for as long, the floor under both figures.
before=$(ticks); sleep 4; echo "idle: $(( $(ticks) - before )) ticks in 4 s (CLK_TCK $(getconf CLK_TCK))"
for round in 1 2 3; do
  batch "explicit" -x http://10.241.0.1:3128
  batch "transparent"
done
