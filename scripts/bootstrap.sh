#!/usr/bin/env bash
# Installs everything Jianzheng needs on a fresh Debian machine; safe to re-run.
#   scripts/bootstrap.sh run   -> what `jianzheng serve` needs
#   scripts/bootstrap.sh test  -> that, plus the test tools (poppler, NSS, SoftHSM, Chromium, PostgreSQL up)
#   scripts/bootstrap.sh bench -> the test set plus the load generator (wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
VENV=${VENV:-.venv}

apt_run=(fonts-wqy-zenhei)
apt_test=(poppler-utils libnss3-tools softhsm2 opensc chromium postgresql-client)
want=("${apt_run[@]}")
[ "$mode" = test ] || [ "$mode" = bench ] && want+=("${apt_test[@]}")
[ "$mode" = bench ] && want+=(wrk)
missing=()
for pkg in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Python: one virtual environment, re-installed when pyproject.toml changes.
extras=""; [ "$mode" != run ] && extras="[test]"
stamp="$VENV/.jianzheng-installed$extras"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip wheel
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "bootstrap: installing Python packages into $VENV"
  "$VENV/bin/pip" install -q -e ".$extras"
  touch "$stamp"
fi

# Node: the dev chain (Hardhat, anvil) and the Solidity compiler, from the lockfile.
if [ ! -d chain-dev/node_modules ] || [ chain-dev/package-lock.json -nt chain-dev/node_modules/.package-lock.json ]; then
  echo "bootstrap: npm ci in chain-dev/"
  (cd chain-dev && npm ci --no-audit --no-fund --loglevel=error)
fi

# Browser files (the offline verifier's QR decoder) are vendored into the service package;
# the test set installs their npm source too, so a test can check the copies are current.
if [ "$mode" != run ] && { [ ! -d web/node_modules ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; }; then
  echo "bootstrap: npm ci in web/"
  (cd web && npm ci --no-audit --no-fund --loglevel=error)
fi

if [ "$mode" != run ]; then
  if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
    echo "bootstrap: starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
  fi
fi
