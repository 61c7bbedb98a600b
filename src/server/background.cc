#include "server/background.h"

#include <nlohmann/json.hpp>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/json.h"
#include "common/log.h"
#include "common/paths.h"
#include "server/context.h"
#include "server/lease.h"
#include "server/storage_walk.h"

namespace ds {
namespace {

using nlohmann::json;

constexpr size_t kApplyBatch = 5'000;          // rows per index transaction
constexpr size_t kReportListMax = 200;         // entries kept in a report list
constexpr int64_t kStaleReconcileMs = 5 * 60'000;  // a running reconcile silent this long died
constexpr char kJanitorLease[] = "janitor";
constexpr int64_t kJanitorLeaseIntervals = 3;  // lease lifetime, in janitor intervals

}  // namespace

std::string ReconcileJson(const Reconcile& r, int64_t now_ms) {
  json j{{"id", r.id},
         {"runner", r.runner_name},
         {"job", r.job_name},
         {"state", r.state},
         {"verify", r.verify},
         {"requested_at", FormatIsoUtc(r.requested_at_ms)},
         {"started_at", FormatIsoUtc(r.started_at_ms)},
         {"finished_at", FormatIsoUtc(r.finished_at_ms)},
         {"files_expected", r.files_expected},
         {"files_seen", r.files_seen},
         {"bytes_seen", r.bytes_seen},
         {"rows_added", r.rows_added},
         {"rows_removed", r.rows_removed},
         {"rows_updated", r.rows_updated},
         {"rows_unchanged", r.rows_unchanged},
         {"mismatches", r.mismatches},
         {"temp_files", r.temp_files},
         {"error", r.error}};
  int64_t end = r.finished_at_ms > 0 ? r.finished_at_ms : (r.state == "running" ? now_ms : 0);
  double secs = r.started_at_ms > 0 && end > r.started_at_ms ? (end - r.started_at_ms) / 1000.0 : 0;
  j["elapsed_s"] = secs;
  double rate = secs > 0 ? r.files_seen / secs : 0;
  j["files_per_s"] = rate;
  j["bytes_per_s"] = secs > 0 ? r.bytes_seen / secs : 0;
  if (r.state == "running" && rate > 0 && r.files_expected > r.files_seen) {
    j["eta_s"] = (r.files_expected - r.files_seen) / rate;
  }
  if (r.state == "succeeded" || r.state == "failed") {
    j["percent"] = 100.0;
  } else if (r.files_expected > 0) {
    j["percent"] = std::min(99.0, 100.0 * r.files_seen / r.files_expected);
  } else {
    j["percent"] = r.state == "running" ? 50.0 : 0.0;
  }
  j["report"] = ParseJsonOr(r.report_json, json::object());
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// ---- reconcile ---------------------------------------------------------------------------------

ReconcileService::ReconcileService(ServerContext* ctx, std::string worker_id)
    : ctx_(ctx),
      worker_id_(std::move(worker_id)),
      worker_({.name = "reconcile", .interval = std::chrono::seconds(2), .call_at_start = true},
              [this] { RunQueued(); }) {}

void ReconcileService::RunQueued() {
  while (!worker_.stopping()) {
    int64_t now = ctx_->NowMs();
    auto claimed = ctx_->index->ClaimReconcile(worker_id_, now, now - kStaleReconcileMs);
    if (!claimed.ok()) {
      if (!absl::IsNotFound(claimed.status()))
        spdlog::warn("reconcile claim: {}", claimed.status());
      return;
    }
    RunOne(*claimed);
  }
}

namespace {

// One reconcile of one job over the shared walk: rows are added and updated from what storage
// holds, rows storage lacks are removed, stale temp debris is removed.
class ReconcilePass {
 public:
  // REQUIRES: every pointee outlives the pass.
  ReconcilePass(ServerContext* ctx, Reconcile* r, const std::atomic<bool>* stop, std::string prefix)
      : ctx_(ctx), r_(*r), stop_(*stop), prefix_(prefix),
        walk_(ctx->index.get(), ctx->storage.get(), r->job_id, std::move(prefix)) {}
  // The whole pass: "" when it succeeded (r is filled in) or when shutting down (*stopped), else
  // the failure.
  std::string Run(bool* stopped);
  uint64_t temps_removed() const { return temps_removed_; }

 private:
  bool OnObject(const WalkItem& item);
  // The SHA-256 to record for the object. False when the object goes no further.
  bool ContentSha(const WalkItem& item, std::string* sha);
  bool VerifiedSha(const WalkItem& item, std::string* sha);
  void Record(const WalkItem& item, const std::string& sha);
  void Flush();
  std::string RemoveMissing();
  void SweepTemps();
  void AddMismatch(json entry) {
    ++r_.mismatches;
    if (mismatches_.size() < kReportListMax) mismatches_.push_back(std::move(entry));
  }

  ServerContext* const ctx_;
  Reconcile& r_;
  const std::atomic<bool>& stop_;
  const std::string prefix_;
  StorageWalk walk_;
  json mismatches_ = json::array(), removed_ = json::array(), temps_ = json::array();
  std::vector<SyncedFile> upserts_;
  uint64_t hashed_ = 0;  // objects whose contents were read
  uint64_t records_written_ = 0;  // of those, hash records written to storage (HashAndRecord)
  uint64_t temps_removed_ = 0;
  absl::Status apply_status_ = absl::OkStatus();
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
  const int64_t now_ms_ = ctx_->NowMs();
};

std::string ReconcilePass::Run(bool* stopped) {
  if (absl::Status st = walk_.LoadRows(); !st.ok()) return std::string(st.message());
  r_.files_expected = std::max<uint64_t>(r_.files_expected, walk_.row_count());
  absl::Status list_status = walk_.Run([this](const WalkItem& item) { return OnObject(item); });
  Flush();
  *stopped = stop_;
  if (stop_) return "";  // shutting down: another instance (or our restart) retakes it
  if (!list_status.ok()) return absl::StrCat("listing storage: ", list_status.message());
  if (!apply_status_.ok()) return absl::StrCat("updating the index: ", apply_status_.message());
  if (std::string error = RemoveMissing(); !error.empty()) return error;
  SweepTemps();
  r_.report_json = json{{"mismatches", mismatches_}, {"removed_paths", removed_}, {"temp_files", temps_},
                        {"temp_files_removed", temps_removed_}, {"files_hashed", hashed_},
                        {"hash_records_written", records_written_}}
                       .dump(-1, ' ', false, json::error_handler_t::replace);
  return "";
}

bool ReconcilePass::OnObject(const WalkItem& item) {
  if (stop_ || !apply_status_.ok()) return false;
  ++r_.files_seen;
  r_.bytes_seen += item.object->size;
  std::string sha;
  if (!ContentSha(item, &sha)) return apply_status_.ok();
  Record(item, sha);
  if (upserts_.size() >= kApplyBatch) Flush();
  auto now = std::chrono::steady_clock::now();
  if (now - last_progress_ > std::chrono::milliseconds(500)) {
    last_progress_ = now;
    (void)ctx_->index->UpdateReconcile(r_, ctx_->NowMs());
  }
  return true;
}

bool ReconcilePass::ContentSha(const WalkItem& item, std::string* sha) {
  const ObjectInfo& o = *item.object;
  const SyncedFile* existing = item.row;
  if (r_.verify) return VerifiedSha(item, sha);
  if (!o.sha256.empty()) {
    *sha = o.sha256;
    if (item.finding == WalkFinding::kHashMismatch) {
      AddMismatch({{"path", item.path}, {"stored_sha256", o.sha256}, {"index_sha256", existing->sha256}});
    }
    return true;
  }
  if (existing != nullptr && existing->size == o.size && item.same_mtime) {
    *sha = existing->sha256;
    return true;
  }
  ++hashed_;
  bool recorded = false;
  auto digest = HashAndRecord(ctx_->storage.get(), o, &recorded);
  records_written_ += recorded;
  if (!digest.ok()) {
    apply_status_ = digest.status();
    return false;
  }
  *sha = digest->sha256;
  return true;
}

bool ReconcilePass::VerifiedSha(const WalkItem& item, std::string* sha) {
  const ObjectInfo& o = *item.object;
  const SyncedFile* existing = item.row;
  ++hashed_;
  bool recorded = false;
  auto digest = HashAndRecord(ctx_->storage.get(), o, &recorded);
  records_written_ += recorded;
  if (!digest.ok()) {
    AddMismatch({{"path", item.path}, {"error", std::string(digest.status().message())}});
    return false;
  }
  *sha = digest->sha256;
  bool meta_bad = !o.sha256.empty() && o.sha256 != *sha;
  bool index_bad = existing != nullptr && existing->sha256 != *sha;
  if (meta_bad || index_bad) {
    AddMismatch({{"path", item.path}, {"actual_sha256", *sha}, {"stored_sha256", o.sha256},
                 {"index_sha256", existing ? existing->sha256 : ""}});
    spdlog::warn("reconcile {}: checksum mismatch on {} (content {}, metadata {}, index {})", r_.id,
                 o.key, *sha, o.sha256, existing ? existing->sha256 : "-");
  }
  return true;
}

void ReconcilePass::Record(const WalkItem& item, const std::string& sha) {
  const ObjectInfo& o = *item.object;
  const SyncedFile* existing = item.row;
  if (existing == nullptr) {
    ++r_.rows_added;
    upserts_.push_back(SyncedFile{r_.job_id, item.path, o.size, o.mtime_ns, sha, now_ms_, r_.id});
  } else if (existing->sha256 != sha || existing->size != o.size || !item.same_mtime) {
    ++r_.rows_updated;
    upserts_.push_back(SyncedFile{r_.job_id, existing->path, o.size, o.mtime_ns, sha, now_ms_, r_.id});
  } else {
    ++r_.rows_unchanged;
  }
}

void ReconcilePass::Flush() {
  if (upserts_.empty() || !apply_status_.ok()) return;
  apply_status_ = ctx_->index->ApplySyncedFiles(r_.job_id, upserts_, {});
  upserts_.clear();
}

// Rows whose file is gone from storage; an empty listing against a populated index is refused
// rather than wiping the index.
std::string ReconcilePass::RemoveMissing() {
  std::vector<std::string> deletes;
  for (const SyncedFile* row : walk_.Missing()) deletes.push_back(row->path);
  if (std::string refusal = walk_.EmptyListingRefusal(); !refusal.empty()) return refusal;
  for (size_t i = 0; i < deletes.size(); i += kApplyBatch) {
    std::vector<std::string> part(deletes.begin() + static_cast<long>(i),
                                  deletes.begin() + static_cast<long>(std::min(deletes.size(), i + kApplyBatch)));
    if (absl::Status st = ctx_->index->ApplySyncedFiles(r_.job_id, {}, part); !st.ok()) {
      return absl::StrCat("removing rows: ", st.message());
    }
  }
  r_.rows_removed = deletes.size();
  for (size_t i = 0; i < deletes.size() && i < kReportListMax; ++i) removed_.push_back(deletes[i]);
  return "";
}

// Leftovers of interrupted uploads: reported, and removed once clearly stale.
void ReconcilePass::SweepTemps() {
  auto temps = SweepTempObjects(ctx_->storage.get(), prefix_, ctx_->NowMs());
  if (!temps.ok()) {
    spdlog::warn("reconcile {}: listing temp files: {}", r_.id, temps.status());
    return;
  }
  for (const TempFinding& t : *temps) {
    ++r_.temp_files;
    if (t.removed) ++temps_removed_;
    if (temps_.size() < kReportListMax) {
      temps_.push_back({{"key", t.object.key}, {"size", t.object.size}, {"removed", t.removed}});
    }
  }
}

}  // namespace

void ReconcileService::RunOne(Reconcile r) {
  auto started = std::chrono::steady_clock::now();
  auto fail = [&](const std::string& error) {
    r.state = "failed";
    r.error = error;
    r.finished_at_ms = ctx_->NowMs();
    spdlog::error("reconcile {} of {}/{} failed: {}", r.id, r.runner_name, r.job_name, error);
    if (absl::Status st = ctx_->index->UpdateReconcile(r, ctx_->NowMs()); !st.ok()) {
      spdlog::error("reconcile {}: recording failure: {}", r.id, st);
    }
  };
  auto job = ctx_->index->GetJobById(r.job_id);
  if (!job.ok()) return fail(std::string(job.status().message()));
  const std::string prefix = job->spec.dest_prefix;
  spdlog::info("reconcile {} of {}/{} ({}): listing {} under '{}'", r.id, r.runner_name, r.job_name,
               r.verify ? "verify" : "metadata", ctx_->storage->Describe(), prefix);
  ReconcilePass pass(ctx_, &r, worker_.stop_flag(), prefix);
  bool stopped = false;
  if (std::string error = pass.Run(&stopped); !error.empty()) return fail(error);
  if (stopped) return;
  r.state = "succeeded";
  r.finished_at_ms = ctx_->NowMs();
  if (absl::Status st = ctx_->index->UpdateReconcile(r, ctx_->NowMs()); !st.ok()) {
    spdlog::error("reconcile {}: recording result: {}", r.id, st);
    return;
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("reconcile {} of {}/{} done in {:.2f}s: {} files ({} bytes), +{} rows, -{} rows, {} updated, "
               "{} mismatches, {} temp files ({} removed)",
               r.id, r.runner_name, r.job_name, secs, r.files_seen, r.bytes_seen, r.rows_added, r.rows_removed,
               r.rows_updated, r.mismatches, r.temp_files, pass.temps_removed());
}

// ---- janitor -------------------------------------------------------------------------------------

Janitor::Janitor(ServerContext* ctx, std::string holder)
    : ctx_(ctx),
      lease_(ctx->index.get(), kJanitorLease, std::move(holder), "does the housekeeping"),
      // After the thread stops, lease_ is released: another instance takes over at its next pass.
      worker_({.name = "janitor", .interval = ctx->config.janitor_interval}, [this] {
        if (std::string done = RunOnce(); !done.empty()) spdlog::info("janitor: {}", done);
      }) {}

bool Janitor::Claim() {
  return lease_.Claim(kJanitorLeaseIntervals * ctx_->config.janitor_interval.count(), ctx_->NowMs());
}

std::string Janitor::SweepTemps() {
  auto jobs = ctx_->index->ListJobs(std::nullopt);
  if (!jobs.ok()) {
    spdlog::warn("janitor: listing jobs for the temp sweep: {}", jobs.status());
    return "";
  }
  uint64_t removed = 0, young = 0;
  for (const Job& j : *jobs) {
    auto temps = SweepTempObjects(ctx_->storage.get(), j.spec.dest_prefix, ctx_->NowMs());
    if (!temps.ok()) {
      spdlog::warn("janitor: listing temp files of {}/{}: {}", j.runner_name, j.spec.name, temps.status());
      continue;
    }
    for (const TempFinding& t : *temps) ++(t.removed ? removed : young);
  }
  if (removed == 0) return "";
  return absl::StrCat("removed ", removed, " stale temp file(s) of interrupted uploads (", young,
                      " younger ones left: uploads may be in flight); ");
}

std::string Janitor::RunOnce() {
  std::string out;
  if (!Claim()) return out;
  int64_t now = ctx_->NowMs();
  // Orphaned runs: the runner has been silent longer than the run timeout.
  if (auto runners = ctx_->index->ListRunners(); runners.ok()) {
    int64_t silent_before = now - ctx_->config.run_timeout.count();
    for (const auto& r : *runners) {
      if (r.last_heartbeat_at_ms == 0 || r.last_heartbeat_at_ms >= silent_before) continue;
      auto ids = ctx_->index->AbandonStaleRuns(
          r.id, "", now, absl::StrCat("runner '", r.name, "' stopped heartbeating"), now);
      if (ids.ok() && !ids->empty()) absl::StrAppend(&out, "abandoned ", ids->size(), " run(s) of silent runner ", r.name, "; ");
    }
  }
  // Retention, at most hourly.
  if (now - last_prune_ms_ > 3'600'000) {
    if (!Claim()) return out;  // the steps above took long enough for the lease to move
    last_prune_ms_ = now;
    auto n = ctx_->index->PruneHistory(now - ctx_->config.run_retention.count());
    if (n.ok() && *n > 0) absl::StrAppend(&out, "pruned ", *n, " run(s) older than the retention; ");
    auto logs = ctx_->index->PruneAgentLogs(now - ctx_->config.log_retention.count());
    if (logs.ok() && *logs > 0) absl::StrAppend(&out, "pruned ", *logs, " agent log record(s) older than the log retention; ");
    auto sessions = ctx_->index->PruneSessions(now, now - ctx_->config.session_idle.count());
    if (sessions.ok() && *sessions > 0) absl::StrAppend(&out, "ended ", *sessions, " expired session(s); ");
    if (ctx_->config.pending_ttl.count() > 0) {
      // Registrations nobody approved: an anonymous flood of them does not stay for ever.
      auto stale = ctx_->index->PruneStalePending(now - ctx_->config.pending_ttl.count());
      if (!stale.ok()) spdlog::warn("janitor: pruning stale registrations: {}", stale.status());
      if (stale.ok() && *stale > 0) {
        absl::StrAppend(&out, "removed ", *stale, " registration(s) left pending longer than ",
                        FormatDuration(ctx_->config.pending_ttl), "; ");
      }
    }
  }
  // Temp debris of interrupted uploads of every job, at most hourly.
  if (now - last_temp_sweep_ms_ > 3'600'000) {
    if (!Claim()) return out;
    last_temp_sweep_ms_ = now;
    absl::StrAppend(&out, SweepTemps());
  }
  if (ctx_->config.index_budget_bytes > 0) {
    if (auto size = ctx_->index->SizeBytes(); size.ok() && *size > ctx_->config.index_budget_bytes) {
      spdlog::warn("state index is {} bytes, over its budget of {} bytes", *size, ctx_->config.index_budget_bytes);
    }
  }
  return out;
}

}  // namespace ds
