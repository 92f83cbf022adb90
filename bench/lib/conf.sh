# shellcheck shell=bash
# bench/run.sh: the configuration files of the origin and of the proxies, written into
# the work dir. Sourced by run.sh, not run on its own.
#
# Globals read: W, CERTS (= $W/certs), ORIGIN_PORT, NAMES_PORT, the *_PORT of the
# proxies, SLUICE_CA, SQUID_CA, G3_CA.

# /etc/hosts of the namespace. "small": bench.test and evil.bench.test only; "full": also
# the 2,000 names. The full file is used only for the 2,000-name row: glibc reads the whole
# hosts file on every getaddrinfo(), which would otherwise add a 2,000-line parse to every
# connection of a proxy that resolves per connection (a cost no real resolver has).
write_hosts() {
  printf '127.0.0.1 localhost\n127.0.0.1 bench.test evil.bench.test\n' > "$W/hosts.small"
  { cat "$W/hosts.small"; sed 's/^/127.0.0.1 /' "$CERTS/names.txt"; } > "$W/hosts.full"
}

# A certificate for evil.bench.test that does not chain to the test CA: the default
# server of the 2,000-name port serves it, to check that the proxies verify upstream.
make_evil_cert() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=evil.bench.test" -addext "subjectAltName=DNS:evil.bench.test" \
    -keyout "$W/evil-key.pem" -out "$W/evil.pem" > /dev/null 2>&1 \
    || die "openssl could not make the evil.bench.test certificate"
}

# An ECDSA P-256 CA made with openssl (Squid and g3proxy sign their certificates with it).
make_openssl_ca() { # DIR CN
  mkdir -p "$1"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
    -subj "/CN=$2" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$1/ca-key.pem" -out "$1/ca.pem" > /dev/null 2>&1 \
    || die "openssl could not make the CA in $1"
  chmod 600 "$1/ca-key.pem"
}

# The origin: /small (100 bytes) and /big (100 MiB, sparse) over HTTPS with HTTP/1.1 and
# h2; 8443 with the wildcard certificate, 8444 with one server block and certificate per
# name (and evil.bench.test as the default server). One worker, pinned to CPU 1.
write_nginx_conf() {
  mkdir -p "$W/nginx/logs" "$W/www"
  head -c 100 /dev/zero | tr '\0' 's' > "$W/www/small"
  truncate -s 100M "$W/www/big"
  chmod 755 "$W/www"; chmod 644 "$W/www/small" "$W/www/big"
  local conf=$W/nginx/nginx.conf
  cat > "$conf" <<EOF
# nginx origin for bench/run.sh (generated)
daemon off;
master_process on;
worker_processes 1;
worker_cpu_affinity 10;
worker_rlimit_nofile $FD_LIMIT;
user www-data;
pid $W/nginx/nginx.pid;
error_log $W/nginx/logs/error.log warn;
events { worker_connections 20000; }
http {
  access_log off;
  sendfile on;
  default_type application/octet-stream;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_tickets on;
  ssl_session_cache shared:SSL:50m;
  root $W/www;
  server {
    listen 127.0.0.1:$ORIGIN_PORT ssl http2;
    server_name bench.test;
    ssl_certificate $CERTS/wildcard.pem;
    ssl_certificate_key $CERTS/wildcard-key.pem;
  }
  server {
    listen 127.0.0.1:$NAMES_PORT ssl http2 default_server;
    server_name evil.bench.test;
    ssl_certificate $W/evil.pem;
    ssl_certificate_key $W/evil-key.pem;
  }
EOF
  awk -v port="$NAMES_PORT" -v dir="$CERTS/names" '{
    printf "  server {\n    listen 127.0.0.1:%s ssl http2;\n    server_name %s;\n", port, $1
    printf "    ssl_certificate %s/%s.pem;\n    ssl_certificate_key %s/%s-key.pem;\n  }\n", dir, $1, dir, $1
  }' "$CERTS/names.txt" >> "$conf"
  echo "}" >> "$conf"
}

