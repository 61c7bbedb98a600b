#include "server/background.h"

#include <nlohmann/json.hpp>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/paths.h"
#include "server/context.h"

namespace ds {
namespace {

using nlohmann::json;

constexpr size_t kApplyBatch = 5'000;          // rows per index transaction
constexpr size_t kReportListMax = 200;         // entries kept in a report list
constexpr int64_t kStaleReconcileMs = 5 * 60'000;  // a running reconcile silent this long died
constexpr int64_t kTempFileMaxAgeNs = int64_t{3600} * 1'000'000'000;  // older temps are leftovers
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
  try {
    j["report"] = json::parse(r.report_json);
  } catch (const json::exception&) {
    j["report"] = json::object();
  }
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// ---- reconcile ---------------------------------------------------------------------------------

ReconcileService::ReconcileService(ServerContext* ctx, std::string worker_id)
    : ctx_(ctx), worker_id_(std::move(worker_id)), thread_([this] { Loop(); }) {}

ReconcileService::~ReconcileService() {
  stop_ = true;
  Wake();
  thread_.join();
}

void ReconcileService::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void ReconcileService::Loop() {
  while (!stop_) {
    int64_t now = ctx_->NowMs();
    auto claimed = ctx_->index->ClaimReconcile(worker_id_, now, now - kStaleReconcileMs);
    if (claimed.ok()) {
      RunOne(*claimed);
      continue;
    }
    if (!absl::IsNotFound(claimed.status())) spdlog::warn("reconcile claim: {}", claimed.status());
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, std::chrono::seconds(2), [&] { return wake_ || stop_.load(); });
    wake_ = false;
  }
}

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

