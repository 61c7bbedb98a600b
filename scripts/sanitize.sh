#!/usr/bin/env bash
# Checked builds with clang, run by scripts/test.sh after the main tests (or alone):
#   asan: all code with AddressSanitizer + UndefinedBehaviorSanitizer in build-asan/: every unit
#         test, every fuzz target for DS_FUZZ_SECONDS over its seed corpus, and e2e_core_sync
#         against the instrumented programs;
#   tsan: ThreadSanitizer in build-tsan/: the agent, server, http and common unit tests.
# Both compile with clang's -Wthread-safety as an error (DS_THREAD_SAFETY): the tree's lock
# annotations are checked there, without a clang build of its own, and the thread_safety_* tests
# show the check is on (an unguarded read must fail to compile).
# Fails on the first report (the instrumented programs of the e2e test write theirs to
# build-asan/sanitizer-reports/, which must stay empty). Usage: sanitize.sh [asan|tsan|all]
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
jobs="$(nproc)"
configure() {  # DIR SANITIZERS [cmake args...]
  local dir="$1" sanitizers="$2"
  shift 2
  # -O1 -g1: what sanitizers want (fast enough, line numbers in reports), and quicker to build.
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
        -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DDS_SANITIZE="$sanitizers" -DDS_THREAD_SAFETY=ON "$@" >/dev/null
}
check_thread_safety_is_on() {  # DIR
  ctest --test-dir "$1" -R '^thread_safety_' --no-tests=error --output-on-failure
}
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS="suppressions=$PWD/scripts/lsan.supp:print_suppressions=0"

# Runs out of file descriptors on purpose: UBSan's vptr check, which needs a pipe to probe memory,
# then reports any virtual call as "invalid vptr". The main build and TSan run it.
asan_skip='^HttpAcceptTest\.DescriptorExhaustionDoesNotSpin$'

run_asan() {
  configure build-asan address,undefined -DDS_FUZZ=ON
  ninja -C build-asan unit_tests fuzz_targets datasync-server datasync-agent datasync
  check_thread_safety_is_on build-asan
  local reports="$PWD/build-asan/sanitizer-reports"
  rm -rf "$reports" && mkdir -p "$reports"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1 \
    ctest --test-dir build-asan -LE 'e2e|bench' -E "$asan_skip" -j"$jobs" --output-on-failure
  ASAN_OPTIONS="detect_leaks=0:log_path=$reports/asan" UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$reports/ubsan" \
    ctest --test-dir build-asan -R '^e2e_core_sync$' --output-on-failure
  if compgen -G "$reports/*" >/dev/null; then
    echo "sanitize: reports from the instrumented programs:" >&2
    head -n 40 "$reports"/* >&2
    exit 1
  fi
}

run_tsan() {
  local tests=(agent_test server_test http_test common_test)
  configure build-tsan thread
  ninja -C build-tsan "${tests[@]}"
  check_thread_safety_is_on build-tsan
  for t in "${tests[@]}"; do
    echo "sanitize: TSan $t"
    TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 "build-tsan/tests/$t" --gtest_brief=1
  done
}

case "$what" in
  asan) run_asan ;;
  tsan) run_tsan ;;
  all) run_asan; run_tsan ;;
  *) echo "usage: $0 [asan|tsan|all]" >&2; exit 2 ;;
esac
