#include "platform/staged_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "platform/posix/internal.h"

namespace ds::platform {

using internal::Av;
using internal::Join;

namespace {

// An unnamed file in `dir_fd` (O_TMPFILE), or -1 with errno when the filesystem cannot.
int OpenUnnamed(int dir_fd, uint32_t permissions) {
#ifdef O_TMPFILE
  return ::openat(dir_fd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, static_cast<mode_t>(permissions));
#else
  errno = EOPNOTSUPP;
  return -1;
#endif
}

// Gives the unnamed file `fd` the name `name` in `dir_fd` (fails with EEXIST when taken).
int LinkUnnamed(int fd, int dir_fd, const std::string& name) {
  const std::string proc = absl::StrCat("/proc/self/fd/", fd);
  return ::linkat(AT_FDCWD, proc.c_str(), dir_fd, name.c_str(), AT_SYMLINK_FOLLOW);
}

}  // namespace

absl::StatusOr<StagedFile> StagedFile::Create(const Directory& dir, std::string_view name_hint,
                                              uint32_t permissions, StagingMode mode) {
  if (mode == StagingMode::kAuto) {
    const int fd = OpenUnnamed(dir.handle_, permissions);
    if (fd >= 0) {
      return StagedFile(&dir, File::Adopt(fd, Join(dir.display_, "(unnamed)")), "");
    }
    // EOPNOTSUPP/EISDIR/EINVAL: no O_TMPFILE here; anything else fails a named temp as well,
    // which then reports it.
  }
  OpenOptions options;
  options.access = Access::kReadWrite;
  options.disposition = Disposition::kCreateNew;
  options.permissions = permissions;
  for (int attempt = 0;; ++attempt) {
    std::string name = absl::StrCat(".", Av(name_hint), ".tmp-", internal::RandomSuffix());
    auto file = dir.OpenFile(name, options);
    if (file.ok()) return StagedFile(&dir, *std::move(file), std::move(name));
    if (!absl::IsAlreadyExists(file.status()) || attempt == 8) return file.status();
  }
}

StagedFile::StagedFile(StagedFile&& other) noexcept
    : dir_(other.dir_),
      file_(std::move(other.file_)),
      temp_name_(std::move(other.temp_name_)),
      committed_(std::exchange(other.committed_, true)) {}

StagedFile& StagedFile::operator=(StagedFile&& other) noexcept {
  if (this != &other) {
    Discard();
    dir_ = other.dir_;
    file_ = std::move(other.file_);
    temp_name_ = std::move(other.temp_name_);
    committed_ = std::exchange(other.committed_, true);
  }
  return *this;
}

StagedFile::~StagedFile() { Discard(); }

void StagedFile::Discard() {
  if (!committed_ && !temp_name_.empty() && dir_ != nullptr) {
    (void)dir_->RemoveAt(temp_name_);
  }
  committed_ = true;
}

absl::Status StagedFile::Commit(std::string_view final_name, const CommitOptions& options) {
  if (options.flush) {
    if (absl::Status s = file_.FlushData(); !s.ok()) return s;
  }
  const std::string name(final_name);
  const std::string display = Join(dir_->display_, final_name);
  if (!unnamed()) {
    if (absl::Status s = dir_->RenameAt(temp_name_, *dir_, name, options.replace); !s.ok()) {
      return s;
    }
  } else if (options.replace == Replace::kNo) {
    if (LinkUnnamed(file_.native(), dir_->handle_, name) != 0) {
      return internal::Errno("commit", display);
    }
  } else {
    // linkat cannot replace: link under a fresh temp name, then rename that over the final one.
    std::string temp = absl::StrCat(".", Av(final_name), ".tmp-", internal::RandomSuffix());
    if (LinkUnnamed(file_.native(), dir_->handle_, temp) != 0) {
      return internal::Errno("commit", display);
    }
    if (absl::Status s = dir_->RenameAt(temp, *dir_, name, Replace::kYes); !s.ok()) {
      (void)dir_->RemoveAt(temp);
      return s;
    }
  }
  committed_ = true;
  temp_name_.clear();
  if (options.flush) return dir_->Flush();
  return absl::OkStatus();
}

}  // namespace ds::platform
