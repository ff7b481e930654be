#!/usr/bin/env bash
# End-to-end check of the sidecar's traffic capture, opt-in (not run by CI:
# it needs root, iproute2, iptables, curl and python3, and makes network
# namespaces):
#
#   sudo scripts/e2e-iptables.sh            # builds target/debug/outrigger
#   sudo OUTRIGGER=/path/to/outrigger scripts/e2e-iptables.sh
#
# Two namespaces joined by a veth pair stand in for a pod and a remote
# service. In the pod: `outrigger iptables`, an app on 127.0.0.1:8081, and
# the proxy as UID 1337. Checked: the app's outbound TCP reaches the proxy
# (routed by Host, or by SO_ORIGINAL_DST when there is no Host), the proxy's
# own connections are not looped back, inbound TCP to the pod reaches the
# app through the inbound listener, the admin port is reached directly, and
# `--uninstall` puts everything back.
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in ip iptables curl python3 setpriv; do
  command -v "$tool" >/dev/null || { echo "e2e-iptables: needs $tool (apt-get install -y iproute2 iptables curl util-linux)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "e2e-iptables: needs root" >&2; exit 2; }

if [ -z "${OUTRIGGER:-}" ]; then
  cargo build --quiet --bin outrigger
  OUTRIGGER=target/debug/outrigger
fi

tag=$$
POD="or-pod-$tag" REMOTE="or-remote-$tag"
POD_IP=10.233.0.1 REMOTE_IP=10.233.0.2   # only inside this script's own namespaces
work=$(mktemp -d)
chmod 755 "$work"
pids=()

cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  ip netns del "$POD" 2>/dev/null || true
  ip netns del "$REMOTE" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

in_pod() { ip netns exec "$POD" "$@"; }
in_remote() { ip netns exec "$REMOTE" "$@"; }
fail() { echo "FAIL: $*" >&2; echo "--- proxy log" >&2; cat "$work/proxy.log" >&2; exit 1; }
pass=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }

# The proxy runs as UID 1337, which cannot read root's checkout.
install -m 0755 "$OUTRIGGER" "$work/outrigger"

ip netns add "$POD"
ip netns add "$REMOTE"
ip link add "veth-p$tag" netns "$POD" type veth peer name "veth-r$tag" netns "$REMOTE"
in_pod ip addr add "$POD_IP/30" dev "veth-p$tag"
in_remote ip addr add "$REMOTE_IP/30" dev "veth-r$tag"
for ns in "$POD" "$REMOTE"; do
  ip netns exec "$ns" ip link set lo up
done
in_pod ip link set "veth-p$tag" up
in_remote ip link set "veth-r$tag" up

# The init step, as in the pod spec.
in_pod "$work/outrigger" iptables

cat >"$work/outrigger.yaml" <<EOF
admin: {address: 0.0.0.0:9901}
listeners:
  - name: inbound
    address: 0.0.0.0:15006
    transparent: true
    routes:
      - {name: app, cluster: app}
  - name: outbound
    address: 127.0.0.1:15001
    transparent: true
    routes:
      - {name: by-name, match: {host: remote}, cluster: remote}
      - {name: by-ip, match: {host: $REMOTE_IP}, cluster: remote}
clusters:
  - {name: app, endpoints: [127.0.0.1:8081]}
  - {name: remote, endpoints: [$REMOTE_IP:8080]}
EOF

mkdir "$work/app" "$work/remote"
echo "hello from the app" >"$work/app/index.html"
echo "hello from remote" >"$work/remote/index.html"
in_pod python3 -m http.server 8081 --bind 127.0.0.1 --directory "$work/app" >/dev/null 2>&1 &
pids+=($!)
in_remote python3 -m http.server 8080 --bind "$REMOTE_IP" --directory "$work/remote" >/dev/null 2>&1 &
pids+=($!)
in_pod setpriv --reuid 1337 --regid 1337 --clear-groups \
  "$work/outrigger" run --config "$work/outrigger.yaml" --log-format json >"$work/proxy.log" 2>&1 &
pids+=($!)

for _ in $(seq 100); do
  in_pod curl -fs -o /dev/null http://127.0.0.1:9901/ready && in_remote curl -fs -o /dev/null "http://$REMOTE_IP:8080/" \
    && in_pod curl -fs -o /dev/null http://127.0.0.1:8081/ && break
  sleep 0.1
done
in_pod curl -fs -o /dev/null http://127.0.0.1:9901/ready || fail "the proxy never became ready"

metric() { in_pod curl -fs http://127.0.0.1:9901/metrics | grep "^outrigger_requests_total{.*$1" | awk '{s += $2} END {print s + 0}'; }

# Outbound, by Host: port 9 has no listener, only the proxy makes it work.
body=$(in_pod curl -fsS --max-time 5 -H 'Host: remote' "http://$REMOTE_IP:9/") || fail "outbound by Host"
[ "$body" = "hello from remote" ] || fail "outbound by Host answered: $body"
[ "$(metric 'route="by-name"')" = 1 ] || fail "outbound by Host did not go through route by-name"
ok "the app's outbound TCP is redirected to the outbound listener and routed by Host"
ok "the proxy's own connection (UID 1337) went out, not back into the proxy"

# Outbound, no Host: routed on SO_ORIGINAL_DST (10.233.0.2:9).
body=$(in_pod curl -fsS --max-time 5 --http1.0 -H 'Host:' "http://$REMOTE_IP:9/") || fail "outbound without Host"
[ "$body" = "hello from remote" ] || fail "outbound without Host answered: $body"
[ "$(metric 'route="by-ip"')" = 1 ] || fail "outbound without Host did not go through route by-ip"
grep -q "\"original_dst\":\"$REMOTE_IP:9\"" "$work/proxy.log" || fail "the access log lacks original_dst $REMOTE_IP:9"
ok "a hostless request is routed on its original destination $REMOTE_IP:9, which the access log records"

# Outbound to a host with no route: the proxy says so.
err=$(in_pod curl -sS --max-time 5 -o /dev/null -D - -H 'Host: elsewhere' "http://$REMOTE_IP:8080/" | tr -d '\r' | grep -i '^x-outrigger-error:' || true)
[ "$err" = "x-outrigger-error: no-route" ] || fail "unrouted outbound: got '$err'"
ok "unrouted outbound traffic is answered by the proxy (no-route), not sent around it"

# Inbound: the app listens on 127.0.0.1 only; from outside, only the
# inbound listener can reach it.
body=$(in_remote curl -fsS --max-time 5 "http://$POD_IP:8081/") || fail "inbound"
[ "$body" = "hello from the app" ] || fail "inbound answered: $body"
[ "$(metric 'listener="inbound"')" = 1 ] || fail "inbound did not go through the inbound listener"
ok "inbound TCP to the pod is redirected to the inbound listener and reaches the app"

# The admin port is not redirected: probes and scrapes see the admin server.
in_remote curl -fsS --max-time 5 "http://$POD_IP:9901/metrics" | grep -q '^outrigger_requests_total' \
  || fail "admin port from outside the pod"
ok "the admin port is reached directly from outside the pod"

# Uninstall: nothing is redirected any more.
in_pod "$work/outrigger" iptables --uninstall
! in_pod iptables -t nat -S | grep -q OUTRIGGER || fail "rules left after --uninstall"
if in_pod curl -s --max-time 5 -o /dev/null -H 'Host: remote' "http://$REMOTE_IP:9/"; then
  fail "outbound still redirected after --uninstall"
fi
ok "--uninstall removes the redirection"

echo "$pass passed, 0 failed"
