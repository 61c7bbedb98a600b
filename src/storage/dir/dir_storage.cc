// Directory / mounted-share backend. See dir_storage.h for the on-disk layout.
//
// Every operation opens the root by path and then walks the key's directories with
// openat(O_NOFOLLOW), so nothing is written or read through a symlink and a share that was
// (re)mounted after OpenDirStorage() is used as it is now. All writes go to a temp file in the
// destination directory and reach their final name only by rename(), after fsync and
// (optionally) verification: a final name never holds partial content.
#include "storage/dir/dir_storage.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>  // renameat2
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <set>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/files.h"
#include "common/paths.h"
#include "common/time_util.h"
#include "common/log.h"
#include "storage/dir/dir_names.h"
#include "storage/dir/dir_probe.h"
#include "storage/dir/dir_sidecar.h"
#include "common/unique_fd.h"

namespace ds {
namespace {

// Copy chunk: 128 KiB stays in L2 between read, hash and write. dd of 512 MiB into the page
// cache here: 0.17-0.18 s system time with 128 KiB chunks, 0.19-0.29 s with 1 MiB (cp's
// copy_file_range 0.17 s).
constexpr size_t kCopyBufferBytes = 128 << 10;
constexpr uint64_t kEarlyWritebackBytes = 256 << 10;
constexpr size_t kMinPacedChunkBytes = 64 << 10;
constexpr auto kMaxPacingSleep = std::chrono::milliseconds(50);
// Object metadata, one xattr: version byte 1, the SHA-256 (32 bytes), the recorded mtime (Unix ns,
// int64 little-endian): 41 bytes. Small enough to live inside a 256-byte ext4 inode; the two text
// xattrs written before (below, still read) needed an extra 4 KiB block per file.
constexpr char kXattrMeta[] = "user.datasync.meta";
constexpr size_t kMetaBytes = 1 + 32 + 8;
constexpr unsigned char kMetaVersion = 1;
// Version 2 appends the source's mtime (int64 LE) where the share did not keep it exactly.
constexpr size_t kMetaBytesV2 = kMetaBytes + 8;
constexpr unsigned char kMetaVersion2 = 2;
constexpr char kXattrSha256[] = "user.datasync.sha256";     // older objects: lowercase hex
constexpr char kXattrMtimeNs[] = "user.datasync.mtime_ns";  // older objects: decimal Unix ns
constexpr int kTempNameAttempts = 8;
constexpr int kMtimeWarnings = 10;  // shares that do not keep mtimes: objects named in the log

// unlinkat / renameat within `dir_fd`, retried while another SMB client holds the file open
// (EBUSY). 0 or errno.
int UnlinkRetrying(int dir_fd, const char* name) {
  return RetryWhileBusy([&] { return ::unlinkat(dir_fd, name, 0) == 0 ? 0 : errno; });
}
int RenameRetrying(int dir_fd, const char* from, const char* to) {
  return RetryWhileBusy([&] { return ::renameat(dir_fd, from, dir_fd, to) == 0 ? 0 : errno; });
}

// Unlinks `name` in directory `dir_fd` on destruction unless Release()d.
// REQUIRES: `dir_fd` stays open for the guard's lifetime.
class TempFileGuard {
 public:
  TempFileGuard(int dir_fd, std::string name) : dir_fd_(dir_fd), name_(std::move(name)) {}
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  ~TempFileGuard() {
    if (!name_.empty()) (void)UnlinkRetrying(dir_fd_, name_.c_str());
  }
  void Release() { name_.clear(); }

 private:
  int dir_fd_;
  std::string name_;
};

// Errors that mean the storage (typically a network share) cannot be reached right now.
bool IsUnreachableErrno(int err) {
  switch (err) {
    case ESTALE:
    case EIO:
    case ENOTCONN:
    case ETIMEDOUT:
    case EHOSTDOWN:
    case EHOSTUNREACH:
    case ENETDOWN:
    case ENETUNREACH:
    case ECONNRESET:
    case ECONNABORTED:
    case ENODEV:
    case ENXIO:
      return true;
    default:
      return false;
  }
}

// errno from an operation on the storage → status; unreachable shares give Unavailable.
absl::Status StorageError(int err, std::string_view what) {
  if (IsUnreachableErrno(err)) {
    return absl::UnavailableError(absl::StrCat(std::string(what), ": ", std::strerror(err)));
  }
  return ErrnoStatus(err, what);
}

struct timespec ToTimespec(int64_t unix_ns) {
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(unix_ns / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(unix_ns % 1'000'000'000);
  if (ts.tv_nsec < 0) {  // before 1970: floor, not truncate
    ts.tv_nsec += 1'000'000'000;
    ts.tv_sec -= 1;
  }
  return ts;
}

std::vector<std::string_view> SplitKey(std::string_view key) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t end = key.find('/', start);
    if (end == std::string_view::npos) {
      out.push_back(key.substr(start));
      return out;
    }
    out.push_back(key.substr(start, end - start));
    start = end + 1;
  }
}

// A key PutFile may write: valid, outside the reserved area, not named like a temp file.
absl::Status ValidateWritableKey(const std::string& key) {
  DS_RETURN_IF_ERROR(ValidateRelativePath(key));
  std::vector<std::string_view> parts = SplitKey(key);
  if (parts.front() == kReservedArea) {
    return absl::InvalidArgumentError(
        absl::StrCat("key '", key, "' is inside the reserved area ", std::string(kReservedArea)));
  }
  if (IsTempName(parts.back())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "key '", key, "' has a name reserved for temp files (", std::string(kTempPrefix), "*)"));
  }
  return absl::OkStatus();
}

// Opens the storage root. Unavailable when it is missing or unreachable (e.g. share unmounted).
absl::StatusOr<UniqueFd> OpenRoot(const std::string& root) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR || IsUnreachableErrno(e)) {
      return absl::UnavailableError(
          absl::StrCat("storage root ", root, " is not reachable: ", std::strerror(e)));
    }
    return ErrnoStatus(e, absl::StrCat("open storage root ", root));
  }
  return UniqueFd(fd);
}

// Opens the directory base/parts[0]/.../parts[n-1] without following symlinks; n == 0 gives a
// duplicate of `base`. With `create`, missing directories are made (mode 0755 before umask) and
// their parent fsynced (unless !sync_new: the caller flushes the whole filesystem later). `base_path` names `base` in messages and for SyncDirectory().
// Errors: NotFound (missing, !create), FailedPrecondition (a component is a file or a symlink).
absl::StatusOr<UniqueFd> OpenDirChain(int base, const std::string& base_path,
                                      const std::vector<std::string_view>& parts, size_t n,
                                      bool create, bool sync_new = true) {
  UniqueFd dir(::fcntl(base, F_DUPFD_CLOEXEC, 0));
  if (!dir.valid()) return StorageError(errno, absl::StrCat("dup ", base_path));
  std::string path = base_path;
  for (size_t i = 0; i < n; ++i) {
    std::string name(parts[i]);
    std::string child_path = absl::StrCat(path, "/", name);
    for (int attempt = 0;; ++attempt) {
      int fd = ::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) {
        dir = UniqueFd(fd);
        break;
      }
      int e = errno;
      if (e == ENOENT && create && attempt < 2) {
        if (::mkdirat(dir.get(), name.c_str(), 0755) == 0) {
          if (sync_new) DS_RETURN_IF_ERROR(SyncDirectory(path));  // make the new entry durable
        } else if (errno != EEXIST) {
          return StorageError(errno, absl::StrCat("mkdir ", child_path));
        }
        continue;
      }
      if (e == ENOENT) return absl::NotFoundError(absl::StrCat(child_path, " does not exist"));
      if (e == ENOTDIR || e == ELOOP) {
        return absl::FailedPreconditionError(
            absl::StrCat(child_path, " is not a directory (a file or a symlink is in the way)"));
      }
      return StorageError(e, absl::StrCat("open dir ", child_path));
    }
    path = std::move(child_path);
  }
  return dir;
}

struct CopyOutcome {
  uint64_t bytes = 0;  // bytes copied
  std::string sha256;  // of exactly those bytes, lowercase hex
};

