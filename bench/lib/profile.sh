# shellcheck shell=bash
# bench/run.sh --profile: where sluice's CPU goes, row by row. After the measured rows,
# each row (but the memory ones) runs once more against a fresh sluice with `perf record`
# sampling it (perf itself on CPU 1); the samples are split into kernel work by system
# call, cryptography, memory copies, the allocator and the libraries and code of the
# rest of user space, and each
# share is applied to the CPU per unit of work of the profiled run itself (read from the
# proxy's cgroup as in the measured runs; sampling adds a percent or two).
# Sourced by run.sh, not run on its own.
#
# Files in the work dir: perf/ROW.data (kept with --keep: `perf report -i`, or a flame
# graph with `perf script -i perf/ROW.data | inferno-collapse-perf | inferno-flamegraph`),
# profile.tsv (row, category, share of the samples).

# The categories, in the order of the table's columns.
PROFILE_CATEGORIES=(relay recv conn wait kother crypto copy alloc tls http runtime sluice user)
profile_heading() {
  case $1 in
    relay) echo "kernel: send, splice (and the peer's receive)" ;;
    recv) echo "kernel: receive" ;;
    conn) echo "kernel: open, accept, close" ;;
    wait) echo "kernel: epoll, futex (wait, wake)" ;;
    kother) echo "kernel: other" ;;
    crypto) echo "crypto" ;;
    copy) echo "memcpy" ;;
    alloc) echo "allocator" ;;
    tls) echo "rustls (protocol)" ;;
    http) echo "hyper, http" ;;
    runtime) echo "tokio" ;;
    sluice) echo "sluice's own code" ;;
    user) echo "other user space" ;;
  esac
}

# Share of the samples in each category, as "category<TAB>percent" lines. A sample in
# the kernel belongs to the system call it ran under, named by the first user-space frame
# under the kernel's (the libc wrapper: __GI___writev, __libc_recv, splice, ...), or to
# "other" when no system call is on its stack (interrupts, page faults); a sample in user
# space to the category of its own symbol.
# The functions of the trust checks that issue 18 keeps in (and asks what they cost):
# the upstream chain's verification (webpki, with its signature checks), sluice's own
# classification of it (stapled OCSP, CRLs, pinned fingerprints, the rule's cert_errors),
# and the policy's checks of the SNI and the Host header. A sample counts when any frame
# of its stack is one of them, whatever category its own frame is in.
TRUST_FRAMES='webpki::|sluice_tls::verify|sluice_tls::ocsp|sluice_policy::(host|upstream_cert|authority)|sni_verified'

