#!/usr/bin/env bash
# Installs the anti-virus engines the sluice-inspect tests (and the end-to-end tests)
# start themselves: clamd, and c-icap with its virus_scan service. Idempotent: does
# nothing when they are already there. The packages' own services are not wanted (the
# tests run their engines on loopback ports with configurations in temporary folders),
# so service start-up is suppressed during the installation, and freshclam (which
# cannot reach the internet here) is never run: the tests write their own signature.
set -euo pipefail

packages=(c-icap libc-icap-mod-virus-scan clamav-daemon)

missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' \
    || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" != 0 ]; then
  echo "install-engines.sh: run as root to install: ${missing[*]}" >&2
  exit 1
fi

# Keep invoke-rc.d from starting the packages' daemons, and restore any policy after.
policy=/usr/sbin/policy-rc.d
saved=""
if [ -e "$policy" ]; then
  saved=$(mktemp)
  cp -p "$policy" "$saved"
fi
restore() {
  if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
}
trap restore EXIT
printf '#!/bin/sh\nexit 101\n' > "$policy"
chmod 755 "$policy"

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
