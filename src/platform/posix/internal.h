// Shared by the POSIX implementation files only.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "platform/error.h"
#include "platform/types.h"

namespace ds::platform::internal {

// Debian's abseil has its own string_view, which std::string_view does not convert to.
inline absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// ErrnoToStatus(errno-now, "<op> <display>").
inline absl::Status Errno(std::string_view op, std::string_view display) {
  const int err = errno;
  return ErrnoToStatus(err, absl::StrCat(Av(op), " ", Av(display)));
}

inline std::string Join(std::string_view dir, std::string_view name) {
  if (dir.empty() || dir == ".") return std::string(name);
  if (dir.back() == '/') return absl::StrCat(Av(dir), Av(name));
  return absl::StrCat(Av(dir), "/", Av(name));
}

inline int64_t MtimeNs(const struct stat& st) {
  return static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
}

inline FileType TypeOfMode(mode_t mode) {
  if (S_ISREG(mode)) return FileType::kFile;
  if (S_ISDIR(mode)) return FileType::kDirectory;
  if (S_ISLNK(mode)) return FileType::kLink;
  return FileType::kOther;
}

inline FileInfo InfoOfStat(const struct stat& st) {
  FileInfo info;
  info.id = FileId{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino), 0};
  info.type = TypeOfMode(st.st_mode);
  info.size = static_cast<uint64_t>(st.st_size);
  info.mtime_ns = MtimeNs(st);
  info.permissions = static_cast<uint32_t>(st.st_mode & 07777);
  info.link_count = static_cast<uint64_t>(st.st_nlink);
  return info;
}

// futimens/utimensat times that keep atime and set mtime to `mtime_ns` (Unix nanoseconds).
inline void MtimeOnly(int64_t mtime_ns, struct timespec (&times)[2]) {
  times[0].tv_sec = 0;
  times[0].tv_nsec = UTIME_OMIT;
  int64_t sec = mtime_ns / 1'000'000'000;
  int64_t nsec = mtime_ns % 1'000'000'000;
  if (nsec < 0) {
    nsec += 1'000'000'000;
    sec -= 1;
  }
  times[1].tv_sec = static_cast<time_t>(sec);
  times[1].tv_nsec = static_cast<long>(nsec);
}

inline SpaceInfo SpaceOfStatvfs(const struct statvfs& v) {
  SpaceInfo info;
  info.total = static_cast<uint64_t>(v.f_blocks) * v.f_frsize;
  info.available = static_cast<uint64_t>(v.f_bavail) * v.f_frsize;
  info.max_name_length = static_cast<uint64_t>(v.f_namemax);
  return info;
}

// open(2) flags of `options` (always O_CLOEXEC).
int OpenFlags(const OpenOptions& options);

// openat + the regular_only check shared by File::Open and Directory::OpenFile.
absl::StatusOr<int> OpenAtChecked(int dir_fd, const std::string& name, const OpenOptions& options,
                                  const std::string& display);

// A random suffix for temp names (not cryptographic: O_EXCL guards against collisions).
std::string RandomSuffix();

}  // namespace ds::platform::internal