// Copies `src` from offset 0 (pread: its file offset is neither used nor moved) to EOF, or to
// `size` bytes when the caller knows the size from an fstat (saving the read that finds EOF;
// the caller's fstat after the copy then shows any growth), to `dst`, hashing the bytes as they
// are read. Paces to `max_bytes_per_second` (0 = unlimited) and to the shared `limiter` (may be
// null), and checks `cancel` between chunks.
absl::StatusOr<CopyOutcome> CopyAndHash(int src, int dst, const std::atomic<bool>* cancel,
                                        uint64_t max_bytes_per_second, RateLimiter* limiter,
                                        const std::string& src_desc, const std::string& dst_desc,
                                        std::optional<uint64_t> size = std::nullopt) {
  // A paced copy uses smaller chunks so that pacing is smooth and cancel is noticed promptly.
  size_t chunk = kCopyBufferBytes;
  if (limiter != nullptr) chunk = kMinPacedChunkBytes;
  if (max_bytes_per_second > 0) {
    chunk = static_cast<size_t>(
        std::clamp<uint64_t>(max_bytes_per_second / 8, kMinPacedChunkBytes, kCopyBufferBytes));
  }
  // One buffer per thread, reused: a fresh zeroed 1 MiB per file costs more than copying a
  // small file.
  thread_local std::unique_ptr<char[]> tl_buf(new char[kCopyBufferBytes]);
  std::span<char> buf(tl_buf.get(), chunk);
  Sha256 hash;
  CopyOutcome out;
  const auto start = std::chrono::steady_clock::now();
  while (!size || out.bytes < *size) {
    if (IsCancelled(cancel)) {
      return absl::CancelledError(absl::StrCat("copy to ", dst_desc, " cancelled"));
    }
    ssize_t n = ::pread(src, buf.data(), buf.size(), static_cast<off_t>(out.bytes));
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(errno, absl::StrCat("read ", src_desc));
    }
    if (n == 0) break;
    hash.Update(buf.data(), static_cast<size_t>(n));
    if (int e = WriteAll(dst, buf.data(), static_cast<size_t>(n)); e != 0) {
      return StorageError(e, absl::StrCat("write ", dst_desc));
    }
    out.bytes += static_cast<uint64_t>(n);
    if (limiter != nullptr && !limiter->Acquire(static_cast<uint64_t>(n), cancel)) {
      return absl::CancelledError(absl::StrCat("copy to ", dst_desc, " cancelled"));
    }
    if (max_bytes_per_second > 0) {
      const auto due =
          start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      std::chrono::duration<double>(static_cast<double>(out.bytes) /
                                                    static_cast<double>(max_bytes_per_second)));
      for (auto now = std::chrono::steady_clock::now(); now < due;
           now = std::chrono::steady_clock::now()) {
        if (IsCancelled(cancel)) {
          return absl::CancelledError(absl::StrCat("copy to ", dst_desc, " cancelled"));
        }
        std::this_thread::sleep_for(
            std::min<std::chrono::steady_clock::duration>(due - now, kMaxPacingSleep));
      }
    }
  }
  out.sha256 = hash.FinishHex();
  return out;
}

// Hashes `fd` from offset 0 to EOF.
absl::StatusOr<FileDigest> HashFd(int fd, const std::string& desc) {
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  thread_local std::unique_ptr<char[]> tl_buf(new char[kCopyBufferBytes]);
  std::span<char> buf(tl_buf.get(), kCopyBufferBytes);
  Sha256 hash;
  FileDigest out;
  off_t offset = 0;
  for (;;) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return StorageError(errno, absl::StrCat("read ", desc));
    }
    if (n == 0) break;
    hash.Update(buf.data(), static_cast<size_t>(n));
    offset += n;
    out.size += static_cast<uint64_t>(n);
  }
  out.sha256 = hash.FinishHex();
  return out;
}

// The compact metadata value for `sha256` (lowercase hex), the object's `stored_ns` mtime and the
// source's `source_ns` mtime: version 1 (41 bytes) when they are equal, else version 2 (49 bytes,
// the source mtime appended). Empty when `sha256` is not 64 hex digits.
std::string EncodeMeta(const std::string& sha256, int64_t stored_ns, int64_t source_ns) {
  if (sha256.size() != 64) return "";
  const bool v2 = stored_ns != source_ns;
  std::string out(v2 ? kMetaBytesV2 : kMetaBytes, '\0');
  out[0] = static_cast<char>(v2 ? kMetaVersion2 : kMetaVersion);
  auto nibble = [](char c) { return absl::ascii_isdigit(c) ? c - '0' : absl::ascii_tolower(c) - 'a' + 10; };
  for (size_t i = 0; i < 32; ++i) {
    const char hi = sha256[2 * i], lo = sha256[2 * i + 1];
    if (!absl::ascii_isxdigit(hi) || !absl::ascii_isxdigit(lo)) return "";
    out[1 + i] = static_cast<char>((nibble(hi) << 4) | nibble(lo));
  }
  auto put64 = [&out](size_t at, int64_t v) {
    const uint64_t m = static_cast<uint64_t>(v);
    for (size_t i = 0; i < 8; ++i) out[at + i] = static_cast<char>((m >> (8 * i)) & 0xff);
  };
  put64(33, stored_ns);
  if (v2) put64(41, source_ns);
  return out;
}

int64_t Get64(const unsigned char* p) {
  uint64_t m = 0;
  for (size_t i = 0; i < 8; ++i) m |= static_cast<uint64_t>(p[i]) << (8 * i);
  return static_cast<int64_t>(m);
}

// What trusted metadata says of an object.
struct TrustedMeta {
  std::string sha256;           // lowercase hex
  int64_t source_mtime_ns = 0;  // the source file's mtime (Unix ns)
};

// The stored metadata if it is present and still describes the file: its recorded mtime equals
// the current one (an in-place edit changes the mtime, making the hash stale). `get(name, buf,
// size)` is an fgetxattr/lgetxattr bound to the file. Reads the compact xattr, else the two text
// xattrs of objects written before it.
template <typename GetXattr>
std::optional<TrustedMeta> XattrMeta(const struct stat& st, GetXattr get) {
  unsigned char meta[kMetaBytesV2 + 1];
  ssize_t k = get(kXattrMeta, reinterpret_cast<char*>(meta), sizeof meta);
  const bool v1 = k == static_cast<ssize_t>(kMetaBytes) && meta[0] == kMetaVersion;
  const bool v2 = k == static_cast<ssize_t>(kMetaBytesV2) && meta[0] == kMetaVersion2;
  if (v1 || v2) {
    const int64_t stored = Get64(meta + 33);
    if (stored != MtimeNs(st)) return std::nullopt;
    return TrustedMeta{HexEncode(std::string(reinterpret_cast<const char*>(meta + 1), 32)),
                       v2 ? Get64(meta + 41) : stored};
  }
  if (k >= 0) return std::nullopt;  // present but not ours to read (a later version)
  char sha[80];
  ssize_t n = get(kXattrSha256, sha, sizeof sha);
  if (n != 64) return std::nullopt;
  char mtime[32];
  ssize_t m = get(kXattrMtimeNs, mtime, sizeof mtime - 1);
  if (m <= 0) return std::nullopt;
  mtime[m] = '\0';
  int64_t recorded = 0;
  if (!absl::SimpleAtoi(mtime, &recorded) || recorded != MtimeNs(st)) return std::nullopt;
  std::string out(sha, 64);
  for (char c : out) {
    if (!absl::ascii_isxdigit(c) || absl::ascii_isupper(c)) return std::nullopt;
  }
  return TrustedMeta{std::move(out), recorded};
}

std::optional<TrustedMeta> XattrMetaPath(const std::string& path, const struct stat& st) {
  return XattrMeta(st, [&path](const char* name, char* buf, size_t size) {
    return ::lgetxattr(path.c_str(), name, buf, size);
  });
}

// Records `sha256` with the file's `stored_ns` mtime and the source's `source_ns` in the xattr of
// `fd` (or, with fd < 0, of `path`). Filesystems without user xattrs are fine (the caller keeps
// a sidecar record there). `fresh`: the file was just created by us (it has no xattrs of older
// objects to remove).
absl::Status SetXattrMeta(int fd, const std::string& path, const std::string& sha256, int64_t stored_ns,
                          int64_t source_ns, const std::string& desc, bool fresh) {
  const std::string meta = EncodeMeta(sha256, stored_ns, source_ns);
  if (meta.empty()) return absl::InternalError(absl::StrCat("bad SHA-256 '", sha256, "' for ", desc));
  const int rc = fd >= 0 ? ::fsetxattr(fd, kXattrMeta, meta.data(), meta.size(), 0)
                         : ::lsetxattr(path.c_str(), kXattrMeta, meta.data(), meta.size(), 0);
  if (rc != 0) {
    const int e = errno;
    if (e != ENOTSUP && e != EOPNOTSUPP) return StorageError(e, absl::StrCat("set xattr on ", desc));
    return absl::OkStatus();
  }
  if (fresh) return absl::OkStatus();
  // An object written before the compact xattr: drop the old pair, which would otherwise
  // describe the previous content if a reader without the compact format looked.
  for (const char* old : {kXattrSha256, kXattrMtimeNs}) {
    const int r = fd >= 0 ? ::fremovexattr(fd, old) : ::lremovexattr(path.c_str(), old);
    if (r != 0 && errno != ENODATA && errno != ENOTSUP && errno != EOPNOTSUPP) {
      return StorageError(errno, absl::StrCat("remove xattr ", old, " of ", desc));
    }
  }
  return absl::OkStatus();
}

// Sets both timestamps of `fd` to `mtime_ns` and returns the mtime the file now has (read back:
// filesystems keep it at their own precision).
absl::StatusOr<int64_t> SetTimesFd(int fd, int64_t mtime_ns, const std::string& desc) {
  const struct timespec times[2] = {ToTimespec(mtime_ns), ToTimespec(mtime_ns)};
  if (::futimens(fd, times) != 0) return StorageError(errno, absl::StrCat("set mtime of ", desc));
  struct stat st;
  if (::fstat(fd, &st) != 0) return StorageError(errno, absl::StrCat("stat ", desc));
  return MtimeNs(st);
}

// The same for the closed file `name` in `dir_fd`: an SMB share sets the mtime when the data
// handle closes, and some FUSE clients ignore a time given with UTIME_OMIT beside it.
absl::StatusOr<int64_t> SetTimesAt(int dir_fd, const std::string& name, int64_t mtime_ns,
                                   const std::string& desc) {
  const struct timespec times[2] = {ToTimespec(mtime_ns), ToTimespec(mtime_ns)};
  if (::utimensat(dir_fd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return StorageError(errno, absl::StrCat("set mtime of ", desc));
  }
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return StorageError(errno, absl::StrCat("stat ", desc));
  }
  return MtimeNs(st);
}

