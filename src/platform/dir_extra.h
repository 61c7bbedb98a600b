// What the directory storage backend (src/storage/dir) asks of the operating system beyond the
// general interface of file.h and directory.h: what kind of volume a directory is on, unnamed
// files linked under a name of the caller's choosing, both timestamps at once, attributes by path,
// early write-back, the open-handle limit, and predicates on the platform's error statuses. POSIX
// implementation in posix/dir_extra.cc; the Windows one follows with issue 19.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/directory.h"
#include "platform/file.h"
#include "platform/types.h"

namespace ds::platform {

// The filesystem a directory is on.
struct VolumeKind {
  // "ext4" (also ext2/3), "xfs", "btrfs", "f2fs", "tmpfs", "overlayfs", "nfs", "smb", "smb2",
  // "cifs", "fuse", else "0x<magic>"; "unknown" when the OS does not say.
  std::string filesystem = "unknown";
  // A local block filesystem (or tmpfs/overlayfs), where one Directory::SyncFilesystem writes
  // back every dirty page and commits the journal before returning. False for network shares and
  // FUSE, which need a flush per file and per directory.
  bool sync_filesystem_flushes = false;
};
[[nodiscard]] VolumeKind VolumeKindOf(const Directory& dir);

// The soft limit on handles this process may hold open; UINT64_MAX when unlimited, 0 when the
// OS does not say.
[[nodiscard]] uint64_t OpenHandleLimit();

// A new file without a name in `dir` (Linux O_TMPFILE), open read-write: a crash leaves nothing
// behind. Errors: Unimplemented with ErrorKind::kNotSupported when the volume cannot make one
// (the caller then uses a named temp file); others as ErrnoToStatus.
[[nodiscard]] absl::StatusOr<File> CreateUnnamedFile(const Directory& dir,
                                                     uint32_t permissions = 0644);

// Gives the unnamed `file` (from CreateUnnamedFile, not yet linked) the name `name` in `dir`.
// Errors: AlreadyExists when the name is taken (the file stays unnamed and may be linked under
// another name); others as ErrnoToStatus. Thread-safe.
[[nodiscard]] absl::Status LinkUnnamedFile(const File& file, const Directory& dir,
                                           std::string_view name);

// Sets both the access and the modification time of `file` / of `name` in `dir` (a link itself,
// not followed) to `mtime_ns` (Unix nanoseconds). Unlike File::SetModificationTime it sets the
// access time too: some FUSE clients ignore an mtime given beside "leave the atime alone". The
// volume keeps the time at its own precision: read it back to know what it kept.
[[nodiscard]] absl::Status SetFileTimes(File& file, int64_t mtime_ns);
[[nodiscard]] absl::Status SetFileTimesAt(const Directory& dir, std::string_view name,
                                          int64_t mtime_ns);

// Starts writing `file`'s dirty data back to the device without waiting (sync_file_range);
// a hint, no durability: errors are ignored.
void StartWriteback(const File& file);

// The named attributes of the file at `path` (a link itself, not followed), without opening it:
// the same attributes and errors as File::GetAttribute/SetAttribute/RemoveAttribute.
[[nodiscard]] absl::StatusOr<std::string> GetAttributeAt(const std::filesystem::path& path,
                                                         std::string_view name);
[[nodiscard]] absl::Status SetAttributeAt(const std::filesystem::path& path, std::string_view name,
                                          std::string_view value);
[[nodiscard]] absl::Status RemoveAttributeAt(const std::filesystem::path& path,
                                             std::string_view name);

// The predicates below read the ErrorKind of a status of ErrnoToStatus (KindOf), so they hold
// through platform::WithContext too.
//
// True for a status that means the volume (typically a network share) cannot be reached now:
// ErrorKind::kUnreachable, or kNoDevice (ENODEV, ENXIO: a FUSE share whose daemon went away).
[[nodiscard]] bool IsUnreachable(const absl::Status& status);

// True when the volume cannot do the operation at all: ErrorKind::kNotSupported (ENOSYS too: a
// FUSE filesystem that lacks the call) or Unimplemented.
[[nodiscard]] bool IsNotSupported(const absl::Status& status);

// True for a status that means another client holds the file open right now
// (ErrorKind::kBusy, EBUSY on an SMB share; kSharingViolation on Windows): retrying soon may
// succeed.
[[nodiscard]] bool IsBusy(const absl::Status& status);

}  // namespace ds::platform
