// Names on case-insensitive shares: which stored name a key's component resolves to, and the
// claims that keep two puts of one folded key from running at once.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>

#include "common/mutex.h"
#include "common/status.h"
#include "platform/directory.h"
#include "storage/storage.h"

namespace ds {

// The name stored in the directory `dir` that is `name` case-folded but spelt differently
// (`Case.txt` for `case.txt`); nullopt when `name` itself is stored or nothing folds to it.
// Reads the whole directory: for case-insensitive shares, where a lookup of `name` may find
// another spelling.
[[nodiscard]] std::optional<std::string> OtherSpelling(const platform::Directory& dir,
                                                       const std::string& name,
                                                       const StorageFeatures& features);

// Folded keys of puts in flight, shared by a storage and the claims it hands out.
class FoldClaims : public std::enable_shared_from_this<FoldClaims> {
 public:
  // Released when destroyed.
  class Claim {
   public:
    Claim(std::shared_ptr<FoldClaims> owner, std::string folded)
        : owner_(std::move(owner)), folded_(std::move(folded)) {}
    Claim(const Claim&) = delete;
    Claim& operator=(const Claim&) = delete;
    ~Claim();

   private:
    std::shared_ptr<FoldClaims> owner_;
    std::string folded_;
  };

  // Claims `key`'s folded form. A name refusal (AlreadyExists) when a put of another spelling
  // holds it; Aborted when a put of `key` itself does (callers never put one key twice at once).
  [[nodiscard]] absl::StatusOr<std::unique_ptr<Claim>> Take(const StorageFeatures& features,
                                                            const std::string& key);

 private:
  Mutex mu_;
  std::map<std::string, std::string> writing_ ABSL_GUARDED_BY(mu_);  // folded key → key
};

}  // namespace ds
