#include "platform/directory.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "platform/posix/internal.h"

namespace ds::platform {

using internal::Errno;
using internal::Join;

namespace {

FileType TypeOfDirent(unsigned char d_type) {
  switch (d_type) {
    case DT_REG:
      return FileType::kFile;
    case DT_DIR:
      return FileType::kDirectory;
    case DT_LNK:
      return FileType::kLink;
    default:
      return FileType::kOther;
  }
}

// Closes a DIR* on scope exit.
struct DirCloser {
  DIR* dir;
  ~DirCloser() { ::closedir(dir); }
};

// Fills entry.type (and, for kInfo, entry.info/info_status) for one readdir entry. Returns false
// when the entry vanished meanwhile (skip it).
bool Describe(int dir_fd, const struct dirent& de, ListDetail detail, DirEntry& entry,
              const std::string& display) {
  entry.type = TypeOfDirent(de.d_type);
  if (detail == ListDetail::kTypeOnly && de.d_type != DT_UNKNOWN) return true;
  struct stat st;
  if (::fstatat(dir_fd, de.d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return false;
    entry.info_status = Errno("stat", Join(display, entry.name));
    entry.type = FileType::kOther;
    return true;
  }
  entry.type = internal::TypeOfMode(st.st_mode);
  entry.info = internal::InfoOfStat(st);
  return true;
}

// open(O_DIRECTORY | O_NOFOLLOW) says ENOTDIR for a link: tell it apart (kind kIsLink).
absl::Status OpenDirError(int at_fd, const std::string& name, const std::string& display) {
  const int err = errno;
  absl::Status s = ErrnoToStatus(err, absl::StrCat("open directory ", display));
  struct stat st;
  if (err == ENOTDIR && ::fstatat(at_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISLNK(st.st_mode)) {
    return WithKind(std::move(s), ErrorKind::kIsLink);
  }
  return s;
}

}  // namespace

absl::StatusOr<Directory> Directory::Open(const std::filesystem::path& path, bool follow_links) {
  const int flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC | (follow_links ? 0 : O_NOFOLLOW);
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) {
    if (follow_links) return Errno("open directory", path.native());
    return OpenDirError(AT_FDCWD, path.native(), path.native());
  }
  return Directory(fd, path.native());
}

absl::StatusOr<Directory> Directory::OpenDirectory(std::string_view name) const {
  const std::string n(name);
  std::string display = Join(display_, name);
  const int fd = ::openat(handle_, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return OpenDirError(handle_, n, display);
  return Directory(fd, std::move(display));
}

absl::StatusOr<File> Directory::OpenFile(std::string_view name, const OpenOptions& options) const {
  std::string display = Join(display_, name);
  auto fd = internal::OpenAtChecked(handle_, std::string(name), options, display);
  if (!fd.ok()) return fd.status();
  return File::Adopt(*fd, std::move(display));
}


absl::Status Directory::List(absl::FunctionRef<absl::Status(const DirEntry&)> fn,
                             ListDetail detail) const {
  // A DIR* of its own (over a fresh open of ".", not a dup: a dup would share the position
  // with concurrent listings), so List is const and may run concurrently.
  const int fd = ::openat(handle_, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("list", display_);
  DIR* dir = ::fdopendir(fd);
  if (dir == nullptr) {
    absl::Status s = Errno("list", display_);
    ::close(fd);
    return s;
  }
  DirCloser closer{dir};
  for (;;) {
    errno = 0;
    const struct dirent* de = ::readdir(dir);
    if (de == nullptr) {
      if (errno != 0) return Errno("list", display_);
      return absl::OkStatus();
    }
    const std::string_view name(de->d_name);
    if (name == "." || name == "..") continue;
    DirEntry entry;
    entry.name = std::string(name);
    if (!Describe(handle_, *de, detail, entry, display_)) continue;
    absl::Status s = fn(entry);
    if (!s.ok()) return s;
  }
}

absl::StatusOr<FileInfo> Directory::StatAt(std::string_view name, bool follow_links) const {
  struct stat st;
  const std::string n(name);
  if (::fstatat(handle_, n.c_str(), &st, follow_links ? 0 : AT_SYMLINK_NOFOLLOW) != 0) {
    return Errno("stat", Join(display_, name));
  }
  return internal::InfoOfStat(st);
}

absl::StatusOr<FileInfo> Directory::Info() const {
  struct stat st;
  if (::fstat(handle_, &st) != 0) return Errno("stat", display_);
  return internal::InfoOfStat(st);
}

absl::Status Directory::MakeDirAt(std::string_view name, uint32_t permissions) const {
  const std::string n(name);
  if (::mkdirat(handle_, n.c_str(), static_cast<mode_t>(permissions)) != 0) {
    return Errno("mkdir", Join(display_, name));
  }
  return absl::OkStatus();
}

absl::Status Directory::RemoveAt(std::string_view name, RemoveKind kind) const {
  const std::string n(name);
  if (::unlinkat(handle_, n.c_str(), kind == RemoveKind::kDirectory ? AT_REMOVEDIR : 0) == 0) {
    return absl::OkStatus();
  }
  const int err = errno;
  const std::string what = absl::StrCat("remove ", Join(display_, name));
  // rmdir may say EEXIST for a non-empty directory (POSIX allows both).
  if (kind == RemoveKind::kDirectory && err == EEXIST) {
    return WithKind(ErrnoToStatus(ENOTEMPTY, what), ErrorKind::kNotEmpty);
  }
  return ErrnoToStatus(err, what);
}

namespace {

// Rename without replace where renameat2 is missing (EINVAL/ENOSYS): link then unlink. Files
// only; `to` never appears half-made.
absl::Status LinkThenUnlink(int from_dir, const std::string& from, int to_dir,
                            const std::string& to, const std::string& display) {
  if (::linkat(from_dir, from.c_str(), to_dir, to.c_str(), 0) != 0) return Errno("rename", display);
  if (::unlinkat(from_dir, from.c_str(), 0) != 0) return Errno("rename (unlink)", display);
  return absl::OkStatus();
}

}  // namespace

absl::Status Directory::RenameAt(std::string_view from, const Directory& to_dir,
                                 std::string_view to, Replace replace) const {
  const std::string f(from), t(to);
  const std::string display = absl::StrCat(Join(display_, from), " to ", Join(to_dir.display_, to));
  if (replace == Replace::kYes) {
    if (::renameat(handle_, f.c_str(), to_dir.handle_, t.c_str()) != 0) {
      return Errno("rename", display);
    }
    return absl::OkStatus();
  }
  if (::renameat2(handle_, f.c_str(), to_dir.handle_, t.c_str(), RENAME_NOREPLACE) == 0) {
    return absl::OkStatus();
  }
  if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
    return LinkThenUnlink(handle_, f, to_dir.handle_, t, display);
  }
  return Errno("rename", display);
}

absl::Status Directory::HardLinkAt(std::string_view from, const Directory& to_dir,
                                   std::string_view to) const {
  const std::string f(from), t(to);
  if (::linkat(handle_, f.c_str(), to_dir.handle_, t.c_str(), 0) != 0) {
    const int err = errno;
    const std::string what =
        absl::StrCat("link ", Join(display_, from), " as ", Join(to_dir.display_, to));
    // EPERM from link(2) means "this filesystem does not do hard links" (e.g. FAT, some SMB).
    if (err == EPERM || err == EMLINK) {
      return WithKind(absl::UnimplementedError(ErrnoToStatus(err, what).message()),
                      ErrorKind::kNotSupported);
    }
    return ErrnoToStatus(err, what);
  }
  return absl::OkStatus();
}

absl::Status Directory::SetModificationTimeAt(std::string_view name, int64_t mtime_ns) const {
  struct timespec times[2];
  internal::MtimeOnly(mtime_ns, times);
  const std::string n(name);
  if (::utimensat(handle_, n.c_str(), times, AT_SYMLINK_NOFOLLOW) != 0) {
    return Errno("set mtime of", Join(display_, name));
  }
  return absl::OkStatus();
}

absl::Status Directory::Flush() const {
  if (::fsync(handle_) != 0 && errno != EINVAL && errno != EROFS) {
    return Errno("fsync directory", display_);
  }
  return absl::OkStatus();
}

absl::Status Directory::SyncFilesystem() const {
  if (::syncfs(handle_) != 0) return Errno("syncfs", display_);
  return absl::OkStatus();
}

absl::StatusOr<std::filesystem::path> MakeTempDirectory(std::string_view prefix) {
  std::error_code ec;
  const std::filesystem::path temp = std::filesystem::temp_directory_path(ec);
  if (ec) return ErrnoToStatus(ec.value(), "find the temporary directory");
  std::string pattern = (temp / absl::StrCat(internal::Av(prefix), "XXXXXX")).native();
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Errno("make a temporary directory in", temp.native());
  }
  return std::filesystem::path(pattern);
}

}  // namespace ds::platform
