#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs the outside
# services the tests start for real (etcd, dnsmasq), then cargo test.
# (iptables and iproute2: tests/iptables.rs applies rules in a namespace.)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler libprotobuf-dev)
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]} (install them; the tests that need them will fail)" >&2
  fi
fi

cargo test --locked --all-targets "$@"
