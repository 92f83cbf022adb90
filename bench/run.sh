#!/usr/bin/env bash
# sluice beside Squid (and, when given, g3proxy) in one run: tunnel and bump throughput,
# connections and requests per second, proxy CPU per unit of work, latency and memory per
# idle connection, against an nginx origin, in a network namespace of its own (issue 6).
# Run `bench/run.sh --help`.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(dirname "$BENCH_DIR")
TARGET_DIR=${CARGO_TARGET_DIR:-$REPO_DIR/target}
# shellcheck source=bench/lib/env.sh
source "$BENCH_DIR/lib/env.sh"
# shellcheck source=bench/lib/conf.sh
source "$BENCH_DIR/lib/conf.sh"
# shellcheck source=bench/lib/proxies.sh
source "$BENCH_DIR/lib/proxies.sh"
# shellcheck source=bench/lib/measure.sh
source "$BENCH_DIR/lib/measure.sh"
# shellcheck source=bench/lib/profile.sh
source "$BENCH_DIR/lib/profile.sh"

usage() {
  cat <<'EOF'
Usage: sudo bench/run.sh [options]

Installs what it needs (nginx-light, squid-openssl, util-linux, iproute2, openssl, curl;
dnsmasq-base with --g3proxy),
builds `cargo build --release -p sluice -p sluice-bench`, and in a network namespace of
its own runs an nginx origin (CPU 1, with the load generator) and one proxy at a time
(CPU 0, in a cpuacct cgroup so its CPU time, helpers included, is read exactly). Prints
one table and writes it, with the machine, versions, every loadgen command line and every
proxy configuration, to bench/RESULTS.md.

Rows (--only takes a comma-separated list of these names or shell patterns):
  tunnel-1 tunnel-8      tunnel throughput, 1 and 8 streams of 100 MiB (800 MiB per
                         repetition: 8 downloads in a row, or 8 at once): MB/s, CPU s/GB
  tunnel-conns           tunnel: new connection, CONNECT, TLS, GET 100 B, close: conns/s, CPU us/conn
  tunnel-req             tunneled keep-alive requests (TLS to the origin through CONNECT)
                         over 32 connections: req/s, CPU us/req, p50 and p99 latency
  bump-conns             the same bumped, one host name (certificate cache hits)
  bump-names             the same bumped, 2,000 names each with its own certificate (misses;
                         proxy restarted, Squid's ssl_db re-initialised, before each repetition)
  bump-req-h1 bump-req-h2  bumped keep-alive requests over 32 connections: req/s, CPU us/req
  bump-1 bump-8          bumped throughput, 1 and 8 streams
  idle-tunnel idle-bump  resident memory per idle connection, 2,000 held open

Options:
  --reps N          measured repetitions per row and proxy (default 3); median (min–max)
  --duration SECS   length of each measured conns/requests run (default 10)
  --warmup SECS     length of the warm-up run before the measured ones (default 2)
  --quick           smoke test: 1 rep, 3 s runs, 1 s warm-up, 200 held connections and
                    200 names; writes bench/RESULTS-quick.md unless --out is given
  --only ROWS       run only these rows (e.g. --only 'bump-*,idle-bump')
  --proxies LIST    columns to measure (default direct,squid,sluice[,g3proxy])
  --out FILE        where to write the results (default bench/RESULTS.md)
  --profile         then run each row once more under perf (installs linux-perf) and add
                    a table of where sluice's CPU goes: kernel by system call, crypto,
                    copies, allocator, rustls, hyper, tokio, sluice's own code
  --keep            keep the work dir (configs, logs, raw JSON, perf data) and print its path
  --no-install      do not run apt-get (fail if something is missing)
  --no-build        do not run cargo build (use the binaries in the target dir)
  --g3proxy PATH    add a g3proxy column (also needs --g3fcgen); never built or fetched.
                    Tested with g3proxy 1.13.0, built outside this repository from
                    https://github.com/bytedance/g3 (Debian capnproto, libssl-dev and
                    libc-ares-dev installed) with
                      cargo build --release -p g3proxy -p g3fcgen --no-default-features \
                        --features g3proxy/rustls-ring,g3proxy/c-ares
                    Its c-ares resolver reads no hosts file: run.sh then serves the bench
                    names from dnsmasq (installs dnsmasq-base) on the namespace's 127.0.0.1:53.
  --g3fcgen PATH    g3proxy's certificate generator, for the bump rows.
  -h, --help        this text

Needs root (namespaces, cgroups, apt-get) and two CPUs.
EOF
}