# sluice: tunnel or bump everything; access log to a file, warnings only on stderr.
# Tunnel is decryption switched off, which tunnels at the CONNECT (SPEC 1 step 2)
# without reading the ClientHello, as Squid's `ssl_bump splice all` does.
write_sluice_conf() { # MODE
  local mode=$1 extra
  if [[ $mode == bump ]]; then
    extra="
default_action = \"bump\"
upstream_roots = [\"$CERTS/ca.pem\"]
on_cert_error = \"block\"
learn_bypass = false"
  else
    extra="
decryption = false"
  fi
  cat > "$W/sluice-$mode.toml" <<EOF
# sluice, $mode configuration for bench/run.sh (generated)
[proxy]
listen = ["127.0.0.1:$SLUICE_PORT"]
connect_ports = [$ORIGIN_PORT, $NAMES_PORT]
# The origin is on the namespace's own loopback, which the default denies.
deny_destinations = []

[admin]
listen = ""

[tls]
ca_cert = "$SLUICE_CA/ca.pem"
ca_key = "$SLUICE_CA/ca-key.pem"$extra

[log]
access = "$W/sluice/access-$mode.log"
level = "warn"

[limits]
max_connections = 20000
EOF
}

# Squid 5.7 (squid-openssl): splice everything (tunnel) or bump server-first with
# peek/stare/bump and security_file_certgen; upstream verified against the test CA. The
# tunnel port keeps generate-host-certificates=on, so Squid starts its certificate
# helpers there too (they stay idle; without a database of their own they crash it).
write_squid_conf() { # MODE
  local mode=$1 d=$W/squid
  {
    cat <<EOF
# Squid, $mode configuration for bench/run.sh (generated)
workers 1
max_filedescriptors $FD_LIMIT
shutdown_lifetime 1 seconds
pid_filename $d/squid-$mode.pid
cache_log $d/cache-$mode.log
access_log stdio:$d/access-$mode.log
logfile_rotate 0
coredump_dir $d
netdb_filename none
cache deny all
acl SSL_ports port $ORIGIN_PORT $NAMES_PORT
acl CONNECT method CONNECT
http_access deny CONNECT !SSL_ports
http_access allow localhost
http_access deny all
visible_hostname bench-squid
pinger_enable off
tls_outgoing_options cafile=$CERTS/ca.pem
sslproxy_cert_error deny all
sslcrtd_program /usr/lib/squid/security_file_certgen -s $d/ssl_db -M 64MB
sslcrtd_children 8 startup=2 idle=2
EOF
    if [[ $mode == bump ]]; then
      cat <<EOF
http_port 127.0.0.1:$SQUID_PORT ssl-bump tls-cert=$SQUID_CA/ca.pem tls-key=$SQUID_CA/ca-key.pem generate-host-certificates=on dynamic_cert_mem_cache_size=64MB
acl step1 at_step SslBump1
acl step2 at_step SslBump2
ssl_bump peek step1
ssl_bump stare step2
ssl_bump bump all
EOF
    else
      cat <<EOF
http_port 127.0.0.1:$SQUID_PORT ssl-bump tls-cert=$SQUID_CA/ca.pem tls-key=$SQUID_CA/ca-key.pem generate-host-certificates=on
ssl_bump splice all
EOF
    fi
  } > "$W/squid-$mode.conf"
}

# g3proxy (optional; checked with g3proxy 1.13.0). From g3's own examples and docs
# (g3proxy/examples/inspect_http_proxy, doc/configuration): an http_proxy server; for
# bump an auditor with tls_cert_generator (g3fcgen on UDP 127.0.0.1:2999) and
# tls_interception_client trusting the test CA; for tunnel no auditor. Names are resolved
# by c-ares from the dnsmasq that run.sh starts on the namespace's 127.0.0.1:53. Loopback
# must be allowed explicitly: the egress filter forbids 127.0.0.0/8 by default (a longer
# prefix wins).
write_g3_conf() { # MODE
  local mode=$1
  {
    cat <<EOF
---
# g3proxy, $mode configuration for bench/run.sh (generated)
runtime:
  thread_number: 1
log: stdout
resolver:
  - name: default
    type: c-ares
    server: 127.0.0.1
escaper:
  - name: default
    type: direct_fixed
    resolver: default
    resolve_strategy:
      query: Ipv4Only
    egress_network_filter:
      default: allow
      allow: 127.0.0.1/32
EOF
    if [[ $mode == bump ]]; then
      cat <<EOF
auditor:
  - name: bump
    protocol_inspection: {}
    tls_cert_generator:
      query_peer_addr: 127.0.0.1:$G3FCGEN_PORT
    tls_interception_client:
      ca_certificate: $CERTS/ca.pem
EOF
    fi
    printf 'server:\n  - name: http\n    type: http_proxy\n    escaper: default\n'
    if [[ $mode == bump ]]; then printf '    auditor: bump\n'; fi
    printf '    listen:\n      address: 127.0.0.1:%s\n' "$G3_PORT"
  } > "$W/g3proxy-$mode.yaml"
  cat > "$W/g3fcgen.yaml" <<EOF
---
# g3fcgen for bench/run.sh (generated)
runtime:
  thread_number: 1
backend:
  ca_certificate: $G3_CA/ca.pem
  ca_private_key: $G3_CA/ca-key.pem
EOF
}
