# shellcheck shell=bash
# bench/run.sh: start and stop the origin and the proxies, and check that each proxy
# really tunnels, bumps and verifies. Sourced by run.sh, not run on its own.
#
# proxy_start sets: P_NAME P_MODE P_PORT (empty for direct) P_CA P_PID P_AUX (a helper
# daemon of the proxy, g3fcgen) P_CG (its cgroup, "" without cgroups) P_LOG.

P_NAME="" P_MODE="" P_PORT="" P_CA="" P_PID="" P_AUX="" P_CG="" P_LOG=""
INSTANCE=0
NGINX_PID=""
NGINX_START_MS=""
ORIGIN_CG="" LOADGEN_CG=""

start_nginx() {
  local t0 t1
  log "starting nginx (2 ports, $(wc -l < "$CERTS/names.txt") + 2 server blocks)"
  in_ns nginx -t -q -e "$W/nginx/logs/error.log" -p "$W/nginx" -c "$W/nginx/nginx.conf" \
    > "$W/nginx/configtest.log" 2>&1 \
    || { show_tail "$W/nginx/configtest.log"; die "nginx -t refused $W/nginx/nginx.conf"; }
  cg_make origin; ORIGIN_CG=$CG_DIR
  cg_make loadgen; LOADGEN_CG=$CG_DIR
  t0=$(date +%s%N)
  spawn 1 "$ORIGIN_CG" "$W/nginx/logs/stderr.log" \
    nginx -e "$W/nginx/logs/error.log" -p "$W/nginx" -c "$W/nginx/nginx.conf"
  NGINX_PID=$START_PID
  wait_listen nginx "$NGINX_PID" "$ORIGIN_PORT" "$W/nginx/logs/error.log" 120
  wait_listen nginx "$NGINX_PID" "$NAMES_PORT" "$W/nginx/logs/error.log" 120
  t1=$(date +%s%N)
  NGINX_START_MS=$(((t1 - t0) / 1000000))
  log "nginx listening after ${NGINX_START_MS} ms"
}

# A DNS server in the namespace for g3proxy, whose c-ares resolver asks 127.0.0.1:53 and
# never reads /etc/hosts: dnsmasq answering from the full hosts file (every bench name)
# and nothing else, with a local TTL of an hour so that g3proxy answers from its own
# resolver cache, as it would in a deployment. On CPU 1, counted with the origin.
DNS_PID=""
start_dns() {
  command -v dnsmasq > /dev/null || die "dnsmasq is missing (Debian dnsmasq-base): g3proxy needs a DNS server"
  log "starting dnsmasq on 127.0.0.1:53 in the namespace (for g3proxy)"
  spawn 1 "$ORIGIN_CG" "$W/dnsmasq.log" dnsmasq --keep-in-foreground --log-facility=- \
    --conf-file=/dev/null --no-resolv --no-hosts --addn-hosts="$W/hosts.full" \
    --listen-address=127.0.0.1 --bind-interfaces --port=53 --local-ttl=3600 \
    --user=root --pid-file= --cache-size=10000
  DNS_PID=$START_PID
  local i
  for ((i = 0; i < 50; i++)); do
    [[ -n $(in_ns ss -Hlun "sport = :53" 2> /dev/null) ]] && break
    alive "$DNS_PID" || { show_tail "$W/dnsmasq.log"; die "dnsmasq exited at start"; }
    sleep 0.1
  done
  [[ -n $(in_ns ss -Hlun "sport = :53" 2> /dev/null) ]] \
    || { show_tail "$W/dnsmasq.log"; die "dnsmasq does not listen on 127.0.0.1:53"; }
}

proxy_start() { # NAME MODE
  P_NAME=$1 P_MODE=$2 P_PORT="" P_CA="" P_PID="" P_AUX="" P_CG="" P_LOG=""
  INSTANCE=$((INSTANCE + 1))
  case $1 in
    direct) return 0 ;;
    sluice) start_sluice "$2" ;;
    squid) start_squid "$2" ;;
    g3proxy) start_g3proxy "$2" ;;
    *) die "unknown proxy $1" ;;
  esac
}

proxy_stop() {
  [[ $P_NAME == direct || -z $P_NAME ]] && return 0
  stop_pid "$P_PID" 10
  [[ -n $P_AUX ]] && stop_pid "$P_AUX" 5
  cg_remove "$P_CG"
  P_PID="" P_AUX="" P_CG=""
}

