#!/usr/bin/env bash
# Installs everything DataSync needs to build and test on Debian 12 (apt-get only).
set -euo pipefail
PKGS=(
  build-essential cmake ninja-build pkg-config git ca-certificates
  libboost-dev libboost-system-dev libcurl4-openssl-dev libssl-dev nlohmann-json3-dev
  libsqlite3-dev libsqlitecpp-dev sqlite3 libspdlog-dev libfmt-dev libcli11-dev libtomlplusplus-dev
  libutf8proc-dev  # Unicode NFC of file names (common/unicode.cc)
  postgresql libpqxx-dev libpq-dev
  libabsl-dev libargon2-dev libgtest-dev libgmock-dev libbenchmark-dev
  python3 rsync curl nginx chromium
  samba smbclient smbnetfs bindfs fuse3  # tests/fixtures/samba.py: a real SMB share over FUSE
  clang-14 libclang-rt-14-dev  # scripts/sanitize.sh: ASan, UBSan, TSan and libFuzzer builds
  nodejs  # + npm (below): Azurite, the Azure Blob emulator the storage tests start
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Debian's npm only where no npm exists: NodeSource's nodejs bundles npm and conflicts with it.
command -v npm >/dev/null 2>&1 || missing+=(npm)
# The npm dev tools pinned in package.json / package-lock.json (Azurite, playwright-core), once.
install_node_modules() {
  local nm="$(dirname "$0")/../node_modules"
  if [ ! -x "$nm/.bin/azurite-blob" ] || [ ! -f "$nm/playwright-core/package.json" ]; then
    echo "install-deps: npm ci (azurite, playwright-core)"
    (cd "$(dirname "$0")/.." && npm ci --no-audit --no-fund --silent)
  fi
}
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PKGS[@]} packages present"
  install_node_modules
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_node_modules