# ---------------------------------------------------------------------------- options

REPS=3 DURATION=10 WARMUP=2 QUICK="" ONLY="" PROXY_LIST="" OUT="" KEEP="" NO_INSTALL="" NO_BUILD="" PROFILE=""
G3PROXY="" G3FCGEN=""
HOLD_COUNT=2000 NAMES_COUNT=2000
ARGS_GIVEN="$*"
parse_args() {
  local reps="" duration="" warmup=""
  while (($#)); do
    case $1 in
      --reps) reps=${2:?--reps needs a number}; shift ;;
      --duration) duration=${2:?--duration needs seconds}; shift ;;
      --warmup) warmup=${2:?--warmup needs seconds}; shift ;;
      --quick) QUICK=1 ;;
      --only) ONLY=${2:?--only needs rows}; shift ;;
      --proxies) PROXY_LIST=${2:?--proxies needs a list}; shift ;;
      --out) OUT=${2:?--out needs a file}; shift ;;
      --profile) PROFILE=1 ;;
      --keep) KEEP=1 ;;
      --no-install) NO_INSTALL=1 ;;
      --no-build) NO_BUILD=1 ;;
      --g3proxy) G3PROXY=${2:?--g3proxy needs a path}; shift ;;
      --g3fcgen) G3FCGEN=${2:?--g3fcgen needs a path}; shift ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; echo >&2; die "unknown option: $1" ;;
    esac
    shift
  done
  if [[ -n $QUICK ]]; then
    REPS=1 DURATION=3 WARMUP=1 HOLD_COUNT=200 NAMES_COUNT=200
    OUT=${OUT:-$BENCH_DIR/RESULTS-quick.md}
  fi
  REPS=${reps:-$REPS} DURATION=${duration:-$DURATION} WARMUP=${warmup:-$WARMUP}
  OUT=${OUT:-$BENCH_DIR/RESULTS.md}
  [[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive integer"
  [[ $DURATION =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--duration must be a number of seconds"
  [[ $WARMUP =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "--warmup must be a number of seconds"
  if [[ -n $G3PROXY ]]; then
    [[ -x $G3PROXY ]] || die "--g3proxy $G3PROXY is not an executable"
    [[ -n $G3FCGEN && -x $G3FCGEN ]] || die "--g3proxy needs --g3fcgen PATH (its certificate generator)"
    G3PROXY=$(realpath "$G3PROXY") G3FCGEN=$(realpath "$G3FCGEN")
  fi
  local default=direct,squid,sluice
  [[ -n $G3PROXY ]] && default+=,g3proxy
  IFS=, read -ra PROXIES <<< "${PROXY_LIST:-$default}"
  local p
  for p in "${PROXIES[@]}"; do
    case $p in direct | squid | sluice) ;; g3proxy) [[ -n $G3PROXY ]] || die "g3proxy needs --g3proxy" ;;
      *) die "unknown proxy '$p' in --proxies" ;; esac
  done
  ROWS=()
  local r pat
  for r in "${ALL_ROWS[@]}"; do
    if [[ -z $ONLY ]]; then ROWS+=("$r"); continue; fi
    IFS=, read -ra pats <<< "$ONLY"
    for pat in "${pats[@]}"; do
      # shellcheck disable=SC2053 # a pattern on purpose
      if [[ $r == $pat ]]; then ROWS+=("$r"); break; fi
    done
  done
  ((${#ROWS[@]})) || die "--only '$ONLY' matches no row (rows: ${ALL_ROWS[*]})"
}

# ---------------------------------------------------------------------------- setup

ORIGIN_PORT=8443 NAMES_PORT=8444
SQUID_PORT=3128 SLUICE_PORT=3130 G3_PORT=3132 G3FCGEN_PORT=2999

setup_workdir() {
  W=$(mktemp -d /tmp/sluice-bench.XXXXXX)
  chmod 755 "$W"   # Squid runs as its own user and reads its files from here
  CERTS=$W/certs SLUICE_CA=$W/sluice-ca SQUID_CA=$W/squid-ca G3_CA=$W/g3-ca
  mkdir -p "$W/sluice" "$W/squid" "$W/g3proxy"
  : > "$W/results.tsv"; : > "$W/notes.tsv"; : > "$W/raw.jsonl"; : > "$W/commands.tsv"
}

make_certificates() {
  log "test certificates: loadgen certs --count 2000 (wildcard + one per name)"
  "$LOADGEN" certs --dir "$CERTS" --count 2000 --domain bench.test > "$W/certs.log" 2>&1 \
    || { show_tail "$W/certs.log"; die "loadgen certs failed"; }
  local f
  for f in ca.pem wildcard.pem wildcard-key.pem names.txt; do
    [[ -s $CERTS/$f ]] || die "loadgen certs did not write $CERTS/$f"
  done
  ((NAMES_COUNT <= $(wc -l < "$CERTS/names.txt"))) || die "fewer than $NAMES_COUNT names in names.txt"
  NAMES_FILE=$W/names-$NAMES_COUNT.txt
  head -n "$NAMES_COUNT" "$CERTS/names.txt" > "$NAMES_FILE"
  chmod -R a+rX "$CERTS"
  "$SLUICE" ca init --dir "$SLUICE_CA" > "$W/sluice/ca-init.log" 2>&1 \
    || { show_tail "$W/sluice/ca-init.log"; die "sluice ca init failed"; }
  make_openssl_ca "$SQUID_CA" "Squid bench CA"
  make_openssl_ca "$G3_CA" "g3proxy bench CA"
  make_evil_cert
  SQUID_USER=$(squid -v | sed -n "s/.*--with-default-user=\([a-z_][a-z0-9_-]*\).*/\1/p")
  SQUID_USER=${SQUID_USER:-proxy}
  chown -R "$SQUID_USER" "$W/squid" "$SQUID_CA"
}

write_configs() {
  write_hosts
  netns_hosts "$W/hosts.small"
  write_nginx_conf
  write_sluice_conf tunnel; write_sluice_conf bump
  local m
  for m in tunnel bump; do
    "$SLUICE" check -c "$W/sluice-$m.toml" > "$W/sluice/check-$m.log" 2>&1 \
      || { show_tail "$W/sluice/check-$m.log"; die "sluice check refused $W/sluice-$m.toml"; }
  done
  write_squid_conf tunnel; write_squid_conf bump
  for m in tunnel bump; do
    in_ns squid -k parse -f "$W/squid-$m.conf" > "$W/squid/parse-$m.log" 2>&1 \
      || { show_tail "$W/squid/parse-$m.log"; die "squid -k parse refused $W/squid-$m.conf"; }
  done
  if [[ -n $G3PROXY ]]; then write_g3_conf tunnel; write_g3_conf bump; fi
}

# ---------------------------------------------------------------------------- report

spec_lines() { # ROW: the figures of a row, for report.awk
  local r=$1 t; t=$(row_title "$r")
  case $r in
    tunnel-1 | tunnel-8 | bump-1 | bump-8)
      local dir=0.95 cpu=0.2
      [[ $r == bump-* ]] && dir=0.90 cpu=0.6
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" rate "MB/s" yes "dir:$dir" \
        "$r" "$t" cpu "proxy CPU s/GB" no "le:$cpu" ;;
    *-conns | bump-names)
      local cpu=40
      [[ $r == bump-conns ]] && cpu=400
      [[ $r == bump-names ]] && cpu=450
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" rate "conns/s" yes - \
        "$r" "$t" cpu "proxy CPU µs/conn" no "le:$cpu" \
        "$r" "$t" p50 "p50 ms" yes - "$r" "$t" p99 "p99 ms" yes - ;;
    tunnel-req)
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" rate "req/s" yes - \
        "$r" "$t" cpu "proxy CPU µs/req" no - "$r" "$t" p50 "p50 ms" yes - \
        "$r" "$t" p99 "p99 ms" yes - ;;
    bump-req-*)
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" rate "req/s" yes - \
        "$r" "$t" cpu "proxy CPU µs/req" no "le:15" "$r" "$t" p99 "p99 ms" yes - ;;
    idle-tunnel) printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" kib "KiB/conn" no "le:10" ;;
    idle-bump) printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$t" kib "KiB/conn" no "le:48" ;;
  esac
}

