#include "server/scrub.h"

#include <algorithm>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/json.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/rate_limiter.h"
#include "server/context.h"
#include "server/storage_walk.h"

namespace ds {
namespace {

using nlohmann::json;

constexpr size_t kApplyBatch = 5'000;          // rows per index transaction
constexpr size_t kReportListMax = 200;         // entries kept in a report list
constexpr int64_t kStaleScrubMs = 5 * 60'000;  // a running scrub silent this long died
constexpr char kScrubLease[] = "scrub";
constexpr int64_t kLeaseChecks = 3;  // lease lifetime, in schedule checks
constexpr int kRunsLookedAt = 20;    // newest runs read per lost-file check

// How often the scheduler looks for due jobs: a quarter of the interval, within [1 s, 1 min].
int64_t ScheduleCheckMs(int64_t interval_ms) {
  return std::clamp<int64_t>(interval_ms / 4, 1'000, 60'000);
}

// Appends to a bounded report list.
void Bounded(json* list, json entry) {
  if (list->size() < kReportListMax) list->push_back(std::move(entry));
}

// FNV-1a, 64 bits: stable across platforms and releases (the sample must be reproducible).
uint64_t Fnv1a(const std::string& a, const std::string& b) {
  uint64_t h = 14695981039346656037ull;
  auto mix = [&h](const std::string& s) {
    for (unsigned char c : s) {
      h ^= c;
      h *= 1099511628211ull;
    }
  };
  mix(a);
  h ^= 0xff;  // separator: ("ab", "c") and ("a", "bc") differ
  h *= 1099511628211ull;
  mix(b);
  return h;
}

// One scrub of one job: the shared walk, what it finds healed, and the report.
class ScrubPass {
 public:
  // REQUIRES: every pointee outlives the pass.
  ScrubPass(ServerContext* ctx, Scrub* s, const std::atomic<bool>* stop, Job job, Runner runner);
  // The whole pass: "" when it succeeded (s is filled in) or when shutting down (*stopped), else
  // the failure (nothing of the index was changed then unless the message says so).
  std::string Run(bool* stopped);

 private:
  bool OnObject(const WalkItem& item);
  void Rehash(const WalkItem& item);
  void OnExtra(const WalkItem& item);
  void OnMismatch(const WalkItem& item, const std::string& kind, const std::string& stored_sha);
  void OnMissing(const SyncedFile& row);
  // Queues the row's removal and records the file as lost; returns the report action.
  std::string Replan(const SyncedFile& row, const std::string& kind);
  std::string Apply();
  void CheckEarlierLost();
  void SweepTemps();
  void Unhealed(const std::string& path, const std::string& reason) {
    ++s_.unhealed;
    Bounded(&unhealed_, {{"path", path}, {"reason", reason}});
  }
  void Progress();

