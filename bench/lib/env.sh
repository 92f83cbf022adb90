# shellcheck shell=bash
# bench/run.sh helpers: messages, packages, the build, the network namespace, cgroups and
# the processes the benchmark starts. Sourced by run.sh, not run on its own.
#
# Globals read: W (work dir), NS (namespace), REPO_DIR, TARGET_DIR.
# Globals kept: PIDS (every process started, for the EXIT trap), CGROUPS (cgroups made).

PIDS=()
CGROUPS=()
CG_MODE=none      # v1 (cpuacct), v2 (unified) or none (fall back to /proc/PID/stat)
CG_BASE=""
DRIVER_CG=""
NS_MADE=""
START_PID=""

log()  { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
warn() { printf '[%(%H:%M:%S)T] WARNING: %s\n' -1 "$*" >&2; }
die()  { printf '[%(%H:%M:%S)T] ERROR: %s\n' -1 "$*" >&2; exit 1; }

# Show the last lines of a log file on stderr, indented.
show_tail() { # FILE [LINES]
  [[ -s $1 ]] || { echo "    ($1 is empty)" >&2; return 0; }
  echo "    --- last lines of $1 ---" >&2
  tail -n "${2:-20}" "$1" | sed 's/^/    /' >&2
}

# ---------------------------------------------------------------------------- packages

# Install with apt-get what is missing. Services are not started while installing
# (a temporary policy-rc.d when the machine has none): the benchmark runs its own
# nginx and Squid, never the system services.
install_packages() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx-light)
  if ! command -v squid >/dev/null || [[ ! -x /usr/lib/squid/security_file_certgen ]] \
     || ! squid -v 2>/dev/null | grep -q -- '--with-openssl'; then
    need+=(squid-openssl)
  fi
  command -v taskset >/dev/null || need+=(util-linux)
  command -v ip >/dev/null || need+=(iproute2)
  command -v openssl >/dev/null || need+=(openssl)
  command -v curl >/dev/null || need+=(curl)
  command -v timeout >/dev/null || need+=(coreutils)
  # g3proxy resolves names with c-ares over DNS only (it never reads a hosts file)
  if [[ -n $G3PROXY ]] && ! command -v dnsmasq >/dev/null; then need+=(dnsmasq-base); fi
  if ((${#need[@]})); then
    log "installing ${need[*]} with apt-get"
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [[ ! -e $policy ]]; then
      printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made_policy=1
    fi
    local rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -q \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"; } \
      > "$W/apt.log" 2>&1 || rc=$?
    [[ -n $made_policy ]] && rm -f "$policy"
    ((rc == 0)) || { show_tail "$W/apt.log"; die "apt-get install ${need[*]} failed"; }
  fi
  # perf only serves --profile: without it the measured rows still run.
  if [[ -n $PROFILE ]] && ! command -v perf > /dev/null; then
    log "installing linux-perf with apt-get (for --profile)"
    { DEBIAN_FRONTEND=noninteractive apt-get update -q \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q linux-perf; } >> "$W/apt.log" 2>&1 \
      || warn "apt-get install linux-perf failed: no profile this run"
  fi
  nginx -V 2>&1 | grep -q -- --with-http_v2_module \
    || die "$(command -v nginx) has no http_v2 module: install nginx-light or nginx from Debian"
  nginx -V 2>&1 | grep -q -- --with-http_ssl_module || die "$(command -v nginx) has no ssl module"
  squid -v | grep -q -- '--with-openssl' \
    || die "squid is not built with OpenSSL: install squid-openssl (it replaces squid)"
  [[ -x /usr/lib/squid/security_file_certgen ]] || die "/usr/lib/squid/security_file_certgen is missing"
}

# ---------------------------------------------------------------------------- build

# One release build of the proxy and the load generator, in the one target directory.
# Under sudo the build runs as the invoking user, with that user's toolchain and files.
build_binaries() {
  local cmd=(cargo build --release -p sluice -p sluice-bench)
  log "building: ${cmd[*]}"
  local rc=0
  if [[ -n ${SUDO_USER:-} && $SUDO_USER != root ]] && ! command -v cargo >/dev/null; then
    # shellcheck disable=SC2016 # expanded by the inner shell
    runuser -u "$SUDO_USER" -- bash -lc 'cd "$1" && shift && "$@"' _ "$REPO_DIR" "${cmd[@]}" \
      > "$W/build.log" 2>&1 || rc=$?
  else
    command -v cargo >/dev/null || die "cargo is not on PATH (install Rust, or run with sudo from a user that has it)"
    (cd "$REPO_DIR" && "${cmd[@]}") > "$W/build.log" 2>&1 || rc=$?
  fi
  ((rc == 0)) || { show_tail "$W/build.log" 30; die "the build failed"; }
  [[ -x $TARGET_DIR/release/sluice ]] || die "$TARGET_DIR/release/sluice is missing after the build"
  [[ -x $TARGET_DIR/release/loadgen ]] \
    || die "$TARGET_DIR/release/loadgen is missing after the build (bench/src/bin/loadgen.rs)"
}

# ---------------------------------------------------------------------------- limits

# Open files: 65536, or the hard limit when it cannot be raised (FD_LIMIT is what we got;
# the proxies' and nginx's own limits are set to it).
FD_LIMIT=65536
raise_fd_limit() {
  if ! ulimit -Hn 65536 2> /dev/null || ! ulimit -Sn 65536 2> /dev/null; then
    FD_LIMIT=$(ulimit -Hn)
    [[ $FD_LIMIT == unlimited ]] && FD_LIMIT=65536
    ulimit -Sn "$FD_LIMIT"
    warn "cannot raise the open-files limit to 65536; using the hard limit $FD_LIMIT"
    ((FD_LIMIT >= 3 * HOLD_COUNT + 1000)) \
      || die "the open-files limit $FD_LIMIT is too low to hold $HOLD_COUNT connections"
  fi
}

# ---------------------------------------------------------------------------- namespace

# A network namespace of our own with loopback up, and its /etc/hosts
# (ip netns exec bind-mounts /etc/netns/NS/hosts over /etc/hosts).
netns_create() {
  ip netns add "$NS" || die "ip netns add $NS failed"
  NS_MADE=1
  mkdir -p "/etc/netns/$NS"
  : > "/etc/netns/$NS/hosts"
  ip netns exec "$NS" ip link set lo up || die "cannot bring lo up in $NS"
}

# Replace the namespace's hosts file content in place (same inode: the bind mount that
# running processes see follows it).
netns_hosts() { # FILE
  cat "$1" > "/etc/netns/$NS/hosts"
}

in_ns() { ip netns exec "$NS" "$@"; }

# ---------------------------------------------------------------------------- cgroups

# cgroup v1 cpuacct (ns in cpuacct.usage), else v2 (cpu.stat usage_usec), else none.
cg_init() {
  local probe
  if [[ -d /sys/fs/cgroup/cpuacct && -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]]; then
    CG_MODE=v1; CG_BASE=/sys/fs/cgroup/cpuacct
  elif [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
    CG_MODE=v2; CG_BASE=/sys/fs/cgroup
  else
    CG_MODE=none
  fi
  if [[ $CG_MODE != none ]]; then
    probe="$CG_BASE/sluice-bench.$$.probe"
    if mkdir "$probe" 2>/dev/null; then
      rmdir "$probe"
    else
      CG_MODE=none
    fi
  fi
  if [[ $CG_MODE != none ]]; then
    # this script itself, so that its own CPU is not taken for the rest of the machine's
    cg_make driver; DRIVER_CG=$CG_DIR
    echo $$ > "$DRIVER_CG/cgroup.procs"
  fi
  if [[ $CG_MODE == none ]]; then
    warn "no writable cpuacct cgroup: proxy CPU is summed from /proc/PID/stat (utime+stime of"
    warn "the proxy, its children and its reaped children, in clock ticks): coarser figures"
  else
    log "proxy CPU time from cgroup $CG_MODE under $CG_BASE"
  fi
}

# Make a cgroup for one proxy instance; sets CG_DIR to its path ("" without cgroups).
CG_DIR=""
cg_make() { # NAME
  CG_DIR=""
  [[ $CG_MODE == none ]] && return 0
  CG_DIR="$CG_BASE/sluice-bench.$$.$1"
  mkdir "$CG_DIR" || die "cannot create cgroup $CG_DIR"
  CGROUPS+=("$CG_DIR")
}

# CPU time used by the processes of a cgroup (or of a process tree), in ns.
cg_usage_ns() { # CGDIR MAINPID
  local dir=$1 pid=$2
  case $CG_MODE in
    v1) cat "$dir/cpuacct.usage" ;;
    v2) awk '$1 == "usage_usec" { printf "%d\n", $2 * 1000 }' "$dir/cpu.stat" ;;
    none) tree_cpu_ns "$pid" ;;
  esac
}

