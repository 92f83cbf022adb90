# shellcheck shell=bash
# bench/run.sh: the rows. Each row runs loadgen (pinned to CPU 1, with nginx) directly and
# through each proxy (pinned to CPU 0, alone), a short warm-up then --reps measured runs,
# reading the proxy's CPU counter right before and right after each measured run.
# Sourced by run.sh, not run on its own.
#
# Files in the work dir: results.tsv (row, proxy, rep, metric, value), notes.tsv (row,
# proxy, note), raw.jsonl (every loadgen JSON line with its context), commands.tsv (every
# loadgen command line).

ALL_ROWS=(tunnel-1 tunnel-8 tunnel-conns tunnel-req bump-conns bump-names bump-req-h1 bump-req-h2
          bump-1 bump-8 idle-tunnel idle-bump)
LG_JSON=""

row_title() {
  case $1 in
    tunnel-1) echo "tunnel throughput, 1 stream of /big" ;;
    tunnel-8) echo "tunnel throughput, 8 streams of /big" ;;
    tunnel-conns) echo "tunnel, new connection + GET /small" ;;
    tunnel-req) echo "tunneled keep-alive GET /small, HTTP/1.1, 32 connections" ;;
    bump-conns) echo "bump, new connection + GET /small, 1 name (cert cache hits)" ;;
    bump-names) echo "bump, new connection + GET /small, $NAMES_COUNT names (cert misses)" ;;
    bump-req-h1) echo "bumped keep-alive GET /small, HTTP/1.1, 32 connections" ;;
    bump-req-h2) echo "bumped keep-alive GET /small, HTTP/2, 32 connections" ;;
    bump-1) echo "bumped throughput, 1 stream of /big" ;;
    bump-8) echo "bumped throughput, 8 streams of /big" ;;
    idle-tunnel) echo "idle tunneled connection ($HOLD_COUNT held)" ;;
    idle-bump) echo "idle bumped connection ($HOLD_COUNT held)" ;;
  esac
}

row_mode() { case $1 in tunnel-* | idle-tunnel) echo tunnel ;; *) echo bump ;; esac; }

# The loadgen arguments of a row's measured run (without --proxy/--ca).
row_args() {
  local t=bench.test:$ORIGIN_PORT
  case $1 in
    tunnel-1 | bump-1) echo "download --target $t --path /big --concurrency 1" ;;
    tunnel-8 | bump-8) echo "download --target $t --path /big --concurrency 8" ;;
    tunnel-conns | bump-conns) echo "conns --target $t --path /small --concurrency 16 --duration $DURATION" ;;
    bump-names)
      if [[ -n $LOADGEN_COUNT ]]; then
        echo "conns --target bench.test:$NAMES_PORT --names $NAMES_FILE --path /small --concurrency 16 --count $NAMES_COUNT --duration 600"
      else
        echo "conns --target bench.test:$NAMES_PORT --names $NAMES_FILE --path /small --concurrency 16 --duration $DURATION"
      fi ;;
    tunnel-req | bump-req-h1) echo "requests --target $t --path /small --concurrency 32 --http 1 --duration $DURATION" ;;
    bump-req-h2) echo "requests --target $t --path /small --concurrency 32 --http 2 --duration $DURATION" ;;
    idle-*) echo "hold --target $t --path /small --concurrency $HOLD_COUNT --duration 900" ;;
  esac
}

# The warm-up: the same work, shorter; for the rows that must start cold (2,000 names)
# or measure memory, new connections to bench.test only.
row_warm_args() {
  local t=bench.test:$ORIGIN_PORT
  case $1 in
    *-conns | *-req*) row_args "$1" | sed "s/--duration [0-9.]*/--duration $WARMUP/" ;;
    tunnel-1 | bump-1 | tunnel-8 | bump-8) row_args "$1" ;;
    bump-names | idle-*) echo "conns --target $t --path /small --concurrency 16 --duration $WARMUP" ;;
  esac
}

