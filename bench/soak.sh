#!/usr/bin/env bash
# sluice under attack for N minutes (issue 13): steady normal traffic whose every error is
# counted, beside slowloris, HTTP/2 rapid reset, CONTINUATION floods, 1,000 random SNIs,
# wrong passwords and requests to tarpit origins; sluice's RSS and open fds sampled all
# along. Prints the figures and writes them to bench/RESULTS.md ("Soak under attack").
# Run `bench/soak.sh --help`.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
# shellcheck source=bench/lib/env.sh
source "$BENCH_DIR/lib/env.sh"

usage() {
  cat <<'EOF'
Usage: sudo bench/soak.sh [options]

Installs what it needs (nginx-light, iproute2, openssl, curl), builds
`cargo build --release -p sluice -p sluice-bench`, and in a network namespace of its own
starts an nginx origin (HTTPS on 8443, plain HTTP on 8080), a tarpit origin (`attack
tarpit`: TLS on 9443, plain on 9080; accepts, never answers) and sluice (bump, [auth]
with a users file, max_connections 2000). Then, for --minutes, at once:

  normal        `attack normal`: 2 keep-alive connections doing bumped HTTPS GETs and
                2 doing plain HTTP GETs, 5 a second each; every error is counted
  attacks       `attack flood`: 300 slowloris connections (one byte every 5 s); 2 HTTP/2
                rapid-reset connections; 2 CONTINUATION-flood connections; 1,000 random
                SNIs, each on a new connection; 100 wrong-password CONNECTs at once (half
                for the real user, half for unknown ones), each worker from its own
                127.4.x.y address; 20 requests at once to the tarpits (bumped and plain)

sluice's VmRSS and open fds are sampled every --sample seconds. The table (RSS over
time, max fds, normal requests and errors, each attack and how sluice answered it) is
printed and written, with the command line and sluice's configuration, under the
heading "Soak under attack" at the end of bench/RESULTS.md (a section of that name
from an earlier soak is replaced; the other sections are kept).

Options:
  --minutes N     length of the soak (default 10)
  --sample SECS   seconds between two samples of RSS and fds (default 5)
  --out FILE      where to write the results (default bench/RESULTS.md)
  --keep          keep the work dir (configs, logs, JSON) and print its path
  --no-install    do not run apt-get (fail if something is missing)
  --no-build      do not run cargo build (use the binaries in the target dir)
  -h, --help      this text

Needs root (a network namespace). Everything runs on loopback inside it.
EOF
}

# ---------------------------------------------------------------------------- options

MINUTES=10 SAMPLE=5 OUT="" KEEP="" NO_INSTALL="" NO_BUILD=""
ARGS_GIVEN="$*"
parse_args() {
  while (($#)); do
    case $1 in
      --minutes) MINUTES=${2:?--minutes needs a number}; shift ;;
      --sample) SAMPLE=${2:?--sample needs seconds}; shift ;;
      --out) OUT=${2:?--out needs a file}; shift ;;
      --keep) KEEP=1 ;;
      --no-install) NO_INSTALL=1 ;;
      --no-build) NO_BUILD=1 ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; echo >&2; die "unknown option: $1" ;;
    esac
    shift
  done
  [[ $MINUTES =~ ^[1-9][0-9]*$ ]] || die "--minutes must be a positive integer"
  [[ $SAMPLE =~ ^[1-9][0-9]*$ ]] || die "--sample must be a positive integer"
  OUT=${OUT:-$BENCH_DIR/RESULTS.md}
  SECS=$((MINUTES * 60))
}

# ---------------------------------------------------------------------------- setup

ORIGIN_PORT=8443 PLAIN_PORT=8080 TARPIT_PORT=9443 TARPIT_PLAIN_PORT=9080 SLUICE_PORT=3130
USER_NAME=soak
HOLD_COUNT=1000 # for raise_fd_limit: the soak holds well under this many per process

