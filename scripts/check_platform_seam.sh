#!/usr/bin/env bash
# The platform seam (docs/architecture.md, "Platform layer"): production code of the folders
# below — everything the agent and the CLI are built from (the agent, sync, shared helpers,
# storage backends, the HTTP layer, the CLI and the mains in apps/) — makes no operating-system
# call and includes no OS header itself: it goes through src/platform/. Server-side folders
# (src/server, src/index) are Linux-only and outside it. A grep, cheap enough to run before every
# build (scripts/test.sh).
#
# Exceptions: scripts/platform_seam_allow.txt, one per line: `path|text|reason`: a hit in `path`
# whose line contains `text` is allowed, for `reason` (required). An entry that allows nothing
# any more fails the check too, so the list stays true.
#
# Usage: scripts/check_platform_seam.sh            check the tree
#        scripts/check_platform_seam.sh --self-test  show that a raw call fails the check
# Environment (for --self-test): SEAM_ROOT (tree to check), SEAM_ALLOW (allow-list file).
set -euo pipefail

# The folders whose OS calls must go through src/platform.
SEAM_DIRS=(src/agent src/sync src/common src/storage src/http src/cli apps)
# Folders not yet moved onto the layer (none left since src/storage/dir moved): drop an
# entry here once its folder is clean.
SEAM_PENDING=()

# Raw calls: a lower-case OS function name called bare or as ::name( — not a member (.x( ->x(),
# not std::/absl:: qualified.
CALLS='open|openat|openat2|creat|read|write|pread|pwrite|readv|writev|close|fsync|fdatasync'
CALLS+='|syncfs|sync_file_range|rename|renameat|renameat2|link|linkat|symlink|symlinkat|unlink'
CALLS+='|unlinkat|mkdir|mkdirat|rmdir|stat|lstat|fstat|fstatat|statx|opendir|fdopendir|readdir'
CALLS+='|closedir|rewinddir|scandir|statvfs|fstatvfs|statfs|fstatfs|uname|gethostname|fnmatch'
CALLS+='|glob|signal|sigaction|sigwait|sigprocmask|pthread_sigmask|raise|kill|dup|dup2|dup3'
CALLS+='|lseek|fcntl|ioctl|flock|posix_fadvise|fallocate|posix_fallocate|realpath|readlink'
CALLS+='|readlinkat|truncate|ftruncate|futimens|utimensat|utimes|chmod|fchmod|chown|fchown'
CALLS+='|getrlimit|setrlimit|mmap|munmap|isatty|pipe|fork|execv|execvp|waitpid|access|faccessat'
CALLS+='|getxattr|lgetxattr|fgetxattr|setxattr|lsetxattr|fsetxattr|listxattr|llistxattr'
CALLS+='|flistxattr|removexattr|lremovexattr|fremovexattr|mkstemp|mkdtemp|tmpfile|fopen'
CALLS+='|socket|socketpair|bind|listen|accept|accept4|connect|recv|recvfrom|send|sendto'
CALLS+='|posix_spawn|posix_spawnp|vfork|execve|execvpe|tcgetattr|tcsetattr|mallopt'
CALL_RE="(^|[^A-Za-z0-9_.>:])(::)?(${CALLS})\\("
HEADER_RE='^[[:space:]]*#[[:space:]]*include[[:space:]]*<(sys/[^>]+|fcntl\.h|unistd\.h|dirent\.h|fnmatch\.h|glob\.h|signal\.h|pthread\.h|windows\.h|io\.h|direct\.h'
HEADER_RE+='|netinet/[^>]+|arpa/[^>]+|netdb\.h|poll\.h|spawn\.h|termios\.h|pty\.h|malloc\.h|winsock2\.h|ws2tcpip\.h)>'