profile_shares() { # PERF_DATA
  perf script -i "$1" -F ip,sym,dso 2> /dev/null | awk -v TRUST_FRAMES="$TRUST_FRAMES" '
    function classify_syscall(name) {
      if (name ~ /writev|write|send|splice/) return "relay"
      if (name ~ /recv|read/) return "recv"
      if (name ~ /socket|connect|accept|close|shutdown|sockopt|pipe|fcntl|bind|listen/) return "conn"
      if (name ~ /epoll|futex|syscall|sched_yield|sleep/) return "wait"
      return "kother"
    }
    function classify_user(name) {
      if (name ~ /aws_lc|ring_core|ring::|aesni|_aes_|aes_hw|gcm|ghash|x25519|curve25519|nistz256|ecp_|p256|sha256|sha512|sha1_|SHA[0-9]|HMAC|EVP_|bn_|BN_|fiat_|ecdsa|chacha|poly1305|beeu_|rdrand|CRYPTO_/) return "crypto"
      if (name ~ /memmove|memcpy|memset|memcmp|memchr/) return "copy"
      if (name ~ /_rjem|je_|malloc|^free|_free$|rallocx|sdallocx|__rust_alloc|__rust_dealloc|__rust_realloc/) return "alloc"
      if (name ~ /rustls/) return "tls"
      if (name ~ /hyper|http::|httparse|h2::|http_body/) return "http"
      if (name ~ /tokio|mio::/) return "runtime"
      if (name ~ /sluice/) return "sluice"
      return "user"
    }
    function finish() {
      if (depth == 0) return
      if (kernel_first) {
        if (syscall_user != "") c = classify_syscall(syscall_user)
        else if (in_syscall) c = classify_syscall(syscall_kernel)
        else c = "kother"
      } else c = classify_user(first)
      count[c]++; total++
      if (trusting) trust++
      depth = 0
    }
    /^[[:space:]]*$/ { finish(); next }
    {
      # "ADDRESS SYMBOL+OFFSET (DSO)"; the innermost frame comes first
      sym = $2; sub(/\+0x[0-9a-f]+$/, "", sym)
      is_kernel = ($NF ~ /kernel\.kallsyms|\[kernel/)
      if (depth == 0) {
        first = sym; kernel_first = is_kernel; in_syscall = 0; syscall_user = ""
        syscall_kernel = ""; previous = ""; trusting = 0
      }
      if (sym ~ TRUST_FRAMES) trusting = 1
      if (is_kernel && (sym ~ /^do_syscall_64$|^entry_SYSCALL/)) {
        if (!in_syscall) syscall_kernel = previous
        in_syscall = 1
      } else if (!is_kernel && in_syscall && syscall_user == "") {
        syscall_user = sym
      }
      if (is_kernel && sym != "x64_sys_call") previous = sym
      depth++
    }
    END {
      finish()
      if (total == 0) exit
      for (c in count) printf "%s\t%.2f\n", c, 100 * count[c] / total
      printf "trust\t%.2f\n", 100 * trust / total
    }'
}

# One profiled run of ROW against a fresh sluice.
profile_row() { # ROW
  local row=$1 args pargs data perf_pid
  [[ $row == idle-* ]] && return 0
  data=$W/perf/$row.data
  mkdir -p "$W/perf"
  if [[ $row == bump-names ]]; then netns_hosts "$W/hosts.full"; else netns_hosts "$W/hosts.small"; fi
  proxy_start sluice "$(row_mode "$row")"
  read -ra args <<< "$(row_warm_args "$row")"
  mapfile -t pargs < <(proxy_args)
  if ! loadgen_run "$row/sluice profile warm-up" 900 "${args[@]}" "${pargs[@]}"; then
    proxy_stop; warn "profile of $row: warm-up failed"; return 0
  fi
  read -ra args <<< "$(row_args "$row")"
  local s0 s1 ok bytes per_unit
  s0=$(cpu_snapshot)
  taskset -c 1 perf record -q -e cpu-clock -F 1999 -g -p "$P_PID" -o "$data" > "$W/perf/$row.log" 2>&1 &
  perf_pid=$!; PIDS+=("$perf_pid")
  sleep 0.5   # perf attaches to every thread before the load starts
  # As in the measured runs, 800 MiB for a throughput row (8 downloads of one stream).
  local runs=1 i total_bytes=0
  [[ $row =~ ^(tunnel|bump)-1$ ]] && runs=8
  for ((i = 1; i <= runs; i++)); do
    loadgen_run "$row/sluice profiled" 900 "${args[@]}" "${pargs[@]}" || { warn "profile of $row: loadgen failed"; break; }
    local got; got=$(jget "$LG_JSON" bytes)
    total_bytes=$((total_bytes + ${got:-0}))
  done
  kill -INT "$perf_pid" 2> /dev/null || true
  wait "$perf_pid" 2> /dev/null || true
  s1=$(cpu_snapshot)
  snapshot_delta "$s0" "$s1"
  proxy_stop
  if [[ ! -s $data ]]; then
    warn "profile of $row: perf wrote nothing"; show_tail "$W/perf/$row.log"; return 0
  fi
  # The profiled run's own CPU per unit, in the unit of its row: the shares apply to it.
  ok=$(jget "$LG_JSON" ok); bytes=$total_bytes
  case $row in
    tunnel-1 | tunnel-8 | bump-1 | bump-8) per_unit=$(awk -v c="$SNAP_PROXY_NS" -v b="${bytes:-0}" 'BEGIN { if (b > 0) printf "%.4f", c / b }') ;;
    *) per_unit=$(awk -v c="$SNAP_PROXY_NS" -v n="${ok:-0}" 'BEGIN { if (n > 0) printf "%.2f", c / 1000 / n }') ;;
  esac
  [[ -n $per_unit ]] || { warn "profile of $row: no work done"; return 0; }
  printf '%s\ttotal\t%s\n' "$row" "$per_unit" >> "$W/profile.tsv"
  profile_shares "$data" | sed "s/^/$row\t/" >> "$W/profile.tsv"
}

profile_rows() {
  local r
  : > "$W/profile.tsv"
  if ! perf --version > /dev/null 2>&1; then
    warn "perf is not available: no profile this run"
    return 0
  fi
  for r in "${ROWS[@]}"; do
    [[ $r == idle-* ]] && continue
    log "profile: $r under perf"
    profile_row "$r"
  done
}

