// Small file helpers shared by the programs (not the storage layer, which owns its own I/O).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ds {

[[nodiscard]] absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path,
                                                           size_t max_bytes = 64 << 20);

// Writes `data` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs
// the directory: readers see the old content or the new, never a mix. `mode` applies from creation.
[[nodiscard]] absl::Status WriteFileAtomically(const std::filesystem::path& path,
                                               std::string_view data, int mode = 0644);

// fsync() on a directory so a rename inside it is durable.
[[nodiscard]] absl::Status SyncDirectory(const std::filesystem::path& dir);

// errno → canonical status with `what` as context.
absl::Status ErrnoStatus(int err, std::string_view what);

}  // namespace ds
