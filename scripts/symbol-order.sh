#!/usr/bin/env bash
# Regenerates build/symbol-order.txt: the functions of the release binary
# that start-up and serving run. build.rs hands the
# list to the linker (lld's --symbol-ordering-file), which lays those
# functions out together at the start of .text. The kernel maps a
# binary's code into memory in 64 KiB blocks around each page touched;
# with the functions used scattered over 9.5 MB of code, ~5 MB of it was
# resident at idle; laid out together, ~1.5 MB is.
#
# Run after larger changes, and with the toolchain the Dockerfile pins
# whenever that changes (symbol names carry hashes that change with the
# compiler version). The binary links, and runs correctly, with a stale
# list: functions not named are laid out after those named, and names no
# longer present are skipped. Needs valgrind, curl, python3.
#   scripts/symbol-order.sh
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }
cargo build --release --locked
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
up=$(free_port); port=$(free_port); admin=$(free_port)
python3 -m http.server "$up" --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &
# Both stack shapes (a bare route, every layer on), so both sets of
# functions are listed.
cat >"$work/order.yaml" <<EOF
admin: {address: "127.0.0.1:$admin"}
worker_threads: 1
listeners:
  - name: order
    address: "127.0.0.1:$port"
    routes:
      - name: layers
        match: {path: /layers}
        cluster: up
        timeout: 5s
        retry: {attempts: 2, on: [connect-failure, reset, 503], per_try_timeout: 2s}
        bulkhead: {max_concurrent: 1000, max_queued: 100, queue_timeout: 1s}
        circuit_breaker: {consecutive_failures: 50, open_duration: 5s}
      - name: bare
        match: {host: 127.0.0.1}
        cluster: up
clusters:
  - name: up
    endpoints: ["127.0.0.1:$up"]
EOF
RUST_LOG=warn valgrind --tool=callgrind --demangle=no --compress-strings=no \
  --callgrind-out-file="$work/cg.out" target/release/outrigger run --config "$work/order.yaml" >/dev/null 2>"$work/vg.log" &
vg=$!
up_yet=""
for _ in $(seq 120); do
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then up_yet=1; break; fi
  sleep 0.5
done
[ -n "$up_yet" ] || { echo "the proxy did not come up under valgrind:" >&2; tail "$work/vg.log" >&2; exit 1; }
for _ in $(seq 50); do
  curl -s "http://127.0.0.1:$port/" "http://127.0.0.1:$port/layers" >/dev/null
  curl -s -H "Host: nowhere.invalid" "http://127.0.0.1:$port/" >/dev/null
done
curl -s "http://127.0.0.1:$admin/metrics" "http://127.0.0.1:$admin/clusters" "http://127.0.0.1:$admin/ready" >/dev/null
kill -INT "$vg"
wait "$vg" || true
mkdir -p build
python3 - "$work/cg.out" build/symbol-order.txt <<'EOF'
import re, sys
obj, seen, order = None, set(), []
for line in open(sys.argv[1]):
    if line.startswith("ob="):
        obj = line[3:].strip()
    elif line.startswith("fn=") and obj and obj.endswith("/outrigger"):
        name = re.sub(r"'\d+$", "", line[3:].strip())
        if name.startswith(("_ZN", "_R")) and name not in seen:
            seen.add(name)
            order.append(name)
if len(order) < 500:
    sys.exit(f"only {len(order)} functions recorded: is the run complete? (kept the old list)")
open(sys.argv[2], "w").write("".join(n + "\n" for n in order))
print(f"{len(order)} functions -> {sys.argv[2]}")
EOF