results_table() {
  local r
  for r in "${ROWS[@]}"; do spec_lines "$r"; done > "$W/spec.tsv"
  awk -v proxies="$(IFS=,; echo "${PROXIES[*]}")" -f "$BENCH_DIR/lib/report.awk" \
    "$W/spec.tsv" "$W/results.tsv" "$W/notes.tsv"
}

machine_lines() {
  echo "- CPU: $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) CPUs; kernel $(uname -r); $(. /etc/os-release && echo "$PRETTY_NAME")"
  echo "- $(squid -v | head -n 1); $(nginx -v 2>&1 | sed 's/^nginx version: //'); $(openssl version)"
  local commit dirty=""
  commit=$(git -C "$REPO_DIR" rev-parse --short=12 HEAD 2> /dev/null || echo unknown)
  [[ -n $(git -C "$REPO_DIR" status --porcelain -- crates bench/src 2> /dev/null) ]] && dirty=" (with uncommitted changes in crates/ or bench/src/)"
  echo "- sluice commit $commit$dirty; $(rustc -V 2> /dev/null || runuser -u "${SUDO_USER:-root}" -- bash -lc 'rustc -V' 2> /dev/null || echo 'rustc: unknown')"
  [[ -n $G3PROXY ]] && echo "- g3proxy: $("$G3PROXY" -V 2>&1 | head -n 1)"
  echo "- proxy CPU accounting: $([[ $CG_MODE == none ]] && echo "utime+stime from /proc (coarse, clock ticks)" || echo "cgroup $CG_MODE cpuacct, nanoseconds")"
  echo "- nginx with $(wc -l < "$CERTS/names.txt") + 2 server blocks was listening ${NGINX_START_MS} ms after start"
}