# All CPU time of the machine's tasks (the root cgroup), in ns; 0 without cgroups.
root_usage_ns() {
  case $CG_MODE in
    v1) cat "$CG_BASE/cpuacct.usage" ;;
    v2) awk '$1 == "usage_usec" { printf "%d\n", $2 * 1000 }' "$CG_BASE/cpu.stat" 2> /dev/null || echo 0 ;;
    none) echo 0 ;;
  esac
}

# PIDs of a cgroup (or of a process tree).
cg_pids() { # CGDIR MAINPID
  if [[ $CG_MODE != none ]]; then cat "$1/cgroup.procs"; else tree_pids "$2"; fi
}

# A process and its descendants.
tree_pids() { # PID
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { parent[$1] = $2; pids[NR] = $1 }
    END {
      keep[root] = 1; print root
      do { added = 0
        for (i in pids) { p = pids[i]
          if (!(p in keep) && (parent[p] in keep)) { keep[p] = 1; print p; added = 1 } }
      } while (added)
    }'
}

# utime+stime of a process tree plus the reaped children of its root, in ns.
tree_cpu_ns() { # PID
  local tck; tck=$(getconf CLK_TCK)
  local p total=0 fields
  for p in $(tree_pids "$1"); do
    [[ -r /proc/$p/stat ]] || continue
    # fields after the ") " that ends the command name: 12=utime 13=stime 14=cutime 15=cstime
    fields=$(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    if [[ $p == "$1" ]]; then
      total=$((total + $(awk '{ print $12 + $13 + $14 + $15 }' <<< "$fields")))
    else
      total=$((total + $(awk '{ print $12 + $13 }' <<< "$fields")))
    fi
  done
  echo $((total * 1000000000 / tck))
}

# Resident memory (KiB) summed over the PIDs of a cgroup or process tree.
rss_kib() { # CGDIR MAINPID
  local p total=0 kb
  for p in $(cg_pids "$1" "$2"); do
    kb=$(awk '$1 == "VmRSS:" { print $2 }' "/proc/$p/status" 2>/dev/null) || kb=0
    total=$((total + ${kb:-0}))
  done
  echo "$total"
}

# Kill what is left in a cgroup (children of processes we started) and remove it.
cg_remove() { # CGDIR
  local dir=$1 p i
  [[ -n $dir && -d $dir ]] || return 0
  for i in $(seq 1 50); do
    local left
    left=$(cat "$dir/cgroup.procs" 2>/dev/null) || break
    [[ -z $left ]] && break
    for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
    sleep 0.1
  done
  for i in $(seq 1 50); do
    rmdir "$dir" 2>/dev/null && break
    sleep 0.1
  done
  [[ -d $dir ]] && warn "could not remove cgroup $dir"
  local kept=()
  for p in "${CGROUPS[@]}"; do [[ $p != "$dir" ]] && kept+=("$p"); done
  CGROUPS=("${kept[@]}")
  return 0
}

# ---------------------------------------------------------------------------- processes

alive() { # PID: running (not gone, not a zombie)
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ -n $st && $st != Z* ]]
}

