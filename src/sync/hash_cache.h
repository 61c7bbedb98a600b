// The agent's cache of file hashes for one job: the manifest of the job's last complete scan. A
// file's hash is reused while its path, size and mtime are unchanged.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/crypto.h"
#include "common/status.h"
#include "sync/manifest.h"

namespace ds {

// A scan reads the cache front to back, in path order, while it builds the next manifest:
// entries it passes over (files gone, changed, or not looked up) are released from memory at
// once and removed from the persistent copy, so the old and the new manifest are never both
// whole in memory. After a complete scan, EndScan() persists the changes and Adopt() installs
// the new manifest as the contents for the next scan. After a failed scan the object is spent:
// open the cache again.
// Not thread-safe: one scan uses one instance at a time.
class HashCache {
 public:
  virtual ~HashCache() = default;
  // The cached SHA-256 when the contents hold `path` with exactly this size and mtime.
  // REQUIRES: within a scan, paths strictly increasing (byte-wise), as ScanJob looks them up.
  virtual std::optional<Sha256Digest> Lookup(std::string_view path, uint64_t size,
                                             int64_t mtime_ns) = 0;
  // A fresh hash (after a miss). Persisted by EndScan, or earlier in bounded batches.
  virtual void Store(std::string_view path, uint64_t size, int64_t mtime_ns,
                     const Sha256Digest& sha256) = 0;
  // Ends a scan that covered the whole tree: entries never looked up are dropped and every
  // change is made durable. The contents are empty until Adopt().
  [[nodiscard]] virtual absl::Status EndScan() = 0;
  // Installs `manifest` (what the scan that just ended produced, every entry looked up or stored
  // by it) and its ManifestDigest as the contents.
  virtual void Adopt(Manifest manifest, std::string digest) = 0;
  // ManifestDigest of the contents as they were before the current scan began ("" when the
  // cache was empty): the base a delta compare is computed against.
  virtual const std::string& digest() const = 0;
  virtual size_t size() const = 0;  // entries in the contents (before the scan consumed them)
};

// A cache persisted in the SQLite database at `db_path` (created if missing; table hash_cache),
// scoped to `job_key` (e.g. "<job id>"). Loads the job's entries (compactly) on open.
[[nodiscard]] absl::StatusOr<std::unique_ptr<HashCache>> OpenHashCache(const std::string& db_path,
                                                                       const std::string& job_key);
// An in-memory cache (tests, or when agent.db cannot hold one).
std::unique_ptr<HashCache> NewMemoryHashCache();

}  // namespace ds