profile_section() {
  echo "## Where sluice's CPU goes"
  echo
  echo "One more run of each row against a fresh sluice, sampled by \`perf record -e cpu-clock"
  echo "-F 1999 -g -p PID\` (perf on CPU 1). Each cell is that run's sluice CPU per unit of"
  echo "work (read from its cgroup, as in the measured runs) times the share of the samples in"
  echo "that category; the median of the measured runs is shown beside it. A kernel"
  echo "sample counts for the system call it ran under (named by the libc wrapper on its"
  echo "stack; \"other\" is interrupts and faults outside system calls), a user-space sample"
  echo "for the library of its own function (inlined code counts for its caller; generic"
  echo "glue such as future combinators is \"other\"). On loopback, sending a segment also"
  echo "runs the receiver's TCP/IP input in the sender's context: \"send\""
  echo "includes the origin's and the client's receive path, and the wakeup of the process"
  echo "on the other CPU (an inter-processor interrupt: a VM exit under a hypervisor)."
  echo "The last line counts the samples with a trust check anywhere on their stack: the"
  echo "upstream chain's verification and revocation (webpki, sluice_tls::verify and ::ocsp)"
  echo "and the SNI and Host checks. It is a lower bound: perf walks stacks by frame"
  echo "pointers, which the release build omits, so a sample whose stack lost the caller"
  echo "(a signature check deep in aws-lc, say) is not counted."
  echo
  profile_table
}

# What the proxies said beyond their start-up banners, counted (numbers folded to N).
log_summary() {
  local f n
  for f in "$W"/sluice/stderr-*.log "$W"/squid/cache-*.log "$W"/g3proxy/g3proxy-*.log; do
    [[ -f $f ]] || continue
    case $f in
      */sluice/*) n=$(grep -Evc '^sluice: (CA |trust |listening |stopped)' "$f" || true)
        echo "- \`\$W/${f#"$W"/}\`: $n line(s) beyond the start and stop messages" ;;
      */squid/*) n=$(grep -Ec 'ERROR|WARNING|FATAL|assertion' "$f" || true)
        echo "- \`\$W/${f#"$W"/}\`: $n ERROR/WARNING/FATAL line(s)" ;;
      *) n=$(grep -Eic 'error|warn' "$f" || true)
        echo "- \`\$W/${f#"$W"/}\`: $n line(s) with error or warn" ;;
    esac
    ((n > 0)) || continue
    case $f in
      */sluice/*) grep -Ev '^sluice: (CA |trust |listening |stopped)' "$f" ;;
      */squid/*) grep -E 'ERROR|WARNING|FATAL|assertion' "$f" | cut -d'|' -f2- ;;
      *) grep -Ei 'error|warn' "$f" ;;
    esac | sed -E 's/[0-9]+/N/g; s/0xN[0-9a-f]*/0x…/g' | sort | uniq -c | sort -rn \
      | awk 'NR <= 5 { print "        " $0 }' # reads to the end: no SIGPIPE under pipefail
  done
}