# Start a command in the background inside the namespace, pinned to CPU, optionally in a
# cgroup (joined before the exec into the namespace, which remounts /sys). The PID is the
# command's own (ip netns exec and taskset exec). Sets START_PID.
spawn() { # CPU CGDIR LOG CMD...
  local cpu=$1 cg=$2 out=$3; shift 3
  (
    if [[ -n $cg ]]; then echo "$BASHPID" > "$cg/cgroup.procs"; fi
    exec ip netns exec "$NS" taskset -c "$cpu" "$@"
  ) >> "$out" 2>&1 < /dev/null &
  START_PID=$!
  PIDS+=("$START_PID")
}

# Stop a process we started: SIGTERM, up to GRACE seconds, then SIGKILL; reap it.
stop_pid() { # PID [GRACE_SECONDS]
  local pid=$1 grace=${2:-10} i
  [[ -n $pid ]] || return 0
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < grace * 10; i++)); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      warn "PID $pid did not stop within ${grace}s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true
  local kept=() p
  for p in "${PIDS[@]}"; do [[ $p != "$pid" ]] && kept+=("$p"); done
  PIDS=("${kept[@]}")
  return 0
}

# Wait until something listens on 127.0.0.1:PORT (TCP) in the namespace. On timeout, or
# when the process dies first, say which one and show the tail of its log.
wait_listen() { # NAME PID PORT LOG [TIMEOUT_SECONDS]
  local name=$1 pid=$2 port=$3 out=$4 limit=${5:-30} i
  for ((i = 0; i < limit * 10; i++)); do
    if [[ -n $(in_ns ss -Hltn "sport = :$port" 2>/dev/null) ]]; then return 0; fi
    if ! alive "$pid"; then
      show_tail "$out"
      die "$name (PID $pid) exited before listening on 127.0.0.1:$port"
    fi
    sleep 0.1
  done
  show_tail "$out"
  die "$name (PID $pid) did not listen on 127.0.0.1:$port within ${limit}s"
}

