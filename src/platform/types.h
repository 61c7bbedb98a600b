// Plain value types of the platform layer: what a file is and how to open one.
#pragma once

#include <cstdint>

namespace ds::platform {

// The OS handle behind a File or Directory. POSIX: a file descriptor; Windows: a HANDLE.
#ifdef _WIN32
using NativeHandle = void*;
#else
using NativeHandle = int;
#endif

enum class FileType { kFile, kDirectory, kLink, kOther };

// Which file an object is, stable while it exists: POSIX st_dev + st_ino; Windows the volume
// serial number + the 128-bit file id of FILE_ID_INFO (file_high is 0 on POSIX and NTFS).
struct FileId {
  uint64_t volume = 0;
  uint64_t file = 0;
  uint64_t file_high = 0;
  friend bool operator==(const FileId&, const FileId&) = default;
};

struct FileInfo {
  FileId id;
  FileType type = FileType::kOther;
  uint64_t size = 0;         // bytes (of the link itself for kLink)
  int64_t mtime_ns = 0;      // last modification, Unix nanoseconds (Windows: 100 ns resolution)
  uint32_t permissions = 0;  // POSIX mode bits & 07777; Windows: 0644, or 0444 when read-only
  uint64_t link_count = 1;   // hard links to the file
};

enum class Access { kRead, kWrite, kReadWrite };

enum class Disposition {
  kOpenExisting,      // NotFound when missing
  kCreateNew,         // AlreadyExists when present (O_EXCL; CREATE_NEW)
  kOpenOrCreate,      // O_CREAT
  kCreateOrTruncate,  // O_CREAT | O_TRUNC
};

struct OpenOptions {
  Access access = Access::kRead;
  Disposition disposition = Disposition::kOpenExisting;
  // False: a link as the last component is refused with ErrorKind::kIsLink (O_NOFOLLOW; Windows:
  // FILE_FLAG_OPEN_REPARSE_POINT + a check). Links in the earlier components of a relative name
  // are followed on POSIX; callers walk directories one Directory at a time to avoid them.
  bool follow_links = false;
  // True: only a regular file opens; anything else (a FIFO, device, socket, directory) fails with
  // FailedPrecondition, kind kNoDevice (kIsDirectory for a directory), and a FIFO never blocks
  // the open (POSIX: O_NONBLOCK while opening, cleared once it is known to be a regular file).
  bool regular_only = false;
  // True: the open never waits for a FIFO's writer (POSIX O_NONBLOCK, kept on the handle: reads
  // of a regular file are unaffected). Cheaper than regular_only for a caller that checks Info()
  // itself. No effect on Windows.
  bool non_blocking = false;
  uint32_t permissions = 0644;  // for a created file (POSIX mode, before umask)
};

struct SpaceInfo {
  uint64_t total = 0;            // bytes of the volume
  uint64_t available = 0;        // bytes an unprivileged writer may still use
  uint64_t max_name_length = 0;  // bytes of one path component the volume takes (0: unknown)
};

// Rename or commit over an existing name, or not.
enum class Replace { kNo, kYes };

}  // namespace ds::platform
