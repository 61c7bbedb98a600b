// A compare request's manifest as the server takes it apart: decode, validate every entry, build
// the compact manifest (sorted, no duplicates, well-formed hashes) and digest it. No bytes crash
// any step, and the compact manifest gives back exactly the entries it accepted.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "protocol/messages.h"
#include "sync/manifest.h"
#include "sync/manifest_digest.h"
#include "sync/planner.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  auto request = ds::protocol::Decode<ds::protocol::CompareRequest>(body);
  if (!request.ok()) return 0;
  ds::Manifest manifest;
  std::vector<ds::protocol::ManifestEntry> accepted;
  for (const auto& entry : request->files) {
    if (!ds::ValidateManifestEntry(entry).ok()) continue;
    if (manifest.Add(entry)) accepted.push_back(entry);
  }
  if (manifest.size() != accepted.size()) __builtin_trap();
  for (size_t i = 0; i < accepted.size(); ++i) {
    const ds::protocol::ManifestEntry back = manifest.Wire(i);
    if (back.path != accepted[i].path || back.size != accepted[i].size ||
        back.mtime_ns != accepted[i].mtime_ns || manifest.Find(back.path) != i) {
      __builtin_trap();
    }
  }
  if (ds::ManifestDigest(manifest) != ds::ManifestDigest(accepted)) __builtin_trap();
  return 0;
}
