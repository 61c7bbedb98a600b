#include "platform/dir_extra.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "platform/error.h"

namespace ds::platform {
namespace {

absl::string_view Av(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// ErrnoToStatus(errno-now, "`op` `display`").
absl::Status ErrnoNow(std::string_view op, std::string_view display) {
  const int err = errno;
  return ErrnoToStatus(err, absl::StrCat(Av(op), " ", Av(display)));
}

std::string Join(const Directory& dir, std::string_view name) {
  return absl::StrCat(dir.display_path(), "/", Av(name));
}

// Both times of utimensat/futimens set to `unix_ns` (floored to whole seconds before 1970).
void BothTimes(int64_t unix_ns, struct timespec (&times)[2]) {
  int64_t sec = unix_ns / 1'000'000'000;
  int64_t nsec = unix_ns % 1'000'000'000;
  if (nsec < 0) {
    nsec += 1'000'000'000;
    sec -= 1;
  }
  times[0].tv_sec = times[1].tv_sec = static_cast<time_t>(sec);
  times[0].tv_nsec = times[1].tv_nsec = static_cast<long>(nsec);
}

// ENODATA (no such attribute) → NotFound; the rest as ErrnoToStatus (ENOTSUP: Unimplemented).
absl::Status AttributeError(std::string_view op, std::string_view name,
                            const std::filesystem::path& path) {
  const int err = errno;
  const std::string what = absl::StrCat(Av(op), " attribute ", Av(name), " of ", path.native());
  if (err == ENODATA) return absl::NotFoundError(absl::StrCat(what, ": no such attribute"));
  return ErrnoToStatus(err, what);
}

std::string AttributeName(std::string_view name) { return absl::StrCat("user.", Av(name)); }

// True when `status` is ErrnoToStatus(err, ...) of one of `errs` (ErrnoToStatus keeps the OS's
// text of the error, not the errno: this compares the text).
}  // namespace

VolumeKind VolumeKindOf(const Directory& dir) {
  struct statfs sf {};
  if (::fstatfs(dir.native(), &sf) != 0) return {};
  switch (static_cast<unsigned long>(sf.f_type)) {
    case EXT4_SUPER_MAGIC:
      return {"ext4", true};  // also ext2/ext3
    case XFS_SUPER_MAGIC:
      return {"xfs", true};
    case BTRFS_SUPER_MAGIC:
      return {"btrfs", true};
    case F2FS_SUPER_MAGIC:
      return {"f2fs", true};
    case TMPFS_MAGIC:
      return {"tmpfs", true};
    case OVERLAYFS_SUPER_MAGIC:
      return {"overlayfs", true};
    case NFS_SUPER_MAGIC:
      return {"nfs", false};
    case SMB_SUPER_MAGIC:
      return {"smb", false};
    case 0xFE534D42:
      return {"smb2", false};
    case 0xFF534D42:
      return {"cifs", false};
    case FUSE_SUPER_MAGIC:
      return {"fuse", false};
    default:
      return {absl::StrCat("0x", absl::Hex(sf.f_type)), false};
  }
}

uint64_t OpenHandleLimit() {
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur == RLIM_INFINITY) return std::numeric_limits<uint64_t>::max();
  return static_cast<uint64_t>(rl.rlim_cur);
}

absl::StatusOr<File> CreateUnnamedFile(const Directory& dir, uint32_t permissions) {
  const std::string display = Join(dir, "(unnamed)");
  const int fd =
      ::openat(dir.native(), ".", O_TMPFILE | O_RDWR | O_CLOEXEC, static_cast<mode_t>(permissions));
  if (fd >= 0) return File::Adopt(fd, display);
  const int err = errno;
  absl::Status status = ErrnoToStatus(err, absl::StrCat("create ", display));
  // A filesystem without O_TMPFILE says EOPNOTSUPP; old kernels EISDIR or EINVAL.
  if (err == EOPNOTSUPP || err == EISDIR || err == EINVAL) {
    return WithKind(absl::UnimplementedError(status.message()), ErrorKind::kNotSupported);
  }
  return status;
}

absl::Status LinkUnnamedFile(const File& file, const Directory& dir, std::string_view name) {
  // By the descriptor itself (AT_EMPTY_PATH) where the process may, which saves resolving a /proc
  // path per file; that needs CAP_DAC_READ_SEARCH (without it: ENOENT), so after the first
  // refusal every link goes through /proc/self/fd.
  static std::atomic<bool> by_descriptor{true};
  const std::string to(name);
  if (by_descriptor.load(std::memory_order_relaxed)) {
    if (::linkat(file.native(), "", dir.native(), to.c_str(), AT_EMPTY_PATH) == 0) {
      return absl::OkStatus();
    }
    if (errno != ENOENT && errno != EPERM) return ErrnoNow("link unnamed file as", Join(dir, name));
    // (ENOENT could also mean `dir` was removed: the /proc link below answers that too.)
    by_descriptor.store(false, std::memory_order_relaxed);
  }
  const std::string proc = absl::StrCat("/proc/self/fd/", file.native());
  if (::linkat(AT_FDCWD, proc.c_str(), dir.native(), to.c_str(), AT_SYMLINK_FOLLOW) != 0) {
    return ErrnoNow("link unnamed file as", Join(dir, name));
  }
  return absl::OkStatus();
}

absl::Status SetFileTimes(File& file, int64_t mtime_ns) {
  struct timespec times[2];
  BothTimes(mtime_ns, times);
  if (::futimens(file.native(), times) != 0) return ErrnoNow("set mtime of", file.display_path());
  return absl::OkStatus();
}

absl::Status SetFileTimesAt(const Directory& dir, std::string_view name, int64_t mtime_ns) {
  struct timespec times[2];
  BothTimes(mtime_ns, times);
  const std::string n(name);
  if (::utimensat(dir.native(), n.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return ErrnoNow("set mtime of", Join(dir, name));
  }
  return absl::OkStatus();
}

void StartWriteback(const File& file) {
  (void)::sync_file_range(file.native(), 0, 0, SYNC_FILE_RANGE_WRITE);
}

absl::StatusOr<std::string> GetAttributeAt(const std::filesystem::path& path,
                                           std::string_view name) {
  const std::string xname = AttributeName(name);
  std::string value(128, '\0');
  for (;;) {
    const ssize_t n = ::lgetxattr(path.c_str(), xname.c_str(), value.data(), value.size());
    if (n >= 0) {
      value.resize(static_cast<size_t>(n));
      return value;
    }
    if (errno != ERANGE) return AttributeError("get", name, path);
    const ssize_t need = ::lgetxattr(path.c_str(), xname.c_str(), nullptr, 0);
    if (need < 0) return AttributeError("get", name, path);
    value.resize(static_cast<size_t>(need) + 1);
  }
}

absl::Status SetAttributeAt(const std::filesystem::path& path, std::string_view name,
                            std::string_view value) {
  if (::lsetxattr(path.c_str(), AttributeName(name).c_str(), value.data(), value.size(), 0) != 0) {
    return AttributeError("set", name, path);
  }
  return absl::OkStatus();
}

absl::Status RemoveAttributeAt(const std::filesystem::path& path, std::string_view name) {
  if (::lremovexattr(path.c_str(), AttributeName(name).c_str()) != 0 && errno != ENODATA) {
    return AttributeError("remove", name, path);
  }
  return absl::OkStatus();
}

bool IsUnreachable(const absl::Status& status) {
  const ErrorKind kind = KindOf(status);
  return kind == ErrorKind::kUnreachable || kind == ErrorKind::kNoDevice;
}

bool IsNotSupported(const absl::Status& status) {
  return KindOf(status) == ErrorKind::kNotSupported || absl::IsUnimplemented(status);
}

bool IsBusy(const absl::Status& status) {
  const ErrorKind kind = KindOf(status);
  return kind == ErrorKind::kSharingViolation || kind == ErrorKind::kBusy;
}

}  // namespace ds::platform
