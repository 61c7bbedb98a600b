// Scans one job folder into a manifest: filters, settle time, symlink confinement, and SHA-256
// reused from the hash cache when size and mtime are unchanged.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "common/status.h"
#include "protocol/messages.h"
#include "sync/hash_cache.h"

namespace ds {

struct ScanOptions {
  std::filesystem::path root;            // the job folder; must exist
  std::vector<std::string> includes;     // globs (fnmatch, '*' also matches '/'); empty = all
  std::vector<std::string> excludes;     // globs; exclude wins over include
  std::chrono::milliseconds settle{0};   // skip files modified less than this long ago
  int64_t now_ns = 0;                    // Unix nanoseconds; "now" for the settle check
  const std::atomic<bool>* cancel = nullptr;  // checked per file; scan returns Cancelled
  int hash_threads = 2;                  // threads hashing files not in the cache (>= 1)
};

struct ScanProblem {
  std::string path;                      // relative path (may be lossy for undecodable names)
  std::string error;                     // e.g. "permission denied", "changed while reading"
};

struct ScanResult {
  std::vector<protocol::ManifestEntry> files;  // sorted by path
  std::vector<ScanProblem> skipped;      // unreadable, changed while hashed, unsafe name, symlink out
  uint64_t total_bytes = 0;              // sum of files[].size
  uint64_t files_hashed = 0;             // cache misses
  uint64_t bytes_hashed = 0;
  uint64_t files_unsettled = 0;          // younger than settle; not in files, not a problem
};

// Walks `options.root` recursively. Never modifies anything under root. Symbolic links: a link to
// a regular file whose real path is inside root is included under the link's path; links to
// directories are not descended; links pointing outside root are reported in `skipped`. Files
// whose names fail ValidateRelativePath are reported in `skipped`. A file whose size or mtime
// changes while it is being hashed is reported in `skipped` ("changed while reading"). `cache`
// may be null; when given, hits are reused and fresh hashes stored.
// Errors: NotFound / PermissionDenied for the root itself, Cancelled.
[[nodiscard]] absl::StatusOr<ScanResult> ScanJob(const ScanOptions& options, HashCache* cache);

// True when `relative_path` passes the include/exclude filters.
bool PassesFilters(const std::string& relative_path, const std::vector<std::string>& includes,
                   const std::vector<std::string>& excludes);

}  // namespace ds
