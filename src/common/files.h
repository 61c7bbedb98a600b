// Small file helpers shared by the programs and the storage backends, over the platform layer.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/status.h"
#include "platform/directory.h"
#include "platform/error.h"
#include "platform/file.h"

namespace ds {

[[nodiscard]] absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path,
                                                           size_t max_bytes = 64 << 20);

// Writes `data` to a temporary file beside `path`, fsyncs it, renames it over `path` and fsyncs
// the directory: readers see the old content or the new, never a mix. `mode` applies from creation.
[[nodiscard]] absl::Status WriteFileAtomically(const std::filesystem::path& path,
                                               std::string_view data, int mode = 0644);

// fsync() on a directory so a rename inside it is durable.
[[nodiscard]] absl::Status SyncDirectory(const std::filesystem::path& dir);

// What a scan saw of a file; the agent reads the file again (to upload it) only while it is
// still that file.
struct FileIdentity {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;      // bytes
  int64_t mtime_ns = 0;   // Unix nanoseconds
  bool via_link = false;  // the scan reached it through a symlink inside the job folder
};
inline FileIdentity IdentityOf(const platform::FileInfo& info, bool via_link = false) {
  return FileIdentity{info.id.volume, info.id.file, info.size, info.mtime_ns, via_link};
}

// The message of OpenScannedFile's Aborted error.
inline constexpr char kChangedSinceScan[] = "changed since scan";

// Opens `name` (relative to `dir`, or with dir null the path itself) to read a file a scan
// recorded as `expected`: not following a link as the last component (unless expected.via_link:
// then the identity check alone guards), never blocking on a FIFO (OpenOptions::regular_only).
// Returns it only for a regular file with expected's device, inode, size and mtime; nothing of
// the file is read. Errors: NotFound (gone), Aborted kChangedSinceScan (a symlink, FIFO, device,
// directory or another file is there now), PermissionDenied, others.
[[nodiscard]] absl::StatusOr<platform::File> OpenScannedFileAt(const platform::Directory* dir,
                                                               const std::string& name,
                                                               const FileIdentity& expected);
[[nodiscard]] inline absl::StatusOr<platform::File> OpenScannedFile(
    const std::filesystem::path& path, const FileIdentity& expected) {
  return OpenScannedFileAt(nullptr, path.string(), expected);
}

// True when `cancel` is set (null: never).
inline bool IsCancelled(const std::atomic<bool>* cancel) {
  return cancel != nullptr && cancel->load(std::memory_order_relaxed);
}

}  // namespace ds