  // What the index holds now.
  std::unordered_map<std::string, SyncedFile> rows;
  for (std::string after;;) {
    auto page = ctx_->index->ListSyncedFiles(r.job_id, after, 10'000);
    if (!page.ok()) return fail(std::string(page.status().message()));
    if (page->empty()) break;
    after = page->back().path;  // before the rows are moved out
    size_t n = page->size();
    for (auto& f : *page) rows.emplace(f.path, std::move(f));
    if (n < 10'000) break;
  }
  r.files_expected = std::max<uint64_t>(r.files_expected, rows.size());

  json mismatches = json::array();
  std::vector<SyncedFile> upserts;
  std::unordered_map<std::string, bool> seen;
  uint64_t hashed = 0;  // objects whose contents were read
  absl::Status apply_status = absl::OkStatus();
  auto last_progress = std::chrono::steady_clock::now();
  int64_t now_ms = ctx_->NowMs();
  auto flush = [&]() {
    if (upserts.empty() || !apply_status.ok()) return;
    apply_status = ctx_->index->ApplySyncedFiles(r.job_id, upserts, {});
    upserts.clear();
  };
  absl::Status list_status = ctx_->storage->List(prefix, [&](const ObjectInfo& o) {
    if (stop_ || !apply_status.ok()) return;
    std::string path = o.key.substr(prefix.size() + 1);
    if (!ValidateRelativePath(path).ok()) return;
    ++r.files_seen;
    r.bytes_seen += o.size;
    seen[path] = true;
    auto it = rows.find(path);
    const SyncedFile* existing = it == rows.end() ? nullptr : &it->second;
    std::string sha;
    if (r.verify) {
      ++hashed;
      auto digest = ctx_->storage->HashObject(o.key);
      if (!digest.ok()) {
        ++r.mismatches;
        if (mismatches.size() < kReportListMax) {
          mismatches.push_back({{"path", path}, {"error", std::string(digest.status().message())}});
        }
        return;
      }
      sha = digest->sha256;
      bool meta_bad = !o.sha256.empty() && o.sha256 != sha;
      bool index_bad = existing != nullptr && existing->sha256 != sha;
      if (meta_bad || index_bad) {
        ++r.mismatches;
        if (mismatches.size() < kReportListMax) {
          mismatches.push_back({{"path", path}, {"actual_sha256", sha}, {"stored_sha256", o.sha256},
                                {"index_sha256", existing ? existing->sha256 : ""}});
        }
        spdlog::warn("reconcile {}: checksum mismatch on {} (content {}, metadata {}, index {})", r.id,
                     o.key, sha, o.sha256, existing ? existing->sha256 : "-");
      }
    } else if (!o.sha256.empty()) {
      sha = o.sha256;
      if (existing != nullptr && existing->sha256 != sha && existing->size == o.size) {
        ++r.mismatches;
        if (mismatches.size() < kReportListMax) {
          mismatches.push_back({{"path", path}, {"stored_sha256", sha}, {"index_sha256", existing->sha256}});
        }
      }
    } else if (existing != nullptr && existing->size == o.size && existing->mtime_ns == o.mtime_ns) {
      sha = existing->sha256;
    } else {
      ++hashed;
      auto digest = ctx_->storage->HashObject(o.key);
      if (!digest.ok()) {
        apply_status = digest.status();
        return;
      }
      sha = digest->sha256;
    }
    if (existing == nullptr) {
      ++r.rows_added;
      upserts.push_back(SyncedFile{r.job_id, path, o.size, o.mtime_ns, sha, now_ms, r.id});
    } else if (existing->sha256 != sha || existing->size != o.size || existing->mtime_ns != o.mtime_ns) {
      ++r.rows_updated;
      upserts.push_back(SyncedFile{r.job_id, path, o.size, o.mtime_ns, sha, now_ms, r.id});
    } else {
      ++r.rows_unchanged;
    }
    if (upserts.size() >= kApplyBatch) flush();
    auto now = std::chrono::steady_clock::now();
    if (now - last_progress > std::chrono::milliseconds(500)) {
      last_progress = now;
      (void)ctx_->index->UpdateReconcile(r, ctx_->NowMs());
    }
  });
  flush();
  if (stop_) return;  // shutting down: another instance (or our restart) retakes it
  if (!list_status.ok()) return fail(absl::StrCat("listing storage: ", list_status.message()));
  if (!apply_status.ok()) return fail(absl::StrCat("updating the index: ", apply_status.message()));

  // Rows whose file is gone from storage. An empty listing against a populated index is far more
  // likely an unmounted share than a deleted job: refuse rather than wipe the index.
  std::vector<std::string> deletes;
  for (const auto& [path, row] : rows) {
    if (!seen.count(path)) deletes.push_back(path);
  }
  if (r.files_seen == 0 && !rows.empty()) {
    return fail(absl::StrCat("storage holds nothing under '", prefix, "' but the index has ", rows.size(),
                             " rows for this job; is the share mounted? Nothing was changed"));
  }
  for (size_t i = 0; i < deletes.size(); i += kApplyBatch) {
    std::vector<std::string> part(deletes.begin() + static_cast<long>(i),
                                  deletes.begin() + static_cast<long>(std::min(deletes.size(), i + kApplyBatch)));
    if (absl::Status st = ctx_->index->ApplySyncedFiles(r.job_id, {}, part); !st.ok()) {
      return fail(absl::StrCat("removing rows: ", st.message()));
    }
  }
  r.rows_removed = deletes.size();
  json removed = json::array();
  for (size_t i = 0; i < deletes.size() && i < kReportListMax; ++i) removed.push_back(deletes[i]);

  // Leftovers of interrupted uploads: reported, and removed once clearly stale.
  json temps = json::array();
  uint64_t temps_removed = 0;
  if (auto t = ctx_->storage->ListTempObjects(prefix); t.ok()) {
    int64_t now_ns = ctx_->NowMs() * 1'000'000;
    for (const auto& o : *t) {
      ++r.temp_files;
      bool stale = now_ns - o.mtime_ns > kTempFileMaxAgeNs;
      if (stale && ctx_->storage->RemoveTempObject(o.key).ok()) ++temps_removed;
      if (temps.size() < kReportListMax) {
        temps.push_back({{"key", o.key}, {"size", o.size}, {"removed", stale}});
      }
    }
  } else {
    spdlog::warn("reconcile {}: listing temp files: {}", r.id, t.status());
  }
  r.report_json = json{{"mismatches", mismatches}, {"removed_paths", removed}, {"temp_files", temps},
                       {"temp_files_removed", temps_removed}, {"files_hashed", hashed}}
                      .dump(-1, ' ', false, json::error_handler_t::replace);
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
               r.rows_updated, r.mismatches, r.temp_files, temps_removed);
}

// ---- janitor -------------------------------------------------------------------------------------

Janitor::Janitor(ServerContext* ctx, std::string holder)
    : ctx_(ctx), holder_(std::move(holder)), thread_([this] { Loop(); }) {}

Janitor::~Janitor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (holding_) {
    // Another instance takes over at its next pass instead of after the expiry.
    if (absl::Status st = ctx_->index->ReleaseLease(kJanitorLease, holder_); !st.ok()) {
      spdlog::warn("janitor: releasing the lease: {}", st);
    }
  }
}

void Janitor::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    cv_.wait_for(lock, ctx_->config.janitor_interval, [&] { return stop_; });
    if (stop_) break;
    lock.unlock();
    std::string done = RunOnce();
    if (!done.empty()) spdlog::info("janitor: {}", done);
    lock.lock();
  }
}

bool Janitor::Claim() {
  const int64_t ttl_ms =
      std::max<int64_t>(kJanitorLeaseIntervals * ctx_->config.janitor_interval.count(), 1'000);
  auto got = ctx_->index->TryAcquireLease(kJanitorLease, holder_, ttl_ms, ctx_->NowMs());
  if (!got.ok()) {
    spdlog::warn("janitor: cannot take the lease: {}", got.status());
    return false;
  }
  if (*got && !holding_)
    spdlog::info("janitor: this instance ({}) now does the housekeeping", holder_);
  if (!*got && holding_) spdlog::info("janitor: another instance took over the housekeeping");
  holding_ = *got;
  return *got;
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
  }
  if (ctx_->config.index_budget_bytes > 0) {
    if (auto size = ctx_->index->SizeBytes(); size.ok() && *size > ctx_->config.index_budget_bytes) {
      spdlog::warn("state index is {} bytes, over its budget of {} bytes", *size, ctx_->config.index_budget_bytes);
    }
  }
  return out;
}

}  // namespace ds
