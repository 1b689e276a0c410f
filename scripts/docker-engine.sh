#!/usr/bin/env bash
# Makes sure a Docker engine answers: installs Debian's docker.io if there is no dockerd, and
# starts dockerd if nothing answers (there is no systemd here; apt does not start it).
# The docker target's images are built by the harness itself (python -m aislab.world.targets.docker.images).
set -euo pipefail
LOG=${DOCKERD_LOG:-/var/log/aislab-dockerd.log}

if docker info >/dev/null 2>&1; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "docker-engine: no Docker engine answers, and starting one needs root (sudo make ...)" >&2
  exit 1
fi
if ! command -v dockerd >/dev/null; then
  echo "docker-engine: installing docker.io"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >/dev/null
fi
echo "docker-engine: starting dockerd (log: $LOG)"
# Appended, not overwritten: what an engine said before it was restarted (a miscounted network,
# say) is evidence for a failure seen later.
echo "=== dockerd started $(date -u +%FT%TZ) ===" >>"$LOG"
setsid dockerd >>"$LOG" 2>&1 < /dev/null &
pid=$!
for _ in $(seq 1 300); do  # up to 30 s; it is usually ready in under one
  docker info >/dev/null 2>&1 && exit 0
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "docker-engine: dockerd exited; its log:" >&2; tail -n 30 "$LOG" >&2; exit 1
  fi
  sleep 0.1
done
echo "docker-engine: dockerd did not answer within 30 s; its log:" >&2; tail -n 30 "$LOG" >&2
exit 1
