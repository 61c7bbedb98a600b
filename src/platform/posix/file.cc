#include "platform/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <random>
#include <utility>

#include "absl/strings/str_format.h"
#include "platform/posix/internal.h"

namespace ds::platform {

using internal::Av;
using internal::Errno;

namespace internal {

int OpenFlags(const OpenOptions& options) {
  int flags = O_CLOEXEC;
  switch (options.access) {
    case Access::kRead:
      flags |= O_RDONLY;
      break;
    case Access::kWrite:
      flags |= O_WRONLY;
      break;
    case Access::kReadWrite:
      flags |= O_RDWR;
      break;
  }
  switch (options.disposition) {
    case Disposition::kOpenExisting:
      break;
    case Disposition::kCreateNew:
      flags |= O_CREAT | O_EXCL;
      break;
    case Disposition::kOpenOrCreate:
      flags |= O_CREAT;
      break;
    case Disposition::kCreateOrTruncate:
      flags |= O_CREAT | O_TRUNC;
      break;
  }
  if (!options.follow_links) flags |= O_NOFOLLOW;
  if (options.regular_only || options.non_blocking) flags |= O_NONBLOCK;
  return flags;
}

absl::StatusOr<int> OpenAtChecked(int dir_fd, const std::string& name, const OpenOptions& options,
                                  const std::string& display) {
  int fd =
      ::openat(dir_fd, name.c_str(), OpenFlags(options), static_cast<mode_t>(options.permissions));
  if (fd < 0) {
    const int err = errno;
    absl::Status s = ErrnoToStatus(err, absl::StrCat("open ", display));
    if (options.regular_only && (err == ENXIO || err == ENODEV || err == EISDIR)) {
      return WithKind(absl::FailedPreconditionError(s.message()),
                      err == EISDIR ? ErrorKind::kIsDirectory : ErrorKind::kNoDevice);
    }
    return s;
  }
  if (!options.regular_only) return fd;
  // (regular_only clears O_NONBLOCK again below, even with non_blocking: a regular file's reads
  // do not care.)
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status s = Errno("stat", display);
    ::close(fd);
    return s;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return WithKind(absl::FailedPreconditionError(absl::StrCat(display, " is not a regular file")),
                    S_ISDIR(st.st_mode) ? ErrorKind::kIsDirectory : ErrorKind::kNoDevice);
  }
  const int fl = ::fcntl(fd, F_GETFL);
  if (fl < 0 || ::fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
    absl::Status s = Errno("fcntl", display);
    ::close(fd);
    return s;
  }
  return fd;
}

std::string RandomSuffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%016x", rng());
}

}  // namespace internal

absl::StatusOr<File> File::Open(const std::filesystem::path& path, const OpenOptions& options) {
  std::string display = path.string();
  auto fd = internal::OpenAtChecked(AT_FDCWD, path.native(), options, display);
  if (!fd.ok()) return fd.status();
  return File(*fd, std::move(display));
}

File File::Adopt(NativeHandle handle, std::string display) {
  return File(handle, std::move(display));
}


absl::StatusOr<size_t> File::Read(absl::Span<char> buffer) {
  for (;;) {
    const ssize_t n = ::read(handle_, buffer.data(), buffer.size());
    if (n >= 0) return static_cast<size_t>(n);
    if (errno != EINTR) return Errno("read", display_);
  }
}

