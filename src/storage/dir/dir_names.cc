#include "storage/dir/dir_names.h"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"

namespace ds {

std::optional<std::string> OtherSpelling(int dir_fd, const std::string& name,
                                         const StorageFeatures& features) {
  const int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    return std::nullopt;
  }
  const std::string folded = FoldedKey(features, name);
  std::optional<std::string> other;
  bool exact = false;
  while (struct dirent* e = ::readdir(d)) {
    if (name == e->d_name) {
      exact = true;
      break;
    }
    if (!other && FoldedKey(features, e->d_name) == folded) other = e->d_name;
  }
  ::closedir(d);
  return exact ? std::nullopt : other;
}

FoldClaims::Claim::~Claim() {
  std::lock_guard<std::mutex> lock(owner_->mu_);
  owner_->writing_.erase(folded_);
}

absl::StatusOr<std::unique_ptr<FoldClaims::Claim>> FoldClaims::Take(const StorageFeatures& features,
                                                                   const std::string& key) {
  std::string folded = FoldedKey(features, key);
  std::lock_guard<std::mutex> lock(mu_);
  auto [it, fresh] = writing_.emplace(folded, key);
  if (!fresh) {
    if (it->second == key) return absl::AbortedError(absl::StrCat("another put of '", key, "' is in flight"));
    return NameRefusal(absl::AlreadyExistsError(absl::StrCat(
        "name '", key, "' collides by case with '", it->second,
        "', which is being written now: this destination does not tell names apart by case")));
  }
  return std::make_unique<Claim>(shared_from_this(), std::move(folded));
}

}  // namespace ds
