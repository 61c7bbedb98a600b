// Scans one job folder into a manifest: filters, settle time, symlink confinement, and SHA-256
// reused from the hash cache when size and mtime are unchanged.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/files.h"
#include "common/status.h"
#include "protocol/messages.h"
#include "sync/hash_cache.h"
#include "sync/manifest.h"

namespace ds {

struct ScanOptions {
  std::filesystem::path root;            // the job folder; must exist
  std::vector<std::string>
      includes;  // globs (platform::GlobMatch: '*' also matches '/'); empty = all
  std::vector<std::string> excludes;     // globs; exclude wins over include
  std::chrono::milliseconds settle{0};   // skip files modified less than this long ago
  int64_t now_ns = 0;                    // Unix nanoseconds; "now" for the settle check
  const std::atomic<bool>* cancel = nullptr;  // checked per file; scan returns Cancelled
  int hash_threads = 2;                  // threads hashing files not in the cache (>= 1)
  // Optional: offered each file the cache does not know, on a hashing thread, open (`file`, at
  // offset 0, not to be closed) and checked against its lstat (`size`, `mtime_ns`). Returns the
  // SHA-256 when it read the whole file itself and found it unchanged (e.g. while copying it to
  // storage: each byte read once); nullopt to decline, and the scan hashes the file as usual.
  // Must be thread-safe.
  std::function<std::optional<Sha256Digest>(const std::string& path, platform::File& file,
                                            uint64_t size, int64_t mtime_ns)>
      read_new;
};

struct ScanProblem {
  std::string path;                      // relative path (may be lossy for undecodable names)
  std::string error;                     // e.g. "permission denied", "changed while reading"
};

struct ScanResult {
  Manifest files;                        // sorted by path (byte-wise)
  // identities[i]: what the scan saw of files[i] (device, inode, size, mtime), so that an upload
  // reads the file only while it is still that one (OpenScannedFile).
  std::vector<FileIdentity> identities;
  std::vector<ScanProblem> skipped;      // unreadable, changed while hashed, unsafe name, symlink out
  // Paths are in Unicode NFC (names on disk are normalized): for each file whose path is spelled
  // otherwise on disk, manifest path → relative path on disk (DiskPathOf).
  std::map<std::string, std::string> disk_paths;
  uint64_t total_bytes = 0;              // sum of the files' sizes
  // Indices in `files` of the entries hashed by this scan (cache misses), increasing: with a
  // cache, every other entry equals the cache's entry for its path (the delta compare's base).
  std::vector<uint32_t> hashed;
  // The subset of `hashed` whose hash came from ScanOptions::read_new, increasing.
  std::vector<uint32_t> read_by_hook;
  uint64_t files_hashed = 0;             // cache misses
  uint64_t bytes_hashed = 0;
  uint64_t files_unsettled = 0;          // younger than settle; not in files, not a problem
};

// Walks `options.root` recursively, in byte order of the relative paths (a directory's name sorts
// as if it ended in '/'; names normalized to NFC, two names equal in NFC in one folder both
// reported in `skipped`), so the manifest is built in order and the cache is read front to back.
// Never modifies anything under root. Symbolic links: a link to
// a regular file whose real path is inside root is included under the link's path; links to
// directories are not descended; links pointing outside root are reported in `skipped`. Files
// whose names fail ValidateRelativePath are reported in `skipped`. A file whose size or mtime
// changes while it is being hashed is reported in `skipped` ("changed while reading"). `cache`
// may be null; when given, hits are reused and fresh hashes stored, and after a complete scan
// the caller ends the cache's scan (HashCache::EndScan, Adopt).
// Errors: NotFound / PermissionDenied for the root itself, Cancelled.
[[nodiscard]] absl::StatusOr<ScanResult> ScanJob(const ScanOptions& options, HashCache* cache);

// The relative path on disk of the manifest entry at `path` (itself, unless its name on disk is
// not in NFC).
const std::string& DiskPathOf(const ScanResult& scan, const std::string& path);

// True when `relative_path` passes the include/exclude filters.
bool PassesFilters(const std::string& relative_path, const std::vector<std::string>& includes,
                   const std::vector<std::string>& excludes);

}  // namespace ds