proxy_alive() { [[ $P_NAME == direct ]] || alive "$P_PID"; }
proxy_cpu_ns() { if [[ $P_NAME == direct ]]; then echo 0; else cg_usage_ns "$P_CG" "$P_PID"; fi; }

# CPU counters around a measured run: "wall root proxy ours steal0 steal1", the first
# four in ns, ours = nginx, loadgen and this script; steal0/1 = the time the hypervisor
# ran something else while CPU 0 / CPU 1 wanted to run (/proc/stat, clock ticks). What
# the root cgroup used beyond the proxy and ours is the rest of the machine (other users'
# builds, kernel threads): both are reported per run, so that a disturbed run can be seen.
cpu_snapshot() {
  local ours=0 steal
  if [[ $CG_MODE != none ]]; then
    ours=$(($(cg_usage_ns "$ORIGIN_CG" "") + $(cg_usage_ns "$LOADGEN_CG" "") + $(cg_usage_ns "$DRIVER_CG" "")))
  fi
  steal=$(awk '$1 == "cpu0" { a = $9 } $1 == "cpu1" { b = $9 } END { print a + 0, b + 0 }' /proc/stat)
  echo "$(date +%s%N) $(root_usage_ns) $(proxy_cpu_ns) $ours $steal"
}

# From two snapshots: the proxy's CPU (ns), the other CPU as a share of one CPU, and the
# share of the run the hypervisor stole from CPU 0 and from CPU 1. Sets SNAP_PROXY_NS,
# SNAP_OTHER (e.g. 0.03 = 3 % of a CPU; "" without cgroups) and SNAP_STEAL ("0.00 0.01").
snapshot_delta() { # SNAP0 SNAP1
  local a b
  read -ra a <<< "$1"; read -ra b <<< "$2"
  SNAP_PROXY_NS=$((b[2] - a[2]))
  SNAP_OTHER=""
  if [[ $CG_MODE != none ]]; then
    SNAP_OTHER=$(awk -v w=$((b[0] - a[0])) -v r=$((b[1] - a[1])) -v p=$((b[2] - a[2])) \
      -v o=$((b[3] - a[3])) 'BEGIN { x = (r - p - o) / w; printf "%.3f", x < 0 ? 0 : x }')
  fi
  SNAP_STEAL=$(awk -v w=$((b[0] - a[0])) -v s0=$((b[4] - a[4])) -v s1=$((b[5] - a[5])) -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.3f %.3f", s0 / hz * 1e9 / w, s1 / hz * 1e9 / w }')
}
proxy_rss_kib() { rss_kib "$P_CG" "$P_PID"; }

start_sluice() { # MODE
  truncate -c -s 0 "$W/sluice/access-$1.log" 2> /dev/null || true   # bounded disk use
  cg_make "sluice-$1-$INSTANCE"; P_CG=$CG_DIR
  P_PORT=$SLUICE_PORT P_CA=$SLUICE_CA/ca.pem P_LOG=$W/sluice/stderr-$1.log
  spawn 0 "$P_CG" "$P_LOG" "$SLUICE" run -c "$W/sluice-$1.toml"
  P_PID=$START_PID
  wait_listen sluice "$P_PID" "$P_PORT" "$P_LOG"
}

# Squid starts from a fresh certificate database every time (so a restart is a cold
# certificate cache, on disk and in memory).
start_squid() { # MODE
  local d=$W/squid
  truncate -c -s 0 "$d/access-$1.log" 2> /dev/null || true   # bounded disk use
  rm -rf "$d/ssl_db"
  runuser -u "$SQUID_USER" -- /usr/lib/squid/security_file_certgen -c -s "$d/ssl_db" -M 64MB \
    > "$d/certgen-init.log" 2>&1 \
    || { show_tail "$d/certgen-init.log"; die "security_file_certgen -c failed"; }
  cg_make "squid-$1-$INSTANCE"; P_CG=$CG_DIR
  P_PORT=$SQUID_PORT P_CA=$SQUID_CA/ca.pem P_LOG=$d/cache-$1.log
  spawn 0 "$P_CG" "$d/stderr-$1.log" squid -N -f "$W/squid-$1.conf"
  P_PID=$START_PID
  wait_listen squid "$P_PID" "$P_PORT" "$P_LOG"
}

start_g3proxy() { # MODE
  local d=$W/g3proxy
  mkdir -p "$d/control"
  in_ns "$G3PROXY" -t -c "$W/g3proxy-$1.yaml" > "$d/test-$1.log" 2>&1 \
    || { show_tail "$d/test-$1.log"; die "g3proxy -t refused $W/g3proxy-$1.yaml"; }
  cg_make "g3proxy-$1-$INSTANCE"; P_CG=$CG_DIR
  P_PORT=$G3_PORT P_CA=$G3_CA/ca.pem P_LOG=$d/g3proxy-$1.log
  if [[ $1 == bump ]]; then
    spawn 0 "$P_CG" "$d/g3fcgen.log" "$G3FCGEN" -c "$W/g3fcgen.yaml"
    P_AUX=$START_PID
    sleep 0.5
    alive "$P_AUX" || { show_tail "$d/g3fcgen.log"; die "g3fcgen exited at start"; }
  fi
  spawn 0 "$P_CG" "$P_LOG" "$G3PROXY" -c "$W/g3proxy-$1.yaml" -C "$d/control"
  P_PID=$START_PID
  wait_listen g3proxy "$P_PID" "$P_PORT" "$P_LOG"
}

# ---------------------------------------------------------------------------- checks

CHECKS=()      # lines for the report
declare -A SPEAKS_H2=()

check_ok()   { CHECKS+=("ok: $*"); log "check ok: $*"; }
check_fail() { CHECKS+=("FAILED: $*"); warn "check FAILED: $*"; CHECK_FAILED=1; }
CHECK_FAILED=""

# curl inside the namespace; prints "HTTP_CODE SIZE HTTP_VERSION" (curl's exit code on
# failure is in the code field as "curlN").
ns_curl() { # CURL_ARGS...
  local out rc=0
  # curl creates the output file only when a body arrives: without this, a refused
  # request would leave the previous check's body in place
  rm -f "$W/check.body"
  out=$(in_ns curl -sS -o "$W/check.body" -w '%{http_code} %{size_download} %{http_version}' \
    --max-time 20 "$@" 2> "$W/check.err") || rc=$?
  if ((rc != 0)); then echo "curl$rc 0 0"; else echo "$out"; fi
}

# The issuer of the certificate a client sees for bench.test:8443, directly or through a
# proxy (openssl s_client -proxy sends CONNECT).
seen_issuer() { # [PROXY_PORT]
  local args=(-connect bench.test:"$ORIGIN_PORT" -servername bench.test)
  [[ -n ${1:-} ]] && args+=(-proxy "127.0.0.1:$1")
  in_ns openssl s_client "${args[@]}" < /dev/null 2> /dev/null \
    | openssl x509 -noout -issuer -nameopt RFC2253 2> /dev/null | sed 's/^issuer=//'
}
subject_of() { openssl x509 -noout -subject -nameopt RFC2253 -in "$1" | sed 's/^subject=//'; }

# expect OK_TEXT FAIL_TEXT COMMAND...: one check, passed when COMMAND succeeds.
expect() {
  local ok_text=$1 fail_text=$2; shift 2
  if "$@"; then check_ok "$ok_text"; else check_fail "$fail_text"; fi
}
# shellcheck disable=SC2053 # the second argument is a pattern
matches() { [[ $1 == $2 ]]; }

check_origin() {
  local r s name
  r=$(ns_curl --cacert "$CERTS/ca.pem" "https://bench.test:$ORIGIN_PORT/small")
  expect "origin: https://bench.test:$ORIGIN_PORT/small is 100 bytes over h2 ($r)" \
    "origin: https://bench.test:$ORIGIN_PORT/small gave '$r', expected '200 100 2'" matches "$r" "200 100 2"
  r=$(ns_curl --http1.1 --cacert "$CERTS/ca.pem" -r 0-999 "https://bench.test:$ORIGIN_PORT/big")
  expect "origin: /big answers a range request over HTTP/1.1 ($r)" \
    "origin: /big over HTTP/1.1 gave '$r'" matches "$r" "206 1000 1.1"
  name=$(sed -n '7p' "$CERTS/names.txt")
  netns_hosts "$W/hosts.full"
  s=$(in_ns openssl s_client -connect "127.0.0.1:$NAMES_PORT" -servername "$name" < /dev/null 2> /dev/null \
    | openssl x509 -noout -ext subjectAltName 2> /dev/null | sed -n 's/^ *DNS:/DNS:/p')
  expect "origin: $name:$NAMES_PORT serves its own certificate ($s)" \
    "origin: $name:$NAMES_PORT serves '$s'" matches "$s" "*DNS:$name*"
  r=$(ns_curl --cacert "$CERTS/ca.pem" "https://$name:$NAMES_PORT/small")
  expect "origin: https://$name:$NAMES_PORT/small verifies against the test CA ($r)" \
    "origin: https://$name:$NAMES_PORT/small gave '$r'" matches "$r" "200 100 2"
  r=$(ns_curl --cacert "$CERTS/ca.pem" "https://evil.bench.test:$NAMES_PORT/small")
  expect "origin: evil.bench.test:$NAMES_PORT does not verify against the test CA ($r)" \
    "origin: evil.bench.test:$NAMES_PORT gave '$r', expected a verification failure (curl60)" matches "$r" "curl60*"
  netns_hosts "$W/hosts.small"
}

# Not nginx's /small (100 's' bytes) in the last curl body.
not_origin_body() { ! grep -qx 's\{100\}' "$W/check.body" 2> /dev/null; }
refused() { [[ $1 != "200 "* ]] && not_origin_body; } # CURL_RESULT

# Through the proxy in tunnel mode the client sees the origin's own certificate; in bump
# mode it sees one from the proxy's CA, the proxy logs the decrypted request, and refuses
# an origin whose certificate is not from the test CA.
check_proxy() { # NAME
  local name=$1 r issuer want line
  proxy_start "$name" tunnel
  r=$(ns_curl -x "http://127.0.0.1:$P_PORT" --cacert "$CERTS/ca.pem" "https://bench.test:$ORIGIN_PORT/small")
  expect "$name tunnel: GET through CONNECT trusting the test CA ($r)" \
    "$name tunnel: GET through CONNECT gave '$r' ($(tail -n 1 "$W/check.err"))" matches "$r" "200 100 *"
  issuer=$(seen_issuer "$P_PORT"); want=$(subject_of "$CERTS/ca.pem")
  expect "$name tunnel: the client sees the origin's own certificate (issuer $issuer)" \
    "$name tunnel: issuer seen '$issuer', expected the test CA '$want'" matches "$issuer" "$want"
  proxy_stop

  proxy_start "$name" bump
  r=$(ns_curl -x "http://127.0.0.1:$P_PORT" --cacert "$P_CA" "https://bench.test:$ORIGIN_PORT/small")
  expect "$name bump: GET trusting only the proxy CA ($r)" \
    "$name bump: GET trusting only the proxy CA gave '$r' ($(tail -n 1 "$W/check.err"))" matches "$r" "200 100 *"
  if [[ ${r##* } == 2 ]]; then SPEAKS_H2[$name]=yes; else SPEAKS_H2[$name]=no; fi
  check_ok "$name bump: HTTP version agreed with a client offering h2 and http/1.1: ${r##* }"
  issuer=$(seen_issuer "$P_PORT"); want=$(subject_of "$P_CA")
  expect "$name bump: the client sees a certificate from the proxy's CA (issuer $issuer)" \
    "$name bump: issuer seen '$issuer', expected the proxy CA '$want'" matches "$issuer" "$want"
  r=$(ns_curl -x "http://127.0.0.1:$P_PORT" --cacert "$P_CA" "https://evil.bench.test:$NAMES_PORT/small")
  expect "$name bump: an origin whose certificate is not from the test CA is refused ($r)" \
    "$name bump: evil.bench.test (untrusted certificate) was served: '$r'" refused "$r"
  case $name in
    squid)
      line=$(grep -m1 "GET https://bench.test:$ORIGIN_PORT/small" "$W/squid/access-bump.log" || true)
      expect "squid bump: its access log has the decrypted request ($(awk '{ print $4, $6, $7 }' <<< "$line"))" \
        "squid bump: no decrypted 'GET https://bench.test:$ORIGIN_PORT/small' in its access log" \
        test -n "$line" ;;
    sluice)
      line=$(grep -m1 '"kind":"http"' "$W/sluice/access-bump.log" || true)
      expect "sluice bump: its access log has the decrypted request ($(sed -n 's/.*"method":"\([A-Z]*\)","url":"\([^"]*\)","status":\([0-9]*\).*/\1 \2 \3/p' <<< "$line"))" \
        "sluice bump: no \"kind\":\"http\" record in its access log" test -n "$line" ;;
  esac
  proxy_stop
}
