#!/usr/bin/env bash
# Unit tests of the Windows platform layer (src/platform/windows, issue 19) under Wine: makes sure
# the dependency prefix exists (build-deps.sh, seconds when it does), configures the main
# CMakeLists with cmake/mingw-w64-x86_64.cmake (on Windows only src/platform builds so far),
# builds platform_win_test.exe, checks it imports only system DLLs and runs it once under Wine
# headless. Exits non-zero when anything fails, a test case included.
#
#   DATASYNC_WIN_BUILD      build folder (default <repo>/build-win; remade for a new deps prefix)
#   DATASYNC_WIN_JOBS       build parallelism (default 2)
#   DATASYNC_WIN_DEPS_ROOT, DATASYNC_WINEPREFIX: see wine-env.sh
#   Arguments are passed to the test binary (e.g. --gtest_filter='WinPaths.*').
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/windows/wine-env.sh
source "$repo/scripts/windows/wine-env.sh"
build="${DATASYNC_WIN_BUILD:-$repo/build-win}"
logs="$build/wine-logs"

say() { echo "platform-tests: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }
start=$SECONDS

prefix=$(win_deps_prefix "$repo") || die "no Windows deps prefix"
say "deps prefix $prefix ($((SECONDS - start)) s)"

# --- Build ---------------------------------------------------------------------------------------
win_build_dir "$build" "$prefix" "$repo" || die "no build folder"
mkdir -p "$logs"
t=$SECONDS
win_cmake_build "$repo" "$build" "$prefix" RelWithDebInfo --target platform_win_test || die "build"
exe="$build/tests/platform_win_test.exe"
[[ -f $exe ]] || die "no $exe"
say "built $exe ($((SECONDS - t)) s)"

wine_check_no_mingw_dlls "$exe" || die "MinGW runtime DLLs"

# --- Wine ----------------------------------------------------------------------------------------
trap wine_stop EXIT
wine_prefix_ready "$logs" || die "Wine prefix"
wine_check_system_dlls "$exe" || die "imports a DLL Windows does not ship"

t=$SECONDS
rc=0
# Standard input from /dev/null: not a console (HiddenInput's console case is skipped).
wine "$exe" --gtest_color=no "$@" < /dev/null > "$logs/platform_win_test.out" \
  2> "$logs/platform_win_test.err" || rc=$?
say "ran under Wine ($((SECONDS - t)) s), exit code $rc"
grep -E '^\[ *(PASSED|FAILED|SKIPPED) *\]|tests? ran' "$logs/platform_win_test.out" >&2 || true
if ((rc != 0)) || grep -q '^\[  FAILED  \]' "$logs/platform_win_test.out" ||
  ! grep -q '^\[  PASSED  \]' "$logs/platform_win_test.out"; then
  cat "$logs/platform_win_test.out" "$logs/platform_win_test.err" >&2
  die "platform_win_test.exe exit code $rc, see $logs"
fi
say "OK in $((SECONDS - start)) s"