# Prints the hits "path:line:text" of one tree (production sources only: tests make their
# fixtures with raw calls, and may).
hits() {
  local root=$1 dir
  local -a prune=()
  for dir in "${SEAM_PENDING[@]}"; do prune+=(-path "$root/$dir" -prune -o); done
  for dir in "${SEAM_DIRS[@]}"; do
    [ -d "$root/$dir" ] || continue
    find "$root/$dir" "${prune[@]}" -type f \( -name '*.cc' -o -name '*.h' \) \
      ! -name '*_test.cc' ! -path '*/testing/*' -print
  done | sort | while read -r file; do
    # Whole-line comments do not count.
    grep -nE "${CALL_RE}|${HEADER_RE}" "$file" | grep -vE '^[0-9]+:[[:space:]]*//' |
      sed "s|^|${file#"$root"/}:|" || true
  done
}

# Checks the tree at $1 against the allow-list $2; prints what fails; status 1 on any failure.
check() {
  local root=$1 allow=$2 failed=0 path text reason
  local -a entries=() used=()
  if [ -f "$allow" ]; then
    while IFS= read -r entry; do
      [[ -z "$entry" || "$entry" == \#* ]] && continue
      IFS='|' read -r path text reason <<<"$entry"
      if [ -z "${path:-}" ] || [ -z "${text:-}" ] || [ -z "${reason:-}" ]; then
        echo "platform seam: allow-list entry without path|text|reason: $entry" >&2
        failed=1
        continue
      fi
      entries+=("$entry")
      used+=(0)
    done <"$allow"
  fi
  local hit i allowed
  while IFS= read -r hit; do
    [ -z "$hit" ] && continue
    allowed=0
    for i in "${!entries[@]}"; do
      IFS='|' read -r path text reason <<<"${entries[$i]}"
      if [[ "$hit" == "$path:"* && "$hit" == *"$text"* ]]; then
        allowed=1
        used[$i]=1
      fi
    done
    if [ "$allowed" = 0 ]; then
      echo "platform seam: raw OS call or header outside src/platform: $hit" >&2
      failed=1
    fi
  done < <(hits "$root")
  for i in "${!entries[@]}"; do
    if [ "${used[$i]}" = 0 ]; then
      echo "platform seam: allow-list entry allows nothing now (remove it): ${entries[$i]}" >&2
      failed=1
    fi
  done
  return "$failed"
}

# A raw call and an OS header in a scratch tree must fail the check; the clean tree must pass.
self_test() {
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  mkdir -p "$tmp/src/agent" "$tmp/src/storage/dir"
  printf 'int F() { return 0; }\n' >"$tmp/src/agent/clean.cc"
  check "$tmp" /dev/null || { echo "self-test: a clean tree failed" >&2; return 1; }
  printf 'void G() { ::unlink("x"); }\n' >"$tmp/src/agent/raw.cc"
  if check "$tmp" /dev/null 2>/dev/null; then
    echo "self-test: a raw ::unlink( passed" >&2
    return 1
  fi
  printf 'void G() {}\n' >"$tmp/src/agent/raw.cc"
  printf '#include <arpa/inet.h>\n' >"$tmp/src/agent/net.h"
  if check "$tmp" /dev/null 2>/dev/null; then
    echo "self-test: a socket header passed" >&2
    return 1
  fi
  rm "$tmp/src/agent/net.h"
  printf '#include <sys/stat.h>\n' >"$tmp/src/agent/header.h"
  if check "$tmp" /dev/null 2>/dev/null; then
    echo "self-test: an OS header passed" >&2
    return 1
  fi
  printf 'src/agent/header.h|<sys/stat.h>|a reason\n' >"$tmp/allow"
  check "$tmp" "$tmp/allow" || { echo "self-test: an allowed header failed" >&2; return 1; }
  printf 'src/agent/header.h|<sys/stat.h>|a reason\nsrc/agent/gone.cc|x|stale\n' >"$tmp/allow"
  if check "$tmp" "$tmp/allow" 2>/dev/null; then
    echo "self-test: a stale allow-list entry passed" >&2
    return 1
  fi
  echo "platform seam self-test: ok"
}

here=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = "--self-test" ]; then
  self_test
  exit
fi
if check "${SEAM_ROOT:-$here}" "${SEAM_ALLOW:-$here/scripts/platform_seam_allow.txt}"; then
  echo "platform seam: ok"
else
  echo "platform seam: FAILED (make the call through src/platform, or allow-list it with a reason)" >&2
  exit 1
fi
