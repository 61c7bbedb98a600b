// Server-side manifest planning: which files of a manifest must be uploaded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "protocol/messages.h"

namespace ds {

// What the index holds for a path.
struct IndexedFile {
  uint64_t size = 0;
  std::string sha256;
};

// "new" when the index has no row, "changed" when size or SHA-256 differ, nullopt when the file is
// already synced (an mtime-only change is not an upload: the content is what matters).
std::optional<std::string> PlanReason(const protocol::ManifestEntry& entry,
                                      const IndexedFile* indexed);

// A manifest entry is well formed: valid relative path, 64 lowercase hex SHA-256, mtime >= 0.
[[nodiscard]] absl::Status ValidateManifestEntry(const protocol::ManifestEntry& entry);

}  // namespace ds
