#include "sync/planner.h"

#include "absl/strings/str_cat.h"
#include "common/paths.h"

namespace ds {

std::optional<std::string> PlanReason(const protocol::ManifestEntry& entry,
                                      const IndexedFile* indexed) {
  if (indexed == nullptr) return "new";
  if (indexed->size != entry.size || indexed->sha256 != entry.sha256) return "changed";
  return std::nullopt;
}

absl::Status ValidateManifestEntry(const protocol::ManifestEntry& entry) {
  absl::Status st = ValidateIndexPath(entry.path);
  if (!st.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("invalid path: ", std::string(st.message())));
  }
  if (entry.sha256.size() != 64 ||
      entry.sha256.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::InvalidArgumentError("sha256 must be 64 lowercase hex digits");
  }
  if (entry.mtime_ns < 0) return absl::InvalidArgumentError("mtime_ns must not be negative");
  return absl::OkStatus();
}

}  // namespace ds
