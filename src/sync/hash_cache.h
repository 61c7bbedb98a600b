// The agent's cache of file hashes, keyed by job + path and valid while size and mtime match.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "common/status.h"

namespace ds {

// Not thread-safe: one scan uses one instance at a time.
class HashCache {
 public:
  virtual ~HashCache() = default;
  // The cached SHA-256 when an entry for `path` has exactly this size and mtime.
  virtual std::optional<std::string> Lookup(const std::string& path, uint64_t size,
                                            int64_t mtime_ns) = 0;
  virtual void Store(const std::string& path, uint64_t size, int64_t mtime_ns,
                     const std::string& sha256) = 0;
  // Makes stored entries durable; entries for paths not looked up or stored since the last Flush
  // (files that disappeared) are dropped.
  [[nodiscard]] virtual absl::Status Flush() = 0;
};

// A cache persisted in the SQLite database at `db_path` (created if missing; table hash_cache),
// scoped to `job_key` (e.g. "<job id>"). Loads the job's entries into memory on open.
[[nodiscard]] absl::StatusOr<std::unique_ptr<HashCache>> OpenHashCache(const std::string& db_path,
                                                                       const std::string& job_key);
// An in-memory cache (tests, --no-cache).
std::unique_ptr<HashCache> NewMemoryHashCache();

}  // namespace ds
