#!/usr/bin/env bash
# The local single-node Kubernetes (1.20.2 built from Debian bookworm's own source, see
# aislab/world/targets/kubernetes/local.py): build | start | stop | status | kubeconfig | ensure.
# The build is cached under /var/cache/aislab/kubernetes/<source version>/ (a second one is a no-op).
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${VENV:-.venv}/bin/python" -m aislab.world.targets.kubernetes.local "$@"
