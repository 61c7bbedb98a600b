#include "platform/net.h"

#include <cerrno>

#include "platform/error.h"

namespace ds::platform {

absl::StatusOr<NativeSocket> OpenSocketNoInherit(int family, int type, int protocol) {
  const int fd = ::socket(family, type | SOCK_CLOEXEC, protocol);
  if (fd < 0) return ErrnoToStatus(errno, "socket");
  return fd;
}

bool PeerClosed(NativeSocket socket) {
  char c;
  const ssize_t n = ::recv(socket, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

}  // namespace ds::platform
