# shellcheck shell=bash
# Shared Wine set-up of the Windows test scripts (smoke.sh, platform-tests.sh); sourced, not run.
#
#   DATASYNC_WIN_DEPS_ROOT  where build-deps.sh keeps prefixes (default /work/.cache/win-deps)
#   DATASYNC_WINEPREFIX     Wine prefix (default $DATASYNC_WIN_DEPS_ROOT/wine), made on first use
#
# Sets: wine_root (the deps root). Exports a headless 64-bit Wine environment. Functions return
# non-zero with a message on stderr; the caller decides to stop.
wine_root="${DATASYNC_WIN_DEPS_ROOT:-/work/.cache/win-deps}"
export WINEPREFIX="${DATASYNC_WINEPREFIX:-$wine_root/wine}"
export WINEDEBUG=-all
export WINEARCH=win64
unset DISPLAY WAYLAND_DISPLAY

wine_say() { echo "wine-env: $*" >&2; }

# win_deps_prefix <repo>: prints the complete deps prefix (build-deps.sh; ~2 s when warm).
win_deps_prefix() {
  local prefix
  prefix=$("$1/scripts/windows/build-deps.sh" | tail -n 1) || return 1
  [[ -f $prefix/.complete ]] || { wine_say "build-deps.sh gave no complete prefix ($prefix)"; return 1; }
  echo "$prefix"
}

# win_cmake_build <source> <build> <prefix> <build type> [cmake --build args...]: configures the
# source with the MinGW toolchain against the prefix (ccache when present), builds at
# DATASYNC_WIN_JOBS (default 2) under nice, output in <build>/build.log (its tail on failure).
# REQUIRES: win_build_dir made <build>.
win_cmake_build() {
  local source=$1 build=$2 prefix=$3 type=$4 repo
  shift 4
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  local launcher=()
  command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  {
    cmake -S "$source" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="$type" "${launcher[@]}" \
      -DCMAKE_TOOLCHAIN_FILE="$repo/cmake/mingw-w64-x86_64.cmake" -DDATASYNC_WIN_DEPS="$prefix" &&
      nice -n 15 cmake --build "$build" -j "${DATASYNC_WIN_JOBS:-2}" "$@"
  } > "$build/build.log" 2>&1 || {
    tail -n 40 "$build/build.log" >&2
    wine_say "build failed, see $build/build.log"
    return 1
  }
}

# win_build_dir <build> <prefix> <source>: makes the build folder; one configured against another
# prefix (its cached package paths, absl_DIR ..., point there) or from another checkout's source
# (CMake refuses it) is removed first.
win_build_dir() {
  local build=$1 prefix=$2 source=$3
  if [[ -f $build/CMakeCache.txt ]] &&
    { ! grep -qxF "DATASYNC_WIN_DEPS:PATH=$prefix" "$build/CMakeCache.txt" ||
      ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$source" "$build/CMakeCache.txt"; }; then
    wine_say "deps prefix or source changed: removing $build"
    rm -rf "$build"
  fi
  mkdir -p "$build"
}

# wine_imports <exe>: the DLLs the .exe imports, one a line.
wine_imports() {
  x86_64-w64-mingw32-objdump -p "$1" | awk '/DLL Name:/ {print $3}' | sort -u
}

# wine_check_no_mingw_dlls <exe>: fails if the .exe needs a MinGW runtime DLL (link -static).
wine_check_no_mingw_dlls() {
  if wine_imports "$1" | grep -iE '^lib|gcc|stdc\+\+|pthread' >&2; then
    wine_say "$1 needs MinGW runtime DLLs (link with -static)"
    return 1
  fi
}

# wine_prefix_ready <log dir>: makes the Wine prefix once (wineboot --init, winecfg -v win10:
# a fresh prefix reports Windows 7), marked by $WINEPREFIX/.datasync-ready.
wine_prefix_ready() {
  local logs=$1 t=$SECONDS
  [[ -f $WINEPREFIX/.datasync-ready ]] && return 0
  mkdir -p "$logs"
  rm -rf "$WINEPREFIX"
  mkdir -p "$(dirname "$WINEPREFIX")"
  # Wine's output goes to files: a pipe inherited by wineserver would keep the caller waiting.
  wineboot --init > "$logs/wineboot.log" 2>&1 || { wine_say "wineboot, see $logs/wineboot.log"; return 1; }
  wineserver -w
  wine winecfg -v win10 > "$logs/winecfg.log" 2>&1 || { wine_say "winecfg, see $logs/winecfg.log"; return 1; }
  wineserver -w
  touch "$WINEPREFIX/.datasync-ready"
  wine_say "Wine prefix $WINEPREFIX ready ($((SECONDS - t)) s)"
}

# wine_check_system_dlls <exe>: every DLL the .exe imports is one Windows (here: Wine) ships.
# REQUIRES: wine_prefix_ready.
wine_check_system_dlls() {
  local dll
  for dll in $(wine_imports "$1"); do
    find "$WINEPREFIX/drive_c/windows/system32" -maxdepth 1 -iname "$dll" | grep -q . ||
      { wine_say "$dll is not a system DLL"; return 1; }
  done
}

# wine_stop: ends this prefix's wineserver (for an EXIT trap).
wine_stop() { wineserver -k > /dev/null 2>&1 || true; }
