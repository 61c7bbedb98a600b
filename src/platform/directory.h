// An open directory: listing, and every name operation relative to it (the *at() family), so a
// walk never follows a link it did not choose to and a rename is atomic within one directory.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "platform/file.h"
#include "platform/types.h"

namespace ds::platform {

// One entry of Directory::List. `name` is one path component in UTF-8 (never "." or "..").
struct DirEntry {
  std::string name;
  FileType type = FileType::kOther;  // always known (a DT_UNKNOWN entry is lstat'ed)
  // The entry itself (links not followed): always with ListDetail::kInfo, and with kTypeOnly
  // when finding the type took a stat anyway (POSIX DT_UNKNOWN). Empty when describing it failed:
  // then info_status says why, and `type` is kOther (an entry removed meanwhile is not listed).
  std::optional<FileInfo> info;
  absl::Status info_status;
};

enum class ListDetail {
  kTypeOnly,  // names and types (POSIX: readdir alone, no per-entry call)
  kInfo,      // plus FileInfo (POSIX: one fstatat per entry; Windows: from the listing itself)
};

enum class RemoveKind { kFile, kDirectory };

// Owns one open directory handle; move-only. Thread-compatible: the const methods may run
// concurrently on one Directory (List included: it reads through its own handle).
// Names passed to the *At methods are relative to this directory, UTF-8; a name with '/' walks
// through subdirectories (following links there on POSIX: pass single components when that
// matters). Errors name display_path()/name.
class Directory : public OwnedHandle {
 public:
  Directory() = default;
  Directory(Directory&& other) noexcept = default;
  Directory& operator=(Directory&& other) noexcept = default;
  ~Directory() = default;

  // Opens the directory at `path`. follow_links false: a link as the last component is refused
  // (ErrorKind::kIsLink). Errors: NotFound, PermissionDenied, NotFound with kNotDirectory for a
  // file, others.
  [[nodiscard]] static absl::StatusOr<Directory> Open(const std::filesystem::path& path,
                                                      bool follow_links = true);

  // Opens subdirectory `name` of this one; never follows a link as its last component.
  [[nodiscard]] absl::StatusOr<Directory> OpenDirectory(std::string_view name) const;

  // Opens file `name` in this directory (O_NOFOLLOW unless options.follow_links).
  [[nodiscard]] absl::StatusOr<File> OpenFile(std::string_view name,
                                              const OpenOptions& options) const;


  // Calls `fn` once per entry, in no particular order, until it returns non-OK; returns that
  // status, or the listing's own error. Entries made or removed during the listing may or may
  // not be seen.
  [[nodiscard]] absl::Status List(absl::FunctionRef<absl::Status(const DirEntry&)> fn,
                                  ListDetail detail = ListDetail::kTypeOnly) const;

  // Describes `name`; follow_links false describes a link itself.
  [[nodiscard]] absl::StatusOr<FileInfo> StatAt(std::string_view name,
                                                bool follow_links = false) const;
  [[nodiscard]] absl::StatusOr<FileInfo> Info() const;  // this directory itself

  // Creates directory `name`. Errors: AlreadyExists (whatever is there), NotFound (a parent).
  [[nodiscard]] absl::Status MakeDirAt(std::string_view name, uint32_t permissions = 0755) const;

  // Removes file (or link) / empty directory `name`. Errors: NotFound; kNotEmpty for a directory
  // with entries; kIsDirectory when kFile names a directory.
  [[nodiscard]] absl::Status RemoveAt(std::string_view name,
                                      RemoveKind kind = RemoveKind::kFile) const;

  // Renames `from` (in this directory) to `to` in `to_dir` (may be *this), atomically.
  // Replace::kNo fails with AlreadyExists when `to` exists (renameat2 RENAME_NOREPLACE; where
  // the filesystem lacks it, link + unlink, so only for files). Replace::kYes replaces a file.
  [[nodiscard]] absl::Status RenameAt(std::string_view from, const Directory& to_dir,
                                      std::string_view to, Replace replace) const;

  // Makes `to` in `to_dir` a second name of file `from` (not following links). Errors:
  // AlreadyExists, Unimplemented (kNotSupported) where the filesystem has no hard links,
  // kCrossDevice across volumes.
  [[nodiscard]] absl::Status HardLinkAt(std::string_view from, const Directory& to_dir,
                                        std::string_view to) const;

  // Sets the modification time of `name` (not following a link), Unix nanoseconds.
  [[nodiscard]] absl::Status SetModificationTimeAt(std::string_view name, int64_t mtime_ns) const;

  // Makes this directory's entries (renames, links, removals) durable (fsync of the directory;
  // Windows: no-op, NTFS journals names). Filesystems that refuse (EINVAL) count as OK.
  [[nodiscard]] absl::Status Flush() const;

  // Makes everything written on this directory's filesystem durable, other files included
  // (syncfs; Windows: Unimplemented — callers flush per file there).
  [[nodiscard]] absl::Status SyncFilesystem() const;

  // Free space and name limits of this directory's volume (fstatvfs; GetDiskFreeSpaceExW).
  [[nodiscard]] absl::StatusOr<SpaceInfo> Space() const;

  // See File::native().
  NativeHandle native() const { return handle_; }

 private:
  Directory(NativeHandle handle, std::string display)
      : OwnedHandle(handle, std::move(display)) {}
  friend class StagedFile;
};

// Creates a new, empty directory `<temp>/<prefix><random>` that only this user may enter (mode
// 0700), where <temp> is std::filesystem::temp_directory_path() (TMPDIR, else /tmp; Windows:
// GetTempPathW), and returns its path. The caller removes it. POSIX mkdtemp; Windows:
// CreateDirectoryW under a random name, again while the name is taken. Errors as ErrnoToStatus
// ("make a temporary directory in /tmp: ...").
[[nodiscard]] absl::StatusOr<std::filesystem::path> MakeTempDirectory(std::string_view prefix);

}  // namespace ds::platform
