#include "agent/deliverer.h"

#include "common/log.h"

namespace ds {
namespace {

// Kept versions named one by one in the agent's log per run; the rest are counted (every one is
// in the run's files on the server, and the server raises the file-changed alerts).
constexpr size_t kKeptVersionsLogged = 20;

}  // namespace

Deliverer::Deliverer(const RunContext& run, AgentServer* server, bool hold, JobRunOutcome* outcome)
    : run_(run), server_(server), outcome_(outcome), hold_(hold) {}

Deliverer::~Deliverer() { Join(); }

void Deliverer::Enqueue(std::vector<protocol::FileResult> batch) {
  if (!thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  (void)queue_.Push(std::move(batch));  // open until Join()
}

void Deliverer::Loop() {
  while (std::optional<std::vector<protocol::FileResult>> batch = queue_.Pop()) {
    absl::Status st = Deliver(std::move(*batch), /*final=*/false, hold_.load());
    if (!st.ok() && status_.ok()) status_ = st;
  }
}

void Deliverer::Join() {
  queue_.Close();
  if (thread_.joinable()) thread_.join();
}

absl::Status Deliverer::Finish(std::vector<protocol::FileResult> rest,
                               const std::string& run_error) {
  Join();
  run_error_ = run_error;
  absl::Status st = Deliver(std::move(rest), /*final=*/true, /*hold=*/false);
  if (!st.ok() && status_.ok()) status_ = st;
  if (!status_.ok()) {
    spdlog::error("run={} the server refused results: {}", run_.run_id, status_.message());
  }
  if (outcome_->kept_versions > kKeptVersionsLogged) {
    spdlog::warn(
        "run={} {} more file(s) changed after they were synced; their previous versions were "
        "kept too (see the run's files)",
        run_.run_id, outcome_->kept_versions - kKeptVersionsLogged);
  }
  return status_;
}

absl::Status Deliverer::Deliver(std::vector<protocol::FileResult> batch, bool final, bool hold) {
  const SteadyTime t0 = std::chrono::steady_clock::now();
  DS_ASSIGN_OR_RETURN(const int64_t journaled, run_.journal->Record(run_.run_id, batch));
  const int64_t recorded_ms = MillisSince(t0);
  Account(batch);
  if (final) DS_RETURN_IF_ERROR(run_.journal->CloseRun(run_.run_id, run_.stopped(), run_error_));
  if (hold) {
    held_.emplace_back(std::move(batch), journaled);
    return absl::OkStatus();
  }
  for (const auto& [h, h_journaled] : held_) DS_RETURN_IF_ERROR(Report(h, h_journaled, false));
  held_.clear();
  const SteadyTime t_report = std::chrono::steady_clock::now();
  absl::Status st = Report(batch, journaled, final);
  spdlog::debug("run={} delivered {} result(s): journaled in {} ms, reported in {} ms", run_.run_id,
                batch.size(), recorded_ms, MillisSince(t_report));
  return st;
}

absl::Status Deliverer::Report(const std::vector<protocol::FileResult>& batch, int64_t journaled,
                               bool final) {
  if (!reporting_) return absl::OkStatus();
  absl::StatusOr<std::string> state =
      ReportResults(server_, run_.run_id, batch, final, run_.stopped(), run_error_);
  if (state.ok()) {
    if (final) outcome_->state = *state;
    return run_.journal->MarkReported(run_.run_id, journaled);
  }
  if (!Unreachable(state.status())) return state.status();
  reporting_ = false;
  spdlog::warn("run={} server stopped answering ({}); results stay journaled for replay",
               run_.run_id, state.status().message());
  return absl::OkStatus();
}

void Deliverer::Account(const std::vector<protocol::FileResult>& results) {
  std::vector<std::pair<std::string, IndexedContent>> landed;
  RunCounters* counters = run_.options.counters;
  for (const auto& r : results) {
    if (r.status == "uploaded") {
      ++outcome_->uploaded;
      outcome_->bytes_uploaded += r.size;
      landed.emplace_back(r.path, IndexedContent{r.size, r.sha256});
      if (!r.kept_version.empty() && ++outcome_->kept_versions <= kKeptVersionsLogged) {
        spdlog::warn("run={} {} changed after it was synced; previous version kept at {}",
                     run_.run_id, r.path, r.kept_version);
      }
    }
    if (r.status == "failed") ++outcome_->failed;
    if (r.status == "skipped") ++outcome_->skipped;
    if (counters != nullptr && (r.status == "uploaded" || r.status == "failed")) {
      ++counters->files_done;
      counters->bytes_done += r.size;
    }
  }
  if (absl::Status st = run_.journal->RememberIndexed(run_.job.id, landed); !st.ok()) {
    spdlog::warn("run={} {}", run_.run_id, st);
  }
}

}  // namespace ds
