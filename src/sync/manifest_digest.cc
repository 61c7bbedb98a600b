#include "sync/manifest_digest.h"

#include <charconv>

#include "common/crypto.h"

namespace ds {

std::string ManifestDigest(const std::vector<protocol::ManifestEntry>& files) {
  Sha256 hash;
  hash.Update("datasync-manifest-v1\n");
  // Entries are appended to one buffer and hashed in large pieces (one EVP call per ~64 KiB).
  std::string buf;
  buf.reserve(70 << 10);
  char num[24];
  for (const auto& e : files) {
    buf.append(e.path).push_back('\0');
    buf.append(num, std::to_chars(num, num + sizeof num, e.size).ptr).push_back('\0');
    buf.append(num, std::to_chars(num, num + sizeof num, e.mtime_ns).ptr).push_back('\0');
    buf.append(e.sha256).push_back('\n');
    if (buf.size() >= (64 << 10)) {
      hash.Update(buf);
      buf.clear();
    }
  }
  hash.Update(buf);
  return hash.FinishHex();
}

}  // namespace ds
