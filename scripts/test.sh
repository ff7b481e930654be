#!/usr/bin/env bash
# Runs the whole test suite on a fresh machine: installs protoc and the
# outside services the tests start for real (etcd, dnsmasq), then cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cargo test --locked --all-targets "$@"
# The vendored hyper's own unit tests: its Outrigger patches must keep
# hyper's behaviour (vendor/hyper/OUTRIGGER.md).
cargo test --locked --manifest-path vendor/hyper/Cargo.toml --target-dir target/hyper --lib --features full
