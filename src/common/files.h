// Small file helpers shared by the programs and the storage backends.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
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

// The modification time of `st` in Unix nanoseconds.
inline int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

// True when `cancel` is set (null: never).
inline bool IsCancelled(const std::atomic<bool>* cancel) {
  return cancel != nullptr && cancel->load(std::memory_order_relaxed);
}

// Reads until `len` bytes or EOF, retrying EINTR. Returns the bytes read or -errno.
ssize_t ReadFully(int fd, char* buf, size_t len);

// Writes all of `data`, retrying short writes and EINTR. Returns 0 or errno.
int WriteAll(int fd, const char* data, size_t len);

}  // namespace ds