// Links the unnamed (O_TMPFILE) file `fd` as `name` in `dir_fd`. Returns 0 or errno (EEXIST:
// name taken). By the descriptor itself (AT_EMPTY_PATH) where the process may, which saves
// resolving a /proc path per file; that needs CAP_DAC_READ_SEARCH (a process without it gets
// ENOENT), so after the first refusal every link goes through /proc/self/fd.
int LinkUnnamed(int fd, int dir_fd, const char* name) {
  static std::atomic<bool> by_descriptor{true};
  if (by_descriptor.load(std::memory_order_relaxed)) {
    if (::linkat(fd, "", dir_fd, name, AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT && errno != EPERM) return errno;
    // (ENOENT could also mean `dir_fd` was removed: the /proc link below answers that too.)
    by_descriptor.store(false, std::memory_order_relaxed);
  }
  const std::string proc = absl::StrCat("/proc/self/fd/", fd);
  return ::linkat(AT_FDCWD, proc.c_str(), dir_fd, name, AT_SYMLINK_FOLLOW) == 0 ? 0 : errno;
}

// Creates a temp file for final name `name` in `dir_fd`: .dstmp-<tag>-<16 hex of SHA-256(name)>,
// fixed length whatever `name` is. The tag is the first 8 letters/digits of `run_id`, or random
// hex when it has fewer or the name is taken (e.g. left over by a crash of the same run).
// With `unnamed_fd` >= 0 the temp name is given to that O_TMPFILE file instead of a new one
// (the returned descriptor is then empty).
absl::StatusOr<std::pair<std::string, UniqueFd>> CreateTempFile(int dir_fd, std::string_view name,
                                                                const std::string& run_id,
                                                                const std::string& dir_desc,
                                                                int unnamed_fd = -1) {
  std::string tag;
  for (char c : run_id) {
    if (absl::ascii_isalnum(c)) tag.push_back(c);
    if (tag.size() == 8) break;
  }
  const std::string name_hash = Sha256Hex(name).substr(0, 16);
  for (int attempt = 0; attempt < kTempNameAttempts; ++attempt) {
    if (tag.size() != 8 || attempt > 0) tag = HexEncode(RandomBytes(4));
    std::string temp = absl::StrCat(std::string(kTempPrefix), tag, "-", name_hash);
    if (unnamed_fd >= 0) {
      const int e = LinkUnnamed(unnamed_fd, dir_fd, temp.c_str());
      if (e == 0) return std::make_pair(std::move(temp), UniqueFd());
      if (e != EEXIST) return StorageError(e, absl::StrCat("link temp file in ", dir_desc));
      continue;
    }
    int fd =
        ::openat(dir_fd, temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd >= 0) return std::make_pair(std::move(temp), UniqueFd(fd));
    if (errno != EEXIST) return StorageError(errno, absl::StrCat("create temp file in ", dir_desc));
  }
  return absl::AlreadyExistsError(absl::StrCat("no free temp file name in ", dir_desc));
}

// "20261128T031451Z", the current UTC time.
std::string UtcStamp() {
  time_t now = static_cast<time_t>(SystemClock()->NowUnixMs() / 1000);
  struct tm tm {};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

// Renames `from` to `to` in `dir_fd` unless `to` exists. Returns 0, EEXIST or another errno.
int RenameNoReplace(int dir_fd, const char* from, const char* to) {
  const int e = RetryWhileBusy(
      [&] { return ::renameat2(dir_fd, from, dir_fd, to, RENAME_NOREPLACE) == 0 ? 0 : errno; });
  if (e == 0 || (e != EINVAL && e != ENOSYS && e != ENOTSUP)) return e;
  // Filesystem without RENAME_NOREPLACE (some network shares): check, then rename. Racy only
  // against a concurrent PutFile of the same key, which callers do not do.
  struct stat st;
  if (::fstatat(dir_fd, to, &st, AT_SYMLINK_NOFOLLOW) == 0) return EEXIST;
  if (errno != ENOENT) return errno;
  return RenameRetrying(dir_fd, from, to);
}

// A staged put: a complete, checked temp file beside its final name.
// Unnamed (O_TMPFILE) files held open by staged puts, against a bound on open descriptors.
struct UnnamedBudget {
  std::atomic<int> open{0};
  int max = 0;
};

// How many O_TMPFILE files staged puts may hold open at once: a quarter of the soft limit on
// open descriptors (the process needs the rest: sources, sockets, the journal), at most 4,096.
// Staging beyond it uses temp names, which hold no descriptor.
int UnnamedBudgetMax() {
  struct rlimit rl {};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur == RLIM_INFINITY) return 4096;
  return static_cast<int>(std::min<rlim_t>(rl.rlim_cur / 4, 4096));
}

// A staged put: a complete, checked file beside its final name, either unnamed (O_TMPFILE, held
// open: nothing to clean up after a crash) or under a temp name.
class DirStagedPut final : public StagedPut {
 public:
  const std::string& key() const override { return key_; }
  uint64_t bytes() const override { return copied_.bytes; }
  std::string sha256() const override { return copied_.sha256; }
  ~DirStagedPut() override {
    if (!temp_name_.empty() && dir_) (void)UnlinkRetrying(dir_->get(), temp_name_.c_str());
    CloseUnnamed();  // an unlinked inode: closing it frees it
  }
  void CloseUnnamed() {
    if (!unnamed_.valid()) return;
    unnamed_.Reset();
    budget_->open.fetch_sub(1);
  }

  std::string key_;
  std::string name_;                // final name in dir_
  std::string run_id_;
  std::shared_ptr<UniqueFd> dir_;   // the directory holding key_
  UniqueFd unnamed_;                // the O_TMPFILE file, until linked (then closed)
  std::shared_ptr<UnnamedBudget> budget_;  // set with unnamed_
  std::string temp_name_;           // cleared once renamed (or removed)
  bool placed_ = false;             // Finish put the new content under name_
  bool replaced_ = false;           // an object was under name_ when staged (unnamed_: no link try)
  std::string dest_desc_, temp_desc_;
  std::unique_ptr<FoldClaims::Claim> claim_;  // case-insensitive shares: the folded key, held
  CopyOutcome copied_;
  int64_t mtime_ns_ = 0;            // requested mtime (Unix ns)
  int64_t stored_mtime_ns_ = 0;     // the temp file's mtime as stored (Unix ns)
  bool verify_ = false;
};

// `probed` with what the directory backend does on any share: the agent writes it itself,
// staging from open files, and objects are replaced under their keys by rename.
StorageFeatures WithDirAbilities(StorageFeatures probed) {
  probed.direct_writes = true;
  probed.stages_from_fd = true;
  probed.atomic_replace = true;
  return probed;
}

class DirStorage final : public Storage {
 public:
  // REQUIRES: `root` is an absolute, normalised path without a trailing '/'.
  // `max_unnamed`: staged puts that may hold an O_TMPFILE file open at once (0: never use
  // O_TMPFILE; beyond it staging falls back to temp names).
  DirStorage(std::string root, StorageFeatures features, bool syncfs_flushes, int max_unnamed)
      : root_(std::move(root)), features_(WithDirAbilities(std::move(features))), syncfs_flushes_(syncfs_flushes) {
    unnamed_->max = max_unnamed;
  }

  absl::StatusOr<PutResult> PutFile(const std::string& key, const std::filesystem::path& source,
                                    const PutOptions& options) override;
  absl::StatusOr<std::unique_ptr<StagedPut>> StagePut(const std::string& key,
                                                      const std::filesystem::path& source,
                                                      const PutOptions& options) override;
  absl::StatusOr<std::unique_ptr<StagedPut>> StagePutFd(const std::string& key, int source_fd,
                                                        const std::string& source_desc,
                                                        const PutOptions& options,
                                                        const StageFdOptions& stage) override {
    DS_ASSIGN_OR_RETURN(std::unique_ptr<DirStagedPut> s,
                        StageFrom(key, source_fd, source_desc, options, !syncfs_flushes_, stage));
    return std::unique_ptr<StagedPut>(std::move(s));
  }
  std::vector<absl::StatusOr<PutResult>> CommitPuts(
      std::vector<std::unique_ptr<StagedPut>> staged) override;
  absl::StatusOr<ObjectInfo> Stat(const std::string& key) override;
  absl::Status List(const std::string& prefix,
                    const std::function<void(const ObjectInfo&)>& fn) override;
  absl::StatusOr<std::string> ReadAll(const std::string& key, size_t max_bytes) override;
  std::string Describe() const override { return absl::StrCat("file://", root_); }
  // What the probe at open found, and what this backend does on any share (WithDirAbilities).
  const StorageFeatures& Features() const override { return features_; }
  absl::StatusOr<FileDigest> HashObject(const std::string& key) override {
    DS_RETURN_IF_ERROR(ValidateRelativePath(key));
    return Sha256File(absl::StrCat(root_, "/", key));
  }
  absl::StatusOr<std::vector<ObjectInfo>> ListTempObjects(const std::string& prefix) override {
    DS_ASSIGN_OR_RETURN(auto keys, ListTempFiles(root_, prefix));
    std::vector<ObjectInfo> out;
    for (auto& k : keys) {
      struct stat st {};
      if (::lstat(absl::StrCat(root_, "/", k).c_str(), &st) != 0) continue;  // finished meanwhile
      ObjectInfo o;
      o.key = std::move(k);
      o.size = static_cast<uint64_t>(st.st_size);
      o.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
      out.push_back(std::move(o));
    }
    return out;
  }
  absl::Status AbandonUpload(const std::string& key, const std::string& run_id) override {
    DS_RETURN_IF_ERROR(ValidateRelativePath(key));
    std::string tag;
    for (char c : run_id) {
      if (absl::ascii_isalnum(c)) tag.push_back(c);
      if (tag.size() == 8) break;
    }
    if (tag.size() != 8) return absl::OkStatus();  // its temp had a random tag: reconcile reports it
    size_t slash = key.rfind('/');
    std::string dir = slash == std::string::npos ? "" : key.substr(0, slash + 1);
    std::string name = key.substr(slash == std::string::npos ? 0 : slash + 1);
    return RemoveTempObject(absl::StrCat(dir, std::string(kTempPrefix), tag, "-", Sha256Hex(name).substr(0, 16)));
  }
  absl::Status ForgetContentHash(const std::string& key) override {
    DS_RETURN_IF_ERROR(ValidateWritableKey(key));
    const std::string path = PathOf(key);
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", key));
    for (const char* name : {kXattrMeta, kXattrSha256, kXattrMtimeNs}) {
      if (::lremovexattr(path.c_str(), name) != 0 && errno != ENODATA && errno != ENOTSUP &&
          errno != EOPNOTSUPP) {
        return ErrnoStatus(errno, absl::StrCat("remove xattr ", name, " of ", key));
      }
    }
    return RemoveSidecar(root_, key);
  }
  absl::Status RecordContentHash(const ObjectInfo& listed, const std::string& sha256) override;
  absl::Status RemoveTempObject(const std::string& key) override {
    std::string base = key.substr(key.rfind('/') + 1);
    if (!ValidateRelativePath(key).ok() || !IsTempName(base)) {
      return absl::InvalidArgumentError(absl::StrCat("not a temp object: ", key));
    }
    const std::string path = PathOf(key);
    if (int e = RetryWhileBusy([&] { return ::unlink(path.c_str()) == 0 ? 0 : errno; }); e != 0 && e != ENOENT) {
      return ErrnoStatus(e, absl::StrCat("remove ", key));
    }
    return absl::OkStatus();
  }

 private:
  std::string PathOf(std::string_view key) const {
    return absl::StrCat(root_, "/", std::string(key));
  }

  // Opens the directory holding `key` (created when `create`). NotFound if it is missing or is
  // not a real directory and !create; FailedPrecondition for the latter with `create`.
  // `sync_new` false: directories made here are left for the caller's filesystem flush.
  absl::StatusOr<UniqueFd> OpenParentDir(const std::vector<std::string_view>& parts,
                                         bool create, bool sync_new = true) const;

  // Keeps the regular file `name` in `dir_fd` (the object under `key`, with `st`/`sha256`)
  // under the versions area by hard link, or by copy where links are not supported.
  // Returns the version's key.
  // `sync_dirs` false: the new directory entries are left for the caller's filesystem flush.
  absl::StatusOr<std::string> KeepVersion(const std::string& key, int dir_fd,
                                          const std::string& name, const struct stat& st,
                                          const std::string& sha256, bool sync_dirs = true) const;

  // The first half of a put (see StagePut); `fsync_now` also fsyncs the temp file.
  absl::StatusOr<std::unique_ptr<DirStagedPut>> Stage(const std::string& key,
                                                      const std::filesystem::path& source,
                                                      const PutOptions& options, bool fsync_now);
  // Stage from the open source `src_fd` (read from offset 0; not closed), as `stage` says.
  absl::StatusOr<std::unique_ptr<DirStagedPut>> StageFrom(const std::string& key, int src_fd,
                                                          const std::string& src_desc,
                                                          const PutOptions& options, bool fsync_now,
                                                          const StageFdOptions& stage = {});
  // Case-insensitive shares: a name refusal when the object found under the put's name in
  // `dir_fd` is stored under another spelling (it is another file of the job, not this one).
  absl::Status CheckSpelling(int dir_fd, const DirStagedPut& s) const;
  // Case-insensitive shares: a name refusal when a folder of `parts` (all but the last) is
  // stored under another spelling. Checked once per folder for the life of the storage.
  absl::Status CheckFolderSpelling(const std::vector<std::string_view>& parts);
  // After the copy: the staged file's times and metadata, its data durable (`fsync_now`, and
  // always on shares) or on its way to disk. Closes `named_fd`.
  absl::Status SettleStaged(DirStagedPut& s, UniqueFd& named_fd, int temp_fd, bool fsync_now) const;
  // The temp file's key (beside the staged put's key).
  static std::string TempKey(const DirStagedPut& s);
  // Records the staged put's SHA-256, stored and source mtimes in the xattr of `fd` (or, with
  // fd < 0, of `path`); nothing on shares without xattrs (RecordSidecar does it at the rename).
  // Logs the first objects whose mtime the share did not keep.
  absl::Status RecordMeta(const DirStagedPut& s, int fd, const std::string& path, bool fresh) const;
  // Shares without xattrs: the staged put's sidecar record, written just before the put takes
  // its name (earlier, it would describe the staged copy as the object still under the name).
  absl::Status RecordSidecar(const DirStagedPut& s, bool durable) const;
  // The metadata of the object `key` (at `path`, with `st`) if it still describes it.
  std::optional<TrustedMeta> Trusted(const std::string& key, const std::string& path,
                                     const struct stat& st) const;
  // The object as listed: the source mtime and SHA-256 from trusted metadata, else the file's
  // mtime and no SHA-256.
  ObjectInfo InfoOf(const std::string& key, const std::string& path, const struct stat& st) const;
  // The two halves without OneObject() applied to their errors.
  absl::StatusOr<std::unique_ptr<DirStagedPut>> StageFromUnclassified(const std::string& key, int src_fd,
                                                                      const std::string& src_desc,
                                                                      const PutOptions& options,
                                                                      bool fsync_now,
                                                                      const StageFdOptions& stage);
  absl::StatusOr<PutResult> FinishUnclassified(DirStagedPut& s, bool grouped) const;
  // An "unreachable" error of one object's operation (EIO and the like) while the root answers:
  // the share refused this object only (SMB gives EIO for names it cannot hold), so the error
  // is the object's (Internal), not the storage's (Unavailable). Other statuses pass through.
  absl::Status OneObject(absl::Status st) const;
  // Re-reads the staged temp file (dropped from the page cache first) against its hash.
  absl::Status VerifyStaged(DirStagedPut& s) const;
  // The second half: keeps a differing object as a version and renames the temp file into
  // place. The rename is not yet durable (the caller flushes the directory).
  // `grouped`: a syncfs follows, so directories made on the way need no fsync of their own.
  absl::StatusOr<PutResult> Finish(DirStagedPut& s, bool grouped) const;

  // A shared open descriptor of the directory holding `key` (created when missing), reused by
  // puts into the same directory while any of them holds it.
  // `grouped`: the put is committed by CommitPuts with syncfs (new directories need no fsync).
  absl::StatusOr<std::shared_ptr<UniqueFd>> ParentDir(const std::vector<std::string_view>& parts,
                                                      bool grouped);

  // Constant after construction.
  const std::string root_;
  const StorageFeatures features_;  // what the probe at open found
  // True when one syncfs() makes everything written to the root's filesystem durable (local
  // block filesystems). Network shares and FUSE: fsync per file and per directory instead.
  const bool syncfs_flushes_ = false;

  std::mutex dirs_mu_;
  std::map<std::string, std::weak_ptr<UniqueFd>, std::less<>> dirs_;  // Protected by dirs_mu_.

  // O_TMPFILE use: the bound, and whether this filesystem still accepts it (cleared for good
  // on the first refusal: EOPNOTSUPP / EISDIR / EINVAL from a filesystem or share without it).
  std::shared_ptr<UnnamedBudget> unnamed_ = std::make_shared<UnnamedBudget>();
  std::atomic<bool> unnamed_ok_{true};

  // Case-insensitive shares: folded keys of puts in flight, and folders whose spelling matched.
  const std::shared_ptr<FoldClaims> folds_ = std::make_shared<FoldClaims>();
  std::mutex spelled_mu_;
  std::set<std::string, std::less<>> spelled_dirs_;  // Protected by spelled_mu_.
};

absl::StatusOr<UniqueFd> DirStorage::OpenParentDir(const std::vector<std::string_view>& parts,
                                                   bool create, bool sync_new) const {
  DS_ASSIGN_OR_RETURN(UniqueFd root, OpenRoot(root_));
  absl::StatusOr<UniqueFd> dir =
      OpenDirChain(root.get(), root_, parts, parts.size() - 1, create, sync_new);
  if (!create && absl::IsFailedPrecondition(dir.status())) {
    return absl::NotFoundError(std::string(dir.status().message()));
  }
  return dir;
}

absl::StatusOr<std::shared_ptr<UniqueFd>> DirStorage::ParentDir(
    const std::vector<std::string_view>& parts, bool grouped) {
  std::string dir_key;
  for (size_t i = 0; i + 1 < parts.size(); ++i) absl::StrAppend(&dir_key, std::string(parts[i]), "/");
  {
    std::lock_guard<std::mutex> lock(dirs_mu_);
    auto it = dirs_.find(dir_key);
    if (it != dirs_.end()) {
      if (auto fd = it->second.lock()) return fd;
      dirs_.erase(it);
    }
  }
  // Directories made here need no fsync of their own where a syncfs follows the renames
  // (CommitPuts): it makes the new entries durable before any result stands. PutFile and
  // network shares fsync each new directory's parent at once.
  DS_ASSIGN_OR_RETURN(UniqueFd dir, OpenParentDir(parts, /*create=*/true, /*sync_new=*/!grouped));
  if (features_.case_insensitive) DS_RETURN_IF_ERROR(CheckFolderSpelling(parts));
  auto fd = std::make_shared<UniqueFd>(std::move(dir));
  std::lock_guard<std::mutex> lock(dirs_mu_);
  if (dirs_.size() > 4096) {  // forget directories nobody holds any more
    for (auto it = dirs_.begin(); it != dirs_.end();) it = it->second.expired() ? dirs_.erase(it) : std::next(it);
  }
  dirs_[dir_key] = fd;
  return fd;
}

absl::StatusOr<std::unique_ptr<DirStagedPut>> DirStorage::Stage(const std::string& key,
                                                                const std::filesystem::path& source,
                                                                const PutOptions& options,
                                                                bool fsync_now) {
  DS_ASSIGN_OR_RETURN(UniqueFd src, OpenPutSource(source, options));
  return StageFrom(key, src.get(), source.string(), options, fsync_now);
}

absl::StatusOr<std::unique_ptr<DirStagedPut>> DirStorage::StageFromUnclassified(const std::string& key, int src_fd,
                                                                    const std::string& src_desc,
                                                                    const PutOptions& options,
                                                                    bool fsync_now,
                                                                    const StageFdOptions& stage) {
  DS_RETURN_IF_ERROR(ValidateWritableKey(key));
  DS_RETURN_IF_ERROR(CheckKeyHoldable(features_, key));
  auto s = std::make_unique<DirStagedPut>();
  s->key_ = key;
  if (features_.case_insensitive) {
    DS_ASSIGN_OR_RETURN(s->claim_, folds_->Take(features_, key));
  }
  s->dest_desc_ = absl::StrCat(Describe(), "/", key);
  const std::string& dest_desc = s->dest_desc_;
  if (IsCancelled(options.cancel)) {
    return absl::CancelledError(absl::StrCat("put ", dest_desc, " cancelled"));
  }
  struct stat before;
  if (::fstat(src_fd, &before) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", src_desc));
  if (!S_ISREG(before.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat("source ", src_desc, " is not a regular file"));
  }
  if (before.st_size > static_cast<off_t>(kCopyBufferBytes)) {
    ::posix_fadvise(src_fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  }

  // Destination directory. Refuse early when the key names a directory or a non-file.
  const std::vector<std::string_view> parts = SplitKey(key);
  s->name_ = std::string(parts.back());
  const std::string& name = s->name_;
  DS_ASSIGN_OR_RETURN(s->dir_, ParentDir(parts, /*grouped=*/!fsync_now));
  const int dir = s->dir_->get();
  struct stat existing;
  if (::fstatat(dir, name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISREG(existing.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(dest_desc, " exists and is not a regular file"));
    }
    DS_RETURN_IF_ERROR(CheckSpelling(dir, *s));
    s->replaced_ = true;  // compared, maybe kept as a version, at commit
  } else if (errno != ENOENT) {
    return StorageError(errno, absl::StrCat("stat ", dest_desc));
  }

  // Copy into a new file beside the target. Grouped puts on a local filesystem use an unnamed
  // O_TMPFILE file, linked under its name at commit (one directory operation instead of
  // create + rename, and a crash leaves nothing behind); otherwise, or beyond the descriptor
  // budget, a temp name. A file that will replace an object also takes a temp name at once: it
  // is renamed over the object (link cannot replace); unless the caller asked for an unnamed
  // copy anyway (replace_unnamed), which gets its temp name at commit. From here on `s` owns the
  // file: destroying `s` removes it.
  s->run_id_ = options.run_id;
  int temp_fd = -1;
  UniqueFd named_fd;
  if (!fsync_now && (!s->replaced_ || (stage.unnamed_only && stage.replace_unnamed)) &&
      syncfs_flushes_ && unnamed_ok_.load(std::memory_order_relaxed)) {
    if (unnamed_->open.fetch_add(1) < unnamed_->max) {
      s->budget_ = unnamed_;
      s->unnamed_ = UniqueFd(::openat(dir, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0644));
      if (!s->unnamed_.valid()) {
        const int e = errno;
        s->budget_.reset();
        unnamed_->open.fetch_sub(1);
        if (e != EOPNOTSUPP && e != EISDIR && e != EINVAL) {
          return StorageError(e, absl::StrCat("create unnamed file for ", dest_desc));
        }
        unnamed_ok_.store(false);  // this filesystem has no O_TMPFILE: temp names from now on
      }
    } else {
      unnamed_->open.fetch_sub(1);
    }
  }
  if (stage.unnamed_only && !s->unnamed_.valid()) {
    if (s->replaced_ && !stage.replace_unnamed) {
      return absl::AlreadyExistsError(absl::StrCat(dest_desc, " exists: not staged unnamed"));
    }
    if (!fsync_now && syncfs_flushes_ && unnamed_ok_.load(std::memory_order_relaxed)) {
      return absl::ResourceExhaustedError(
          absl::StrCat("no unnamed file for ", dest_desc, ": ", unnamed_->max, " are open"));
    }
    return absl::FailedPreconditionError(
        absl::StrCat(Describe(), " cannot stage unnamed files (no O_TMPFILE or no syncfs)"));
  }
  if (s->unnamed_.valid()) {
    temp_fd = s->unnamed_.get();
    s->temp_desc_ = absl::StrCat(Describe(), "/", key, " (unnamed)");
  } else {
    DS_ASSIGN_OR_RETURN(auto temp, CreateTempFile(dir, name, options.run_id, dest_desc));
    s->temp_name_ = std::move(temp.first);
    named_fd = std::move(temp.second);
    temp_fd = named_fd.get();
    s->temp_desc_ = absl::StrCat(Describe(), "/", key, " (temp ", s->temp_name_, ")");
  }
  const std::string& temp_desc = s->temp_desc_;
  DS_ASSIGN_OR_RETURN(s->copied_, CopyAndHash(src_fd, temp_fd, options.cancel,
                                              options.max_bytes_per_second, options.rate_limiter,
                                              src_desc, temp_desc,
                                              static_cast<uint64_t>(before.st_size)));
  const CopyOutcome& copied = s->copied_;

  // The source must not have changed while we read it.
  struct stat after;
  if (::fstat(src_fd, &after) != 0) return ErrnoStatus(errno, absl::StrCat("stat ", src_desc));
  if (after.st_size != before.st_size || MtimeNs(after) != MtimeNs(before) ||
      copied.bytes != static_cast<uint64_t>(before.st_size)) {
    return absl::AbortedError(absl::StrCat("source changed while copying: ", src_desc, " (size ",
                                           before.st_size, " -> ", after.st_size, ", copied ",
                                           copied.bytes, " bytes)"));
  }
  if (!options.expected_sha256.empty() &&
      absl::AsciiStrToLower(options.expected_sha256) != copied.sha256) {
    return absl::AbortedError(absl::StrCat("source changed while copying: ", src_desc,
                                           " has SHA-256 ", copied.sha256, ", expected ",
                                           options.expected_sha256));
  }

  s->mtime_ns_ = options.mtime_ns != 0 ? options.mtime_ns : MtimeNs(before);
  s->verify_ = options.verify;
  DS_RETURN_IF_ERROR(SettleStaged(*s, named_fd, temp_fd, fsync_now));
  return s;
}

absl::Status DirStorage::SettleStaged(DirStagedPut& s, UniqueFd& named_fd, int temp_fd,
                                      bool fsync_now) const {
  const int dir = s.dir_->get();
  const std::string& temp_desc = s.temp_desc_;
  const CopyOutcome& copied = s.copied_;
  if (named_fd.valid() && !syncfs_flushes_) {
    // A share: the data durable and its handle closed before the times are set (SMB sets the
    // mtime when the handle closes), then the metadata of what the share now says.
    if (::fsync(temp_fd) != 0) return StorageError(errno, absl::StrCat("fsync ", temp_desc));
    if (int e = named_fd.Close(); e != 0) return StorageError(e, absl::StrCat("close ", temp_desc));
    DS_ASSIGN_OR_RETURN(s.stored_mtime_ns_, SetTimesAt(dir, s.temp_name_, s.mtime_ns_, temp_desc));
    DS_RETURN_IF_ERROR(RecordMeta(s, -1, PathOf(TempKey(s)), /*fresh=*/true));
    return absl::OkStatus();
  }
  // Metadata; durability is the caller's (fsync_now, or one flush for a whole group).
  DS_ASSIGN_OR_RETURN(s.stored_mtime_ns_, SetTimesFd(temp_fd, s.mtime_ns_, temp_desc));
  DS_RETURN_IF_ERROR(RecordMeta(s, temp_fd, "", /*fresh=*/true));
  if (fsync_now) {
    if (::fsync(temp_fd) != 0) return StorageError(errno, absl::StrCat("fsync ", temp_desc));
  } else if (copied.bytes >= kEarlyWritebackBytes) {
    // Start writing a large file back now, asynchronously, so that the group's flush finds most
    // of it already on disk: the copy of the next files overlaps this one's disk write. (Small
    // files are left to the flush, which writes them in far fewer, larger requests.)
    ::sync_file_range(temp_fd, 0, 0, SYNC_FILE_RANGE_WRITE);
  }
  if (named_fd.valid()) {
    if (int e = named_fd.Close(); e != 0) return StorageError(e, absl::StrCat("close ", temp_desc));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<DirStagedPut>> DirStorage::StageFrom(const std::string& key, int src_fd,
                                                                    const std::string& src_desc,
                                                                    const PutOptions& options,
                                                                    bool fsync_now,
                                                                    const StageFdOptions& stage) {
  auto staged = StageFromUnclassified(key, src_fd, src_desc, options, fsync_now, stage);
  if (!staged.ok()) return OneObject(staged.status());
  return staged;
}

absl::StatusOr<PutResult> DirStorage::Finish(DirStagedPut& s, bool grouped) const {
  auto result = FinishUnclassified(s, grouped);
  if (!result.ok()) return OneObject(result.status());
  return result;
}

absl::Status DirStorage::OneObject(absl::Status st) const {
  if (!absl::IsUnavailable(st)) return st;
  auto root = OpenRoot(root_);
  struct stat rs {};
  if (!root.ok() || ::fstatat(root->get(), ".", &rs, 0) != 0) return st;
  return absl::InternalError(absl::StrCat(st.message(), " (the storage root answers: the share refused this file only)"));
}

absl::Status DirStorage::CheckSpelling(int dir_fd, const DirStagedPut& s) const {
  if (!features_.case_insensitive) return absl::OkStatus();
  std::optional<std::string> other = OtherSpelling(dir_fd, s.name_, features_);
  if (!other) return absl::OkStatus();
  return NameRefusal(absl::AlreadyExistsError(absl::StrCat(
      "name '", s.key_, "' collides by case with the stored '", *other,
      "': this destination does not tell names apart by case")));
}

absl::Status DirStorage::CheckFolderSpelling(const std::vector<std::string_view>& parts) {
  std::string folder;
  for (size_t i = 0; i + 1 < parts.size(); ++i) {
    const std::string parent = folder;
    absl::StrAppend(&folder, folder.empty() ? "" : "/", std::string(parts[i]));
    {
      std::lock_guard<std::mutex> lock(spelled_mu_);
      if (spelled_dirs_.count(folder)) continue;
    }
    DS_ASSIGN_OR_RETURN(UniqueFd root, OpenRoot(root_));
    DS_ASSIGN_OR_RETURN(UniqueFd dir, OpenDirChain(root.get(), root_, parts, i, /*create=*/false));
    if (std::optional<std::string> other = OtherSpelling(dir.get(), std::string(parts[i]), features_)) {
      return NameRefusal(absl::AlreadyExistsError(absl::StrCat(
          "folder '", folder, "' collides by case with the stored '", parent, parent.empty() ? "" : "/",
          *other, "': this destination does not tell names apart by case")));
    }
    std::lock_guard<std::mutex> lock(spelled_mu_);
    if (spelled_dirs_.size() > 100'000) spelled_dirs_.clear();
    spelled_dirs_.insert(folder);
  }
  return absl::OkStatus();
}

std::string DirStorage::TempKey(const DirStagedPut& s) {
  const size_t slash = s.key_.rfind('/');
  return slash == std::string::npos ? s.temp_name_ : absl::StrCat(s.key_.substr(0, slash + 1), s.temp_name_);
}

absl::Status DirStorage::RecordMeta(const DirStagedPut& s, int fd, const std::string& path,
                                    bool fresh) const {
  if (!SameMtimeAt(features_, s.mtime_ns_, s.stored_mtime_ns_)) {
    static std::atomic<int> told{0};
    if (told.fetch_add(1) < kMtimeWarnings) {
      spdlog::warn("{} did not keep the mtime of {} (set {}, reads {} ns); the source's is kept in its metadata",
                   Describe(), s.key_, s.mtime_ns_, s.stored_mtime_ns_);
    }
  }
  if (!features_.metadata_on_object) return absl::OkStatus();  // Finish writes the sidecar
  return SetXattrMeta(fd, path, s.copied_.sha256, s.stored_mtime_ns_, s.mtime_ns_, s.temp_desc_, fresh);
}

absl::Status DirStorage::RecordSidecar(const DirStagedPut& s, bool durable) const {
  if (features_.metadata_on_object) return absl::OkStatus();
  return WriteSidecar(root_, s.key_, {s.copied_.sha256, s.copied_.bytes, s.stored_mtime_ns_, s.mtime_ns_},
                      durable);
}

absl::Status DirStorage::RecordContentHash(const ObjectInfo& listed, const std::string& sha256) {
  DS_RETURN_IF_ERROR(ValidateWritableKey(listed.key));
  if (features_.metadata_on_object) return Storage::RecordContentHash(listed, sha256);
  const std::vector<std::string_view> parts = SplitKey(listed.key);
  DS_ASSIGN_OR_RETURN(UniqueFd dir, OpenParentDir(parts, /*create=*/false));
  const std::string name(parts.back());
  const std::string desc = absl::StrCat(Describe(), "/", listed.key);
  struct stat st;
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return StorageError(errno, absl::StrCat("stat ", desc));
  }
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != listed.size ||
      MtimeNs(st) != listed.mtime_ns) {
    return absl::FailedPreconditionError(absl::StrCat(desc, " changed since it was listed"));
  }
  SidecarMeta meta{sha256, listed.size, MtimeNs(st), MtimeNs(st)};
  const std::optional<SidecarMeta> stale = ReadSidecar(root_, listed.key);
  if (stale && stale->sha256 == sha256 && stale->size == listed.size) {
    meta.source_mtime_ns = stale->source_mtime_ns;
    if (auto stored = SetTimesAt(dir.get(), name, stale->source_mtime_ns, desc); stored.ok()) {
      meta.stored_mtime_ns = *stored;
    }
  }
  return WriteSidecar(root_, listed.key, meta, /*durable=*/true);
}

std::optional<TrustedMeta> DirStorage::Trusted(const std::string& key, const std::string& path,
                                               const struct stat& st) const {
  if (features_.metadata_on_object) return XattrMetaPath(path, st);
  std::optional<SidecarMeta> m = ReadSidecar(root_, key);
  if (!m || m->size != static_cast<uint64_t>(st.st_size) || m->stored_mtime_ns != MtimeNs(st)) {
    return std::nullopt;
  }
  return TrustedMeta{std::move(m->sha256), m->source_mtime_ns};
}

ObjectInfo DirStorage::InfoOf(const std::string& key, const std::string& path, const struct stat& st) const {
  std::optional<TrustedMeta> meta = Trusted(key, path, st);
  if (!meta) return ObjectInfo{key, static_cast<uint64_t>(st.st_size), MtimeNs(st), ""};
  return ObjectInfo{key, static_cast<uint64_t>(st.st_size), meta->source_mtime_ns, std::move(meta->sha256)};
}

absl::Status DirStorage::VerifyStaged(DirStagedPut& s) const {
  UniqueFd check(s.unnamed_.valid()
                     ? ::fcntl(s.unnamed_.get(), F_DUPFD_CLOEXEC, 0)  // O_RDWR; HashFd preads from 0
                     : ::openat(s.dir_->get(), s.temp_name_.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!check.valid()) return StorageError(errno, absl::StrCat("reopen ", s.temp_desc_));
  // The pages are clean after the flush: drop them so the re-read comes from the storage.
  ::posix_fadvise(check.get(), 0, 0, POSIX_FADV_DONTNEED);
  DS_ASSIGN_OR_RETURN(FileDigest landed, HashFd(check.get(), s.temp_desc_));
  if (landed.size != s.copied_.bytes || landed.sha256 != s.copied_.sha256) {
    return absl::DataLossError(absl::StrCat(
        "verify failed for ", s.temp_desc_, ": wrote ", s.copied_.bytes, " bytes with SHA-256 ",
        s.copied_.sha256, ", read back ", landed.size, " bytes with SHA-256 ", landed.sha256));
  }
  return absl::OkStatus();
}

absl::StatusOr<PutResult> DirStorage::FinishUnclassified(DirStagedPut& s, bool grouped) const {
  const int dir = s.dir_->get();
  const std::string& name = s.name_;
  const std::string& dest_desc = s.dest_desc_;
  const CopyOutcome& copied = s.copied_;
  PutResult result;
  if (s.unnamed_.valid() && !s.replaced_) {
    // The common case, no object under the name: one link and done. EEXIST: see below.
    DS_RETURN_IF_ERROR(RecordSidecar(s, !grouped));
    const int e = LinkUnnamed(s.unnamed_.get(), dir, name.c_str());
    if (e == 0) {
      s.CloseUnnamed();
      s.placed_ = true;
      result.info = {s.key_, copied.bytes, s.mtime_ns_, copied.sha256};
      return result;
    }
    if (e != EEXIST) return StorageError(e, absl::StrCat("link ", s.temp_desc_, " as ", dest_desc));
  }
  // Look again: an object may have appeared while we copied.
  struct stat existing;
  if (::fstatat(dir, name.c_str(), &existing, AT_SYMLINK_NOFOLLOW) == 0) {
    if (!S_ISREG(existing.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(dest_desc, " exists and is not a regular file"));
    }
    DS_RETURN_IF_ERROR(CheckSpelling(dir, s));
    UniqueFd old(::openat(dir, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!old.valid()) return StorageError(errno, absl::StrCat("open ", dest_desc));
    if (::fstat(old.get(), &existing) != 0) {
      return StorageError(errno, absl::StrCat("stat ", dest_desc));
    }
    const std::optional<TrustedMeta> old_meta = Trusted(s.key_, PathOf(s.key_), existing);
    std::string old_sha = old_meta ? old_meta->sha256 : "";
    if (old_sha.empty()) {
      DS_ASSIGN_OR_RETURN(FileDigest digest, HashFd(old.get(), dest_desc));
      old_sha = digest.sha256;
    }
    if (static_cast<uint64_t>(existing.st_size) == copied.bytes && old_sha == copied.sha256) {
      // Same content: leave it in place (no version). Bring its metadata up to date so Stat()
      // reports this put's mtime, unless the inode has other names we must not touch.
      // Best effort: a file owned by another account may refuse (EPERM).
      if (existing.st_nlink == 1 && (MtimeNs(existing) != s.stored_mtime_ns_ || !old_meta ||
                                     old_meta->source_mtime_ns != s.mtime_ns_)) {
        auto stored = SetTimesFd(old.get(), s.mtime_ns_, dest_desc);
        if (stored.ok()) {
          s.stored_mtime_ns_ = *stored;
          if (RecordMeta(s, old.get(), "", /*fresh=*/false).ok() &&
              RecordSidecar(s, /*durable=*/true).ok()) {
            ::fsync(old.get());
          }
        }
        ::fstat(old.get(), &existing);
      }
      result.info = InfoOf(s.key_, PathOf(s.key_), existing);
      if (result.info.sha256.empty()) result.info.sha256 = old_sha;
      return result;  // destroying `s` removes the temp file
    }
    DS_ASSIGN_OR_RETURN(result.kept_version, KeepVersion(s.key_, dir, name, existing, old_sha, !grouped));
  } else if (errno != ENOENT) {
    return StorageError(errno, absl::StrCat("stat ", dest_desc));
  }

  if (s.unnamed_.valid()) {
    // Replacing an object (kept above): link can't replace, rename can. Name it first.
    DS_ASSIGN_OR_RETURN(auto temp, CreateTempFile(dir, name, s.run_id_, dest_desc, s.unnamed_.get()));
    s.temp_name_ = std::move(temp.first);
    s.CloseUnnamed();
  }
  DS_RETURN_IF_ERROR(RecordSidecar(s, !grouped));
  if (int e = RenameRetrying(dir, s.temp_name_.c_str(), name.c_str()); e != 0) {
    return StorageError(e, absl::StrCat("rename ", s.temp_desc_, " to ", name));
  }
  s.temp_name_.clear();
  s.placed_ = true;
  result.info = {s.key_, copied.bytes, s.mtime_ns_, copied.sha256};
  return result;
}

// fsync of a directory; filesystems that refuse it on directories still rename atomically.
absl::Status SyncDirFd(int fd, const std::string& desc) {
  if (::fsync(fd) != 0 && errno != EINVAL && errno != EROFS) {
    return StorageError(errno, absl::StrCat("fsync dir ", desc));
  }
  return absl::OkStatus();
}

absl::StatusOr<PutResult> DirStorage::PutFile(const std::string& key,
                                              const std::filesystem::path& source,
                                              const PutOptions& options) {
  DS_ASSIGN_OR_RETURN(std::unique_ptr<DirStagedPut> s, Stage(key, source, options, /*fsync_now=*/true));
  if (s->verify_) DS_RETURN_IF_ERROR(VerifyStaged(*s));
  DS_ASSIGN_OR_RETURN(PutResult result, Finish(*s, /*grouped=*/false));
  if (s->placed_) DS_RETURN_IF_ERROR(SyncDirFd(s->dir_->get(), s->dest_desc_));
  return result;
}

absl::StatusOr<std::unique_ptr<StagedPut>> DirStorage::StagePut(const std::string& key,
                                                               const std::filesystem::path& source,
                                                               const PutOptions& options) {
  DS_ASSIGN_OR_RETURN(std::unique_ptr<DirStagedPut> s, Stage(key, source, options, !syncfs_flushes_));
  return std::unique_ptr<StagedPut>(std::move(s));
}

std::vector<absl::StatusOr<PutResult>> DirStorage::CommitPuts(
    std::vector<std::unique_ptr<StagedPut>> staged) {
  std::vector<absl::StatusOr<PutResult>> out(staged.size(), absl::UnknownError("not committed"));
  std::vector<DirStagedPut*> puts;
  for (size_t i = 0; i < staged.size(); ++i) {
    auto* s = dynamic_cast<DirStagedPut*>(staged[i].get());
    puts.push_back(s);
    if (s == nullptr) out[i] = absl::InternalError(absl::StrCat("staged put of ", staged[i]->key(), " from another backend"));
  }
  const DirStagedPut* any = nullptr;
  for (auto* s : puts) if (s != nullptr) any = s;
  if (any == nullptr) return out;
  // 1. Content durable before any rename (StagePut fsynced each file where syncfs does not).
  auto flush = [&](const char* what) -> absl::Status {
    if (::syncfs(any->dir_->get()) != 0) return StorageError(errno, absl::StrCat("syncfs ", root_, " (", what, ")"));
    return absl::OkStatus();
  };
  if (syncfs_flushes_) {
    if (absl::Status st = flush("file contents"); !st.ok()) {
      for (size_t i = 0; i < puts.size(); ++i) if (puts[i] != nullptr) out[i] = st;
      return out;  // destroying `staged` removes the temp files
    }
  }
  // 2. Verify (opt-in), then rename into place.
  std::vector<int> renamed_dirs;
  for (size_t i = 0; i < puts.size(); ++i) {
    DirStagedPut* s = puts[i];
    if (s == nullptr) continue;
    if (s->verify_) {
      if (absl::Status st = VerifyStaged(*s); !st.ok()) {
        out[i] = st;
        continue;
      }
    }
    out[i] = Finish(*s, syncfs_flushes_);
    if (out[i].ok() && s->placed_) renamed_dirs.push_back(s->dir_->get());
  }
  // 3. The renames durable, then the results stand.
  absl::Status st = absl::OkStatus();
  if (syncfs_flushes_) {
    if (!renamed_dirs.empty()) st = flush("renames");
  } else {
    std::sort(renamed_dirs.begin(), renamed_dirs.end());
    renamed_dirs.erase(std::unique(renamed_dirs.begin(), renamed_dirs.end()), renamed_dirs.end());
    for (int fd : renamed_dirs) {
      if (st.ok()) st = SyncDirFd(fd, root_);
    }
  }
  if (!st.ok()) {
    for (size_t i = 0; i < puts.size(); ++i) {
      if (puts[i] != nullptr && out[i].ok()) out[i] = st;
    }
  }
  return out;
}

absl::StatusOr<std::string> DirStorage::KeepVersion(const std::string& key, int dir_fd,
                                                    const std::string& name, const struct stat& st,
                                                    const std::string& sha256, bool sync_dirs) const {
  std::vector<std::string_view> vparts = {kReservedArea, kVersionsDir};
  for (std::string_view p : SplitKey(key)) vparts.push_back(p);
  DS_ASSIGN_OR_RETURN(UniqueFd root, OpenRoot(root_));
  DS_ASSIGN_OR_RETURN(UniqueFd vdir,
                      OpenDirChain(root.get(), root_, vparts, vparts.size(), /*create=*/true, sync_dirs));
  const std::string vdir_key =
      absl::StrCat(std::string(kReservedArea), "/", std::string(kVersionsDir), "/", key);
  const std::string vdir_path = PathOf(vdir_key);
  const std::string base = absl::StrCat(UtcStamp(), "-", sha256.substr(0, 12));
  auto candidate = [&base](int n) { return n == 0 ? base : absl::StrCat(base, "-", n); };

  // Preferred: a hard link (instant, shares content and metadata).
  bool linked = false;
  std::string version;
  for (int n = 0; n < 1000; ++n) {
    version = candidate(n);
    if (::linkat(dir_fd, name.c_str(), vdir.get(), version.c_str(), 0) == 0) {
      linked = true;
      break;
    }
    int e = errno;
    if (e == EEXIST) continue;
    if (e == EPERM || e == EXDEV || e == ENOTSUP || e == EOPNOTSUPP || e == EMLINK || e == ENOSYS ||
        e == EACCES) {
      break;  // no hard links here: copy instead
    }
    return StorageError(e, absl::StrCat("link ", key, " to ", vdir_path, "/", version));
  }

  if (!linked) {
    // Fallback: copy into a temp file beside the version, then rename it into place.
    UniqueFd src(::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!src.valid()) return StorageError(errno, absl::StrCat("open ", PathOf(key)));
    DS_ASSIGN_OR_RETURN(auto temp, CreateTempFile(vdir.get(), base, "", vdir_path));
    auto& [temp_name, temp_fd] = temp;
    TempFileGuard guard(vdir.get(), temp_name);
    const std::string temp_desc = absl::StrCat(vdir_path, "/", temp_name);
    DS_ASSIGN_OR_RETURN(CopyOutcome copied,
                        CopyAndHash(src.get(), temp_fd.get(), nullptr, 0, nullptr, PathOf(key), temp_desc));
    if (copied.sha256 != sha256) {
      return absl::AbortedError(
          absl::StrCat(PathOf(key), " changed while keeping a version of it"));
    }
    DS_ASSIGN_OR_RETURN(const int64_t stored, SetTimesFd(temp_fd.get(), MtimeNs(st), temp_desc));
    DS_RETURN_IF_ERROR(SetXattrMeta(temp_fd.get(), "", sha256, stored, stored, temp_desc, /*fresh=*/true));
    if (::fsync(temp_fd.get()) != 0) return StorageError(errno, absl::StrCat("fsync ", temp_desc));
    if (int e = temp_fd.Close(); e != 0) return StorageError(e, absl::StrCat("close ", temp_desc));
    for (int n = 0;; ++n) {
      if (n == 1000) {
        return absl::AlreadyExistsError(absl::StrCat("no free version name in ", vdir_path));
      }
      version = candidate(n);
      int e = RenameNoReplace(vdir.get(), temp_name.c_str(), version.c_str());
      if (e == 0) break;
      if (e != EEXIST) return StorageError(e, absl::StrCat("rename ", temp_desc, " to ", version));
    }
    guard.Release();
  }
  if (sync_dirs) DS_RETURN_IF_ERROR(SyncDirectory(vdir_path));
  return absl::StrCat(vdir_key, "/", version);
}

absl::StatusOr<ObjectInfo> DirStorage::Stat(const std::string& key) {
  DS_RETURN_IF_ERROR(ValidateRelativePath(key));
  const std::vector<std::string_view> parts = SplitKey(key);
  if (IsTempName(parts.back())) {
    return absl::NotFoundError(absl::StrCat(key, " is a temp file, not an object"));
  }
  DS_ASSIGN_OR_RETURN(UniqueFd dir, OpenParentDir(parts, /*create=*/false));
  struct stat st;
  const std::string name(parts.back());
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat(Describe(), "/", key, " does not exist"));
    }
    return StorageError(e, absl::StrCat("stat ", Describe(), "/", key));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat(Describe(), "/", key, " is not a regular file"));
  }
  return InfoOf(key, PathOf(key), st);
}

absl::StatusOr<std::string> DirStorage::ReadAll(const std::string& key, size_t max_bytes) {
  DS_RETURN_IF_ERROR(ValidateRelativePath(key));
  const std::vector<std::string_view> parts = SplitKey(key);
  if (IsTempName(parts.back())) {
    return absl::NotFoundError(absl::StrCat(key, " is a temp file, not an object"));
  }
  DS_ASSIGN_OR_RETURN(UniqueFd dir, OpenParentDir(parts, /*create=*/false));
  const std::string name(parts.back());
  const std::string desc = absl::StrCat(Describe(), "/", key);
  // O_NONBLOCK: a FIFO in the way must not hang us; it is rejected by the type check below.
  UniqueFd fd(::openat(dir.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    int e = errno;
    if (e == ENOENT || e == ENOTDIR || e == ELOOP) {
      return absl::NotFoundError(absl::StrCat(desc, " does not exist"));
    }
    return StorageError(e, absl::StrCat("open ", desc));
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return StorageError(errno, absl::StrCat("stat ", desc));
  if (!S_ISREG(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat(desc, " is not a regular file"));
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(desc, " has ", st.st_size, " bytes, more than ", max_bytes));
  }
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  size_t have = 0;
  for (;;) {
    if (have == out.size()) {  // the file may have grown since fstat: read on, up to max_bytes + 1
      if (out.size() > max_bytes) break;
      const size_t room = max_bytes - out.size();
      out.resize(out.size() + (room < 65536 ? room + 1 : 65536));
    }
    ssize_t n = ::read(fd.get(), out.data() + have, out.size() - have);
    if (n < 0) {
      if (errno == EINTR) continue;
      return StorageError(errno, absl::StrCat("read ", desc));
    }
    if (n == 0) break;
    have += static_cast<size_t>(n);
  }
  out.resize(have);
  if (out.size() > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat(desc, " is larger than ", max_bytes, " bytes"));
  }
  return out;
}

// Visits every non-directory entry below root/`start` ("" = the root itself) without following
// symlinks: fn(dir_fd, name, key, d_type) with key the '/'-joined path from the root and d_type
// a DT_* value. Skips the top-level reserved area when walking from the root, and entries whose
// key is not a valid key (names made by other tools). A missing or non-directory `start` is
// an empty tree. Entries that vanish during the walk are skipped.
absl::Status WalkTree(
    const std::string& root, const std::string& start,
    const std::function<void(int, const char*, const std::string&, unsigned char)>& fn) {
  DS_ASSIGN_OR_RETURN(UniqueFd root_fd, OpenRoot(root));
  std::vector<std::pair<std::string, UniqueFd>> pending;  // dirs to read: key, open fd (or none)
  {
    std::vector<std::string_view> parts;
    if (!start.empty()) parts = SplitKey(start);
    absl::StatusOr<UniqueFd> dir =
        OpenDirChain(root_fd.get(), root, parts, parts.size(), /*create=*/false);
    if (absl::IsNotFound(dir.status()) || absl::IsFailedPrecondition(dir.status())) {
      return absl::OkStatus();
    }
    if (!dir.ok()) return dir.status();
    pending.emplace_back(start, std::move(*dir));
  }
  while (!pending.empty()) {
    auto [rel, fd] = std::move(pending.back());
    pending.pop_back();
    if (!fd.valid()) {
      fd = UniqueFd(
          ::openat(root_fd.get(), rel.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!fd.valid()) {
        int e = errno;
        if (e == ENOENT || e == ENOTDIR || e == ELOOP) continue;  // changed under us
        return StorageError(e, absl::StrCat("open dir ", root, "/", rel));
      }
    }
    DIR* d = ::fdopendir(fd.get());
    if (d == nullptr) return StorageError(errno, absl::StrCat("opendir ", root, "/", rel));
    const int dfd = fd.Release();  // now owned by `d`
    std::string key_prefix = rel.empty() ? "" : absl::StrCat(rel, "/");
    absl::Status status;
    for (;;) {
      errno = 0;
      struct dirent* ent = ::readdir(d);
      if (ent == nullptr) {
        if (errno != 0) status = StorageError(errno, absl::StrCat("readdir ", root, "/", rel));
        break;
      }
      const char* name = ent->d_name;
      if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
      unsigned char type = ent->d_type;
      if (type == DT_UNKNOWN) {  // some filesystems do not fill d_type
        struct stat st;
        if (::fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = IFTODT(st.st_mode);
      }
      if (rel.empty() && kReservedArea == name) continue;
      std::string key = absl::StrCat(key_prefix, name);
      if (!ValidateRelativePath(key).ok()) continue;
      if (type == DT_DIR) {
        pending.emplace_back(std::move(key), UniqueFd());
      } else {
        fn(dfd, name, key, type);
      }
    }
    ::closedir(d);
    DS_RETURN_IF_ERROR(status);
  }
  return absl::OkStatus();
}

absl::Status DirStorage::List(const std::string& prefix,
                              const std::function<void(const ObjectInfo&)>& fn) {
  if (!prefix.empty()) {
    DS_RETURN_IF_ERROR(ValidateRelativePath(prefix));
    if (SplitKey(prefix).front() == kReservedArea) return absl::OkStatus();  // never listed
  }
  std::string path;
  return WalkTree(
      root_, prefix, [&](int dir_fd, const char* name, const std::string& key, unsigned char type) {
        if (type != DT_REG || IsTempName(name)) return;
        struct stat st;
        if (::fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) return;
        path.assign(root_).append("/").append(key);
        fn(InfoOf(key, path, st));
      });
}

}  // namespace

absl::StatusOr<std::unique_ptr<Storage>> OpenDirStorage(const std::string& root) {
  return OpenDirStorage(root, DirStorageOptions{});
}

absl::StatusOr<std::unique_ptr<Storage>> OpenDirStorage(const std::string& root,
                                                        const DirStorageOptions& options) {
  if (root.empty()) return absl::InvalidArgumentError("storage root is empty");
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(root, ec);
  if (ec) return ErrnoStatus(ec.value(), absl::StrCat("resolve storage root ", root));
  std::string path = abs.lexically_normal().string();
  while (path.size() > 1 && path.back() == '/') path.pop_back();

  std::filesystem::create_directories(path, ec);
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return ErrnoStatus(ec ? ec.value() : errno, absl::StrCat("create storage root ", path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(absl::StrCat("storage root ", path, " is not a directory"));
  }

  // Prove we can write (access() is unreliable on network shares) and find out what the share
  // can hold and do, in a scratch folder that is removed again.
  DS_ASSIGN_OR_RETURN(UniqueFd root_fd, OpenRoot(path));
  DS_ASSIGN_OR_RETURN(DirProbe probe, ProbeDirStorage(root_fd.get(), path, options.unnamed_files));
  const int max_unnamed = probe.features.unnamed_files ? UnnamedBudgetMax() : 0;
  return std::make_unique<DirStorage>(std::move(path), std::move(probe.features), probe.syncfs_flushes,
                                      max_unnamed);
}

absl::StatusOr<std::vector<std::string>> ListTempFiles(const std::string& root,
                                                       const std::string& prefix) {
  std::vector<std::string> starts;
  const std::string areas[] = {absl::StrCat(std::string(kReservedArea), "/", std::string(kVersionsDir)),
                               absl::StrCat(std::string(kReservedArea), "/", kSidecarDir)};
  if (prefix.empty()) {
    starts = {"", areas[0], areas[1]};
  } else {
    DS_RETURN_IF_ERROR(ValidateRelativePath(prefix));
    starts.push_back(prefix);
    if (SplitKey(prefix).front() != kReservedArea) {
      for (const std::string& area : areas) starts.push_back(absl::StrCat(area, "/", prefix));
    }
  }
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(root, ec);
  if (ec) return ErrnoStatus(ec.value(), absl::StrCat("resolve storage root ", root));
  std::string root_path = abs.lexically_normal().string();
  while (root_path.size() > 1 && root_path.back() == '/') root_path.pop_back();
  std::vector<std::string> out;
  for (const std::string& start : starts) {
    DS_RETURN_IF_ERROR(WalkTree(
        root_path, start, [&](int, const char* name, const std::string& key, unsigned char type) {
          if (type == DT_REG && IsTempName(name)) out.push_back(key);
        }));
  }
  return out;
}

}  // namespace ds