install_soak_packages() {
  local need=()
  command -v nginx > /dev/null || need+=(nginx-light)
  command -v ip > /dev/null || need+=(iproute2)
  command -v openssl > /dev/null || need+=(openssl)
  command -v curl > /dev/null || need+=(curl)
  ((${#need[@]})) || return 0
  log "installing ${need[*]} with apt-get"
  # The soak runs its own nginx: the system service must not start while installing.
  local policy=/usr/sbin/policy-rc.d made_policy="" rc=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made_policy=1
  fi
  { DEBIAN_FRONTEND=noninteractive apt-get update -q \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o DPkg::Lock::Timeout=300 "${need[@]}"; } > "$W/apt.log" 2>&1 || rc=$?
  [[ -n $made_policy ]] && rm -f "$policy"
  ((rc == 0)) || { show_tail "$W/apt.log"; die "apt-get install ${need[*]} failed"; }
}

# The test PKI, the CA sluice signs with, 1,000 random names and the namespace's hosts.
make_files() {
  "$ATTACK_LOADGEN" certs --dir "$W/certs" --domain bench.test > "$W/certs.log" 2>&1 \
    || { show_tail "$W/certs.log"; die "loadgen certs failed"; }
  chmod -R a+rX "$W/certs"
  "$SLUICE" ca init --dir "$W/sluice-ca" > "$W/ca-init.log" 2>&1 \
    || { show_tail "$W/ca-init.log"; die "sluice ca init failed"; }
  od -An -tx1 -N 6000 /dev/urandom | tr -d ' \n' | fold -w 12 | awk '{ print "r" $0 ".bench.test" }' > "$W/names.txt"
  [[ $(wc -l < "$W/names.txt") == 1000 ]] || die "could not make 1,000 random names"
  {
    printf '127.0.0.1 localhost\n127.0.0.1 bench.test tarpit.bench.test\n'
    sed 's/^/127.0.0.1 /' "$W/names.txt"
  } > "$W/hosts"
  netns_hosts "$W/hosts"
}

write_nginx_conf() {
  mkdir -p "$W/nginx" "$W/www"
  head -c 100 /dev/zero | tr '\0' 's' > "$W/www/small"
  chmod 755 "$W/www"; chmod 644 "$W/www/small"
  cat > "$W/nginx/nginx.conf" <<EOF
# nginx origin for bench/soak.sh (generated)
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile $FD_LIMIT;
user www-data;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log warn;
events { worker_connections 10000; }
http {
  access_log off;
  default_type application/octet-stream;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  root $W/www;
  server {
    listen 127.0.0.1:$ORIGIN_PORT ssl http2;
    server_name bench.test *.bench.test;
    ssl_certificate $W/certs/wildcard.pem;
    ssl_certificate_key $W/certs/wildcard-key.pem;
  }
  server {
    listen 127.0.0.1:$PLAIN_PORT;
    server_name bench.test;
  }
}
EOF
}

# sluice: bump everything, users file with one user, access log to a file. Origins are
# on loopback, which proxy.deny_destinations refuses by default (SPEC §5), so it is emptied.
write_sluice_conf() {
  cat > "$W/sluice.toml" <<EOF
# sluice for bench/soak.sh (generated)
[proxy]
listen = ["127.0.0.1:$SLUICE_PORT"]
connect_ports = [$ORIGIN_PORT, $TARPIT_PORT]
deny_destinations = []

[admin]
listen = ""

[auth]
users_file = "$W/users"

[tls]
ca_cert = "$W/sluice-ca/ca.pem"
ca_key = "$W/sluice-ca/ca-key.pem"
default_action = "bump"
upstream_roots = ["$W/certs/ca.pem"]

[anti_virus]
engine = "none"

[log]
access = "$W/access.log"
level = "warn"

[limits]
max_connections = 2000
EOF
}

configure_sluice() {
  install -m 600 /dev/null "$W/users"
  PASSWORD=$(od -An -tx1 -N 12 /dev/urandom | tr -d ' \n')
  write_sluice_conf
  "$SLUICE" check -c "$W/sluice.toml" > "$W/check.log" 2>&1 \
    || { show_tail "$W/check.log"; die "sluice check refused $W/sluice.toml"; }
  printf '%s\n' "$PASSWORD" | "$SLUICE" user add -c "$W/sluice.toml" "$USER_NAME" > "$W/user-add.log" 2>&1 \
    || { show_tail "$W/user-add.log"; die "sluice user add failed"; }
}

all_cpus() { echo "0-$(($(nproc) - 1))"; }

# `sh -c "$TO_FILE" sh FILE CMD...`: runs CMD with its stdout (the table) into FILE; its
# stderr stays with spawn's log.
# shellcheck disable=SC2016 # expanded by sh
TO_FILE='out=$1; shift; exec "$@" > "$out"'


start_servers() {
  spawn "$(all_cpus)" "" "$W/nginx/stderr.log" nginx -c "$W/nginx/nginx.conf"
  NGINX_PID=$START_PID
  wait_listen nginx "$NGINX_PID" "$ORIGIN_PORT" "$W/nginx/stderr.log"
  # The tarpit outlives the clients by a margin, so it reports how sluice left it.
  spawn "$(all_cpus)" "" "$W/tarpit.log" sh -c "$TO_FILE" sh "$W/tarpit.md" \
    "$ATTACK" --json "$W/tarpit.json" tarpit --tls "127.0.0.1:$TARPIT_PORT" \
    --plain "127.0.0.1:$TARPIT_PLAIN_PORT" --cert "$W/certs/wildcard.pem" \
    --key "$W/certs/wildcard-key.pem" --duration $((SECS + 20))
  TARPIT_PID=$START_PID
  wait_listen tarpit "$TARPIT_PID" "$TARPIT_PORT" "$W/tarpit.log"
  spawn "$(all_cpus)" "" "$W/sluice.log" "$SLUICE" run -c "$W/sluice.toml"
  SLUICE_PID=$START_PID
  wait_listen sluice "$SLUICE_PID" "$SLUICE_PORT" "$W/sluice.log"
}

# A bumped and a plain GET through sluice with curl must work before anything is measured.
check_paths() {
  local url got
  for url in "https://bench.test:$ORIGIN_PORT/small" "http://bench.test:$PLAIN_PORT/small"; do
    got=$(in_ns curl -sS --max-time 20 --proxy "http://127.0.0.1:$SLUICE_PORT" \
      --proxy-user "$USER_NAME:$PASSWORD" --cacert "$W/sluice-ca/ca.pem" "$url" 2> "$W/curl.log" | wc -c) || true
    [[ $got == 100 ]] || { show_tail "$W/curl.log"; show_tail "$W/sluice.log"; die "GET $url through sluice failed"; }
  done
  log "bumped HTTPS and plain HTTP through sluice work"
}

# ---------------------------------------------------------------------------- the soak

# Every SAMPLE seconds until the file STOP exists: seconds since start, VmRSS (KiB),
# open fds of sluice.
sample() { # PID FILE STOP
  local pid=$1 out=$2 stop=$3 start rss fds
  start=$(date +%s)
  while [[ ! -e $stop ]] && [[ -d /proc/$pid ]]; do
    rss=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$pid/status" 2> /dev/null) || break
    fds=$(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2> /dev/null | wc -l)
    printf '%s\t%s\t%s\n' "$(($(date +%s) - start))" "$rss" "$fds" >> "$out"
    sleep "$SAMPLE"
  done
}

run_soak() {
  local common=(--proxy "127.0.0.1:$SLUICE_PORT" --origin "bench.test:$ORIGIN_PORT"
    --plain-origin "bench.test:$PLAIN_PORT" --ca "$W/sluice-ca/ca.pem"
    --user "$USER_NAME:$PASSWORD" --duration "$SECS")
  : > "$W/samples.tsv"
  sample "$SLUICE_PID" "$W/samples.tsv" "$W/stop-sampling" &
  SAMPLER_PID=$!
  PIDS+=("$SAMPLER_PID")
  log "soak: $MINUTES min of normal traffic and attacks"
  spawn "$(all_cpus)" "" "$W/normal.log" sh -c "$TO_FILE" sh "$W/normal.md" "$ATTACK" --json "$W/normal.json" normal "${common[@]}"
  NORMAL_PID=$START_PID
  spawn "$(all_cpus)" "" "$W/flood.log" sh -c "$TO_FILE" sh "$W/flood.md" "$ATTACK" --json "$W/flood.json" flood "${common[@]}" --names "$W/names.txt" \
    --tarpit "tarpit.bench.test:$TARPIT_PORT" --tarpit-plain "tarpit.bench.test:$TARPIT_PLAIN_PORT"
  FLOOD_PID=$START_PID
  local rc=0
  wait "$NORMAL_PID" || rc=$?
  ((rc == 0)) || { show_tail "$W/normal.log"; die "attack normal failed (exit $rc)"; }
  wait "$FLOOD_PID" || rc=$?
  ((rc == 0)) || { show_tail "$W/flood.log"; die "attack flood failed (exit $rc)"; }
  # The tarpit reports once its margin has passed: it shows what sluice still held.
  wait "$TARPIT_PID" || rc=$?
  ((rc == 0)) || { show_tail "$W/tarpit.log"; die "attack tarpit failed (exit $rc)"; }
  touch "$W/stop-sampling"
  wait "$SAMPLER_PID" 2> /dev/null || true
  stop_pid "$SLUICE_PID" 35
  stop_pid "$NGINX_PID" 5
}

# ---------------------------------------------------------------------------- report

# RSS (MiB) and fds: min / median / max, and about ten samples spread over the run.
resources_table() {
  echo "| | min | median | max |"
  echo "|---|---:|---:|---:|"
  local col
  for col in 2 3; do
    cut -f "$col" "$W/samples.tsv" | sort -n | awk -v col="$col" '
      { v[NR] = $1 } END {
        if (NR == 0) { print "| no samples | | | |"; exit }
        if (col == 2) printf "| sluice VmRSS | %.1f MiB | %.1f MiB | %.1f MiB |\n",
          v[1] / 1024, v[int((NR + 1) / 2)] / 1024, v[NR] / 1024
        else printf "| sluice open fds | %d | %d | %d |\n", v[1], v[int((NR + 1) / 2)], v[NR] }'
  done
  echo
  echo "| time | VmRSS | open fds |"
  echo "|---:|---:|---:|"
  awk -F'\t' -v n="$(wc -l < "$W/samples.tsv")" '
    { t[NR] = $1; r[NR] = $2; f[NR] = $3 }
    END {
      step = n > 10 ? (n - 1) / 10 : 1
      for (x = 1; x <= n + 0.5; x += step) { i = int(x + 0.5); if (i > n) i = n
        if (i == last) continue; last = i
        printf "| %d:%02d | %.1f MiB | %d |\n", t[i] / 60, t[i] % 60, r[i] / 1024, f[i] }
      if (last != n) printf "| %d:%02d | %.1f MiB | %d |\n", t[n] / 60, t[n] % 60, r[n] / 1024, f[n]
    }' "$W/samples.tsv"
}

# The normal traffic's error rate: errors / requests over both kinds, from its JSON.
normal_errors() {
  awk '/"attempts":/ { gsub(/[^0-9]/, ""); a += $0 } /"errors":/ { gsub(/[^0-9]/, ""); e += $0 }
    END { printf "%d errors in %d requests: error rate %.3f %%\n", e, a, a ? e * 100 / a : 0 }' "$W/normal.json"
}

# What sluice logged on stderr beyond its start and stop lines, counted (numbers folded).
sluice_log_summary() {
  local n
  n=$(grep -Evc '^sluice: (CA |trust |listening |stopped)' "$W/sluice.log" || true)
  echo "sluice wrote $n line(s) on stderr beyond its start and stop messages$([[ $n -gt 0 ]] && echo ', most frequent:')"
  ((n > 0)) || return 0
  echo
  echo '```'
  # Without colours and timestamps, numbers folded, so that alike lines count together.
  grep -Ev '^sluice: (CA |trust |listening |stopped)' "$W/sluice.log" \
    | sed -E $'s/\x1b\\[[0-9;]*m//g; s/^[0-9-]+T[0-9:.]+Z +//; s/[0-9]+/N/g' \
    | sort | uniq -c | sort -rn | head -n 8
  echo '```'
}

# Access-log records by kind, action and status.
access_summary() {
  echo '| records | kind | action | status |'
  echo '|---:|---|---|---|'
  awk '{
      k = match($0, /"kind":"[a-z]+"/) ? substr($0, RSTART + 8, RLENGTH - 9) : "-"
      a = match($0, /"action":"[a-z-]+"/) ? substr($0, RSTART + 10, RLENGTH - 11) : "-"
      s = match($0, /"status":[0-9]+/) ? substr($0, RSTART + 9, RLENGTH - 9) : "-"
      n[k "|" a "|" s]++
    } END { for (x in n) { split(x, p, "|"); printf "| %d | %s | %s | %s |\n", n[x], p[1], p[2], p[3] } }' \
    "$W/access.log" | sort -t'|' -k2,2nr | head -n 20
}

report() {
  local when=$1 commit dirty=""
  commit=$(git -C "$REPO_DIR" rev-parse --short=12 HEAD 2> /dev/null || echo unknown)
  [[ -n $(git -C "$REPO_DIR" status --porcelain -- crates bench/src 2> /dev/null) ]] && dirty=" (with uncommitted changes in crates/ or bench/src/)"
  echo "## Soak under attack"
  echo
  echo "\`sudo bench/soak.sh${ARGS_GIVEN:+ $ARGS_GIVEN}\` on $when: $MINUTES min; sluice commit $commit$dirty;"
  echo "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) CPUs, kernel $(uname -r)."
  echo "sluice, nginx, the tarpit and the clients share every CPU of the machine."
  echo
  echo "### sluice's memory and file descriptors (sampled every $SAMPLE s)"
  echo
  echo "The traffic stops at $MINUTES:00; the samples after it show sluice once the attacks"
  echo "have stopped (the tarpit origin lives 20 s longer, then sluice is stopped)."
  echo
  resources_table
  echo
  echo "### Normal traffic: $(normal_errors)"
  echo
  cat "$W/normal.md"
  echo
  echo "### Attacks, and how sluice answered them"
  echo
  echo "Labels: an HTTP status is sluice's answer; \`GOAWAY <reason>\` the HTTP/2 error it"
  echo "sent; \`closed …\` it closed the connection; \`still open/waiting at the end of the run\`"
  echo "it had not reacted when the run ended; \`no answer within N s\` the client gave up."
  echo
  cat "$W/flood.md"
  echo
  echo "The tarpit origin's side (how long sluice held each connection to it):"
  echo
  cat "$W/tarpit.md"
  echo
  echo "### sluice's access log and stderr"
  echo
  access_summary
  echo
  sluice_log_summary
  echo
  echo "### Configuration"
  echo
  echo '```toml'
  sed "s|$W|\$W|g" "$W/sluice.toml"
  echo '```'
}

# Replace an earlier "## Soak under attack" section of OUT (up to the next "## " heading)
# with REPORT at the end; keep every other section.
write_out() { # REPORT_FILE
  local rest=$W/out.rest
  if [[ -f $OUT ]]; then
    awk '/^## / { skip = ($0 == "## Soak under attack") } !skip' "$OUT" > "$rest"
  else
    : > "$rest"
  fi
  { cat "$rest"; [[ -s $rest ]] && echo; cat "$1"; } > "$OUT"
  [[ -n ${SUDO_USER:-} ]] && chown "$SUDO_USER" "$OUT" 2> /dev/null
  return 0
}

# ---------------------------------------------------------------------------- main

main() {
  parse_args "$@"
  ((EUID == 0)) || die "run as root (sudo bench/soak.sh): it makes a network namespace"
  NS=sluice-soak-$$
  W=$(mktemp -d /tmp/sluice-soak.XXXXXX)
  chmod 755 "$W" # nginx workers run as www-data and read their files from here
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  log "work dir $W, namespace $NS, $MINUTES min"
  [[ -n $NO_INSTALL ]] || install_soak_packages
  [[ -n $NO_BUILD ]] || build_binaries
  SLUICE=$TARGET_DIR/release/sluice ATTACK=$TARGET_DIR/release/attack ATTACK_LOADGEN=$TARGET_DIR/release/loadgen
  [[ -x $SLUICE && -x $ATTACK && -x $ATTACK_LOADGEN ]] \
    || die "missing $SLUICE, $ATTACK or $ATTACK_LOADGEN (cargo build --release -p sluice -p sluice-bench)"
  raise_fd_limit
  netns_create
  make_files
  write_nginx_conf
  configure_sluice
  start_servers
  check_paths
  run_soak
  local when
  when=$(date -u '+%Y-%m-%d %H:%M UTC')
  report "$when" > "$W/report.md"
  write_out "$W/report.md"
  echo
  cat "$W/report.md"
  echo
  log "done; results in $OUT"
}

main "$@"
