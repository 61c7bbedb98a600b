// The agent's durable journal (<state-dir>/agent.db): every run it starts and every file result,
// written (fsynced) before the result is reported, so a server outage or an agent crash loses
// nothing from the index: unreported results are replayed when the server answers again.
// It also keeps what the agent needs to sync while the server is away: the last job definitions
// and storage URL, and which content of each job the index already holds.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "protocol/messages.h"

namespace ds {

struct JournalRun {
  std::string run_id;
  std::string job;               // job name
  int64_t job_id = 0;
  std::string trigger;
  bool offline = false;          // the server has never seen this run (compare never answered)
  bool closed = false;           // the agent finished it (false: it was interrupted)
  bool interrupted = false;
  std::string error;
  int64_t started_at_ms = 0;
};

// (path, storage key) of uploads marked in flight (Journal::MarkInFlight).
using InFlightMarks = std::vector<std::pair<std::string, std::string>>;

struct IndexedContent {
  uint64_t size = 0;
  std::string sha256;
};

// Thread-safe (one connection behind a mutex).
class Journal {
 public:
  static constexpr int64_t kNoBatch = 0;  // Record of no results; batches are numbered from 1
  virtual ~Journal() = default;

  [[nodiscard]] virtual absl::Status BeginRun(const JournalRun& run) = 0;
  // The server accepted the run's compare: it knows the run id.
  [[nodiscard]] virtual absl::Status MarkOnline(const std::string& run_id) = 0;
  // Durably records results (one transaction) before they are reported, as one batch; returns
  // the batch's number for MarkReported. A later batch naming a file supersedes earlier ones.
  // No results: nothing is written, and the number is kNoBatch.
  [[nodiscard]] virtual absl::StatusOr<int64_t> Record(
      const std::string& run_id, const std::vector<protocol::FileResult>& results) = 0;
  // Files (path, storage key) about to be written to storage, in one transaction (each cleared by
  // a later Record of its result).
  [[nodiscard]] virtual absl::Status MarkInFlight(
      const std::string& run_id, const std::vector<std::pair<std::string, std::string>>& files) = 0;
  // The server accepted every result of `batch` (a number Record returned for this run).
  [[nodiscard]] virtual absl::Status MarkReported(const std::string& run_id, int64_t batch) = 0;
  [[nodiscard]] virtual absl::Status CloseRun(const std::string& run_id, bool interrupted,
                                              const std::string& error) = 0;
  // The server closed the run and holds every result: the run leaves the journal.
  [[nodiscard]] virtual absl::Status ForgetRun(const std::string& run_id) = 0;

  // Runs still to replay (oldest first).
  [[nodiscard]] virtual absl::StatusOr<std::vector<JournalRun>> PendingRuns() = 0;
  // Streams a run's unreported results to `fn`, a journaled batch at a time in the order they
  // were recorded (so a file recorded again later comes again, later: applied in order, the
  // latest stands), leaving out entries a later reported batch supersedes. The journal is not
  // locked while `fn` runs; an error from `fn` stops the stream and is returned.
  [[nodiscard]] virtual absl::Status ForEachUnreported(
      const std::string& run_id,
      const std::function<absl::Status(std::vector<protocol::FileResult>)>& fn) = 0;
  // Streams the (path, storage key) marks of a run's in-flight batches, a batch at a time,
  // including marks a later result cleared: each is what a crash may have left, or nothing.
  [[nodiscard]] virtual absl::Status ForEachInFlight(
      const std::string& run_id,
      const std::function<absl::Status(std::vector<std::pair<std::string, std::string>>)>& fn) = 0;

  // Marks of `run_id`'s uploads kept after the run leaves the journal (ForgetRun), because the
  // temp files they may have left could not be removed yet (storage unreachable at replay).
  [[nodiscard]] virtual absl::Status KeepInFlight(const std::string& run_id,
                                                  const InFlightMarks& marks) = 0;
  // Every run's kept marks (run id, marks), by run id.
  [[nodiscard]] virtual absl::StatusOr<std::vector<std::pair<std::string, InFlightMarks>>>
  KeptInFlight() = 0;
  // The temp files of `run_id`'s kept marks are gone: forgets the marks.
  [[nodiscard]] virtual absl::Status ForgetKeptInFlight(const std::string& run_id) = 0;

  // What the index holds for a job, as far as this agent knows (for offline planning): calls `fn`
  // for each row in path order (byte-wise, as std::string compares), streaming (the rows are never
  // all in memory). REQUIRES: `fn` does not call the journal.
  [[nodiscard]] virtual absl::Status ForEachIndexed(
      int64_t job_id, const std::function<void(const std::string& path, const IndexedContent&)>& fn) = 0;
  [[nodiscard]] virtual absl::Status RememberIndexed(
      int64_t job_id, const std::vector<std::pair<std::string, IndexedContent>>& rows) = 0;

  // Blocks of an object-storage upload of `key` with content `sha256` that the service accepted
  // (uncommitted until the file's commit), staged after `newer_than_ms` (Unix ms).
  [[nodiscard]] virtual absl::StatusOr<std::set<std::string>> StagedBlocks(
      const std::string& key, const std::string& sha256, int64_t newer_than_ms) = 0;
  [[nodiscard]] virtual absl::Status RememberStagedBlock(const std::string& key,
                                                         const std::string& sha256,
                                                         const std::string& block_id,
                                                         int64_t now_ms) = 0;
  // Drops the blocks of `key` (committed, or found stale) and any staged before `older_than_ms`.
  [[nodiscard]] virtual absl::Status ForgetStagedBlocks(const std::string& key,
                                                        int64_t older_than_ms) = 0;
  // Last job definitions and storage URL from the server.
  [[nodiscard]] virtual absl::Status SaveJobs(int64_t version, const std::string& storage_url,
                                              const std::vector<protocol::JobSpec>& jobs) = 0;
  [[nodiscard]] virtual absl::StatusOr<std::pair<std::string, std::vector<protocol::JobSpec>>>
  LoadJobs(int64_t* version) = 0;
};

[[nodiscard]] absl::StatusOr<std::unique_ptr<Journal>> OpenJournal(const std::string& db_path);

}  // namespace ds
