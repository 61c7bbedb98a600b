#include "storage/dir/dir_names.h"

#include "absl/strings/str_cat.h"

namespace ds {

std::optional<std::string> OtherSpelling(const platform::Directory& dir, const std::string& name,
                                         const StorageFeatures& features) {
  const std::string folded = FoldedKey(features, name);
  std::optional<std::string> other;
  bool exact = false;
  // A listing that fails (the folder vanished, the share went away) ends the search: what was
  // seen so far is the answer.
  (void)dir.List([&](const platform::DirEntry& e) {
    if (e.name == name) {
      exact = true;
      return absl::CancelledError("found");  // stops the listing
    }
    if (!other && FoldedKey(features, e.name) == folded) other = e.name;
    return absl::OkStatus();
  });
  return exact ? std::nullopt : other;
}

FoldClaims::Claim::~Claim() {
  MutexLock lock(&owner_->mu_);
  owner_->writing_.erase(folded_);
}

absl::StatusOr<std::unique_ptr<FoldClaims::Claim>> FoldClaims::Take(const StorageFeatures& features,
                                                                    const std::string& key) {
  std::string folded = FoldedKey(features, key);
  MutexLock lock(&mu_);
  auto [it, fresh] = writing_.emplace(folded, key);
  if (!fresh) {
    if (it->second == key)
      return absl::AbortedError(absl::StrCat("another put of '", key, "' is in flight"));
    return NameRefusal(absl::AlreadyExistsError(absl::StrCat(
        "name '", key, "' collides by case with '", it->second,
        "', which is being written now: this destination does not tell names apart by case")));
  }
  return std::make_unique<Claim>(shared_from_this(), std::move(folded));
}

}  // namespace ds
