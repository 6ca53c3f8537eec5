#!/usr/bin/env bash
# Install everything the tests need (Debian's prometheus + alertmanager for promtool/amtool and
# the end-to-end stack, chromium for the status page in a real browser, gcc for the compiled
# line scanner, the package with its test extra) and run the whole suite: ruff, mypy, pytest.
# Usage: bash scripts/test.sh [pytest args...]   (run as root, or with sudo available)
#
# Python packages go into a virtualenv, never into the system Python (Debian's refuses that,
# PEP 668): the active one if there is one (VIRTUAL_ENV, as in the README), else ./.venv
# (created when missing). CI (.ci/run) runs this inside a fresh virtualenv.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ! -e /usr/sbin/policy-rc.d ]; then   # never let the packages' postinst start daemons on 0.0.0.0
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
packages="prometheus prometheus-alertmanager chromium"
# Debian's python3 ships `venv` without ensurepip; python3-venv adds it
python3 -c 'import ensurepip' 2>/dev/null || packages="$packages python3-venv"
# the JSON line scanner (exporter/ingest/_linescan.c) is compiled at install: gcc and Python's headers
command -v gcc >/dev/null || packages="$packages gcc libc6-dev"
python3 -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || packages="$packages python3-dev"
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $packages >/dev/null
for b in prometheus promtool prometheus-alertmanager amtool chromium gcc; do command -v "$b" >/dev/null; done

if [ -z "${VIRTUAL_ENV:-}" ] && python3 -c 'import sys; sys.exit(sys.prefix != sys.base_prefix)'; then
  [ -x .venv/bin/python ] || { echo "scripts/test.sh: creating the virtualenv ./.venv"; python3 -m venv .venv; }
  # shellcheck disable=SC1091
  . .venv/bin/activate                  # its bin/ on PATH too: the tests look tools such as hadolint up there
fi
python -m pip install -q --disable-pip-version-check -e '.[test]'
export CI="${CI:-true}"
python -m ruff check .
python -m mypy
python -m pytest -q -p no:cacheprovider "$@"