  ServerContext* const ctx_;
  Scrub& s_;
  const std::atomic<bool>& stop_;
  const Job job_;
  const Runner runner_;
  // Who can upload a lost file again: the job's runner, while it is approved.
  const bool runner_can_upload_;
  StorageWalk walk_;
  std::unique_ptr<RateLimiter> limiter_;  // null = no rate cap
  json missing_ = json::array(), extra_ = json::array(), mismatches_ = json::array(),
       temps_ = json::array(), unhealed_ = json::array();
  std::vector<SyncedFile> upserts_;   // strays to index
  std::vector<std::string> deletes_;  // rows to remove (their files are planned again)
  std::vector<ScrubLost> lost_;       // what the removed rows described
  std::vector<std::string> forget_;   // keys whose stored hash metadata lies about the content
  std::vector<ScrubLost> earlier_;    // lost entries of earlier scrubs
  absl::Status walk_status_ = absl::OkStatus();
  std::chrono::steady_clock::time_point last_progress_ = std::chrono::steady_clock::now();
  bool run_in_flight_ = false;  // a run of the job was open when the pass began
  uint64_t records_written_ = 0;  // hash records written to storage (HashAndRecord)
  const int64_t now_ms_;
};

ScrubPass::ScrubPass(ServerContext* ctx, Scrub* s, const std::atomic<bool>* stop, Job job,
                     Runner runner)
    : ctx_(ctx),
      s_(*s),
      stop_(*stop),
      job_(std::move(job)),
      runner_(std::move(runner)),
      runner_can_upload_(runner_.status == "approved"),
      walk_(ctx->index.get(), ctx->storage.get(), job_.spec.id, job_.spec.dest_prefix),
      now_ms_(ctx->NowMs()) {
  if (ctx->config.scrub_rate > 0) {
    limiter_ = std::make_unique<RateLimiter>(ctx->config.scrub_rate,
                                             std::max<uint64_t>(1, ctx->config.scrub_rate / 10));
  }
}

std::string ScrubPass::Run(bool* stopped) {
  if (absl::Status st = walk_.LoadRows(); !st.ok())
    return absl::StrCat("reading the index: ", st.message());
  auto earlier = ctx_->index->ListScrubLost(job_.spec.id);
  if (!earlier.ok()) return absl::StrCat("reading lost files: ", earlier.status().message());
  earlier_ = std::move(*earlier);
  RunFilter open;
  open.job_id = job_.spec.id;
  open.state = "running";
  open.limit = 1;
  auto running = ctx_->index->ListRuns(open);
  if (!running.ok()) return absl::StrCat("reading runs: ", running.status().message());
  run_in_flight_ = !running->empty();
  absl::Status list_status = walk_.Run([this](const WalkItem& item) { return OnObject(item); });
  *stopped = stop_;
  if (stop_) return "";  // shutting down: another instance (or our restart) retakes it
  if (!list_status.ok()) return absl::StrCat("listing storage: ", list_status.message());
  if (!walk_status_.ok()) return absl::StrCat("reading storage: ", walk_status_.message());
  // Rather than plan every file again.
  if (std::string refusal = walk_.EmptyListingRefusal(); !refusal.empty()) return refusal;
  for (const SyncedFile* row : walk_.Missing()) OnMissing(*row);
  if (std::string error = Apply(); !error.empty()) return error;
  CheckEarlierLost();
  SweepTemps();
  s_.report_json = json{
      {"missing", missing_},
      {"extra", extra_},
      {"mismatches", mismatches_},
      {"temp_files", temps_},
      {"hash_records_written", records_written_},
      {"unhealed",
       unhealed_}}.dump(-1, ' ', false, json::error_handler_t::replace);
  return "";
}

bool ScrubPass::OnObject(const WalkItem& item) {
  if (stop_) return false;
  if (limiter_ != nullptr && !limiter_->Acquire(1, &stop_)) return false;
  ++s_.objects_listed;
  s_.bytes_listed += item.object->size;
  switch (item.finding) {
    case WalkFinding::kExtra:
      OnExtra(item);
      break;
    case WalkFinding::kSizeMismatch:
      OnMismatch(item, "size", item.object->sha256);
      break;
    case WalkFinding::kHashMismatch:
      OnMismatch(item, "hash", item.object->sha256);
      break;
    case WalkFinding::kMatched:
      // Where hash records sit beside the objects (a share's sidecars), a record can go stale
      // without the content changing: such an object is read once and gets its record again.
      if (InRehashSample(s_.id, item.row->path, s_.rehash_fraction) ||
          (item.object->sha256.empty() && !ctx_->storage->Features().metadata_on_object)) {
        Rehash(item);
      }
      break;
  }
  Progress();
  return walk_status_.ok();
}

void ScrubPass::Rehash(const WalkItem& item) {
  ++s_.objects_rehashed;
  bool recorded = false;
  auto digest = HashAndRecord(ctx_->storage.get(), *item.object, &recorded);
  records_written_ += recorded;
  if (!digest.ok()) {
    Unhealed(item.row->path, absl::StrCat("re-hashing failed: ", digest.status().message()));
    return;
  }
  if (digest->sha256 == item.row->sha256 && digest->size == item.row->size) return;
  // The stored bytes are not what was synced, whatever the metadata says: the metadata must not
  // make the re-upload look identical to them.
  forget_.push_back(item.object->key);
  OnMismatch(item, "hash", digest->sha256);
}

void ScrubPass::OnExtra(const WalkItem& item) {
  const ObjectInfo& o = *item.object;
  // While a run of the job is open, an object without a row is most likely one it uploaded and
  // has not reported yet: its `complete` indexes it. A real stray is found by a later scrub.
  if (run_in_flight_) return;
  ++s_.extra;
  std::string sha = o.sha256;
  if (sha.empty()) {
    bool recorded = false;
    auto digest = HashAndRecord(ctx_->storage.get(), o, &recorded);
    records_written_ += recorded;
    if (!digest.ok()) {
      Unhealed(item.path,
               absl::StrCat("cannot read the stray object: ", digest.status().message()));
      Bounded(&extra_, {{"path", item.path}, {"size", o.size}, {"action", "unhealed"}});
      return;
    }
    sha = digest->sha256;
  }
  upserts_.push_back(SyncedFile{job_.spec.id, item.path, o.size, o.mtime_ns, sha, now_ms_, s_.id});
  ++s_.healed;
  Bounded(&extra_, {{"path", item.path}, {"size", o.size}, {"action", "indexed"}});
}

void ScrubPass::OnMismatch(const WalkItem& item, const std::string& kind,
                           const std::string& stored_sha) {
  const SyncedFile& row = *item.row;
  ++(kind == "size" ? s_.size_mismatches : s_.hash_mismatches);
  std::string action = Replan(row, kind);
  spdlog::warn(
      "scrub {} of {}/{}: {} differs from the index ({} mismatch: {} bytes, SHA-256 {}; "
      "index {} bytes, {}): {}",
      s_.id, s_.runner_name, s_.job_name, item.object->key, kind, item.object->size,
      stored_sha.empty() ? "-" : stored_sha, row.size, row.sha256, action);
  Bounded(&mismatches_, {{"path", row.path},
                         {"kind", kind},
                         {"index_size", row.size},
                         {"stored_size", item.object->size},
                         {"index_sha256", row.sha256},
                         {"stored_sha256", stored_sha},
                         {"action", action}});
}

void ScrubPass::OnMissing(const SyncedFile& row) {
  ++s_.missing;
  std::string action = Replan(row, "missing");
  spdlog::warn("scrub {} of {}/{}: {} is missing from storage: {}", s_.id, s_.runner_name,
               s_.job_name, JoinKey(job_.spec.dest_prefix, row.path), action);
  Bounded(&missing_,
          {{"path", row.path}, {"size", row.size}, {"sha256", row.sha256}, {"action", action}});
}

std::string ScrubPass::Replan(const SyncedFile& row, const std::string& kind) {
  if (!runner_can_upload_) {
    // Nobody can upload it again: the row stays, so every scrub reports the loss.
    Unhealed(row.path, absl::StrCat("runner ", runner_.name, " is ", runner_.status,
                                    ": no runner can upload the file again"));
    return "unhealed";
  }
  deletes_.push_back(row.path);
  lost_.push_back(ScrubLost{job_.spec.id, row.path, row.size, row.sha256, kind, now_ms_, s_.id});
  ++s_.healed;
  return "replanned";
}

// The index changes, in batches: the lost files first (so a `complete` that uploads one clears
// it), then the rows. Removing rows forgets the job's manifest digest, so the next run compares
// file by file and plans what is missing.
std::string ScrubPass::Apply() {
  for (const std::string& key : forget_) {
    absl::Status st = ctx_->storage->ForgetContentHash(key);
    if (!st.ok() && !absl::IsUnimplemented(st)) {
      return absl::StrCat("dropping the stale hash metadata of ", key, ": ", st.message());
    }
  }
  if (absl::Status st = ctx_->index->RecordScrubLost(lost_); !st.ok()) {
    return absl::StrCat("recording lost files: ", st.message());
  }
  for (size_t i = 0; i < std::max(upserts_.size(), deletes_.size()); i += kApplyBatch) {
    auto slice = [i](const auto& v) {
      using V = std::decay_t<decltype(v)>;
      if (i >= v.size()) return V{};
      return V(v.begin() + static_cast<long>(i),
               v.begin() + static_cast<long>(std::min(v.size(), i + kApplyBatch)));
    };
    if (absl::Status st =
            ctx_->index->ApplySyncedFiles(job_.spec.id, slice(upserts_), slice(deletes_));
        !st.ok()) {
      return absl::StrCat("updating the index: ", st.message());
    }
  }
  return "";
}

// Lost files of earlier scrubs still waiting for their upload: unhealed once the runner cannot
// upload them or a run of the job closed after the detection without uploading them (a
// `complete` that uploads one clears it). Each is reported once, then forgotten.
void ScrubPass::CheckEarlierLost() {
  if (earlier_.empty()) return;
  std::unordered_set<std::string> now_lost(deletes_.begin(), deletes_.end());
  RunFilter filter;
  filter.job_id = job_.spec.id;
  filter.limit = kRunsLookedAt;
  auto runs = ctx_->index->ListRuns(filter);
  std::vector<std::string> done;
  for (const ScrubLost& l : earlier_) {
    if (now_lost.count(l.path)) continue;  // found again: its entry was just replaced
    std::string reason;
    if (walk_.HasRow(l.path)) {
      done.push_back(l.path);  // indexed again (a reconcile, or an upload whose entry stayed)
      continue;
    }
    if (!runner_can_upload_) {
      reason = absl::StrCat("runner ", runner_.name, " is ", runner_.status,
                            ": no runner can upload it again");
    } else if (runs.ok()) {
      for (const ds::Run& r : *runs) {
        const auto& sum = r.summary;
        if (sum.started_at_ms > l.detected_at_ms &&
            (sum.state == "succeeded" || sum.state == "partial")) {
          reason = absl::StrCat("source no longer on the runner: run ", sum.run_id, " (", sum.state,
                                ") did not upload it again after the scrub ", l.scrub_id,
                                " found it ", l.kind == "missing" ? "missing" : "corrupted");
          break;
        }
      }
    }
    if (reason.empty()) continue;  // still waiting for the runner's next run
    Unhealed(l.path, reason);
    done.push_back(l.path);
  }
  if (auto n = ctx_->index->ClearScrubLost(job_.spec.id, done); !n.ok()) {
    spdlog::warn("scrub {}: forgetting reported lost files: {}", s_.id, n.status());
  }
}

void ScrubPass::SweepTemps() {
  auto temps = SweepTempObjects(ctx_->storage.get(), job_.spec.dest_prefix, ctx_->NowMs());
  if (!temps.ok()) {
    spdlog::warn("scrub {}: listing temp files: {}", s_.id, temps.status());
    return;
  }
  for (const TempFinding& t : *temps) {
    ++s_.temp_files;
    if (t.removed) ++s_.healed;
    Bounded(&temps_, {{"key", t.object.key},
                      {"size", t.object.size},
                      {"age_s", t.age_ns / 1'000'000'000},
                      {"removed", t.removed}});
  }
}

void ScrubPass::Progress() {
  auto now = std::chrono::steady_clock::now();
  if (now - last_progress_ < std::chrono::milliseconds(500)) return;
  last_progress_ = now;
  (void)ctx_->index->UpdateScrub(s_, ctx_->NowMs());
}

}  // namespace

bool ScrubHasDrift(const Scrub& s) {
  return s.missing + s.extra + s.size_mismatches + s.hash_mismatches > 0;
}

bool InRehashSample(const std::string& scrub_id, const std::string& path, double fraction) {
  if (fraction >= 1.0) return true;
  if (!(fraction > 0.0)) return false;
  // The top 53 bits as a uniform number in [0, 1).
  const double u = static_cast<double>(Fnv1a(scrub_id, path) >> 11) / 9007199254740992.0;
  return u < fraction;
}

int64_t NextScrubDueMs(const Scrub* last, int64_t job_created_at_ms, int64_t interval_ms) {
  if (interval_ms <= 0) return 0;
  return (last != nullptr ? last->requested_at_ms : job_created_at_ms) + interval_ms;
}

std::string ScrubJson(const Scrub& s, int64_t now_ms) {
  json j{{"id", s.id},
         {"runner", s.runner_name},
         {"job", s.job_name},
         {"state", s.state},
         {"trigger", s.trigger},
         {"rehash_fraction", s.rehash_fraction},
         {"requested_at", FormatIsoUtc(s.requested_at_ms)},
         {"started_at", FormatIsoUtc(s.started_at_ms)},
         {"finished_at", FormatIsoUtc(s.finished_at_ms)},
         {"objects_listed", s.objects_listed},
         {"bytes_listed", s.bytes_listed},
         {"objects_rehashed", s.objects_rehashed},
         {"missing", s.missing},
         {"extra", s.extra},
         {"size_mismatches", s.size_mismatches},
         {"hash_mismatches", s.hash_mismatches},
         {"temp_files", s.temp_files},
         {"healed", s.healed},
         {"unhealed", s.unhealed},
         {"drift", ScrubHasDrift(s)},
         {"error", s.error}};
  int64_t end = s.finished_at_ms > 0 ? s.finished_at_ms : (s.state == "running" ? now_ms : 0);
  j["elapsed_s"] =
      s.started_at_ms > 0 && end > s.started_at_ms ? (end - s.started_at_ms) / 1000.0 : 0.0;
  json report = ParseJsonOr(s.report_json);
  j["report"] = report.is_object() ? report : json::object();
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

// ---- the service
// ---------------------------------------------------------------------------------

ScrubService::ScrubService(ServerContext* ctx, std::string worker_id)
    : ctx_(ctx),
      worker_id_(worker_id),
      lease_(ctx->index.get(), kScrubLease, std::move(worker_id), "schedules the scrubs"),
      worker_({.name = "scrub", .interval = std::chrono::seconds(1), .call_at_start = true},
              [this] { Pass(); }) {}

void ScrubService::Pass() {
  while (!worker_.stopping()) {
    const int64_t interval = ctx_->config.scrub_interval.count();
    int64_t now = ctx_->NowMs();
    if (interval > 0 && now - last_schedule_ms_ >= ScheduleCheckMs(interval)) {
      last_schedule_ms_ = now;
      if (int n = ScheduleDue(); n > 0) spdlog::info("scrub: {} scheduled scrub(s) queued", n);
    }
    auto claimed = ctx_->index->ClaimScrub(worker_id_, now, now - kStaleScrubMs);
    if (!claimed.ok()) {
      if (!absl::IsNotFound(claimed.status())) spdlog::warn("scrub claim: {}", claimed.status());
      return;
    }
    RunOne(*claimed);
  }
}

bool ScrubService::Claim() {
  return lease_.Claim(kLeaseChecks * ScheduleCheckMs(ctx_->config.scrub_interval.count()),
                      ctx_->NowMs());
}

int ScrubService::ScheduleDue() {
  const int64_t interval = ctx_->config.scrub_interval.count();
  if (interval <= 0 || !Claim()) return 0;
  auto jobs = ctx_->index->ListJobs(std::nullopt);
  auto latest = ctx_->index->LatestScrubs({});
  if (!jobs.ok() || !latest.ok()) {
    spdlog::warn("scrub: reading jobs and scrubs failed; no scrub scheduled this time");
    return 0;
  }
  std::map<int64_t, const Scrub*> last;
  for (const Scrub& s : *latest) last[s.job_id] = &s;
  const int64_t now = ctx_->NowMs();
  int queued = 0;
  for (const Job& j : *jobs) {
    auto it = last.find(j.spec.id);
    const Scrub* prev = it == last.end() ? nullptr : it->second;
    if (prev != nullptr && (prev->state == "queued" || prev->state == "running")) continue;
    if (NextScrubDueMs(prev, j.created_at_ms, interval) > now) continue;
    auto s =
        ctx_->index->CreateScrub(NewUuid(), j.spec.id, "schedule", ctx_->config.scrub_rehash, now);
    if (s.ok()) {
      ++queued;
    } else if (!absl::IsAlreadyExists(s.status())) {
      spdlog::warn("scrub: queueing {}/{}: {}", j.runner_name, j.spec.name, s.status());
    }
  }
  return queued;
}

void ScrubService::RunOne(Scrub s) {
  auto fail = [&](const std::string& error) {
    s.state = "failed";
    s.error = error;
    s.finished_at_ms = ctx_->NowMs();
    spdlog::error("scrub {} of {}/{} failed: {}", s.id, s.runner_name, s.job_name, error);
    ctx_->metrics.Add("datasync_scrubs_total", {{"result", "failed"}});
    if (absl::Status st = ctx_->index->UpdateScrub(s, ctx_->NowMs()); !st.ok()) {
      spdlog::error("scrub {}: recording failure: {}", s.id, st);
    }
  };
  auto job = ctx_->index->GetJobById(s.job_id);
  if (!job.ok()) return fail(std::string(job.status().message()));
  auto runner = ctx_->index->GetRunnerById(job->runner_id);
  if (!runner.ok()) return fail(std::string(runner.status().message()));
  spdlog::info("scrub {} of {}/{} ({}, re-hashing {:.0f}%): listing {} under '{}'", s.id,
               s.runner_name, s.job_name, s.trigger, 100 * s.rehash_fraction,
               ctx_->storage->Describe(), job->spec.dest_prefix);
  ScrubPass pass(ctx_, &s, worker_.stop_flag(), std::move(*job), std::move(*runner));
  bool stopped = false;
  std::string error = pass.Run(&stopped);
  ctx_->metrics.Add("datasync_scrub_objects_listed_total", {},
                    static_cast<double>(s.objects_listed));
  if (!error.empty()) return fail(error);
  if (stopped) return;
  s.state = "succeeded";
  s.finished_at_ms = ctx_->NowMs();
  if (absl::Status st = ctx_->index->UpdateScrub(s, ctx_->NowMs()); !st.ok()) {
    spdlog::error("scrub {}: recording result: {}", s.id, st);
    return;
  }
  ctx_->metrics.Add("datasync_scrubs_total", {{"result", "succeeded"}});
  spdlog::log(ScrubHasDrift(s) || s.unhealed > 0 ? spdlog::level::warn : spdlog::level::info,
              "scrub {} of {}/{} done: {} objects ({} bytes, {} re-hashed), {} missing, {} extra, "
              "{} size and {} hash mismatches, {} temp files; {} healed, {} unhealed",
              s.id, s.runner_name, s.job_name, s.objects_listed, s.bytes_listed, s.objects_rehashed,
              s.missing, s.extra, s.size_mismatches, s.hash_mismatches, s.temp_files, s.healed,
              s.unhealed);
  if (ctx_->alerts) ctx_->alerts->Wake();
}

}  // namespace ds