# The Markdown table: a column per row, a line per category; each cell is the profiled
# run's CPU per unit of work times the category's share (the share in brackets).
profile_table() {
  local r rows=() units=() targets=()
  for r in "${ROWS[@]}"; do
    grep -q "^$r"$'\t' "$W/profile.tsv" || continue
    rows+=("$r")
    case $r in
      tunnel-1 | tunnel-8) units+=("s/GB") targets+=(0.2) ;;
      bump-1 | bump-8) units+=("s/GB") targets+=(0.6) ;;
      tunnel-conns) units+=("µs/conn") targets+=(40) ;;
      bump-conns) units+=("µs/conn") targets+=(400) ;;
      bump-names) units+=("µs/conn") targets+=(450) ;;
      bump-req-*) units+=("µs/req") targets+=(15) ;;
      tunnel-req) units+=("µs/req") targets+=(-) ;;
    esac
  done
  ((${#rows[@]})) || { echo "(no profile: perf recorded nothing)"; return 0; }
  local c headings=()
  for c in "${PROFILE_CATEGORIES[@]}"; do headings+=("$c=$(profile_heading "$c")"); done
  awk -F'\t' -v rows="${rows[*]}" -v units="${units[*]}" -v targets="${targets[*]}" \
      -v cats="${PROFILE_CATEGORIES[*]}" -v headings="$(printf '%s\n' "${headings[@]}")" '
    function fmt(x) { return x >= 100 ? sprintf("%.0f", x) : x >= 10 ? sprintf("%.1f", x) : x >= 1 ? sprintf("%.2f", x) : sprintf("%.3f", x) }
    function median(r,   n, i, j, t, v) {
      n = cnt[r]; if (n == 0) return ""
      for (i = 1; i <= n; i++) v[i] = val[r, i]
      for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
      return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
    }
    FILENAME ~ /results.tsv$/ { if ($2 == "sluice" && $4 == "cpu") val[$1, ++cnt[$1]] = $5; next }
    $2 == "total" { total[$1] = $3; next }
    { share[$1, $2] = $3 }
    END {
      nr = split(rows, row, " "); split(units, unit, " "); split(targets, target, " ")
      nc = split(cats, cat, " "); split(headings, h, "\n")
      for (i in h) { k = h[i]; sub(/=.*/, "", k); v = h[i]; sub(/^[^=]*=/, "", v); heading[k] = v }
      line = "| |"; rule = "|---|"
      for (i = 1; i <= nr; i++) { line = line " **" row[i] "** |"; rule = rule "---:|"; m[i] = total[row[i]] }
      print line; print rule
      line = "| sluice CPU, profiled run |"
      for (i = 1; i <= nr; i++) line = line " " (m[i] == "" ? "—" : fmt(m[i]) " " unit[i]) " |"
      print line
      line = "| sluice CPU, median of the measured runs |"
      for (i = 1; i <= nr; i++) { x = median(row[i]); line = line " " (x == "" ? "—" : fmt(x)) " |" }
      print line
      line = "| issue target |"
      for (i = 1; i <= nr; i++) line = line (target[i] == "-" ? " — |" : " ≤ " target[i] " |")
      print line
      for (j = 1; j <= nc; j++) {
        line = "| " heading[cat[j]] " |"
        for (i = 1; i <= nr; i++) {
          p = share[row[i], cat[j]] + 0
          line = line " " (m[i] == "" ? "" : fmt(m[i] * p / 100)) " (" sprintf("%.0f", p) " %) |"
        }
        print line
      }
      line = "| **kernel, all** |"
      for (i = 1; i <= nr; i++) {
        p = 0; for (j = 1; j <= nc; j++) if (cat[j] ~ /^(relay|recv|conn|wait|kother)$/) p += share[row[i], cat[j]]
        line = line " **" (m[i] == "" ? "" : fmt(m[i] * p / 100)) "** (" sprintf("%.0f", p) " %) |"
      }
      print line
      line = "| of all the above: trust checks (upstream chain verification and revocation, SNI and Host checks; inclusive) |"
      for (i = 1; i <= nr; i++) {
        p = share[row[i], "trust"] + 0
        line = line " " (m[i] == "" ? "" : fmt(m[i] * p / 100)) " (" sprintf("%.1f", p) " %) |"
      }
      print line
    }' "$W/results.tsv" "$W/profile.tsv"
}