write_report() {
  local table=$1 when=$2 elapsed=$3 f soak=""
  # bench/soak.sh and bench/cluster.sh keep their sections in the same file, and the
  # round-two notes are written by hand: carry them over.
  [[ -f $OUT ]] && soak=$(awk '/^## / { keep = ($0 == "## Soak under attack" || $0 ~ /^## Round two/ || $0 ~ /^## What Redis adds/) } keep' "$OUT")
  {
    echo "# sluice benchmark results"
    echo
    echo "\`bench/run.sh${ARGS_GIVEN:+ $ARGS_GIVEN}\` on $when, ${elapsed} min; $REPS repetition(s) per row and"
    echo "proxy, each after a warm-up run; measured conns/requests runs of ${DURATION} s;"
    echo "$HOLD_COUNT held connections for memory; $NAMES_COUNT names for the certificate-miss row."
    echo
    machine_lines
    echo
    echo "Each proxy runs alone, pinned to CPU 0 (\`taskset -c 0\`), in a cgroup of its own whose"
    echo "CPU time (the proxy and its helper processes, user + system) is read right before and"
    echo "right after each measured loadgen run. loadgen and nginx (one worker) share CPU 1."
    echo "*direct* is loadgen straight to nginx. Cells: median (min–max) over the repetitions;"
    echo "ratios are of medians. CPU per connection/request divides by the operations loadgen"
    echo "completed; s/GB divides by the body bytes received (GB = 10^9 bytes, MB = 10^6)."
    echo "A throughput repetition moves 800 MiB: 8 downloads of /big one after the other (1"
    echo "stream) or at once (8 streams); MB/s = bytes / the sum of loadgen's download times."
    echo "Memory: (sum of VmRSS over the proxy's processes while the connections are held −"
    echo "before they were opened) / connections held. On loopback the TCP receive work of a"
    echo "segment runs in the sender's context, so a proxy's CPU includes the receive side of"
    echo "what it sends (and not of what it receives); the same for every proxy. The CPU the"
    echo "rest of the machine used during each run (root cgroup − proxy − nginx − loadgen −"
    echo "this script) is kept in the raw JSON (\"other_cpu\", in CPUs), and so is the share of"
    echo "each CPU's time the hypervisor gave to other guests (\"steal_cpu0\", \"steal_cpu1\", from"
    echo "/proc/stat); runs where the first exceeded $OTHER_MAX of a CPU or the second $STEAL_MAX are"
    echo "listed under the table."
    echo
    echo "$table"
    echo
    echo "Ratios above 1 mean more for sluice: better for MB/s, conns/s and req/s, worse for"
    echo "CPU, latency and memory."
    echo
    if [[ -n $PROFILE ]]; then profile_section; echo; fi
    echo "## Checks before measuring"
    echo
    for f in "${CHECKS[@]}"; do echo "- $f"; done
    echo
    echo "## What the proxies logged"
    echo
    log_summary
    echo
    echo "## loadgen command lines"
    echo
    echo "\`\$W\` is the work dir ($W), \`loadgen\` is \`$LOADGEN\`, run as"
    echo "\`ip netns exec NS taskset -c 1 loadgen …\`; each line once, labelled row/proxy"
    echo "(warm-up, or the measured repetitions). Raw JSON of every run: \`${RAW_COPY:-\$W/raw.jsonl}\`."
    echo
    echo '```'
    awk -F'\t' '{ l = $1; sub(/ rep [0-9]+$/, "", l); k = l "\t" $2; if (!seen[k]++) print l ": " $2 }' \
      "$W/commands.tsv" | sed "s|$W|\$W|g"
    echo '```'
    echo
    echo "## Configurations"
    echo
    echo "Proxies run as \`taskset -c 0 sluice run -c FILE\`, \`taskset -c 0 squid -N -f FILE\`$([[ -n $G3PROXY ]] && echo ", \`taskset -c 0 g3proxy -c FILE\` (+ \`g3fcgen -c \$W/g3fcgen.yaml\`)")."
    local files=("$W/sluice-tunnel.toml" "$W/sluice-bump.toml" "$W/squid-tunnel.conf" "$W/squid-bump.conf")
    [[ -n $G3PROXY ]] && files+=("$W/g3proxy-tunnel.yaml" "$W/g3proxy-bump.yaml" "$W/g3fcgen.yaml")
    for f in "${files[@]}"; do
      echo
      echo "\`${f/#$W/\$W}\`:"
      echo
      echo '```'
      sed "s|$W|\$W|g" "$f"
      echo '```'
    done
    echo
    echo "\`\$W/nginx/nginx.conf\` (the 2,000 per-name server blocks after the first elided):"
    echo
    echo '```'
    sed "s|$W|\$W|g" "$W/nginx/nginx.conf" | awk '!done { print; if (/server_name h0001\./) f = 1; else if (f && /^  }/) done = 1 }'
    echo "  # … one such server block per name, h0002.bench.test … h2000.bench.test"
    echo "}"
    echo '```'
    if [[ -n $soak ]]; then echo; echo "$soak"; fi
  } > "$OUT"
}