# Rows whose every repetition needs a fresh proxy: every name a certificate miss, and
# memory measured from a process that has not held connections before.
row_restarts() { case $1 in bump-names | idle-*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------------------- loadgen

# Run loadgen in the namespace on CPU 1; its JSON line lands in LG_JSON.
loadgen_run() { # LABEL TIMEOUT_SECONDS ARGS...
  local label=$1 limit=$2 out rc=0; shift 2
  printf '%s\t%s\n' "$label" "loadgen $*" >> "$W/commands.tsv"
  LG_JSON=""
  out=$(
    if [[ -n $LOADGEN_CG ]]; then echo "$BASHPID" > "$LOADGEN_CG/cgroup.procs"; fi
    exec timeout --foreground -k 10 "$limit" ip netns exec "$NS" taskset -c 1 "$LOADGEN" "$@" 2> "$W/loadgen.err"
  ) || rc=$?
  { echo "== $label: loadgen $*"; cat "$W/loadgen.err"; } >> "$W/loadgen-stderr.log"
  LG_JSON=$(grep '^{' <<< "$out" | tail -n 1) || true
  if ((rc != 0)) || [[ -z $LG_JSON ]]; then
    ((rc == 124)) && warn "loadgen ($label) timed out after ${limit}s"
    warn "loadgen ($label) failed (exit $rc): loadgen $*"
    show_tail "$W/loadgen.err" 10
    return 1
  fi
}

jget() { # JSON KEY: a number field of a flat JSON object
  sed -n "s/.*\"$2\"[[:space:]]*:[[:space:]]*\([-0-9.eE+]*\).*/\1/p" <<< "$1"
}

record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$W/results.tsv"; }          # ROW PROXY REP METRIC VALUE
note() { printf '%s\t%s\t%s\n' "$1" "$2" "$3" >> "$W/notes.tsv"; warn "$1 / $2: $3"; } # ROW PROXY TEXT
raw() { # ROW PROXY REP PHASE EXTRA_JSON_FIELDS
  printf '{"row":"%s","proxy":"%s","rep":%s,"phase":"%s"%s,"loadgen":%s}\n' \
    "$1" "$2" "$3" "$4" "$5" "${LG_JSON:-null}" >> "$W/raw.jsonl"
}

cpu_fields() { # PROXY_CPU_NS: the CPU fields of a raw record
  local steal; read -ra steal <<< "$SNAP_STEAL"
  printf ',"proxy_cpu_ns":%s,"cpu_accounting":"%s","other_cpu":%s,"steal_cpu0":%s,"steal_cpu1":%s' \
    "$1" "$CG_MODE" "${SNAP_OTHER:-null}" "${steal[0]}" "${steal[1]}"
}

# A run during which the rest of the machine used more than OTHER_MAX of a CPU, or the
# hypervisor took more than STEAL_MAX of CPU 0 or CPU 1, is noted.
OTHER_MAX=0.10 STEAL_MAX=0.02
check_other() { # ROW REP
  if [[ -n $SNAP_OTHER ]] && awk -v x="$SNAP_OTHER" -v m="$OTHER_MAX" 'BEGIN { exit !(x > m) }'; then
    note "$1" "$P_NAME" "rep $2: other processes on the machine used $(awk -v x="$SNAP_OTHER" 'BEGIN { printf "%.0f", x * 100 }') % of a CPU during the run (figures disturbed)"
  fi
  local steal; read -ra steal <<< "$SNAP_STEAL"
  if awk -v a="${steal[0]}" -v b="${steal[1]}" -v m="$STEAL_MAX" 'BEGIN { exit !(a > m || b > m) }'; then
    note "$1" "$P_NAME" "rep $2: the hypervisor ran other guests for $(awk -v x="${steal[0]}" 'BEGIN { printf "%.0f", x * 100 }') % of CPU 0's and $(awk -v x="${steal[1]}" 'BEGIN { printf "%.0f", x * 100 }') % of CPU 1's time during the run (steal; figures disturbed)"
  fi
}

proxy_args() { # the --proxy/--ca arguments for the running proxy
  printf '%s\n' --ca "$CERTS/ca.pem"
  if [[ $P_NAME != direct ]]; then printf '%s\n' --proxy "127.0.0.1:$P_PORT" --ca "$P_CA"; fi
}

# One measured repetition of a conns/requests row, with the proxy's CPU read around it.
measure_ops() { # ROW REP
  local row=$1 rep=$2 args pargs s0 s1 cpu limit ok errors
  read -ra args <<< "$(row_args "$row")"
  mapfile -t pargs < <(proxy_args)
  limit=$((${DURATION%.*} + 120))
  [[ $row == bump-names ]] && limit=700
  s0=$(cpu_snapshot)
  if ! loadgen_run "$row/$P_NAME rep $rep" "$limit" "${args[@]}" "${pargs[@]}"; then
    raw "$row" "$P_NAME" "$rep" failed ""
    return 1
  fi
  s1=$(cpu_snapshot)
  snapshot_delta "$s0" "$s1"; cpu=$SNAP_PROXY_NS
  raw "$row" "$P_NAME" "$rep" measured "$(cpu_fields "$cpu")"
  check_other "$row" "$rep"
  ok=$(jget "$LG_JSON" ok); errors=$(jget "$LG_JSON" errors)
  record "$row" "$P_NAME" "$rep" errors "${errors:-0}"
  record "$row" "$P_NAME" "$rep" rate "$(jget "$LG_JSON" per_sec)"
  record "$row" "$P_NAME" "$rep" p50 "$(jget "$LG_JSON" p50_ms)"
  record "$row" "$P_NAME" "$rep" p99 "$(jget "$LG_JSON" p99_ms)"
  if [[ $P_NAME != direct ]] && ((ok > 0)); then
    record "$row" "$P_NAME" "$rep" cpu "$(awk -v c="$cpu" -v n="$ok" 'BEGIN { printf "%.2f", c / 1000 / n }')"
  fi
  if [[ $row == bump-names && -n $LOADGEN_COUNT ]] && ((ok + errors != NAMES_COUNT)); then
    note "$row" "$P_NAME" "rep $rep: $((ok + errors)) connections instead of $NAMES_COUNT"
  fi
  if [[ $row == bump-names && -z $LOADGEN_COUNT ]] && ((ok + errors > NAMES_COUNT)); then
    note "$row" "$P_NAME" "rep $rep: $((ok + errors)) connections in ${DURATION} s over $NAMES_COUNT names: some were certificate cache hits (loadgen has no --count)"
  fi
  return 0
}

# One measured repetition of a throughput row: 800 MiB in all (a 1-stream download is
# run 8 times back to back, 8 streams once), so that a repetition lasts seconds, not a
# fraction of one; MB/s = all body bytes / the sum of loadgen's secs, CPU per GB over all.
measure_download() { # ROW REP
  local row=$1 rep=$2 args pargs s0 s1 cpu conc runs i bytes=0 secs=0 errors=0
  read -ra args <<< "$(row_args "$row")"
  mapfile -t pargs < <(proxy_args)
  conc=$(sed -n 's/.*--concurrency \([0-9]*\).*/\1/p' <<< "${args[*]}")
  runs=$(((8 + conc - 1) / conc))
  s0=$(cpu_snapshot)
  for ((i = 1; i <= runs; i++)); do
    if ! loadgen_run "$row/$P_NAME rep $rep" 900 "${args[@]}" "${pargs[@]}"; then
      raw "$row" "$P_NAME" "$rep" failed ""
      return 1
    fi
    raw "$row" "$P_NAME" "$rep" "measured $i/$runs" ""
    bytes=$((bytes + $(jget "$LG_JSON" bytes)))
    secs=$(awk -v a="$secs" -v b="$(jget "$LG_JSON" secs)" 'BEGIN { printf "%.6f", a + b }')
    errors=$((errors + $(jget "$LG_JSON" errors)))
  done
  s1=$(cpu_snapshot)
  snapshot_delta "$s0" "$s1"; cpu=$SNAP_PROXY_NS
  LG_JSON=null
  raw "$row" "$P_NAME" "$rep" measured ",\"runs\":$runs,\"bytes\":$bytes,\"secs\":$secs$(cpu_fields "$cpu")"
  check_other "$row" "$rep"
  record "$row" "$P_NAME" "$rep" errors "$errors"
  if ((bytes > 0)); then
    record "$row" "$P_NAME" "$rep" rate "$(awk -v b="$bytes" -v s="$secs" 'BEGIN { printf "%.2f", b / s / 1e6 }')"
    # ns of CPU per byte is s per GB (10^9 bytes)
    if [[ $P_NAME != direct ]]; then
      record "$row" "$P_NAME" "$rep" cpu "$(awk -v c="$cpu" -v b="$bytes" 'BEGIN { printf "%.4f", c / b }')"
    fi
  fi
  return 0
}

# Hold HOLD_COUNT idle connections open and read the proxy's resident memory before and
# while they are held. loadgen keeps them until its stdin reaches EOF.
measure_hold() { # ROW REP
  local row=$1 rep=$2 args pargs rss0 rss1 fifo=$W/hold.fifo out=$W/hold.out hpid fd i open errors
  read -ra args <<< "$(row_args "$row")"
  mapfile -t pargs < <(proxy_args)
  sleep 1
  rss0=$(proxy_rss_kib)
  rm -f "$fifo"; mkfifo "$fifo"; : > "$out"
  printf '%s\t%s\n' "$row/$P_NAME rep $rep" "loadgen ${args[*]} ${pargs[*]}" >> "$W/commands.tsv"
  ( exec ip netns exec "$NS" taskset -c 1 "$LOADGEN" "${args[@]}" "${pargs[@]}" ) \
    < "$fifo" > "$out" 2> "$W/loadgen.err" &
  hpid=$!; PIDS+=("$hpid")
  exec {fd}> "$fifo"
  LG_JSON=""
  for ((i = 0; i < 3000; i++)); do
    LG_JSON=$(grep -m1 '^{' "$out" || true)
    [[ -n $LG_JSON ]] && break
    alive "$hpid" || break
    sleep 0.2
  done
  if [[ -z $LG_JSON ]]; then
    exec {fd}>&-
    stop_pid "$hpid" 5
    warn "loadgen hold ($row/$P_NAME rep $rep) never reported its connections open"
    show_tail "$W/loadgen.err" 10
    raw "$row" "$P_NAME" "$rep" failed ""
    return 1
  fi
  sleep 2
  rss1=$(proxy_rss_kib)
  exec {fd}>&-
  for ((i = 0; i < 300; i++)); do alive "$hpid" || break; sleep 0.1; done
  stop_pid "$hpid" 5
  { echo "== $row/$P_NAME rep $rep: hold"; cat "$W/loadgen.err"; } >> "$W/loadgen-stderr.log"
  open=$(jget "$LG_JSON" open); errors=$(jget "$LG_JSON" errors)
  raw "$row" "$P_NAME" "$rep" measured ",\"rss_before_kib\":$rss0,\"rss_held_kib\":$rss1"
  record "$row" "$P_NAME" "$rep" errors "${errors:-0}"
  if ((open > 0)); then
    record "$row" "$P_NAME" "$rep" kib "$(awk -v a="$rss0" -v b="$rss1" -v n="$open" 'BEGIN { printf "%.2f", (b - a) / n }')"
  fi
  if ((open != HOLD_COUNT)); then
    note "$row" "$P_NAME" "rep $rep: $open connections held instead of $HOLD_COUNT"
  fi
  return 0
}

warm_up() { # ROW
  local args pargs
  read -ra args <<< "$(row_warm_args "$1")"
  mapfile -t pargs < <(proxy_args)
  loadgen_run "$1/$P_NAME warm-up" 900 "${args[@]}" "${pargs[@]}" || return 1
  raw "$1" "$P_NAME" 0 warm-up ""
}

one_rep() { # ROW REP
  case $1 in
    idle-*) measure_hold "$1" "$2" ;;
    tunnel-1 | tunnel-8 | bump-1 | bump-8) measure_download "$1" "$2" ;;
    *) measure_ops "$1" "$2" ;;
  esac
}

