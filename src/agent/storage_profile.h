// What the agent knows of the storage a URL names: whether it writes that storage itself
// (AdvertisedFeatures: no I/O) and, if so, what the storage can do (Storage::Features()). Learned
// once per process and URL by opening the storage the agent writes, so that runs choose from the
// storage's abilities instead of its URL's scheme.
// Internal to src/agent.
#pragma once

#include <string>

#include "common/status.h"
#include "storage/storage.h"

namespace ds {

struct StorageProfile {
  // The agent opens and writes this storage itself (a directory or share: direct_writes). False
  // for object storage, which takes uploads only with a write grant from the server.
  bool agent_writes = false;
  // What it holds and does: the opened storage's Features() when agent_writes, else only what
  // its URL advertises (AdvertisedFeatures; the agent does not open it).
  StorageFeatures features;
  // A scan may copy the files it reads straight into unnamed staged files (the storage stages
  // from open files and can stage unnamed files: stages_from_fd and unnamed_files).
  bool copies_while_scanning = false;
};

// The profile of `url`, opening the storage the first time it is asked for in this process (a
// later call answers from memory and opens nothing). Logs, once per URL, whether runs copy while
// scanning and why. An answer that cannot change (the storage opened, or it is object storage the
// agent does not open: no direct_writes) is kept; a failure to reach the storage is returned and
// asked again next time. Thread-safe.
[[nodiscard]] absl::StatusOr<StorageProfile> ProfileStorage(const std::string& url);

}  // namespace ds