# ---------------------------------------------------------------------------- main

main() {
  parse_args "$@"
  ((EUID == 0)) || die "run as root (sudo bench/run.sh): it makes a network namespace and cgroups"
  (($(nproc) >= 2)) || die "needs at least 2 CPUs (proxy on CPU 0, load generator and origin on CPU 1)"
  local t_start; t_start=$(date +%s)
  NS=sluice-bench-$$
  setup_workdir
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  log "work dir $W, namespace $NS, rows: ${ROWS[*]}, proxies: ${PROXIES[*]}, reps $REPS"
  [[ -n $NO_INSTALL ]] || install_packages
  [[ -n $NO_BUILD ]] || build_binaries
  SLUICE=$TARGET_DIR/release/sluice LOADGEN=$TARGET_DIR/release/loadgen
  [[ -x $SLUICE && -x $LOADGEN ]] || die "missing $SLUICE or $LOADGEN (build with cargo build --release -p sluice -p sluice-bench)"
  LOADGEN_COUNT=""
  if "$LOADGEN" conns --help 2>&1 | grep -q -- '--count'; then LOADGEN_COUNT=1
  else warn "loadgen conns has no --count: the $NAMES_COUNT-name row runs for --duration instead (names may repeat)"; fi
  raise_fd_limit
  cg_init
  netns_create
  make_certificates
  write_configs
  start_nginx
  [[ -z $G3PROXY ]] || start_dns
  check_origin
  local p
  for p in "${PROXIES[@]}"; do [[ $p != direct ]] && check_proxy "$p"; done
  [[ -z $CHECK_FAILED ]] || warn "some checks failed (see above); measuring anyway, the report lists them"

  local r
  for r in "${ROWS[@]}"; do run_row "$r"; done
  [[ -z $PROFILE ]] || profile_rows

  local when elapsed table
  when=$(date -u '+%Y-%m-%d %H:%M UTC')
  elapsed=$(awk -v s="$(( $(date +%s) - t_start ))" 'BEGIN { printf "%.1f", s / 60 }')
  if [[ -z $QUICK ]]; then
    mkdir -p "$BENCH_DIR/results"
    RAW_COPY=bench/results/raw-$(date -u +%Y%m%d-%H%M%S).jsonl
    cp "$W/raw.jsonl" "$REPO_DIR/$RAW_COPY"
  fi
  table=$(results_table)
  write_report "$table" "$when" "$elapsed"
  if [[ -n ${SUDO_USER:-} ]]; then
    chown "$SUDO_USER" "$OUT" 2> /dev/null || true
    if [[ -n ${RAW_COPY:-} ]]; then chown -R "$SUDO_USER" "$BENCH_DIR/results" 2> /dev/null || true; fi
  fi
  echo
  echo "$table"
  echo
  log "done in $elapsed min; results in $OUT"
  # A proxy that did not really tunnel, bump or verify makes the figures meaningless.
  [[ -z $CHECK_FAILED ]] || die "some checks failed (listed in $OUT)"
}

main "$@"
