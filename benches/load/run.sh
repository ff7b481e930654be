#!/usr/bin/env bash
# One command: install the peers and load generators, build Outrigger in
# release mode, run the harness (about 8 minutes with 3 rounds).
#   benches/load/run.sh [--rounds 3] [--only outrigger,haproxy] [--json out.json] [--instructions 0]
set -euo pipefail
cd "$(dirname "$0")/../.."
need=()
for b in nginx haproxy wrk taskset valgrind; do command -v "$b" >/dev/null || need+=("$b"); done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=("${need[@]/taskset/util-linux}")
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
command -v oha >/dev/null || cargo install oha --locked
# nginx/haproxy packages start system services; the harness runs its own.
systemctl stop nginx haproxy 2>/dev/null || service nginx stop 2>/dev/null || true
cargo build --release --locked
# Instruction counts too (about a minute more); --instructions 0 skips them.
exec python3 benches/load/harness.py --instructions 10000 "$@"
