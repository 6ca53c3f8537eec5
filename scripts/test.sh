#!/usr/bin/env bash
# Install everything the tests need (Debian's prometheus + alertmanager for promtool/amtool and
# the end-to-end stack, chromium for the status page in a real browser, the package with its
# test extra) and run the whole suite.
# Usage: bash scripts/test.sh [pytest args...]   (run as root, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ! -e /usr/sbin/policy-rc.d ]; then   # never let the packages' postinst start daemons on 0.0.0.0
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null && $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus prometheus-alertmanager chromium >/dev/null
for b in prometheus promtool prometheus-alertmanager amtool chromium; do command -v "$b" >/dev/null; done
python3 -m pip install -q --disable-pip-version-check -e '.[test]'
export CI="${CI:-true}"
python3 -m ruff check .
python3 -m mypy
python3 -m pytest -q -p no:cacheprovider "$@"
