#include "agent/replay.h"

#include <set>
#include <vector>

#include "agent/temp_cleanup.h"
#include "common/log.h"

namespace ds {
namespace {

// Tries of a replay's compare while the server cannot be reached.
constexpr int kReplayCompareAttempts = 2;

// One journaled run being reported. The results stream from the journal a batch at a time (a run
// of a million files is never in memory at once) and are reported as they come; an empty final
// report closes the run. The server takes a result it already has as the same result, so a
// replay cut short by the server going away again simply starts over next time.
class Replay {
 public:
  Replay(AgentServer* server, Journal* journal, const JournalRun& run)
      : server_(server),
        journal_(journal),
        run_(run),
        interrupted_(!run.closed || run.interrupted),
        error_(run.error.empty() && !run.closed ? "the agent stopped during the run" : run.error) {}

  // Returns the state the server closed the run as.
  [[nodiscard]] absl::StatusOr<std::string> Run() {
    spdlog::info("run={} job={} replaying from the journal{}{}", run_.run_id, run_.job,
                 run_.offline ? ", synced offline" : "", interrupted_ ? ", interrupted" : "");
    DS_RETURN_IF_ERROR(run_.offline ? ReplayOffline() : ReplayReported());
    spdlog::info("run={} replayed {} result(s): server closed it as {}", run_.run_id, replayed_,
                 state_);
    return state_;
  }

 private:
  // A run the server saw: its unreported results, then the close.
  absl::Status ReplayReported() {
    DS_RETURN_IF_ERROR(journal_->ForEachUnreported(
        run_.run_id, [&](std::vector<protocol::FileResult> batch) -> absl::Status {
          replayed_ += batch.size();
          return ReportResults(server_, run_.run_id, batch, /*final=*/false, false, "").status();
        }));
    DS_ASSIGN_OR_RETURN(
        state_, ReportResults(server_, run_.run_id, {}, /*final=*/true, interrupted_, error_));
    return absl::OkStatus();
  }

  // The server never saw this run: compare what landed (≤ kCompareBatch files a request), then
  // report the ones the server planned (and the skipped ones). The run stays marked offline until
  // it is forgotten: a replay cut short compares again, and the server plans only what it does
  // not hold yet.
  absl::Status ReplayOffline() {
    DS_RETURN_IF_ERROR(journal_->ForEachUnreported(
        run_.run_id, [&](std::vector<protocol::FileResult> batch) -> absl::Status {
          for (auto& r : batch) {
            if (group_.size() == kCompareBatch) DS_RETURN_IF_ERROR(Flush(/*last=*/false));
            group_.push_back(std::move(r));
          }
          return absl::OkStatus();
        }));
    return Flush(/*last=*/true);
  }

  // Compares the group waiting for its compare, then reports what the server planned.
  absl::Status Flush(bool last) {
    protocol::CompareRequest req;
    req.run_id = run_.run_id;
    req.trigger = run_.trigger.empty() ? "offline" : run_.trigger + "+offline";
    for (const auto& r : group_) {
      if (r.status == "uploaded") req.files.push_back({r.path, r.size, r.mtime_ns, r.sha256});
    }
    compared_ += req.files.size();
    req.last = last;
    req.total_files = compared_;
    DS_ASSIGN_OR_RETURN(protocol::CompareResponse resp,
                        server_->Compare(run_.job, req, kReplayCompareAttempts));
    std::set<std::string> planned;
    for (const auto& u : resp.upload) planned.insert(u.path);
    std::vector<protocol::FileResult> keep;
    for (auto& r : group_) {
      if (r.status == "skipped" || planned.count(r.path)) keep.push_back(std::move(r));
    }
    group_.clear();
    if (keep.empty() && !last) return absl::OkStatus();
    replayed_ += keep.size();
    DS_ASSIGN_OR_RETURN(state_,
                        ReportResults(server_, run_.run_id, keep, last, interrupted_, error_));
    return absl::OkStatus();
  }

  AgentServer* const server_;
  Journal* const journal_;
  const JournalRun& run_;
  const bool interrupted_;
  const std::string error_;

  uint64_t replayed_ = 0, compared_ = 0;
  std::string state_;
  std::vector<protocol::FileResult> group_;  // offline: results waiting for their compare
};

}  // namespace

absl::Status ReplayJournal(AgentServer* server, Journal* journal, const std::string& storage_url,
                           const std::atomic<bool>* stop, bool* temps_kept) {
  DS_ASSIGN_OR_RETURN(auto runs, journal->PendingRuns());
  LazyStorage storage(storage_url);
  bool kept = false;
  for (const auto& run : runs) {
    if (stop != nullptr && stop->load()) return absl::CancelledError("stopping");
    // Temp files of uploads a crash interrupted: never visible as measurements; removed here,
    // or (storage unreachable) their marks are kept for RemoveInterruptedTemps.
    DS_RETURN_IF_ERROR(RemoveReplayedRunTemps(journal, storage, run.run_id, &kept));
    if (temps_kept != nullptr) *temps_kept = kept;
    absl::StatusOr<std::string> state = Replay(server, journal, run).Run();
    if (!state.ok()) {
      if (Unreachable(state.status())) return state.status();
      spdlog::error(
          "run={} replay refused ({}); dropping it from the journal "
          "(reconcile the job to be sure the index is complete)",
          run.run_id, state.status().message());
    }
    DS_RETURN_IF_ERROR(journal->ForgetRun(run.run_id));
  }
  return absl::OkStatus();
}

}  // namespace ds
