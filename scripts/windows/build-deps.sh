#!/usr/bin/env bash
# Builds the third-party libraries of the Windows agent (64-bit, MinGW-w64, static) from Debian's
# source packages into a prefix, and prints that prefix as the last line of stdout (all progress
# goes to stderr), so callers can do: prefix=$(scripts/windows/build-deps.sh | tail -n 1)
#
#   abseil, sqlite3 (amalgamation), SQLiteCpp, curl (Schannel, HTTP(S) only): `apt-get source`
#   googletest: /usr/src/googletest of Debian's googletest package
#   nlohmann-json, CLI11, toml++, spdlog + fmt (header-only): symlinks to Debian's headers in
#   <prefix>/include-hdr plus small CMake package files, so find_package() works unchanged.
#
# The prefix is ${DATASYNC_WIN_DEPS_ROOT:-/work/.cache/win-deps}/<key>, or $DATASYNC_WIN_DEPS if
# set. <key> hashes the source package versions, the header package versions, the compiler
# version, this script and the toolchain file; the stamp file <prefix>/.complete is written last.
# A prefix with a matching stamp is reused (seconds); anything else is removed and rebuilt (only
# if it carries this script's marker file), under a lock (<prefix>.lock) against a parallel run.
#
# Needs root (apt-get). Adds a deb-src entry (/etc/apt/sources.list.d/datasync-src.sources) for
# the same Debian registry when none exists. Parallelism: DATASYNC_WIN_JOBS (default 2).
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
toolchain="$repo/cmake/mingw-w64-x86_64.cmake"
root="${DATASYNC_WIN_DEPS_ROOT:-/work/.cache/win-deps}"
jobs="${DATASYNC_WIN_JOBS:-2}"
src_packages=(abseil sqlite3 sqlitecpp curl)
header_packages=(nlohmann-json3-dev libcli11-dev libtomlplusplus-dev libspdlog-dev libfmt-dev)
apt_packages=(g++-mingw-w64-x86-64 g++-mingw-w64-x86-64-posix mingw-w64-tools cmake ninja-build
              tcl dpkg-dev googletest wine64 wine "${header_packages[@]}")

