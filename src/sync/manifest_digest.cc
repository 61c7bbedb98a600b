#include "sync/manifest_digest.h"

namespace ds {

std::string ManifestDigest(const std::vector<protocol::ManifestEntry>& files) {
  ManifestDigester d;
  for (const auto& e : files) d.Add(e.path, e.size, e.mtime_ns, e.sha256);
  return d.FinishHex();
}

std::string ManifestDigest(const Manifest& files) {
  ManifestDigester d;
  for (size_t i = 0; i < files.size(); ++i) d.Add(files[i]);
  return d.FinishHex();
}

}  // namespace ds
