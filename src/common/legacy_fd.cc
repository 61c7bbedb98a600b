// TEMPORARY raw-descriptor helpers of common/files.h, for src/storage/dir only until it moves
// onto src/platform (helper platform-dir); deleted with them. Allow-listed in
// scripts/platform_seam_allow.txt.
#include <unistd.h>

#include <cerrno>

#include "common/files.h"

namespace ds {

ssize_t ReadFully(int fd, char* buf, size_t len) {
  size_t have = 0;
  while (have < len) {
    ssize_t n = ::read(fd, buf + have, len - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(have);
}

int WriteAll(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}

}  // namespace ds
