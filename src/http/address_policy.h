// Which network addresses an outbound connection the server makes for someone else (a webhook)
// may reach: the one SSRF check (docs/security.md, "Webhook targets"). Used twice with the same
// rules: when a target is configured (its host resolved, every address checked) and by the HTTP
// client for every address it actually connects to (ClientOptions::address_policy), so a name
// that resolves elsewhere later (DNS rebinding) is still refused.
#pragma once

#include <string>

#include "common/status.h"
#include "platform/net.h"  // sockaddr

namespace ds::http {

// What an address reaches. IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d) and NAT64
// (64:ff9b::a.b.c.d) IPv6 addresses are the kind of the IPv4 address they carry.
enum class AddressKind {
  kPublic,
  kPrivate,      // 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT), fc00::/7, fec0::/10
  kLoopback,     // 127/8, ::1
  kLinkLocal,    // 169.254/16, fe80::/10
  kMetadata,     // cloud instance metadata: 169.254.169.254, fd00:ec2::254, 100.100.100.200, ...
  kUnspecified,  // 0/8 (0.0.0.0 reaches this host), ::
  kMulticast,    // 224/4, ff00::/8
  kReserved,     // 240/4 incl. the broadcast 255.255.255.255; an address family other than IP
};

// "loopback", "link-local", ... for messages.
const char* AddressKindName(AddressKind kind);

// REQUIRES: `addr` points at a sockaddr_in (AF_INET) or sockaddr_in6 (AF_INET6); any other
// family is kReserved.
AddressKind ClassifyAddress(const sockaddr* addr);

// A numeric IPv4 or IPv6 address ("10.0.0.1", "::ffff:127.0.0.1"); InvalidArgument otherwise.
[[nodiscard]] absl::StatusOr<AddressKind> ClassifyAddress(const std::string& numeric);

// Public addresses are always allowed; private and loopback ones only when allowed here;
// link-local, metadata, unspecified, multicast and reserved ones never.
struct AddressPolicy {
  bool allow_private = false;
  bool allow_loopback = false;

  bool Allows(AddressKind kind) const;
  // OK, or PermissionDenied("127.0.0.1 is a loopback address").
  [[nodiscard]] absl::Status CheckAddress(const sockaddr* addr) const;
  // Resolves `host` (a name or a numeric address, IPv6 with or without brackets) and checks
  // every address it resolves to: OK only when all are allowed. PermissionDenied naming the
  // first refused address; InvalidArgument when the name does not resolve.
  [[nodiscard]] absl::Status CheckHost(const std::string& host) const;
};

}  // namespace ds::http
