#!/usr/bin/env bash
# The one command that runs every test: installs dependencies, builds, runs ctest, then the
# checked builds (scripts/sanitize.sh: ASan + UBSan with the fuzz targets, TSan). With ctest
# arguments (e.g. -R core) only those tests run, without the checked builds.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
if [ $# -eq 0 ]; then
  ./scripts/sanitize.sh all
fi
