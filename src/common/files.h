// Small file helpers shared by the programs and the storage backends.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/unique_fd.h"

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

// What a scan saw of a file; the agent reads the file again (to upload it) only while it is
// still that file.
struct FileIdentity {
  uint64_t dev = 0;
  uint64_t ino = 0;
  uint64_t size = 0;      // bytes
  int64_t mtime_ns = 0;   // Unix nanoseconds
  bool via_link = false;  // the scan reached it through a symlink inside the job folder
};
inline FileIdentity IdentityOf(const struct stat& st, bool via_link = false) {
  return FileIdentity{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                      static_cast<uint64_t>(st.st_size), MtimeNs(st), via_link};
}

// The message of OpenScannedFile's Aborted error.
inline constexpr char kChangedSinceScan[] = "changed since scan";

// Opens `path` (relative to `dir_fd`, or AT_FDCWD) to read a file a scan recorded as `expected`:
// O_NOFOLLOW (unless expected.via_link: then the identity check alone guards), O_NONBLOCK (a
// FIFO put in its place does not block; cleared again on the regular file), O_CLOEXEC; then
// fstat's the descriptor. Returns it only for a regular file with expected's device, inode, size
// and mtime; nothing of the file is read. Errors: NotFound (gone), Aborted kChangedSinceScan
// (a symlink, FIFO, device, directory or another file is there now), PermissionDenied, others.
[[nodiscard]] absl::StatusOr<UniqueFd> OpenScannedFileAt(int dir_fd, const char* path,
                                                         const FileIdentity& expected);
[[nodiscard]] inline absl::StatusOr<UniqueFd> OpenScannedFile(const std::filesystem::path& path,
                                                              const FileIdentity& expected) {
  return OpenScannedFileAt(AT_FDCWD, path.c_str(), expected);
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
