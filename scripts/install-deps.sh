#!/usr/bin/env bash
# Installs everything DataSync needs to build and test on Debian 12 (apt-get only).
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost-dev libboost-system-dev libcurl4-openssl-dev libssl-dev nlohmann-json3-dev
  libsqlite3-dev libsqlitecpp-dev sqlite3 libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev
  libabsl-dev libargon2-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3 rsync curl
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
