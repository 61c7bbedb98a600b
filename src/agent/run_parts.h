// What the parts of one run (src/agent/job_run.h) share: its context, its limits, the
// directory storage it writes and the staged put. Internal to src/agent.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "agent/job_run.h"
#include "common/status.h"
#include "protocol/messages.h"
#include "storage/storage.h"

namespace ds {

// A group commit waits this long at most for a full group (kCompleteBatch files).
inline constexpr auto kCompleteEvery = std::chrono::seconds(2);
// Staged (written, not yet committed) bytes that trigger a group commit before kCompleteBatch
// files or kCompleteEvery: bounds the dirty data one flush writes back.
inline constexpr uint64_t kCommitBytes = uint64_t{512} << 20;

// What every part of a run reads; constant during the run.
struct RunContext {
  const protocol::JobSpec& job;
  const JobRunOptions& options;
  const std::string& run_id;  // options.run_id
  Journal* journal;           // options.journal

  bool stopped() const { return options.stop != nullptr && options.stop->load(); }
};

using SteadyTime = std::chrono::steady_clock::time_point;
[[nodiscard]] inline int64_t MillisSince(SteadyTime t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t0)
      .count();
}

// A file written to directory storage, not yet durable nor visible under its key, with the
// result it becomes once committed (GroupCommitter).
struct Staged {
  std::unique_ptr<StagedPut> put;
  protocol::FileResult result;  // path and mtime_ns filled
  SteadyTime started;
};

// Records a put that did not land in `r` (SetPutError: a name refusal skips the file) and logs
// it. A skipped planned file is done for the run's progress now: results count there only when
// uploaded or failed.
void RecordPutError(const RunContext& run, const absl::Status& st, protocol::FileResult* r);

// The put options every put of the run shares (its id, the bandwidth cap, cancellation,
// verification) for a source file with `mtime_ns`.
[[nodiscard]] PutOptions RunPutOptions(const RunContext& run, int64_t mtime_ns);

// The directory storage a run writes itself, opened on first use, at most once (thread-safe).
// Object storage is never opened here: the agent writes it only with the server's grants.
class RunStorage {
 public:
  // Opens `url` the first time; later calls return what the first did. Null when the storage
  // cannot be used; status() says why (and was logged).
  Storage* Open(const RunContext& run, const std::string& url);
  // Null until Open() succeeded.
  Storage* get() const { return storage_.get(); }
  // OK until Open() failed.
  const absl::Status& status() const { return status_; }

 private:
  std::once_flag opened_;
  std::unique_ptr<Storage> storage_;        // written once, under opened_
  absl::Status status_ = absl::OkStatus();  // written once, under opened_
};

}  // namespace ds
