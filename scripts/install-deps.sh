#!/usr/bin/env bash
# Installs what building and testing need beyond cargo, on a fresh machine:
# protoc (etcd-client's build compiles etcd's .proto files), and the outside
# services the tests start for real (etcd, dnsmasq).
set -euo pipefail

need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v dnsmasq >/dev/null 2>&1 || need+=(dnsmasq-base)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler libprotobuf-dev)
# tests/iptables.rs applies rules in a network namespace.
command -v iptables >/dev/null 2>&1 || need+=(iptables)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing: ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "warning: missing ${need[*]} (install them; the build needs protoc, the tests etcd and dnsmasq)" >&2
  fi
fi
