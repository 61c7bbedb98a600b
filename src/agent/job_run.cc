#include "agent/job_run.h"

#include <map>
#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/compare_plan.h"
#include "agent/copy_stream.h"
#include "agent/deliverer.h"
#include "agent/run_parts.h"
#include "agent/storage_profile.h"
#include "agent/uploader.h"
#include "common/log.h"
#include "common/mutex.h"
#include "common/paths.h"
#include "common/time_util.h"
#include "http/http_types.h"
#include "sync/manifest_digest.h"

namespace ds {
namespace {

// Hash caches stay loaded between runs of this process, by agent.db path + job id: loading a
// job's cache reads every row of it, which dominated a no-op cycle. A run takes its job's cache
// out while it runs (runs of one job never overlap; if they did, the second loads its own).
class HashCacheShelf {
 public:
  static HashCacheShelf& Get() {
    static HashCacheShelf* shelf = new HashCacheShelf;
    return *shelf;
  }
  std::unique_ptr<HashCache> Take(const std::string& key) {
    MutexLock lock(&mu_);
    auto it = caches_.find(key);
    if (it == caches_.end()) return nullptr;
    std::unique_ptr<HashCache> cache = std::move(it->second);
    caches_.erase(it);
    return cache;
  }
  void Keep(const std::string& key, std::unique_ptr<HashCache> cache) {
    MutexLock lock(&mu_);
    caches_[key] = std::move(cache);
  }

