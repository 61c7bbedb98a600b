#!/usr/bin/env bash
# The one command that runs every test: installs dependencies, builds, runs ctest, then the
# checked builds (scripts/sanitize.sh all: ASan + UBSan with the fuzz targets, then TSan over the
# agent, server, http and common unit tests). With ctest arguments (e.g. -R core) only those
# tests run, without the checked builds.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/check_platform_seam.sh
./scripts/install-deps.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
if [ $# -eq 0 ]; then
  ./scripts/sanitize.sh all
fi
