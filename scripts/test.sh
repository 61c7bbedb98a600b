#!/usr/bin/env bash
# The one command that runs every test: installs dependencies, builds, runs ctest, then the
# checked build (scripts/sanitize.sh asan: ASan + UBSan with the fuzz targets). With ctest
# arguments (e.g. -R core) only those tests run, without the checked builds.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
if [ $# -eq 0 ]; then
  # TSan (sanitize.sh tsan) joins once it has run green on main; see docs/security.md.
  ./scripts/sanitize.sh asan
fi
