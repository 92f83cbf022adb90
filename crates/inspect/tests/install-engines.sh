#!/usr/bin/env bash
# Installs the anti-virus engines the sluice-inspect tests (and the end-to-end tests)
# start themselves: clamd, and c-icap with its virus_scan service, without starting the
# packages' own daemons. freshclam (which cannot reach the internet here) is never run:
# the tests write their own signature.
exec "$(dirname "$0")/../../../scripts/apt-install" --no-recommends c-icap libc-icap-mod-virus-scan clamav-daemon
