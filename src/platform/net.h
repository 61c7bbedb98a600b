// Sockets, for the HTTP layer (src/http): the operating system's socket headers come in here and
// only here, so callers get sockaddr, inet_ntop/inet_pton, ntohl and getaddrinfo from this header
// (POSIX, and Winsock 2 on Windows, where curl_global_init's WSAStartup makes them usable), plus
// the few socket calls whose flags differ between the two. POSIX implementation in posix/net.cc.
#pragma once

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

#include "absl/status/statusor.h"

namespace ds::platform {

// The OS handle of a socket. POSIX: a file descriptor; Windows: a SOCKET. The same type as
// libcurl's curl_socket_t.
#ifdef _WIN32
using NativeSocket = SOCKET;
#else
using NativeSocket = int;
#endif

// A new socket (socket(2)'s family, type and protocol) that child processes do not inherit
// (POSIX SOCK_CLOEXEC; Windows WSASocketW with WSA_FLAG_NO_HANDLE_INHERIT). The caller owns it.
// Errors as ErrnoToStatus (ResourceExhausted for EMFILE/ENFILE, Unimplemented for an
// unsupported family, ...).
[[nodiscard]] absl::StatusOr<NativeSocket> OpenSocketNoInherit(int family, int type, int protocol);

// True when the peer of the connected stream socket `socket` has closed it (or the connection
// failed): a peek of one byte without blocking finds end-of-stream or an error. False while
// nothing has arrived or data waits (POSIX recv MSG_PEEK | MSG_DONTWAIT; Windows: select with
// a zero timeout, then recv MSG_PEEK). Consumes nothing. Thread-safe.
[[nodiscard]] bool PeerClosed(NativeSocket socket);

}  // namespace ds::platform
