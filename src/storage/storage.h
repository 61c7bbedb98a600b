// The storage interface: where measurement files land. One folder per backend (dir/ today;
// azblob/ next); only OpenStorage() knows them all. Every backend passes the conformance suite in
// storage_conformance_test.cc.
//
// Keys are '/'-separated relative paths validated by ValidateRelativePath. Names under the
// reserved top-level area ".datasync/" (versions kept aside, temp files) are never listed.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace ds {

// Parsed storage URL. file:///abs/dir → scheme "file", path "/abs/dir".
struct StorageUrl {
  std::string scheme;
  std::string path;
  std::string text;  // as given, for display (contains no secrets)
};
// Accepts file:///ABS or a plain absolute/relative directory (made absolute). InvalidArgument else.
[[nodiscard]] absl::StatusOr<StorageUrl> ParseStorageUrl(std::string_view text);

struct ObjectInfo {
  std::string key;
  uint64_t size = 0;       // bytes
  int64_t mtime_ns = 0;    // Unix nanoseconds (the source file's mtime when we wrote it)
  std::string sha256;      // from stored metadata; empty when the backend has none for it
};

struct PutOptions {
  std::string expected_sha256;   // the manifest's hash; the copy fails if the bytes differ
  int64_t mtime_ns = 0;          // stored as the object's mtime/metadata
  std::string run_id;            // correlation id, used in temp names
  uint64_t max_bytes_per_second = 0;  // 0 = unlimited
  const std::atomic<bool>* cancel = nullptr;  // checked between chunks; Cancelled when set
  bool verify = true;            // re-read what landed and compare size + SHA-256
};

struct PutResult {
  ObjectInfo info;               // what now sits under the key
  std::string kept_version;      // key (under .datasync/versions/) of the replaced object, if any
};

// Thread-safe: one instance may serve concurrent calls for different keys.
class Storage {
 public:
  virtual ~Storage() = default;

  // Copies the local file `source` to `key` atomically: nothing appears under `key` until the
  // whole content is written, flushed and (with verify) checked. The SHA-256 is computed from the
  // bytes read during the copy. If an object with different content already exists under `key`,
  // it is kept under the versions area first (never silently overwritten); identical content is
  // left in place. Errors: Aborted (source changed: hash or size differs from expected),
  // Cancelled, NotFound (source), PermissionDenied, ResourceExhausted, DataLoss (verify failed),
  // Unavailable (storage not reachable).
  [[nodiscard]] virtual absl::StatusOr<PutResult> PutFile(const std::string& key,
                                                          const std::filesystem::path& source,
                                                          const PutOptions& options) = 0;

  // NotFound when absent.
  [[nodiscard]] virtual absl::StatusOr<ObjectInfo> Stat(const std::string& key) = 0;

  // Calls `fn` for every object whose key starts with `prefix` + "/" (all objects when `prefix`
  // is empty), in no particular order, excluding the reserved area and temp files.
  [[nodiscard]] virtual absl::Status List(const std::string& prefix,
                                          const std::function<void(const ObjectInfo&)>& fn) = 0;

  // Reads a whole object (tests, verification, small files). ResourceExhausted over max_bytes.
  [[nodiscard]] virtual absl::StatusOr<std::string> ReadAll(const std::string& key,
                                                            size_t max_bytes) = 0;

  // Human-readable location for messages.
  virtual std::string Describe() const = 0;
};

// The one place that knows every backend.
[[nodiscard]] absl::StatusOr<std::unique_ptr<Storage>> OpenStorage(const StorageUrl& url);

// Name of the reserved top-level area and the prefix of in-flight temp files.
inline constexpr std::string_view kReservedArea = ".datasync";
inline constexpr std::string_view kTempPrefix = ".dstmp-";

}  // namespace ds
