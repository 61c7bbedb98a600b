#!/usr/bin/env bash
# Smoke test of the Windows cross build: makes sure the dependency prefix exists
# (scripts/windows/build-deps.sh, seconds when it does), builds tests/windows/smoke with
# cmake/mingw-w64-x86_64.cmake, checks that the .exe imports only system DLLs, and runs it under
# Wine headless.
#
#   DATASYNC_WIN_DEPS_ROOT  where build-deps.sh keeps prefixes (default /work/.cache/win-deps)
#   DATASYNC_WINEPREFIX     Wine prefix (default $DATASYNC_WIN_DEPS_ROOT/wine), made on first use
#   DATASYNC_SMOKE_BUILD    build folder (default $DATASYNC_WIN_DEPS_ROOT/smoke-build)
#   DATASYNC_WIN_JOBS       build parallelism (default 2)
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
# shellcheck source=scripts/windows/wine-env.sh
source "$repo/scripts/windows/wine-env.sh"
root="$wine_root"
# The build folder is tied to one checkout's source: a second worktree gives its own.
build="${DATASYNC_SMOKE_BUILD:-$root/smoke-build}"
wine_logs="$root/smoke-logs"

say() { echo "smoke: $*" >&2; }
die() { say "FAILED: $*"; exit 1; }
start=$SECONDS

prefix=$(win_deps_prefix "$repo") || die "no Windows deps prefix"
say "deps prefix $prefix ($((SECONDS - start)) s)"

# --- Build ---------------------------------------------------------------------------------------
win_build_dir "$build" "$prefix" "$repo/tests/windows/smoke" || die "no build folder"
mkdir -p "$wine_logs"
t=$SECONDS
win_cmake_build "$repo/tests/windows/smoke" "$build" "$prefix" Release || die "build"
exe="$build/smoke.exe"
say "built $exe ($((SECONDS - t)) s)"

# --- Only system DLLs ------------------------------------------------------------------------------
dlls=$(wine_imports "$exe")
say "imports: $(tr '\n' ' ' <<< "$dlls")"
wine_check_no_mingw_dlls "$exe" || die "MinGW runtime DLLs"

# --- Wine ----------------------------------------------------------------------------------------
trap wine_stop EXIT
wine_prefix_ready "$wine_logs" || die "Wine prefix"
wine_check_system_dlls "$exe" || die "imports a DLL Windows does not ship"

t=$SECONDS
rc=0
wine "$exe" > "$wine_logs/smoke.out" 2> "$wine_logs/smoke.err" || rc=$?
say "ran under Wine ($((SECONDS - t)) s), exit code $rc"
grep -E '^(curl|Windows) |PASSED|FAILED' "$wine_logs/smoke.out" >&2 || true
((rc == 0)) || { cat "$wine_logs/smoke.out" "$wine_logs/smoke.err" >&2; die "smoke.exe exit code $rc"; }
grep -q '^SMOKE OK' "$wine_logs/smoke.out" || die "no SMOKE OK in $wine_logs/smoke.out"
say "OK in $((SECONDS - start)) s"
