#include "http/address_policy.h"

#include <cstring>
#include <memory>

#include "absl/strings/str_cat.h"
#include "platform/net.h"  // inet_ntop, inet_pton, ntohl, getaddrinfo

namespace ds::http {
namespace {

// `ip` in host byte order within prefix/bits (prefix in host byte order).
bool In(uint32_t ip, uint32_t prefix, int bits) {
  const uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  return (ip & mask) == (prefix & mask);
}

constexpr uint32_t V4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return a << 24 | b << 16 | c << 8 | d;
}

AddressKind ClassifyV4(uint32_t ip) {  // host byte order
  // Instance metadata services: AWS/Azure/GCP, AWS ECS task metadata, Alibaba, Oracle.
  for (uint32_t metadata :
       {V4(169, 254, 169, 254), V4(169, 254, 170, 2), V4(100, 100, 100, 200), V4(192, 0, 0, 192)}) {
    if (ip == metadata) return AddressKind::kMetadata;
  }
  if (In(ip, V4(0, 0, 0, 0), 8)) return AddressKind::kUnspecified;
  if (In(ip, V4(127, 0, 0, 0), 8)) return AddressKind::kLoopback;
  if (In(ip, V4(169, 254, 0, 0), 16)) return AddressKind::kLinkLocal;
  if (In(ip, V4(10, 0, 0, 0), 8) || In(ip, V4(172, 16, 0, 0), 12) ||
      In(ip, V4(192, 168, 0, 0), 16) || In(ip, V4(100, 64, 0, 0), 10)) {
    return AddressKind::kPrivate;
  }
  if (In(ip, V4(224, 0, 0, 0), 4)) return AddressKind::kMulticast;
  if (In(ip, V4(240, 0, 0, 0), 4)) return AddressKind::kReserved;  // incl. 255.255.255.255
  return AddressKind::kPublic;
}

// The IPv4 address an IPv6 address carries in its last 32 bits.
uint32_t EmbeddedV4(const uint8_t* b) { return V4(b[12], b[13], b[14], b[15]); }

bool AllZero(const uint8_t* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

AddressKind ClassifyV6(const uint8_t* b) {
  static constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  static constexpr uint8_t kAwsMetadata[16] = {0xfd, 0, 0x0e, 0xc2, 0, 0, 0,    0,
                                               0,    0, 0,    0,    0, 0, 0x02, 0x54};
  if (AllZero(b, 16)) return AddressKind::kUnspecified;
  if (AllZero(b, 15) && b[15] == 1) return AddressKind::kLoopback;
  if (AllZero(b, 12) || std::memcmp(b, kMapped, 12) == 0 || std::memcmp(b, kNat64, 12) == 0) {
    return ClassifyV4(EmbeddedV4(b));
  }
  if (std::memcmp(b, kAwsMetadata, 16) == 0) return AddressKind::kMetadata;
  if ((b[0] & 0xfe) == 0xfc) return AddressKind::kPrivate;                    // fc00::/7
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return AddressKind::kLinkLocal;  // fe80::/10
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) return AddressKind::kPrivate;    // fec0::/10
  if (b[0] == 0xff) return AddressKind::kMulticast;
  return AddressKind::kPublic;
}

std::string NumericOf(const sockaddr* addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, text, sizeof text);
  } else if (addr->sa_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr, text, sizeof text);
  } else {
    return absl::StrCat("an address of family ", addr->sa_family);
  }
  return text;
}

}  // namespace

const char* AddressKindName(AddressKind kind) {
  switch (kind) {
    case AddressKind::kPublic:
      return "public";
    case AddressKind::kPrivate:
      return "private";
    case AddressKind::kLoopback:
      return "loopback";
    case AddressKind::kLinkLocal:
      return "link-local";
    case AddressKind::kMetadata:
      return "cloud metadata";
    case AddressKind::kUnspecified:
      return "unspecified";
    case AddressKind::kMulticast:
      return "multicast";
    case AddressKind::kReserved:
      return "reserved";
  }
  return "reserved";
}

AddressKind ClassifyAddress(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    return ClassifyV4(ntohl(reinterpret_cast<const sockaddr_in*>(addr)->sin_addr.s_addr));
  }
  if (addr->sa_family == AF_INET6) {
    return ClassifyV6(reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr);
  }
  return AddressKind::kReserved;
}

absl::StatusOr<AddressKind> ClassifyAddress(const std::string& numeric) {
  in_addr v4{};
  if (inet_pton(AF_INET, numeric.c_str(), &v4) == 1) return ClassifyV4(ntohl(v4.s_addr));
  in6_addr v6{};
  if (inet_pton(AF_INET6, numeric.c_str(), &v6) == 1) return ClassifyV6(v6.s6_addr);
  return absl::InvalidArgumentError(absl::StrCat("'", numeric, "' is not a numeric IP address"));
}

bool AddressPolicy::Allows(AddressKind kind) const {
  switch (kind) {
    case AddressKind::kPublic:
      return true;
    case AddressKind::kPrivate:
      return allow_private;
    case AddressKind::kLoopback:
      return allow_loopback;
    default:
      return false;
  }
}

absl::Status AddressPolicy::CheckAddress(const sockaddr* addr) const {
  const AddressKind kind = ClassifyAddress(addr);
  if (Allows(kind)) return absl::OkStatus();
  return absl::PermissionDeniedError(
      absl::StrCat(NumericOf(addr), " is a ", AddressKindName(kind), " address"));
}

absl::Status AddressPolicy::CheckHost(const std::string& host) const {
  std::string name = host;
  if (name.size() >= 2 && name.front() == '[' && name.back() == ']') {
    name = name.substr(1, name.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = getaddrinfo(name.c_str(), nullptr, &hints, &found); rc != 0 || found == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("host '", host, "' does not resolve: ", gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> hold(found, freeaddrinfo);
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    DS_RETURN_IF_ERROR(CheckAddress(a->ai_addr));
  }
  return absl::OkStatus();
}

}  // namespace ds::http