# The client, router and origin namespaces of bench/cluster.sh and bench/transparent.sh,
# with loopback up in each; veth_to_router links one of them to the router.
routed_namespaces() {
  local ns
  for ns in "$CLIENT" "$ROUTER" "$ORIGIN"; do ip netns add "$ns"; ip -n "$ns" link set lo up; done
}

veth_to_router() { # NS DEV SECOND: a veth pair NS <-> router, 10.SECOND.0.1 on the router end
  ip link add "$2" type veth peer name "$2i"
  ip link set "$2i" netns "$1"
  ip link set "$2" netns "$ROUTER"
  ip -n "$ROUTER" addr add "10.$3.0.1/24" dev "$2"
  ip -n "$ROUTER" link set "$2" up
  ip -n "$1" addr add "10.$3.0.2/24" dev "$2i"
  ip -n "$1" link set "$2i" up
  ip -n "$1" route add default via "10.$3.0.1"
}

# Their EXIT trap: stop what was started, remove the cgroups, the three namespaces, their
# /etc/netns folders and the work dir.
routed_cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  set +e
  for p in "${PIDS[@]}"; do stop_pid "$p" 5; done
  [[ -n $DRIVER_CG ]] && echo $$ > "$CG_BASE/cgroup.procs"
  for p in "${CGROUPS[@]}"; do cg_remove "$p"; done
  for p in "$CLIENT" "$ROUTER" "$ORIGIN"; do
    ip netns delete "$p" 2> /dev/null
    rm -rf "/etc/netns/${p:?}"
  done
  rm -rf "$W"
  exit "$rc"
}

# Test certificates and an nginx origin in the namespace $ORIGIN on ADDR:443 serving the
# 100-byte /small with the wildcard certificate (bench/cluster.sh, bench/transparent.sh).
start_small_origin() { # ADDR
  "$LOADGEN" certs --dir "$CERTS" --domain bench.test > "$W/certs.log" 2>&1 \
    || { show_tail "$W/certs.log"; die "loadgen certs failed"; }
  mkdir -p "$W/www"
  head -c 100 /dev/zero | tr '\0' 's' > "$W/www/small"
  chmod 755 "$W" "$W/www"; chmod 644 "$W/www/small"
  start_origin "$ORIGIN" "$1" nginx
}

# An nginx (one worker, CPU 1) in namespace NS on ADDR:443 serving $W/www with the wildcard
# certificate of $CERTS; its files under $W/NAME, its output in $W/NAME.log.
start_origin() { # NS ADDR NAME
  local ns=$1 addr=$2 name=$3
  mkdir -p "$W/$name"
  cat > "$W/$name/nginx.conf" << EOF
daemon off;
master_process on;
worker_processes 1;
user www-data;
pid $W/$name/nginx.pid;
error_log $W/$name/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  ssl_protocols TLSv1.2 TLSv1.3;
  root $W/www;
  server {
    listen $addr:443 ssl;
    ssl_certificate $CERTS/wildcard.pem;
    ssl_certificate_key $CERTS/wildcard-key.pem;
  }
}
EOF
  NS=$ns spawn 1 "" "$W/$name.log" nginx -c "$W/$name/nginx.conf"
  NS=$ns wait_listen nginx "$START_PID" 443 "$W/$name.log"
}

# The EXIT trap: stop exactly what we started, then remove the namespace, its /etc/netns
# folder, the cgroups and (unless --keep) the work dir.
cleanup() {
  local rc=$? p
  trap - EXIT INT TERM
  set +e
  for p in "${PIDS[@]}"; do alive "$p" && kill -TERM "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 30); do alive "$p" || break; sleep 0.1; done
    alive "$p" && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
  done
  [[ -n $DRIVER_CG ]] && echo $$ > "$CG_BASE/cgroup.procs"
  for p in "${CGROUPS[@]}"; do cg_remove "$p"; done
  if [[ -n $NS_MADE ]]; then
    ip netns del "$NS" 2>/dev/null || warn "could not delete namespace $NS"
    rm -rf "/etc/netns/${NS:?}"
  fi
  if [[ -n ${W:-} && -d $W ]]; then
    if [[ -n ${KEEP:-} ]]; then
      log "work dir kept: $W"
    else
      rm -rf "$W"
    fi
  fi
  exit "$rc"
}
