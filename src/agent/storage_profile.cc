#include "agent/storage_profile.h"

#include <map>

#include "common/log.h"
#include "common/mutex.h"

namespace ds {
namespace {

Mutex g_profiles_mu;
std::map<std::string, StorageProfile> g_profiles ABSL_GUARDED_BY(g_profiles_mu);  // by URL

// Says what the storage is, opening it when the agent writes it itself. Errors: the storage
// could not be reached or opened (asked again later).
absl::StatusOr<StorageProfile> Learn(const std::string& url) {
  DS_ASSIGN_OR_RETURN(StorageUrl parsed, ParseStorageUrl(url));
  StorageProfile profile;
  profile.features = AdvertisedFeatures(parsed);
  if (!profile.features.direct_writes) {
    // Object storage opens only with an account key, which agents never hold: it is written
    // with the server's per-object grants. That answer does not change.
    spdlog::info("storage {}: written with write grants from the server", parsed.text);
    return profile;
  }
  DS_ASSIGN_OR_RETURN(std::unique_ptr<Storage> storage, OpenStorage(parsed));
  profile.agent_writes = true;
  profile.features = storage->Features();
  profile.copies_while_scanning = profile.features.stages_from_fd && profile.features.unnamed_files;
  if (profile.copies_while_scanning) {
    spdlog::info("storage {}: copying while scanning (files are staged as unnamed files)",
                 parsed.text);
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
    MutexLock lock(&g_profiles_mu);
    if (auto it = g_profiles.find(url); it != g_profiles.end()) return it->second;
  }
  DS_ASSIGN_OR_RETURN(StorageProfile profile, Learn(url));
  MutexLock lock(&g_profiles_mu);
  return g_profiles.emplace(url, profile).first->second;
}

}  // namespace ds
