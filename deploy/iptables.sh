#!/bin/sh
# The pod's init step: redirect its TCP through the Outrigger sidecar.
#
#   iptables.sh [--dry-run] [--uninstall] [--proxy-uid 1337]
#               [--outbound-port 15001] [--inbound-port 15006] [--admin-port 9901]
#               [--exclude-ports P,...] [--exclude-outbound-ports P,...]
#               [--iptables iptables|iptables-nft|iptables-legacy]
#
# Outbound TCP from the app goes to the outbound listener (15001), TCP
# arriving for the pod's ports to the inbound listener (15006). Left alone:
# the proxy's own UID, loopback, the admin port and any excluded port.
# Idempotent: running it again refreshes the rules, never duplicates them.
# Needs root with NET_ADMIN and NET_RAW in the pod's network namespace.
#
# One source of truth: the rules come from `outrigger iptables`, which this
# wraps (the image ships both, as outrigger and outrigger-iptables). Where
# the binary cannot run, print the rules as a plain sh script and run that:
#   outrigger iptables --dry-run > rules.sh && sh rules.sh
set -eu

OUTRIGGER="${OUTRIGGER:-outrigger}"
if ! command -v "$OUTRIGGER" >/dev/null 2>&1; then
  echo "iptables.sh: no outrigger binary on PATH (set OUTRIGGER=/path/to/outrigger)" >&2
  exit 127
fi
exec "$OUTRIGGER" iptables "$@"
