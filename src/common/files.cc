#include "common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"

namespace ds {

absl::Status ErrnoStatus(int err, std::string_view what) {
  std::string msg = absl::StrCat(std::string(what), ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
    case ENOTDIR:
      return absl::NotFoundError(msg);
    case EACCES:
    case EPERM:
    case EROFS:
      return absl::PermissionDeniedError(msg);
    case EEXIST:
      return absl::AlreadyExistsError(msg);
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
      return absl::ResourceExhaustedError(msg);
    case EBUSY:
    case EAGAIN:
    case ETXTBSY:
      return absl::UnavailableError(msg);
    case ENAMETOOLONG:
    case EINVAL:
      return absl::InvalidArgumentError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::StatusOr<std::string> ReadFileToString(const std::filesystem::path& path, size_t max_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open ", path.string()));
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return ErrnoStatus(e, absl::StrCat("read ", path.string()));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      ::close(fd);
      return absl::ResourceExhaustedError(absl::StrCat(path.string(), " is larger than ", max_bytes, " bytes"));
    }
  }
  ::close(fd);
  return out;
}

ssize_t ReadFully(int fd, char* buf, size_t len) {
  size_t have = 0;
  while (have < len) {
    ssize_t n = ::read(fd, buf + have, len - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(have);
}

int WriteAll(int fd, const char* data, size_t len) {
  while (len > 0) {
    ssize_t n = ::write(fd, data, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    len -= static_cast<size_t>(n);
  }
  return 0;
}

absl::Status SyncDirectory(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("open dir ", dir.string()));
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  // Some network filesystems refuse fsync on directories; the rename itself is still atomic.
  if (rc != 0 && e != EINVAL && e != EROFS) return ErrnoStatus(e, absl::StrCat("fsync dir ", dir.string()));
  return absl::OkStatus();
}

absl::Status WriteFileAtomically(const std::filesystem::path& path, std::string_view data, int mode) {
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  std::filesystem::path tmp = dir / absl::StrCat(".", path.filename().string(), ".tmp-", HexEncode(RandomBytes(4)));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return ErrnoStatus(errno, absl::StrCat("create ", tmp.string()));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoStatus(e, absl::StrCat("write ", tmp.string()));
    }
    off += static_cast<size_t>(n);
  }
  if (::fchmod(fd, static_cast<mode_t>(mode)) != 0 || ::fsync(fd) != 0) {
    int e = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return ErrnoStatus(e, absl::StrCat("fsync ", tmp.string()));
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    return ErrnoStatus(e, absl::StrCat("rename to ", path.string()));
  }
  return SyncDirectory(dir);
}

absl::StatusOr<UniqueFd> OpenScannedFileAt(int dir_fd, const char* path,
                                           const FileIdentity& expected) {
  const int flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | (expected.via_link ? 0 : O_NOFOLLOW);
  UniqueFd fd(::openat(dir_fd, path, flags));
  if (!fd.valid()) {
    const int e = errno;
    if (e == ELOOP || e == ENXIO || e == EISDIR) return absl::AbortedError(kChangedSinceScan);
    return ErrnoStatus(e, absl::StrCat("open ", path));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", path));
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_dev) != expected.dev ||
      static_cast<uint64_t>(st.st_ino) != expected.ino ||
      static_cast<uint64_t>(st.st_size) != expected.size || MtimeNs(st) != expected.mtime_ns) {
    return absl::AbortedError(kChangedSinceScan);
  }
  const int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) != 0) {
    return ErrnoStatus(errno, absl::StrCat("fcntl ", path));
  }
  return fd;
}

}  // namespace ds