 private:
  Mutex mu_;
  std::map<std::string, std::unique_ptr<HashCache>> caches_ ABSL_GUARDED_BY(mu_);
};

// Whether the storage at `url` stages unnamed files (asked once per storage and process;
// ProfileStorage logs the choice).
bool StagesUnnamed(const std::string& url, const std::string& run_id) {
  absl::StatusOr<StorageProfile> profile = ProfileStorage(url);
  if (!profile.ok()) {
    spdlog::warn("run={} storage {} cannot be opened ({}): not copying while scanning", run_id, url,
                 profile.status().message());
    return false;
  }
  return profile->copies_while_scanning;
}

// Whether the agent writes the storage at `url` itself (a directory or share), from what the
// URL's backend advertises: no I/O.
bool AgentWrites(const std::string& url) {
  absl::StatusOr<StorageUrl> parsed = ParseStorageUrl(url);
  return parsed.ok() && AdvertisedFeatures(*parsed).direct_writes;
}

}  // namespace

JobRun::JobRun(AgentServer* server, AgentServerFactory connect, const protocol::JobSpec& job,
               const JobRunOptions& options)
    : server_(server),
      connect_(std::move(connect)),
      job_(job),
      options_(options),
      run_(std::make_unique<RunContext>(RunContext{job, options, options.run_id, options.journal})),
      cache_key_(absl::StrCat((std::filesystem::path(options.state_dir) / "agent.db").string(),
                              "\n", job.id)),
      storage_url_(options.storage_url),
      storage_(std::make_unique<RunStorage>()) {}

JobRun::~JobRun() {
  if (deliverer_) deliverer_->Join();  // before what it uses goes away
  KeepCache();
}

absl::StatusOr<JobRunOutcome> JobRun::Run() {
  DS_RETURN_IF_ERROR(Begin());
  DS_RETURN_IF_ERROR(Decide());
  Scan();
  DS_ASSIGN_OR_RETURN(const bool online, Compare());
  if (online) {
    RememberKnown();
  } else {
    DS_RETURN_IF_ERROR(PlanOffline());
    deliverer_->StopReporting();
  }
  CountPlanned();
  // Object storage: each instruction carries its own write grant (or says the content is
  // already stored); only a directory/share is opened and written by the agent itself.
  if (plan_->AnyDirectWrite()) storage_->Open(*run_, storage_url_);
  Uploader uploader(*run_, scan_, root_, *plan_, storage_.get(), connect_, committer_.get());
  return Finish(uploader.Run());
}

absl::Status JobRun::Begin() {
  started_ = std::chrono::steady_clock::now();
  spdlog::info("run={} job={} starting ({}) in {}", run_->run_id, job_.name, options_.trigger,
               job_.source);
  JournalRun jr;
  jr.run_id = run_->run_id;
  jr.job = job_.name;
  jr.job_id = job_.id;
  jr.trigger = options_.trigger;
  jr.offline = true;  // until the server answers a compare
  jr.started_at_ms = SystemClock()->NowUnixMs();
  DS_RETURN_IF_ERROR(run_->journal->BeginRun(jr));
  cache_ = HashCacheShelf::Get().Take(cache_key_);
  if (!cache_) {
    auto opened = OpenHashCache((std::filesystem::path(options_.state_dir) / "agent.db").string(),
                                std::to_string(job_.id));
    if (opened.ok()) {
      cache_ = std::move(*opened);
    } else {
      spdlog::warn("run={} hash cache unavailable ({}); hashing every file", run_->run_id,
                   opened.status().message());
      cache_ = NewMemoryHashCache();
    }
  }
  // The digest of the cache's contents: the manifest of this job's previous scan.
  base_digest_ = cache_->digest();
  return absl::OkStatus();
}

absl::Status JobRun::Decide() {
  PolicyInputs in;
  in.copy_option = options_.copy_while_scanning;
  in.server_known_down = options_.server_known_down;
  in.can_connect = static_cast<bool>(connect_);
  in.have_manifest = cache_->size() > 0;
  in.agent_writes = AgentWrites(storage_url_);
  if (MayCopy(in) && in.have_manifest)
    in.stages_unnamed = StagesUnnamed(storage_url_, run_->run_id);
  std::optional<OpeningAnswer> opening;
  if (WantsOpeningCompare(in)) {
    DS_ASSIGN_OR_RETURN(opening, OpeningCompare());
  }
  policy_ = DecidePolicy(in, opening);
  if (policy_.copy == CopyMode::kFirstSync && storage_->Open(*run_, storage_url_) == nullptr) {
    policy_.copy = CopyMode::kOff;
  }
  // Compares overlap deliveries when copying while scanning: they get a session of their own
  // (one thread at a time each), made when the first is sent.
  if (policy_.copy != CopyMode::kOff) compare_session_ = std::make_unique<LazySession>(connect_);
  deliverer_ =
      std::make_unique<Deliverer>(*run_, server_, policy_.copy == CopyMode::kDelta, &outcome_);
  committer_ = std::make_unique<GroupCommitter>(*run_, storage_.get(), deliverer_.get());
  return absl::OkStatus();
}

absl::StatusOr<OpeningAnswer> JobRun::OpeningCompare() {
  protocol::CompareRequest opening;
  opening.run_id = run_->run_id;
  opening.trigger = options_.trigger;
  opening.last = false;
  absl::StatusOr<protocol::CompareResponse> resp =
      server_->Compare(job_.name, opening, kServerAttempts);
  OpeningAnswer answer;
  if (resp.ok()) {
    DS_RETURN_IF_ERROR(run_->journal->MarkOnline(run_->run_id));
    answered_ = answer.answered = true;
    if (!resp->storage_url.empty()) storage_url_ = resp->storage_url;
    answer.index_empty = resp->index_empty;
    answer.stages_unnamed = resp->index_empty && StagesUnnamed(storage_url_, run_->run_id);
  } else if (Unreachable(resp.status())) {
    answer.unreachable = true;
  } else {
    DS_RETURN_IF_ERROR(
        run_->journal->CloseRun(run_->run_id, false, std::string(resp.status().message())));
    return resp.status();
  }
  return answer;
}

void JobRun::Scan() {
  // The source is read only when it lies under a folder the agent's own config allows: else the
  // scan fails (the run's error says so) and nothing of it is read.
  const absl::StatusOr<std::filesystem::path> source = options_.sources->Admit(job_.source);
  root_ = source.ok() ? *source : std::filesystem::path(job_.source);
  ScanOptions so;
  so.root = root_;
  so.includes = job_.includes;
  so.excludes = job_.excludes;
  so.settle = std::chrono::milliseconds(job_.settle_ms);
  so.now_ns = SystemClock()->NowUnixMs() * 1'000'000;
  so.cancel = options_.stop;
  so.hash_threads = std::max(1, options_.upload_threads);  // the same parallelism as the copies
  auto scan = [&]() -> absl::StatusOr<ScanResult> {
    if (!source.ok()) return source.status();
    return ScanJob(so, cache_.get());
  };
  if (policy_.copy == CopyMode::kOff) {
    FinishScan(scan());
  } else {
    copies_ = std::make_unique<CopyStream>(*run_, policy_, storage_url_, base_digest_,
                                           storage_.get(), compare_session_.get(), committer_.get(),
                                           deliverer_.get(), &answered_);
    so.read_new = [this](const std::string& path, platform::File& file, uint64_t size,
                         int64_t mtime_ns) { return copies_->ReadNew(path, file, size, mtime_ns); };
    absl::StatusOr<ScanResult> scanned = absl::UnknownError("not scanned");
    std::thread scanner([&] {
      scanned = scan();
      copies_->ScanDone();
    });
    copies_->CompareLoop();
    scanner.join();
    FinishScan(std::move(scanned));
  }
  spdlog::info("run={} scanned {} files ({} bytes), hashed {} ({} bytes), {} unsettled, {} skipped",
               run_->run_id, scan_.files.size(), scan_.total_bytes, scan_.files_hashed,
               scan_.bytes_hashed, scan_.files_unsettled, scan_.skipped.size());
  if (copies_) {
    spdlog::info("run={} copied {} file(s) while scanning{}; {} of them planned and committed",
                 run_->run_id, scan_.read_by_hook.size(),
                 copies_->streamed() ? "" : " (comparing them failed)", copies_->planned_files());
  }
}

void JobRun::FinishScan(absl::StatusOr<ScanResult> scanned) {
  if (!scanned.ok()) {
    run_error_ = absl::StrCat("scan of ", job_.source, " failed: ", scanned.status().message());
    spdlog::error("run={} {}", run_->run_id, run_error_);
    return;
  }
  scan_ = std::move(*scanned);
  scanned_ = true;
  digest_ = ManifestDigest(scan_.files);
  if (absl::Status st = cache_->EndScan(); !st.ok()) {
    spdlog::warn("run={} hash cache: {}", run_->run_id, st.message());
  }
}

absl::StatusOr<bool> JobRun::Compare() {
  const bool streamed = copies_ && copies_->streamed();
  plan_ = std::make_unique<ComparePlan>(
      scan_, ComparePlan::Inputs{job_.dest_prefix, digest_, base_digest_,
                                 run_error_.empty() && scan_.skipped.empty(), streamed,
                                 policy_.copy == CopyMode::kFirstSync});
  // Retried just now by a compare of copies: the probe goes offline at once.
  const int attempts = copies_ && copies_->unreachable() ? 1 : policy_.compare_attempts;
  // The main session, kept alive since the last request, unless copies were compared: their
  // results may be delivering on it now.
  AgentServer* session =
      compare_session_ && compare_session_->made() ? compare_session_->get() : server_;
  bool online = true;
  while (online && !plan_->done()) {
    const protocol::CompareRequest req = plan_->Next(run_->run_id, options_.trigger);
    absl::StatusOr<protocol::CompareResponse> resp = session->Compare(job_.name, req, attempts);
    if (!resp.ok() && plan_->mode() == ComparePlan::Mode::kDelta &&
        http::IsBaseMoved(resp.status())) {
      spdlog::info("run={} {}; sending the whole manifest", run_->run_id, resp.status().message());
      plan_->OnBaseMoved();
    } else if (!resp.ok()) {
      online = false;
      if (!Unreachable(resp.status()) || answered_ || !policy_.offline_allowed) {
        return Fail(resp.status());
      }
    } else {
      DS_RETURN_IF_ERROR(Answered(std::move(*resp)));
    }
  }
  if (plan_->matched()) {
    spdlog::info("run={} manifest unchanged since the last successful run: nothing to compare",
                 run_->run_id);
  }
  deliverer_->Release();  // no more compares: the next batch delivered reports the held ones
  if (copies_) {
    for (auto& u : copies_->TakeSetAside()) plan_->Plan(std::move(u));
  }
  plan_->Seal();
  return online;
}

absl::Status JobRun::Answered(protocol::CompareResponse answer) {
  if (!answered_) DS_RETURN_IF_ERROR(run_->journal->MarkOnline(run_->run_id));
  answered_ = true;
  if (!answer.storage_url.empty()) storage_url_ = answer.storage_url;
  const bool probing = plan_->mode() == ComparePlan::Mode::kProbe;
  plan_->OnAnswer(std::move(answer));
  if (probing && plan_->mode() == ComparePlan::Mode::kDelta) {
    spdlog::info("run={} {} of {} file(s) changed since the last run: comparing only those{}",
                 run_->run_id, scan_.hashed.size(), scan_.files.size(),
                 copies_ && copies_->streamed()
                     ? absl::StrCat(" (", scan_.read_by_hook.size(), " of them while scanning)")
                     : "");
  }
  return absl::OkStatus();
}

absl::Status JobRun::Fail(const absl::Status& st) {
  deliverer_->Join();
  DS_RETURN_IF_ERROR(run_->journal->CloseRun(run_->run_id, false, std::string(st.message())));
  if (!answered_ && Unreachable(st)) DS_RETURN_IF_ERROR(run_->journal->ForgetRun(run_->run_id));
  return st;
}

absl::Status JobRun::ForEachNotIndexed(const std::function<void(size_t)>& differs) const {
  // Walks the manifest against the journal's indexed_files rows (both in path order), never
  // holding the job's indexed rows in memory.
  const Manifest& files = scan_.files;
  const size_t n = files.size();
  size_t i = 0;
  absl::Status st =
      run_->journal->ForEachIndexed(job_.id, [&](const std::string& path, const IndexedContent& c) {
        for (; i < n && files[i].path < path; ++i) differs(i);
        if (i < n && files[i].path == path) {
          const Manifest::Ref e = files[i];
          if (c.size != e.size || c.sha256 != Sha256DigestHex(*e.sha256)) differs(i);
          ++i;
        }
      });
  for (; i < n; ++i) differs(i);
  return st;
}

void JobRun::RememberKnown() {
  if (plan_->matched()) return;
  std::vector<size_t> known;
  if (std::optional<std::vector<size_t>> sent = plan_->SentUnplanned()) {
    // Only what was sent can differ from what was remembered for the base (and the copies
    // compared while scanning were remembered then).
    known = std::move(*sent);
  } else if (absl::Status st = ForEachNotIndexed([&](size_t i) {
               if (!plan_->IsPlanned(i)) known.push_back(i);
             });
             !st.ok()) {
    spdlog::warn("run={} {}", run_->run_id, st);
  }
  std::vector<std::pair<std::string, IndexedContent>> rows;
  absl::Status st = absl::OkStatus();
  for (size_t k = 0; k < known.size() && st.ok(); ++k) {
    const Manifest::Ref e = scan_.files[known[k]];
    rows.emplace_back(std::string(e.path), IndexedContent{e.size, Sha256DigestHex(*e.sha256)});
    if (rows.size() >= 10'000 || k + 1 == known.size()) {
      st = run_->journal->RememberIndexed(job_.id, rows);
      rows.clear();
    }
  }
  if (!st.ok()) spdlog::warn("run={} {}", run_->run_id, st);
}

absl::Status JobRun::PlanOffline() {
  outcome_.offline = true;
  DS_RETURN_IF_ERROR(ForEachNotIndexed([&](size_t i) { plan_->PlanEntry(i); }));
  plan_->Seal();
  spdlog::warn("run={} server unreachable: syncing offline onto {} and journaling the results",
               run_->run_id, storage_url_);
  return absl::OkStatus();
}

void JobRun::CountPlanned() {
  spdlog::info("run={} {} file(s) to upload to {}", run_->run_id, plan_->size(), storage_url_);
  if (RunCounters* c = options_.counters; c != nullptr) {
    c->files_total = (copies_ ? copies_->planned_files() : 0) + plan_->size();
    c->bytes_total = (copies_ ? copies_->planned_bytes() : 0) + plan_->PlannedBytes();
  }
}

absl::StatusOr<JobRunOutcome> JobRun::Finish(std::vector<protocol::FileResult> rest) {
  for (const auto& p : scan_.skipped) {
    protocol::FileResult r;
    r.path = p.path;
    r.status = "skipped";
    r.error = p.error;
    if (ValidateRelativePath(r.path).ok()) {
      rest.push_back(std::move(r));
    } else {
      spdlog::warn("run={} skipped a file with an unsupported name: {}", run_->run_id, p.error);
    }
  }
  absl::Status st = deliverer_->Finish(std::move(rest), run_error_);
  if (deliverer_->reported_all()) {
    DS_RETURN_IF_ERROR(run_->journal->ForgetRun(run_->run_id));
  } else {
    outcome_.state = "journaled";
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  spdlog::info("run={} job={} {}{}: {} uploaded ({} bytes), {} failed, {} skipped in {:.2f}s",
               run_->run_id, job_.name, outcome_.state, outcome_.offline ? " (offline)" : "",
               outcome_.uploaded, outcome_.bytes_uploaded, outcome_.failed, outcome_.skipped, secs);
  if (!st.ok()) return st;
  return outcome_;
}

void JobRun::KeepCache() {
  // After a failed scan the cache was partly consumed: it is dropped and the next run reads
  // agent.db again.
  if (!scanned_) return;
  scanned_ = false;
  cache_->Adopt(std::move(scan_.files), std::move(digest_));
  HashCacheShelf::Get().Keep(cache_key_, std::move(cache_));
}

}  // namespace ds
