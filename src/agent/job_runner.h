// One run of one job on the agent: scan, compare (batched), upload in parallel, complete
// (batched, retried). Internal to src/agent.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "common/status.h"
#include "http/http_client.h"
#include "protocol/messages.h"

namespace ds {

struct JobRunOptions {
  std::string state_dir;
  std::string storage_url;        // as told by the server
  std::string run_id;             // correlation id (from a command, or fresh)
  std::string trigger;            // schedule | command | startup
  int upload_threads = 2;
  uint64_t max_bytes_per_second = 0;
  bool verify = true;
  const std::atomic<bool>* stop = nullptr;
};

struct JobRunOutcome {
  std::string state;              // as the server closed the run, or "unreported"
  uint64_t uploaded = 0, failed = 0, skipped = 0;
  uint64_t bytes_uploaded = 0;
};

// REQUIRES: `client` carries the agent's API key. Never modifies the job's source folder.
[[nodiscard]] absl::StatusOr<JobRunOutcome> RunJob(http::Client* client, const protocol::JobSpec& job,
                                                   const JobRunOptions& options);

}  // namespace ds
