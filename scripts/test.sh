#!/usr/bin/env bash
# The one command that runs every test: installs dependencies, builds, runs ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
./scripts/build.sh
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