absl::StatusOr<size_t> File::ReadAt(uint64_t offset, absl::Span<char> buffer) const {
  size_t have = 0;
  while (have < buffer.size()) {
    const ssize_t n = ::pread(handle_, buffer.data() + have, buffer.size() - have,
                              static_cast<off_t>(offset + have));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("read", display_);
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  return have;
}

absl::Status File::WriteAll(std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(handle_, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno("write", display_);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status File::Seek(uint64_t offset) {
  if (::lseek(handle_, static_cast<off_t>(offset), SEEK_SET) < 0) return Errno("seek", display_);
  return absl::OkStatus();
}

absl::Status File::Flush() {
  if (::fsync(handle_) != 0) return Errno("fsync", display_);
  return absl::OkStatus();
}

absl::Status File::FlushData() {
  if (::fdatasync(handle_) != 0) return Errno("fdatasync", display_);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> File::Size() const {
  struct stat st;
  if (::fstat(handle_, &st) != 0) return Errno("stat", display_);
  return static_cast<uint64_t>(st.st_size);
}

absl::StatusOr<FileInfo> File::Info() const {
  struct stat st;
  if (::fstat(handle_, &st) != 0) return Errno("stat", display_);
  return internal::InfoOfStat(st);
}

absl::Status File::Truncate(uint64_t size) {
  if (::ftruncate(handle_, static_cast<off_t>(size)) != 0) return Errno("truncate", display_);
  return absl::OkStatus();
}

absl::Status File::SetModificationTime(int64_t mtime_ns) {
  struct timespec times[2];
  internal::MtimeOnly(mtime_ns, times);
  if (::futimens(handle_, times) != 0) return Errno("set mtime of", display_);
  return absl::OkStatus();
}

absl::Status File::SetPermissions(uint32_t permissions) {
  if (::fchmod(handle_, static_cast<mode_t>(permissions)) != 0) return Errno("chmod", display_);
  return absl::OkStatus();
}

void File::AdviseSequential() const { ::posix_fadvise(handle_, 0, 0, POSIX_FADV_SEQUENTIAL); }

void File::AdviseDontNeed(uint64_t offset, uint64_t length) const {
  ::posix_fadvise(handle_, static_cast<off_t>(offset), static_cast<off_t>(length),
                  POSIX_FADV_DONTNEED);
}

absl::StatusOr<File> File::Duplicate() const {
  const int fd = ::fcntl(handle_, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return Errno("dup", display_);
  return File(fd, display_);
}

namespace {

std::string XattrName(std::string_view name) { return absl::StrCat("user.", Av(name)); }

// ENODATA (no such attribute) → NotFound; the rest as ErrnoToStatus.
absl::Status XattrError(std::string_view op, std::string_view name, const std::string& display) {
  const int err = errno;
  const std::string what = absl::StrCat(Av(op), " attribute ", Av(name), " of ", display);
  if (err == ENODATA) return absl::NotFoundError(absl::StrCat(what, ": no such attribute"));
  return ErrnoToStatus(err, what);
}

}  // namespace

absl::StatusOr<std::string> File::GetAttribute(std::string_view name) const {
  const std::string xname = XattrName(name);
  std::string value(256, '\0');
  for (;;) {
    const ssize_t n = ::fgetxattr(handle_, xname.c_str(), value.data(), value.size());
    if (n >= 0) {
      value.resize(static_cast<size_t>(n));
      return value;
    }
    if (errno != ERANGE) return XattrError("get", name, display_);
    const ssize_t need = ::fgetxattr(handle_, xname.c_str(), nullptr, 0);
    if (need < 0) return XattrError("get", name, display_);
    value.resize(static_cast<size_t>(need) + 1);
  }
}

absl::Status File::SetAttribute(std::string_view name, std::string_view value) {
  if (::fsetxattr(handle_, XattrName(name).c_str(), value.data(), value.size(), 0) != 0) {
    return XattrError("set", name, display_);
  }
  return absl::OkStatus();
}

absl::Status File::RemoveAttribute(std::string_view name) {
  if (::fremovexattr(handle_, XattrName(name).c_str()) != 0 && errno != ENODATA) {
    return XattrError("remove", name, display_);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> File::ListAttributes() const {
  std::string buf(1024, '\0');
  ssize_t n;
  for (;;) {
    n = ::flistxattr(handle_, buf.data(), buf.size());
    if (n >= 0) break;
    if (errno != ERANGE) return XattrError("list", "names", display_);
    const ssize_t need = ::flistxattr(handle_, nullptr, 0);
    if (need < 0) return XattrError("list", "names", display_);
    buf.resize(static_cast<size_t>(need) + 1);
  }
  std::vector<std::string> names;
  std::string_view all(buf.data(), static_cast<size_t>(n));
  constexpr std::string_view kUser = "user.";
  while (!all.empty()) {
    const size_t end = all.find('\0');
    std::string_view one = all.substr(0, end);
    if (one.substr(0, kUser.size()) == kUser) names.emplace_back(one.substr(kUser.size()));
    if (end == std::string_view::npos) break;
    all.remove_prefix(end + 1);
  }
  return names;
}

absl::StatusOr<FileInfo> Stat(const std::filesystem::path& path, bool follow_links) {
  struct stat st;
  const int rc = follow_links ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st);
  if (rc != 0) return Errno("stat", path.native());
  return internal::InfoOfStat(st);
}

absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path, size_t max_bytes) {
  OpenOptions options;
  options.follow_links = true;
  auto file = File::Open(path, options);
  if (!file.ok()) return file.status();
  std::string out;
  char buf[65536];
  for (;;) {
    auto n = file->Read(absl::MakeSpan(buf, sizeof buf));
    if (!n.ok()) return n.status();
    if (*n == 0) break;
    out.append(buf, *n);
    if (out.size() > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat(path.native(), " is larger than ", max_bytes, " bytes"));
    }
  }
  return out;
}

}  // namespace ds::platform