# After a failure: if the proxy died, say so and show its log.
proxy_died() { # ROW
  if ! proxy_alive; then
    show_tail "$P_LOG"
    note "$1" "$P_NAME" "the proxy exited during the row (log: ${P_LOG#"$W"/})"
    return 0
  fi
  return 1
}

run_row() { # ROW
  local row=$1 mode proxy rep
  mode=$(row_mode "$row")
  log "row $row: $(row_title "$row")"
  if [[ $row == bump-names ]]; then netns_hosts "$W/hosts.full"; else netns_hosts "$W/hosts.small"; fi
  for proxy in "${PROXIES[@]}"; do
    [[ $proxy == direct && $row == idle-* ]] && continue
    if [[ $row == bump-req-h2 && $proxy != direct && ${SPEAKS_H2[$proxy]:-yes} == no ]]; then
      note "$row" "$proxy" "does not offer h2 to clients when bumping (ALPN): not measured"
      continue
    fi
    if row_restarts "$row"; then
      for ((rep = 1; rep <= REPS; rep++)); do
        proxy_start "$proxy" "$mode"
        if warm_up "$row"; then
          one_rep "$row" "$rep" || proxy_died "$row" || true
        else
          proxy_died "$row" || note "$row" "$proxy" "warm-up failed"
          proxy_stop
          break
        fi
        proxy_stop
      done
    else
      proxy_start "$proxy" "$mode"
      if warm_up "$row"; then
        for ((rep = 1; rep <= REPS; rep++)); do
          if ! one_rep "$row" "$rep"; then proxy_died "$row" && break; fi
        done
      else
        proxy_died "$row" || note "$row" "$proxy" "warm-up failed"
      fi
      proxy_stop
    fi
  done
}