say() { echo "build-deps: $*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# --- 1. Tools and headers from apt -------------------------------------------------------------
missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${db:Status-Status}\n' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) == 0 ]] || die "need root to install: ${missing[*]}"
  say "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
    { apt-get update >&2 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
fi

# --- 2. deb-src entry for `apt-get source` ------------------------------------------------------
src_list=/etc/apt/sources.list.d/datasync-src.sources
has_deb_src() {
  grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/
}
if ! has_deb_src; then
  [[ $(id -u) == 0 ]] || die "need root to add $src_list"
  [[ -f /etc/apt/sources.list.d/debian.sources ]] ||
    die "no deb-src entry and no /etc/apt/sources.list.d/debian.sources to derive one from"
  say "adding $src_list (deb-src for the same registry) and running apt-get update"
  sed -E 's/^Types:.*/Types: deb-src/' /etc/apt/sources.list.d/debian.sources > "$src_list.tmp"
  mv "$src_list.tmp" "$src_list"
  apt-get update >&2
fi

# --- 3. Key: what the build depends on ----------------------------------------------------------
# `apt-get source --print-uris` names exactly the source files (name_version.dsc, their hashes)
# that `apt-get source` would fetch, without downloading anything.
uris=$(cd /tmp && apt-get source --print-uris "${src_packages[@]}" 2>/dev/null | grep "^'") ||
  die "apt-get source --print-uris ${src_packages[*]} failed"
key_input=$(
  echo "$uris" | awk '{print $2, $3, $4}' | sort
  dpkg-query -W googletest g++-mingw-w64-x86-64-posix mingw-w64-x86-64-dev cmake \
    "${header_packages[@]}"
  sha256sum < "$0"
  sha256sum < "$toolchain"
)
key=$(echo "$key_input" | sha256sum | cut -c1-16)
prefix="${DATASYNC_WIN_DEPS:-$root/$key}"
stamp="$prefix/.complete"

is_complete() { [[ -f $stamp ]] && [[ $(head -n 1 "$stamp") == "key $key" ]]; }
if is_complete; then
  say "prefix is complete (key $key), nothing to do"
  echo "$prefix"
  exit 0
fi

# --- 4. Build ------------------------------------------------------------------------------------
# One build per prefix at a time; a second caller waits, then finds the stamp.
mkdir -p "$root/sources" "$(dirname "$prefix")"
exec 9> "$prefix.lock"
flock 9
if is_complete; then
  say "prefix was completed by another run (key $key)"
  echo "$prefix"
  exit 0
fi
say "building into $prefix (key $key)"
# Remove only what this script made (marker file): $DATASYNC_WIN_DEPS may point anywhere.
if [[ -e $prefix ]]; then
  [[ -f $prefix/.datasync-win-deps ]] || [[ -z $(ls -A "$prefix") ]] ||
    die "$prefix exists and was not made by this script; remove it or choose another"
  rm -rf "$prefix"
fi
mkdir -p "$prefix"
touch "$prefix/.datasync-win-deps"
# Sources and build trees: private to this run, removed however it ends (the logs stay in the
# prefix, which has no stamp until the end).
scratch=$(mktemp -d "$root/scratch.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
log_dir="$prefix/logs"  # kept: one log per step
mkdir -p "$log_dir"
timings=()

# Downloads once into $root/sources (kept between builds) and unpacks into $scratch/<package>.
unpack() {
  local pkg=$1 dsc
  dsc=$(echo "$uris" | awk '{print $2}' | grep -E "^${pkg}_[^_]+\.dsc$")
  [[ -n $dsc ]] || die "no .dsc for $pkg in apt-get source --print-uris"
  local f complete=1
  for f in $(echo "$uris" | awk '{print $2}' | grep -E "^${pkg}_"); do
    [[ -f $root/sources/$f ]] || complete=0
  done
  if ((!complete)); then
    (cd "$root/sources" && apt-get source --download-only "$pkg" > "$log_dir/$pkg-download.log" 2>&1) ||
      die "apt-get source $pkg failed, see $log_dir/$pkg-download.log"
  fi
  dpkg-source --no-check -x "$root/sources/$dsc" "$scratch/$pkg" > "$log_dir/$pkg-unpack.log" 2>&1 ||
    die "dpkg-source -x $dsc failed, see $log_dir/$pkg-unpack.log"
}

# cmake_build <name> <source dir> [cmake args...]: configure, build and install one project.
cmake_build() {
  local name=$1 src=$2
  shift 2
  local bld="$scratch/build-$name" log="$log_dir/$name.log"
  {
    cmake -S "$src" -B "$bld" -G Ninja \
      -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DDATASYNC_WIN_DEPS="$prefix" \
      -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix" \
      -DCMAKE_CXX_STANDARD=20 -DCMAKE_CXX_STANDARD_REQUIRED=ON \
      -DBUILD_SHARED_LIBS=OFF -DBUILD_TESTING=OFF "$@" &&
      nice -n 10 cmake --build "$bld" -j "$jobs" &&
      cmake --install "$bld"
  } > "$log" 2>&1 || { tail -n 30 "$log" >&2; die "$name failed, see $log"; }
}

timed() {
  local name=$1 start=$SECONDS
  shift
  say "$name ..."
  "$@"
  timings+=("$name $((SECONDS - start)) s")
  say "$name done in $((SECONDS - start)) s"
}

build_abseil() {
  unpack abseil
  # C++20 like the rest of DataSync: absl::string_view etc. follow the standard the library was
  # built with, so every user must use the same one.
  cmake_build abseil "$scratch/abseil" -DABSL_PROPAGATE_CXX_STD=ON -DABSL_BUILD_TESTING=OFF \
    -DABSL_ENABLE_INSTALL=ON
}

sqlite_defines=(-DSQLITE_THREADSAFE=1 -DSQLITE_OMIT_LOAD_EXTENSION -DSQLITE_ENABLE_COLUMN_METADATA)

build_sqlite3() {
  unpack sqlite3
  local amal="$scratch/sqlite3-amalgamation" log="$log_dir/sqlite3-amalgamation.log"
  mkdir -p "$amal"
  # The amalgamation is generated on Linux (needs tclsh); only sqlite3.c is then cross-compiled.
  (cd "$amal" && "$scratch/sqlite3/configure" && nice -n 10 make -j "$jobs" sqlite3.c) > "$log" 2>&1 ||
    { tail -n 30 "$log" >&2; die "sqlite3 amalgamation failed, see $log"; }
  cat > "$amal/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.16)
project(sqlite3 C)
add_library(sqlite3 STATIC sqlite3.c)
target_compile_definitions(sqlite3 PRIVATE ${sqlite_defines[*]})
install(TARGETS sqlite3 ARCHIVE DESTINATION lib)
install(FILES sqlite3.h sqlite3ext.h DESTINATION include)
EOF
  cmake_build sqlite3 "$amal"
}

build_sqlitecpp() {
  unpack sqlitecpp
  cmake_build sqlitecpp "$scratch/sqlitecpp" -DSQLITECPP_INTERNAL_SQLITE=OFF \
    -DSQLITE_OMIT_LOAD_EXTENSION=ON -DSQLITE_ENABLE_COLUMN_METADATA=ON \
    -DSQLITECPP_USE_STACK_PROTECTION=OFF -DSQLITECPP_RUN_CPPLINT=OFF -DSQLITECPP_RUN_CPPCHECK=OFF \
    -DSQLITECPP_BUILD_TESTS=OFF -DSQLITECPP_BUILD_EXAMPLES=OFF
}

build_curl() {
  unpack curl
  cmake_build curl "$scratch/curl" -DCURL_USE_SCHANNEL=ON -DCURL_USE_OPENSSL=OFF -DHTTP_ONLY=ON \
    -DCURL_ZLIB=OFF -DCURL_BROTLI=OFF -DCURL_ZSTD=OFF -DUSE_NGHTTP2=OFF -DCURL_USE_LIBSSH2=OFF \
    -DCURL_USE_LIBSSH=OFF -DUSE_LIBIDN2=OFF -DUSE_WIN32_IDN=OFF -DCURL_DISABLE_LDAP=ON \
    -DBUILD_CURL_EXE=OFF -DENABLE_MANUAL=OFF -DCURL_CA_PATH=none \
    -DCURL_CA_BUNDLE=none
}

build_googletest() {
  [[ -f /usr/src/googletest/CMakeLists.txt ]] || die "/usr/src/googletest missing (package googletest)"
  cmake_build googletest /usr/src/googletest -DBUILD_GMOCK=ON -DINSTALL_GTEST=ON
}

# Header-only libraries: a folder with links to just these library folders (never -I/usr/include,
# which holds Linux C headers), and CMake package files with the usual target names.
install_headers() {
  local hdr="$prefix/include-hdr" cm="$prefix/lib/cmake" d
  mkdir -p "$hdr"
  for d in nlohmann CLI toml++ spdlog fmt; do
    [[ -d /usr/include/$d ]] || die "/usr/include/$d missing"
    ln -sfn "/usr/include/$d" "$hdr/$d"
  done
  mkdir -p "$cm/nlohmann_json" "$cm/CLI11" "$cm/tomlplusplus" "$cm/fmt" "$cm/spdlog"
  # header_target <file> <target> [definitions...]
  header_target() {
    local file=$1 target=$2
    shift 2
    cat >> "$file" <<EOF
if(NOT TARGET $target)
  get_filename_component(_datasync_hdr "\${CMAKE_CURRENT_LIST_DIR}/../../../include-hdr" ABSOLUTE)
  add_library($target INTERFACE IMPORTED)
  set_target_properties($target PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "\${_datasync_hdr}"
    INTERFACE_COMPILE_DEFINITIONS "$*")
endif()
EOF
  }
  local f
  f="$cm/nlohmann_json/nlohmann_jsonConfig.cmake"; : > "$f"; header_target "$f" nlohmann_json::nlohmann_json
  f="$cm/CLI11/CLI11Config.cmake"; : > "$f"; header_target "$f" CLI11::CLI11
  f="$cm/tomlplusplus/tomlplusplusConfig.cmake"; : > "$f"
  header_target "$f" tomlplusplus::tomlplusplus TOML_HEADER_ONLY=1
  f="$cm/fmt/fmtConfig.cmake"; : > "$f"
  header_target "$f" fmt::fmt-header-only FMT_HEADER_ONLY=1
  echo 'if(NOT TARGET fmt::fmt)
  add_library(fmt::fmt ALIAS fmt::fmt-header-only)
endif()' >> "$f"
  f="$cm/spdlog/spdlogConfig.cmake"
  echo 'include(CMakeFindDependencyMacro)
find_dependency(fmt CONFIG)' > "$f"
  # Debian's spdlog uses the external fmt (SPDLOG_FMT_EXTERNAL), header-only here.
  header_target "$f" spdlog::spdlog_header_only "SPDLOG_HEADER_ONLY;SPDLOG_FMT_EXTERNAL"
  echo 'set_property(TARGET spdlog::spdlog_header_only APPEND PROPERTY
  INTERFACE_LINK_LIBRARIES fmt::fmt-header-only)
if(NOT TARGET spdlog::spdlog)
  add_library(spdlog::spdlog ALIAS spdlog::spdlog_header_only)
endif()' >> "$f"
}

total_start=$SECONDS
timed abseil build_abseil
timed sqlite3 build_sqlite3
timed sqlitecpp build_sqlitecpp
timed curl build_curl
timed googletest build_googletest
timed headers install_headers

{
  echo "key $key"
  echo "built $(date -u +%FT%TZ) in $((SECONDS - total_start)) s with -j$jobs"
  printf '%s\n' "${timings[@]}"
  echo "--- key input"
  echo "$key_input"
} > "$stamp.tmp"
mv "$stamp.tmp" "$stamp"  # last: a prefix without it is rebuilt
say "times: ${timings[*]}"
for old in "$root"/*/.complete; do
  [[ $old == "$stamp" || ! -f $old ]] || say "older prefix (remove when unused): $(dirname "$old")"
done
say "complete in $((SECONDS - total_start)) s: $prefix"
echo "$prefix"
