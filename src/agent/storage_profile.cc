#include "agent/storage_profile.h"

#include <map>
#include <mutex>

#include "common/log.h"

namespace ds {
namespace {

std::mutex g_profiles_mu;
std::map<std::string, StorageProfile> g_profiles;  // by URL; Protected by g_profiles_mu.

// Opens the storage and says what it is. Errors: the storage could not be reached or opened
// (asked again later).
absl::StatusOr<StorageProfile> Learn(const std::string& url) {
  DS_ASSIGN_OR_RETURN(StorageUrl parsed, ParseStorageUrl(url));
  absl::StatusOr<std::unique_ptr<Storage>> storage = OpenStorage(parsed);
  StorageProfile profile;
  if (!storage.ok()) {
    // Object storage opens only with an account key, which agents never hold: it is written
    // with the server's per-object grants. That answer does not change.
    if (!absl::IsFailedPrecondition(storage.status())) return storage.status();
    spdlog::info("storage {}: written with write grants from the server (the agent cannot open it: {})",
                 parsed.text, storage.status().message());
    return profile;
  }
  profile.agent_writes = true;
  profile.features = (*storage)->Features();
  profile.copies_while_scanning = profile.features.unnamed_files;
  if (profile.copies_while_scanning) {
    spdlog::info("storage {}: copying while scanning (files are staged as unnamed files)", parsed.text);
  } else {
    spdlog::info(
        "storage {}: not copying while scanning (it cannot stage unnamed files); files are "
        "uploaded after the scan under temp names",
        parsed.text);
  }
  return profile;
}

}  // namespace

absl::StatusOr<StorageProfile> ProfileStorage(const std::string& url) {
  {
    std::lock_guard<std::mutex> lock(g_profiles_mu);
    if (auto it = g_profiles.find(url); it != g_profiles.end()) return it->second;
  }
  DS_ASSIGN_OR_RETURN(StorageProfile profile, Learn(url));
  std::lock_guard<std::mutex> lock(g_profiles_mu);
  return g_profiles.emplace(url, profile).first->second;
}

}  // namespace ds
