#!/usr/bin/env bash
# Sets up everything the harness needs on a fresh Debian machine: system packages (as root),
# the virtual environment and the Python packages. Safe to run again; it does only what is missing.
set -euo pipefail
VENV=${1:-.venv}
APT_PACKAGES=(iproute2 iptables tinyproxy squid python3-venv)
if [ "${2:-}" = "--browser" ]; then
  APT_PACKAGES=(chromium)  # Debian's Chromium: the HTML report test opens the report headless
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: missing Debian packages: ${missing[*]}" >&2
    echo "setup: run as root, or install them first: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

[ "${2:-}" = "--browser" ] && exit 0
if ! command -v npm >/dev/null; then
  echo "setup: npm (Node.js 20) is needed for the HTML report: apt-get install nodejs npm" >&2
  exit 1
fi

# Debian's Python where there is one: an interpreter every user can run, so the local target can
# run the service under test as its own unprivileged user (one under /root would not do).
if [ -z "${PYTHON:-}" ]; then
  PYTHON=python3
  [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import ensurepip' 2>/dev/null && PYTHON=/usr/bin/python3
fi
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "setup: Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" -V 2>&1))" >&2
  exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
echo "setup: installing the locked Python packages into $VENV (requirements.lock, hashes checked)"
# Exactly the versions the lock names, each checked against its hashes; then the project itself.
"$VENV/bin/pip" install -q --disable-pip-version-check --require-hashes --no-deps -r requirements.lock 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import pytest_bdd, allure_pytest_bdd, openai, jwt, httpx, starlette, uvicorn, openapi_core, testcontainers, docker, kubernetes_validate" \
  || { echo "setup: Python packages did not install" >&2; exit 1; }
