// Step 3 of a run: the planned files go straight to storage on parallel workers. Directory
// storage: workers stage files and the GroupCommitter commits them in groups (one flush before
// and one after the renames: Storage::CommitPuts) before their results are delivered. Object
// storage and already-present content give final results at once. Internal to src/agent.
#pragma once

#include <atomic>
#include <filesystem>
#include <memory>
#include <vector>

#include "agent/compare_plan.h"
#include "agent/deliverer.h"
#include "agent/run_parts.h"
#include "agent/server_api.h"
#include "common/bounded_queue.h"
#include "sync/scanner.h"

namespace ds {

// Gathers staged puts and final results into groups and hands each group, committed, to the
// deliverer: a group is kCompleteBatch files or kCommitBytes staged, or what waited
// kCompleteEvery. Workers wait while two groups are waiting (a commit waits for the disk while
// staging does not: without the bound a run of small files staged most of its files before the
// commits caught up, and held them all in memory).
class GroupCommitter {
 public:
  // REQUIRES: run, storage and deliverer outlive this.
  GroupCommitter(const RunContext& run, RunStorage* storage, Deliverer* deliverer)
      : run_(run), storage_(storage), deliverer_(deliverer) {}

  // From a worker: a staged put (`item.put`) or a final result (`item.put` null). False once
  // closed (the item is dropped).
  [[nodiscard]] bool Add(Staged item);
  // No more Add(); CommitGroups() returns once all is committed.
  void Close() { queue_.Close(); }
  // On the run's thread: commits and delivers groups until Close() and returns the results of
  // what was left at the end (the run's last batch). Complete copies are committed even when
  // the run is stopping.
  [[nodiscard]] std::vector<protocol::FileResult> CommitGroups();
  // Commits `batch` now (durable and visible once this returns) and appends its results to `out`.
  void Commit(std::vector<Staged> batch, std::vector<protocol::FileResult>* out) const;

 private:
  const RunContext& run_;
  RunStorage* const storage_;
  Deliverer* const deliverer_;
  BoundedQueue<Staged> queue_{2 * kCompleteBatch, 2 * kCommitBytes};
};

// The upload workers of one run.
class Uploader {
 public:
  // REQUIRES: every argument outlives this. `root`: the job's source folder as admitted.
  Uploader(const RunContext& run, const ScanResult& scan, std::filesystem::path root,
           const ComparePlan& plan, RunStorage* storage, const AgentServerFactory& connect,
           GroupCommitter* committer);

  // Uploads every planned file on options.upload_threads workers, the committer committing on
  // this thread; returns the results not yet delivered (the run's last batch). Stops early when
  // the run is stopped (files not begun stay unreported; begun ones stay marked in flight) or
  // the journal fails.
  [[nodiscard]] std::vector<protocol::FileResult> Run();

 private:
  void Work();
  // Claims the next chunk of the plan [*begin, *end); false when none is left or stopping.
  // Chunks shrink towards the end so that the workers finish together.
  [[nodiscard]] bool Claim(size_t* begin, size_t* end);
  // The chunk's instructions, marked in flight in the journal in one transaction (false: the
  // journal failed, and without it the run could lose track: the worker stops).
  [[nodiscard]] bool MarkInFlight(size_t begin, size_t end,
                                  std::vector<protocol::UploadInstruction>* chunk);
  // Uploads the i-th planned file: a staged put or a final result; nullopt when cancelled
  // (stopping: it stays in flight, the replay cleans up).
  [[nodiscard]] std::optional<Staged> UploadOne(size_t i, const protocol::UploadInstruction& u,
                                                LazySession* grants);
  // Writes the file of entry `e` (staged when `*staged` is given back non-null), or takes it as
  // present.
  [[nodiscard]] absl::StatusOr<PutResult> Put(size_t i, const protocol::UploadInstruction& u,
                                              const protocol::ManifestEntry& e, LazySession* grants,
                                              std::unique_ptr<StagedPut>* staged,
                                              std::string* kept_version);

  // Constant after construction.
  const RunContext& run_;
  const ScanResult& scan_;
  const std::filesystem::path root_;
  const ComparePlan& plan_;
  RunStorage* const storage_;
  const AgentServerFactory& connect_;
  GroupCommitter* const committer_;
  const size_t threads_;

  std::atomic<size_t> next_{0};      // the next unclaimed plan index
  std::atomic<size_t> finished_{0};  // workers done
};

}  // namespace ds
