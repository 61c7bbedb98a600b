#include "agent/job_runner.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <functional>
#include <set>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "agent/storage_profile.h"
#include "agent/temp_cleanup.h"
#include "agent/upload_outcome.h"
#include "common/log.h"
#include "common/paths.h"
#include "common/time_util.h"
#include "http/http_types.h"
#include "storage/azblob/sas.h"
#include "storage/storage.h"
#include "sync/hash_cache.h"
#include "sync/manifest_digest.h"
#include "sync/scanner.h"

namespace ds {
namespace {

constexpr size_t kCompareBatch = 5'000;
constexpr size_t kCompleteBatch = 1'000;
constexpr auto kCompleteEvery = std::chrono::seconds(2);
// Copying while scanning in a delta run: how long copies wait for their compare at most.
constexpr auto kDeltaCompareEvery = std::chrono::milliseconds(100);
// Kept versions named one by one in the agent's log per run; the rest are counted (every one is
// in the run's files on the server, and the server raises the file-changed alerts).
constexpr size_t kKeptVersionsLogged = 20;
// Staged (written, not yet committed) bytes that trigger a group commit before kCompleteBatch
// files or kCompleteEvery: bounds the dirty data one flush writes back.
constexpr uint64_t kCommitBytes = uint64_t{512} << 20;

bool Stopped(const std::atomic<bool>* stop) { return stop != nullptr && stop->load(); }

// Hash caches stay loaded between runs of this process, by agent.db path + job id: loading a
// job's cache reads every row of it, which dominated a no-op cycle. A run takes its job's cache
// out while it runs (runs of one job never overlap; if they did, the second loads its own).
std::mutex g_hash_caches_mu;
std::map<std::string, std::unique_ptr<HashCache>> g_hash_caches;  // Protected by g_hash_caches_mu.

std::unique_ptr<HashCache> TakeCachedHashCache(const std::string& key) {
  std::lock_guard<std::mutex> lock(g_hash_caches_mu);
  auto it = g_hash_caches.find(key);
  if (it == g_hash_caches.end()) return nullptr;
  std::unique_ptr<HashCache> cache = std::move(it->second);
  g_hash_caches.erase(it);
  return cache;
}

void KeepHashCache(const std::string& key, std::unique_ptr<HashCache> cache) {
  if (!cache) return;
  std::lock_guard<std::mutex> lock(g_hash_caches_mu);
  g_hash_caches[key] = std::move(cache);
}

// Whether a run copies files into `url` while it scans them: only into storage that stages
// unnamed files (asked once per storage and process; ProfileStorage logs the choice).
bool CopiesWhileScanning(const std::string& url, const std::string& run_id) {
  absl::StatusOr<StorageProfile> profile = ProfileStorage(url);
  if (!profile.ok()) {
    spdlog::warn("run={} storage {} cannot be opened ({}): not copying while scanning", run_id, url,
                 profile.status().message());
    return false;
  }
  return profile->copies_while_scanning;
}

// Whether the agent writes `url` itself (a directory or share), so that it may sync onto it
// while the server is away.
bool AgentWrites(const std::string& url) {
  absl::StatusOr<StorageProfile> profile = ProfileStorage(url);
  return profile.ok() && profile->agent_writes;
}

// Records a put that did not land in `r` (SetPutError: a name refusal skips the file) and logs it.
// A skipped planned file is done for the run's progress (`counters`, optional) now: results count
// there only when uploaded or failed.
void RecordPutError(const std::string& run_id, const absl::Status& st, protocol::FileResult* r,
                    RunCounters* counters) {
  SetPutError(st, r);
  if (r->status == "skipped") {
    spdlog::info("run={} {} skipped: {}", run_id, r->path, r->error);
    if (counters != nullptr) ++counters->files_done;
  } else {
    spdlog::warn("run={} upload of {} failed: {}", run_id, r->path, r->error);
  }
}

// The server could not be reached at all (as opposed to answering with an error).
bool Unreachable(const absl::Status& st) {
  return absl::IsUnavailable(st) || absl::IsDeadlineExceeded(st) || absl::IsCancelled(st);
}

// POSTs `body` and decodes T. Retries transport failures and 503 a few times with backoff (a
// brief blip); a longer outage returns Unavailable and the caller journals. HTTP errors return
// at once with their canonical code.
template <typename T>
absl::StatusOr<T> Post(http::Client* client, const std::string& target, const std::string& body,
                       const std::string& run_id, const std::atomic<bool>* stop, int attempts = 4) {
  std::chrono::milliseconds delay(300);
  for (int attempt = 1;; ++attempt) {
    auto resp = client->Do("POST", target, body, {{"X-Correlation-Id", run_id}});
    absl::Status st = resp.ok() ? http::StatusFromResponse(*resp) : resp.status();
    if (st.ok()) return protocol::Decode<T>(resp->body);
    if (!Unreachable(st) || attempt >= attempts || Stopped(stop)) return st;
    spdlog::warn("run={} POST {} failed ({}); retrying in {}", run_id, target, st.message(), FormatDuration(delay));
    std::this_thread::sleep_for(delay);
    delay *= 3;
  }
}

std::string CompareTarget(const std::string& job) {
  return absl::StrCat("/api/v1/agent/jobs/", http::PercentEncode(job), "/compare");
}
std::string CompleteTarget(const std::string& run_id) {
  return absl::StrCat("/api/v1/agent/runs/", run_id, "/complete");
}
std::string GrantTarget(const std::string& run_id) {
  return absl::StrCat("/api/v1/agent/runs/", run_id, "/grant");
}

// Uploads the file of `u` to object storage with the write grant (URL) of the instruction,
// asking the server for a fresh one (`POST .../grant`, on `*grant_client`, made on first use)
// when it expired while the file waited its turn or expires during the upload. `*kept_version`
// gets the key under which the server kept the object this upload replaces, if any. The URL is
// a secret: it is never logged or journaled.
absl::StatusOr<PutResult> PutWithGrant(const protocol::UploadInstruction& u,
                                       const std::filesystem::path& source, const PutOptions& po,
                                       const JobRunOptions& o,
                                       std::unique_ptr<http::Client>* grant_client,
                                       std::string* kept_version) {
  *kept_version = u.kept_version;
  auto renew = [&]() -> absl::StatusOr<std::string> {
    if (!o.new_client) {
      return absl::FailedPreconditionError("the write grant expired and cannot be renewed");
    }
    if (!*grant_client) *grant_client = o.new_client();
    DS_ASSIGN_OR_RETURN(
        auto grant, Post<protocol::GrantResponse>(grant_client->get(), GrantTarget(o.run_id),
                                                  protocol::Encode(protocol::GrantRequest{u.path}),
                                                  o.run_id, o.stop));
    if (kept_version->empty()) *kept_version = grant.kept_version;
    spdlog::debug("run={} write grant for {} renewed", o.run_id, u.key);
    return std::move(grant.url);
  };
  std::string url = u.url;
  if (u.expires_at_ms != 0 && SystemClock()->NowUnixMs() + 1000 >= u.expires_at_ms) {
    DS_ASSIGN_OR_RETURN(url, renew());
  }
  // Staged blocks are journaled: after a restart the write-only SAS cannot list them, the
  // journal can, and the upload goes on from there instead of from the first block.
  constexpr int64_t kStagedBlocksLifetimeMs = int64_t{6} * 24 * 3600 * 1000;  // service: 7 days
  Journal* journal = o.journal;
  StagedBlockMemory memory;
  memory.recall = [&]() -> std::set<std::string> {
    auto ids = journal->StagedBlocks(u.key, po.expected_sha256,
                                     SystemClock()->NowUnixMs() - kStagedBlocksLifetimeMs);
    if (!ids.ok()) spdlog::warn("run={} journal: {}", o.run_id, ids.status());
    return ids.value_or(std::set<std::string>{});
  };
  memory.remember = [&](const std::string& id) {
    absl::Status st = journal->RememberStagedBlock(u.key, po.expected_sha256, id,
                                                   SystemClock()->NowUnixMs());
    if (!st.ok()) spdlog::warn("run={} journal: {}", o.run_id, st);
  };
  memory.forget = [&]() {
    absl::Status st = journal->ForgetStagedBlocks(
        u.key, SystemClock()->NowUnixMs() - kStagedBlocksLifetimeMs);
    if (!st.ok()) spdlog::warn("run={} journal: {}", o.run_id, st);
  };
  SasPutStats stats;
  auto put = PutFileWithSas(url, source, po, o.block_size, renew, &stats,
                            po.expected_sha256.empty() ? nullptr : &memory);
  if (put.ok()) {
    if (stats.blocks_already_staged > 0) {
      spdlog::info("run={} {} resumed: {} of {} block(s) were staged before, {} sent now",
                   o.run_id, u.key, stats.blocks_already_staged, stats.blocks_total,
                   stats.blocks_uploaded);
    }
    spdlog::debug("run={} {} uploaded in {} block(s) ({} at once at most), {} grant renewal(s)",
                  o.run_id, u.key, stats.blocks_total, stats.max_blocks_in_flight,
                  stats.sas_renewals);
  }
  return put;
}

// Sends results in requests of at most kCompleteBatch; the last carries `final`. Once all are
// accepted, marks the journal's batch `journaled` (if any) reported. (A crash in between sends
// the accepted ones again, which the server takes as the same results.)
absl::StatusOr<std::string> Report(http::Client* client, Journal* journal, const std::string& run_id,
                                   const std::vector<protocol::FileResult>& results, bool final,
                                   bool interrupted, const std::string& error, const std::atomic<bool>* stop,
                                   std::optional<int64_t> journaled) {
  std::string state;
  size_t off = 0;
  do {
    protocol::CompleteRequest req;
    size_t end = std::min(results.size(), off + kCompleteBatch);
    req.results.assign(results.begin() + static_cast<long>(off), results.begin() + static_cast<long>(end));
    req.final = final && end == results.size();
    req.interrupted = req.final && interrupted;
    if (req.final) req.error = error;
    DS_ASSIGN_OR_RETURN(auto resp, Post<protocol::CompleteResponse>(client, CompleteTarget(run_id),
                                                                    protocol::Encode(req), run_id, stop));
    state = resp.run_state;
    off = end;
  } while (off < results.size());
  if (journaled) DS_RETURN_IF_ERROR(journal->MarkReported(run_id, *journaled));
  return state;
}

}  // namespace

absl::StatusOr<JobRunOutcome> RunJob(http::Client* client, const protocol::JobSpec& job,
                                     const JobRunOptions& o) {
  const std::string& run_id = o.run_id;
  Journal* journal = o.journal;
  auto started = std::chrono::steady_clock::now();
  spdlog::info("run={} job={} starting ({}) in {}", run_id, job.name, o.trigger, job.source);
  JournalRun jr{run_id, job.name, job.id, o.trigger, /*offline=*/true};
  jr.started_at_ms = SystemClock()->NowUnixMs();
  DS_RETURN_IF_ERROR(journal->BeginRun(jr));

  const std::string cache_key = absl::StrCat((std::filesystem::path(o.state_dir) / "agent.db").string(), "\n", job.id);
  std::unique_ptr<HashCache> cache = TakeCachedHashCache(cache_key);
  if (!cache) {
    auto opened = OpenHashCache((std::filesystem::path(o.state_dir) / "agent.db").string(), std::to_string(job.id));
    if (opened.ok()) {
      cache = std::move(*opened);
    } else {
      spdlog::warn("run={} hash cache unavailable ({}); hashing every file", run_id, opened.status().message());
      cache = NewMemoryHashCache();
    }
  }
  // The digest of the cache's contents: the manifest of this job's previous scan, the base a
  // delta compare is computed against.
  const std::string base_digest = cache->digest();
  std::string storage_url = o.storage_url;
  JobRunOutcome outcome;
  std::string run_error;
  bool answered = false;  // the server answered a compare of this run
  int attempts = o.server_known_down ? 1 : 4;
  // Compares go through `client` unless they overlap deliveries (copying while scanning): an
  // http::Client serves one thread at a time, so they get their own.
  std::unique_ptr<http::Client> own_compare_client;
  http::Client* compare_client = client;
  auto compare = [&](const protocol::CompareRequest& req) {
    return Post<protocol::CompareResponse>(compare_client, CompareTarget(job.name), protocol::Encode(req),
                                           run_id, o.stop, attempts);
  };

  // 0. Copying while scanning, on a directory/share: the scan copies each file it must read
  //    into storage while it hashes it (each byte read once), and the copies are compared in
  //    batches while the scan goes on, then committed (see step 2a).
  //    - An agent whose previous manifest of the job is empty asks first whether the job's index
  //      holds anything, and copies only when it holds nothing (a first sync).
  //    - With a previous manifest, the scan reads only new and changed files; their copies are
  //      compared as delta batches against that manifest (base_digest), which the server refuses
  //      once the job's index has moved on from it: the copying then stops (copy_delta).
  const bool may_copy = o.copy_while_scanning && !o.server_known_down && o.new_client;
  const bool copy_delta =
      may_copy && cache->size() > 0 && CopiesWhileScanning(storage_url, run_id);
  bool copy_while_scanning = copy_delta;
  if (may_copy && cache->size() == 0) {
    protocol::CompareRequest opening;
    opening.run_id = run_id;
    opening.trigger = o.trigger;
    opening.last = false;
    auto resp = compare(opening);
    if (resp.ok()) {
      DS_RETURN_IF_ERROR(journal->MarkOnline(run_id));
      answered = true;
      if (!resp->storage_url.empty()) storage_url = resp->storage_url;
      copy_while_scanning = resp->index_empty && CopiesWhileScanning(storage_url, run_id);
    } else if (Unreachable(resp.status())) {
      attempts = 1;  // it was just retried: the probe below goes offline at once
    } else {
      DS_RETURN_IF_ERROR(journal->CloseRun(run_id, false, std::string(resp.status().message())));
      return resp.status();
    }
  }

  // Directory storage (opened when the run writes to it: step 3, or copying while scanning).
  std::unique_ptr<Storage> storage;
  absl::Status storage_status = absl::OkStatus();
  auto open_storage = [&] {
    auto url = ParseStorageUrl(storage_url);
    absl::StatusOr<std::unique_ptr<Storage>> st = url.ok() ? OpenStorage(*url) : url.status();
    if (url.ok() && url->scheme != "file") {
      st = absl::FailedPreconditionError(absl::StrCat(
          url->text, " takes uploads only with a write grant from the server, and it sent none"));
    }
    if (st.ok()) {
      storage = std::move(*st);
    } else {
      storage_status = st.status();
      spdlog::error("run={} storage {} unusable: {}", run_id, storage_url, storage_status.message());
    }
  };
  // A first sync opens storage now; a delta run only when the scan finds a file to copy (a
  // cycle with nothing new touches neither storage nor the server until its digest compare).
  std::once_flag storage_opened;
  auto storage_for_copies = [&]() -> Storage* {
    std::call_once(storage_opened, [&] {
      if (!storage && storage_status.ok()) open_storage();
    });
    return storage.get();
  };
  if (copy_while_scanning && !copy_delta) {
    copy_while_scanning = storage_for_copies() != nullptr;
  }

  // Directory storage: files are staged (copied while hashed, checked, not yet durable nor
  // visible) and committed in groups (one flush before and one after the renames; see
  // Storage::CommitPuts) before their results are journaled and reported.
  struct Staged {
    std::unique_ptr<StagedPut> put;
    protocol::FileResult result;  // path and mtime_ns filled
    std::chrono::steady_clock::time_point started;
  };
  auto finish_ms = [](std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  };
  // Commits staged puts (durable and visible once this returns) and turns them into results.
  auto commit = [&](std::vector<Staged> batch, std::vector<protocol::FileResult>* out) {
    if (batch.empty()) return;
    std::vector<std::unique_ptr<StagedPut>> puts;
    puts.reserve(batch.size());
    for (auto& b : batch) puts.push_back(std::move(b.put));
    std::vector<absl::StatusOr<PutResult>> results = storage->CommitPuts(std::move(puts));
    for (size_t k = 0; k < batch.size(); ++k) {
      protocol::FileResult& r = batch[k].result;
      const absl::StatusOr<PutResult>& put = results[k];
      if (put.ok()) {
        r.status = "uploaded";
        r.size = put->info.size;
        r.sha256 = put->info.sha256;
        r.kept_version = put->kept_version;
      } else {
        RecordPutError(run_id, put.status(), &r, o.counters);
      }
      r.duration_ms = finish_ms(batch[k].started);
      out->push_back(std::move(r));
    }
  };

  bool reporting = true;  // false once the server stopped answering: the journal holds the rest
  auto account = [&](const std::vector<protocol::FileResult>& rs) {
    std::vector<std::pair<std::string, IndexedContent>> landed;
    for (const auto& r : rs) {
      if (r.status == "uploaded") {
        ++outcome.uploaded;
        outcome.bytes_uploaded += r.size;
        landed.emplace_back(r.path, IndexedContent{r.size, r.sha256});
        if (!r.kept_version.empty() && ++outcome.kept_versions <= kKeptVersionsLogged) {
          spdlog::warn("run={} {} changed after it was synced; previous version kept at {}", run_id, r.path,
                       r.kept_version);
        }
      }
      if (r.status == "failed") ++outcome.failed;
      if (r.status == "skipped") ++outcome.skipped;
      if (o.counters != nullptr && (r.status == "uploaded" || r.status == "failed")) {
        ++o.counters->files_done;
        o.counters->bytes_done += r.size;
      }
    }
    if (absl::Status st = journal->RememberIndexed(job.id, landed); !st.ok()) spdlog::warn("run={} {}", run_id, st);
  };
  // Reports a journaled batch while the server answers; once it stops answering, the journal
  // keeps the rest for replay.
  auto report = [&](const std::vector<protocol::FileResult>& batch, int64_t journaled,
                    bool final) -> absl::Status {
    if (!reporting) return absl::OkStatus();
    auto state = Report(client, journal, run_id, batch, final, Stopped(o.stop), run_error, o.stop,
                        journaled);
    if (state.ok()) {
      if (final) outcome.state = *state;
      return absl::OkStatus();
    }
    if (!Unreachable(state.status())) return state.status();
    reporting = false;
    spdlog::warn("run={} server stopped answering ({}); results stay journaled for replay", run_id,
                 state.status().message());
    return absl::OkStatus();
  };
  // A delta run's results are not reported while it may still send delta compares: the server
  // takes those only while the job's index is the base manifest's, and results move it on.
  // Held batches are journaled already; they are reported before the next batch that is not.
  std::vector<std::pair<std::vector<protocol::FileResult>, int64_t>> held;  // with journal batch
  // Journals a batch durably, then reports it (`hold`: later).
  auto deliver = [&](std::vector<protocol::FileResult> batch, bool final,
                     bool hold) -> absl::Status {
    const auto t0 = std::chrono::steady_clock::now();
    DS_ASSIGN_OR_RETURN(const int64_t journaled, journal->Record(run_id, batch));
    const auto t_recorded = std::chrono::steady_clock::now();
    account(batch);
    const auto t_accounted = std::chrono::steady_clock::now();
    if (final) DS_RETURN_IF_ERROR(journal->CloseRun(run_id, Stopped(o.stop), run_error));
    if (hold) {
      held.emplace_back(std::move(batch), journaled);
      return absl::OkStatus();
    }
    for (const auto& [h, h_journaled] : held) DS_RETURN_IF_ERROR(report(h, h_journaled, false));
    held.clear();
    absl::Status st = report(batch, journaled, final);
    spdlog::debug(
        "run={} delivered {} result(s): journaled in {} ms, remembered in {} ms, reported in {} ms",
        run_id, batch.size(),
        std::chrono::duration_cast<std::chrono::milliseconds>(t_recorded - t0).count(),
        std::chrono::duration_cast<std::chrono::milliseconds>(t_accounted - t_recorded).count(),
        finish_ms(t_accounted));
    return st;
  };
  absl::Status deliver_status = absl::OkStatus();
  // Committed batches are delivered (journaled, then reported) on their own thread, so the next
  // group's commit, which mostly waits for the disk, overlaps the previous group's journal
  // writes and `complete` request. Batches are delivered in commit order; at most
  // kDeliveriesQueued wait. Until the thread is joined only it touches outcome, reporting and
  // deliver_status.
  constexpr size_t kDeliveriesQueued = 2;
  std::mutex delivery_mu;
  std::condition_variable delivery_cv;
  std::deque<std::vector<protocol::FileResult>> deliveries;  // Protected by delivery_mu.
  bool deliveries_done = false;                              // Protected by delivery_mu.
  bool hold_reports = copy_delta;  // Protected by delivery_mu: until the compares are done.
  std::thread deliverer;
  auto enqueue_delivery = [&](std::vector<protocol::FileResult> batch) {
    if (!deliverer.joinable()) {
      deliverer = std::thread([&] {
        for (;;) {
          std::unique_lock<std::mutex> l(delivery_mu);
          delivery_cv.wait(l, [&] { return !deliveries.empty() || deliveries_done; });
          if (deliveries.empty()) return;
          std::vector<protocol::FileResult> next_batch = std::move(deliveries.front());
          deliveries.pop_front();
          const bool hold = hold_reports;
          delivery_cv.notify_all();
          l.unlock();
          absl::Status st = deliver(std::move(next_batch), false, hold);
          if (!st.ok() && deliver_status.ok()) deliver_status = st;
        }
      });
    }
    std::unique_lock<std::mutex> l(delivery_mu);
    delivery_cv.wait(l, [&] { return deliveries.size() < kDeliveriesQueued; });
    deliveries.push_back(std::move(batch));
    delivery_cv.notify_all();
  };
  auto join_deliverer = [&] {
    if (!deliverer.joinable()) return;
    {
      std::lock_guard<std::mutex> l(delivery_mu);
      deliveries_done = true;
    }
    delivery_cv.notify_all();
    deliverer.join();
  };
  // However the run ends (an early error return included), the deliverer is joined before what
  // it uses goes away.
  struct JoinDeliverer {
    const std::function<void()> join;
    ~JoinDeliverer() { join(); }
  } join_deliverer_on_exit{join_deliverer};

  // 1. Scan, reusing cached hashes. Copying while scanning: the scan hands each file it must
  //    read to `so.read_new`, which stages it into storage (hashing the bytes as it copies) and
  //    queues the copy for step 2a; at most kCopiesLive copies (kCommitBytes) wait at once.
  //    The source is read only when it lies under a folder the agent's own config allows: else
  //    the scan fails (the run's error says so) and nothing of it is read.
  const absl::StatusOr<std::filesystem::path> source = o.sources->Admit(job.source);
  ScanOptions so;
  so.root = source.ok() ? *source : std::filesystem::path(job.source);
  auto scan_source = [&]() -> absl::StatusOr<ScanResult> {
    if (!source.ok()) return source.status();
    return ScanJob(so, cache.get());
  };
  so.includes = job.includes;
  so.excludes = job.excludes;
  so.settle = std::chrono::milliseconds(job.settle_ms);
  so.now_ns = SystemClock()->NowUnixMs() * 1'000'000;
  so.cancel = o.stop;
  so.hash_threads = std::max(1, o.upload_threads);  // the same parallelism as the copies
  struct NewCopy {
    std::string path;
    uint64_t size;
    int64_t mtime_ns;
    Sha256Digest sha256;
    std::unique_ptr<StagedPut> put;
    std::chrono::steady_clock::time_point started;
  };
  constexpr size_t kCopiesLive = 2048;
  std::mutex copies_mu;
  std::condition_variable copies_cv;
  std::deque<NewCopy> copies;    // Protected by copies_mu: staged, waiting for their compare.
  uint64_t copies_bytes = 0;     // Protected by copies_mu: bytes in `copies`.
  size_t live_copies = 0;        // Protected by copies_mu: staged, not yet committed or dropped.
  uint64_t live_bytes = 0;       // Protected by copies_mu.
  bool copies_off = false;       // Protected by copies_mu: no more copying while scanning.
  size_t copies_taken = 0;       // Protected by copies_mu: files the hook began to copy.
  bool scan_done = false;        // Protected by copies_mu.
  if (copy_while_scanning) {
    so.read_new = [&](const std::string& path, int fd, uint64_t size,
                      int64_t mtime_ns) -> std::optional<Sha256Digest> {
      Storage* to = storage_for_copies();
      if (to == nullptr) {
        std::lock_guard<std::mutex> l(copies_mu);
        copies_off = true;
        copies_cv.notify_all();
        return std::nullopt;
      }
      {
        std::unique_lock<std::mutex> l(copies_mu);
        copies_cv.wait(l, [&] {
          return copies_off || live_copies == 0 ||
                 (live_copies < kCopiesLive && live_bytes + size <= kCommitBytes);
        });
        if (copies_off) return std::nullopt;
        if (copy_delta && copies_taken >= o.delta_copies_held) {
          // Their results are held until the compares are done (see `held`): bounded.
          spdlog::info(
              "run={} copied {} file(s) while scanning, as many as a delta run holds; the rest "
              "is uploaded after the scan",
              run_id, copies_taken);
          copies_off = true;
          copies_cv.notify_all();
          return std::nullopt;
        }
        ++copies_taken;
        ++live_copies;
        live_bytes += size;
      }
      const auto t0 = std::chrono::steady_clock::now();
      PutOptions po;
      po.mtime_ns = mtime_ns;
      po.run_id = run_id;
      po.rate_limiter = o.rate_limiter;
      po.cancel = o.stop;
      po.verify = o.verify;
      po.unnamed_only = true;  // nothing to journal: a crash leaves no trace of a staged copy
      po.replace_unnamed = copy_delta;  // a changed file replaces its object (kept as a version)
      auto s = to->StagePutFd(JoinKey(job.dest_prefix, path), fd,
                              (std::filesystem::path(job.source) / path).string(), po);
      Sha256Digest sha{};
      const bool ok = s.ok() && (*s)->bytes() == size && ParseSha256Hex((*s)->sha256(), &sha);
      std::lock_guard<std::mutex> l(copies_mu);
      if (!ok) {
        --live_copies;
        live_bytes -= size;
        copies_cv.notify_all();
        // A file that changed, a full budget of unnamed files, a file already under the key, a
        // name the storage refuses: this one is hashed and uploaded (or skipped) as usual.
        // Anything else (storage trouble): the rest too.
        const absl::Status st = s.ok() ? absl::InternalError("staged size or hash unknown") : s.status();
        if (ClassifyCopyDecline(st) == CopyDecline::kStopCopying) {
          if (!copies_off) {
            spdlog::warn("run={} copying while scanning stopped ({}); the rest is uploaded after the scan",
                         run_id, st.message());
          }
          copies_off = true;
        }
        return std::nullopt;
      }
      copies_bytes += size;
      copies.push_back(NewCopy{path, size, mtime_ns, sha, std::move(*s), t0});
      // Wakes the compare loop only when a batch just became ready (not for each copy).
      if (copies.size() == kCompleteBatch ||
          (copies_bytes >= kCommitBytes / 2 && copies_bytes - size < kCommitBytes / 2)) {
        copies_cv.notify_all();
      }
      return sha;
    };
  }
  ScanResult scan;
  std::string digest;  // ManifestDigest(scan.files) after a complete scan
  bool scanned = false;
  auto finish_scan = [&](absl::StatusOr<ScanResult> r) {
    if (r.ok()) {
      scan = std::move(*r);
      scanned = true;
      digest = ManifestDigest(scan.files);
      if (absl::Status st = cache->EndScan(); !st.ok()) spdlog::warn("run={} hash cache: {}", run_id, st.message());
    } else {
      run_error = absl::StrCat("scan of ", job.source, " failed: ", r.status().message());
      spdlog::error("run={} {}", run_id, run_error);
    }
  };
  // When the run ends, however it ends, this scan's manifest becomes the job's cache (kept in
  // this process for the next run). After a failed scan the cache was partly consumed: it is
  // dropped and the next run reads agent.db again.
  struct ReturnCache {
    const std::string& key;
    std::unique_ptr<HashCache>& cache;
    ScanResult& scan;
    std::string& digest;
    bool& scanned;
    ~ReturnCache() {
      if (!scanned) return;
      cache->Adopt(std::move(scan.files), std::move(digest));
      KeepHashCache(key, std::move(cache));
    }
  } return_cache{cache_key, cache, scan, digest, scanned};

  // 2a. Copying while scanning: the copies are compared in batches as the scan makes them; the
  //     planned ones are committed and delivered at once, the others dropped (their content is
  //     indexed already). Instructions that say more than the manifest implies (a kept version,
  //     an unusual key) are set aside for step 3. A failed compare stops the copying: what is
  //     left is compared after the scan, as usual.
  std::vector<protocol::UploadInstruction> set_aside;
  bool streamed = false;  // every copy was compared
  size_t streamed_planned = 0;
  uint64_t streamed_planned_bytes = 0;
  if (copy_while_scanning) {
    std::thread scanner([&] {
      absl::StatusOr<ScanResult> r = scan_source();
      std::lock_guard<std::mutex> l(copies_mu);
      finish_scan(std::move(r));
      scan_done = true;
      copies_cv.notify_all();
    });
    streamed = true;
    for (;;) {
      std::vector<NewCopy> batch;
      {
        std::unique_lock<std::mutex> l(copies_mu);
        // A delta run's few copies go as they come (each batch is committed while the scan goes
        // on); a first sync's wait for a full group, as one flush commits each group.
        copies_cv.wait_for(l, copy_delta ? kDeltaCompareEvery : kCompleteEvery, [&] {
          return copies.size() >= kCompleteBatch || copies_bytes >= kCommitBytes / 2 || scan_done;
        });
        if (copies.empty()) {
          if (scan_done) break;
          continue;
        }
        while (!copies.empty() && batch.size() < kCompleteBatch) {
          copies_bytes -= copies.front().size;
          batch.push_back(std::move(copies.front()));
          copies.pop_front();
        }
      }
      const size_t batch_files = batch.size();
      uint64_t batch_bytes = 0;
      for (const NewCopy& c : batch) batch_bytes += c.size;
      if (streamed) {
        protocol::CompareRequest req;
        req.run_id = run_id;
        req.trigger = o.trigger;
        req.last = false;
        if (copy_delta) req.base_digest = base_digest;
        req.files.reserve(batch.size());
        for (const NewCopy& c : batch) {
          req.files.push_back(protocol::ManifestEntry{c.path, c.size, c.mtime_ns, Sha256DigestHex(c.sha256)});
        }
        if (!own_compare_client) {
          own_compare_client = o.new_client();
          compare_client = own_compare_client.get();
        }
        auto resp = compare(req);
        if (resp.ok() && !resp->storage_url.empty() && resp->storage_url != storage_url) {
          resp = absl::FailedPreconditionError(
              absl::StrCat("the server now names storage ", resp->storage_url));
        }
        if (!resp.ok()) {
          if (copy_delta && absl::IsFailedPrecondition(resp.status())) {
            spdlog::info(
                "run={} copying while scanning stopped: {}; the rest is compared after the scan",
                run_id, resp.status().message());
          } else {
            spdlog::warn(
                "run={} compare while copying failed ({}); the rest is compared after the scan",
                run_id, resp.status().message());
          }
          streamed = false;
          // Retried just now: the probe after the scan goes offline at once.
          if (Unreachable(resp.status())) attempts = 1;
          std::lock_guard<std::mutex> l(copies_mu);
          copies_off = true;
          copies_cv.notify_all();
        } else {
          if (!answered) {
            // A delta run's first answer (a first sync's came with its opening compare).
            if (absl::Status st = journal->MarkOnline(run_id); st.ok()) {
              answered = true;
            } else {
              spdlog::error("run={} journal: {}", run_id, st);
            }
          }
          std::unordered_map<std::string_view, protocol::UploadInstruction*> planned;
          for (auto& u : resp->upload) planned.emplace(u.path, &u);
          std::vector<Staged> to_commit;
          std::vector<std::pair<std::string, IndexedContent>> known;
          for (NewCopy& c : batch) {
            auto it = planned.find(c.path);
            if (it == planned.end()) {  // the index holds this content: drop the copy
              known.emplace_back(c.path, IndexedContent{c.size, Sha256DigestHex(c.sha256)});
              continue;
            }
            protocol::UploadInstruction& u = *it->second;
            if (!u.url.empty() || u.already_present || !u.kept_version.empty() ||
                u.key != JoinKey(job.dest_prefix, c.path)) {
              set_aside.push_back(std::move(u));
              continue;
            }
            protocol::FileResult r;
            r.path = c.path;
            r.mtime_ns = c.mtime_ns;
            to_commit.push_back(Staged{std::move(c.put), std::move(r), c.started});
          }
          if (!known.empty()) {
            if (absl::Status st = journal->RememberIndexed(job.id, known); !st.ok()) {
              spdlog::warn("run={} {}", run_id, st);
            }
          }
          if (copy_delta && !to_commit.empty()) {
            // A changed file's copy takes a temp name at commit, for a moment: journaled like
            // the uploads' temp files, so that a crash there leaves nothing behind.
            std::vector<std::pair<std::string, std::string>> in_flight;
            in_flight.reserve(to_commit.size());
            for (const Staged& s : to_commit) in_flight.emplace_back(s.result.path, s.put->key());
            if (absl::Status st = journal->MarkInFlight(run_id, in_flight); !st.ok()) {
              spdlog::error("run={} journal: {}", run_id, st);
              to_commit.clear();  // dropped: compared and uploaded after the scan, as usual
              streamed = false;
              std::lock_guard<std::mutex> l(copies_mu);
              copies_off = true;
              copies_cv.notify_all();
            }
          }
          uint64_t commit_bytes = 0;
          for (const Staged& s : to_commit) commit_bytes += s.put->bytes();
          streamed_planned += to_commit.size();
          streamed_planned_bytes += commit_bytes;
          if (o.counters != nullptr) {
            o.counters->files_total += to_commit.size();
            o.counters->bytes_total += commit_bytes;
          }
          const auto t_commit = std::chrono::steady_clock::now();
          const size_t n_commit = to_commit.size();
          std::vector<protocol::FileResult> results;
          commit(std::move(to_commit), &results);
          const auto t_deliver = std::chrono::steady_clock::now();
          if (!results.empty()) enqueue_delivery(std::move(results));
          spdlog::debug("run={} copied while scanning: {} compared, {} committed in {} ms, queued for "
                        "delivery in {} ms", run_id, batch_files, n_commit,
                        std::chrono::duration_cast<std::chrono::milliseconds>(t_deliver - t_commit).count(),
                        finish_ms(t_deliver));
        }
      }
      batch.clear();  // drops the copies not committed
      std::lock_guard<std::mutex> l(copies_mu);
      live_copies -= batch_files;
      live_bytes -= batch_bytes;
      copies_cv.notify_all();
    }
    scanner.join();
  } else {
    finish_scan(scan_source());
  }
  const Manifest& files = scan.files;
  const size_t n = files.size();
  spdlog::info("run={} scanned {} files ({} bytes), hashed {} ({} bytes), {} unsettled, {} skipped", run_id,
               n, scan.total_bytes, scan.files_hashed, scan.bytes_hashed, scan.files_unsettled,
               scan.skipped.size());
  if (copy_while_scanning) {
    spdlog::info("run={} copied {} file(s) while scanning{}; {} of them planned and committed", run_id,
                 scan.read_by_hook.size(), streamed ? "" : " (comparing them failed)", streamed_planned);
  }

  // 2. Compare, in batches; the server records the plan. Unreachable server + a share we can
  //    write ourselves: plan locally from what the index is known to hold.
  //    The plan is kept compactly (an index into the manifest per file); an instruction that
  //    says more than the manifest and the job's prefix imply is kept whole beside it.
  constexpr uint32_t kNoDetail = UINT32_MAX;
  constexpr size_t kNotInManifest = SIZE_MAX;
  struct Planned {
    size_t entry;                 // index in `files`, or kNotInManifest
    uint32_t detail = kNoDetail;  // index in `details`
  };
  std::vector<Planned> todo;
  std::vector<protocol::UploadInstruction> details;
  auto plan = [&](protocol::UploadInstruction&& u) {
    std::optional<size_t> entry = files.Find(u.path);
    Planned p{entry.value_or(kNotInManifest)};
    if (!entry || !u.url.empty() || u.already_present || !u.kept_version.empty() ||
        u.key != JoinKey(job.dest_prefix, u.path)) {
      p.detail = static_cast<uint32_t>(details.size());
      details.push_back(std::move(u));
    }
    todo.push_back(p);
  };
  // The instruction of a planned file, whole.
  auto instruction = [&](const Planned& p) {
    if (p.detail != kNoDetail) return details[p.detail];
    std::string path(files[p.entry].path);
    std::string key = JoinKey(job.dest_prefix, path);
    return protocol::UploadInstruction{std::move(path), std::move(key), ""};
  };
  bool online = true;
  // The no-op cycle: the digest of the whole manifest goes first, alone; when the index holds
  // exactly that manifest the server says so and no file list is sent. When it holds the
  // previous manifest instead (base_match), only what changed since is sent (the delta compare).
  // A scan that failed or skipped files cannot end in a succeeded run, so it sends no digest.
  // After copying while scanning, only the entries the scan hashed itself remain to be sent
  // (kRest), the digest with the last batch.
  const bool send_digest = run_error.empty() && scan.skipped.empty();
  enum class Mode { kProbe, kDelta, kWhole, kRest } mode = send_digest ? Mode::kProbe : Mode::kWhole;
  // After copying while scanning, the entries the scan hashed itself: a first sync sends
  // them in kRest, a delta run as its delta (the probe goes first as usual).
  std::vector<uint32_t> rest_entries;
  if (streamed) {
    if (!copy_delta) mode = Mode::kRest;
    std::set_difference(scan.hashed.begin(), scan.hashed.end(), scan.read_by_hook.begin(),
                        scan.read_by_hook.end(), std::back_inserter(rest_entries));
  }
  const std::vector<uint32_t>& delta_entries = streamed ? rest_entries : scan.hashed;
  bool matched = false;   // the server holds exactly this manifest
  // The entries a batch is cut from: every entry, the delta's or the rest.
  auto list_size = [&] {
    return mode == Mode::kDelta  ? delta_entries.size()
           : mode == Mode::kRest ? rest_entries.size()
                                 : n;
  };
  auto list_at = [&](size_t k) -> size_t {
    return mode == Mode::kDelta ? delta_entries[k] : mode == Mode::kRest ? rest_entries[k] : k;
  };
  for (size_t off = 0;;) {
    protocol::CompareRequest req;
    req.run_id = run_id;
    req.trigger = o.trigger;
    size_t end = off;
    if (mode == Mode::kProbe) {
      req.manifest_digest = digest;
      req.base_digest = base_digest;
      req.last = false;
    } else {
      end = std::min(list_size(), off + kCompareBatch);
      req.files.reserve(end - off);
      for (size_t k = off; k < end; ++k) req.files.push_back(files.Wire(list_at(k)));
      req.last = end == list_size();
      if (mode == Mode::kDelta) req.base_digest = base_digest;
      if (mode == Mode::kRest && req.last && send_digest) req.manifest_digest = digest;
    }
    req.total_files = n;
    req.total_bytes = scan.total_bytes;
    auto resp = compare(req);
    if (!resp.ok() && mode == Mode::kDelta && absl::IsFailedPrecondition(resp.status())) {
      // The job's index moved on since the base (a reconcile, another result): the whole
      // manifest after all. The plan so far is planned again (the server keeps one row a path).
      spdlog::info("run={} {}; sending the whole manifest", run_id, resp.status().message());
      mode = Mode::kWhole;
      off = 0;
      todo.clear();
      details.clear();
      continue;
    }
    if (!resp.ok()) {
      if (Unreachable(resp.status()) && !answered && AgentWrites(storage_url)) {
        online = false;
        break;
      }
      join_deliverer();
      DS_RETURN_IF_ERROR(journal->CloseRun(run_id, false, std::string(resp.status().message())));
      if (!answered && Unreachable(resp.status())) DS_RETURN_IF_ERROR(journal->ForgetRun(run_id));
      return resp.status();
    }
    if (!answered) DS_RETURN_IF_ERROR(journal->MarkOnline(run_id));
    answered = true;
    if (!resp->storage_url.empty()) storage_url = resp->storage_url;
    for (auto& u : resp->upload) plan(std::move(u));
    if (mode == Mode::kProbe) {
      if (resp->manifest_match) {
        matched = true;
        break;
      }
      mode = resp->base_match ? Mode::kDelta : Mode::kWhole;
      if (mode == Mode::kDelta) {
        spdlog::info("run={} {} of {} file(s) changed since the last run: comparing only those{}",
                     run_id, scan.hashed.size(), n,
                     streamed
                         ? absl::StrCat(" (", scan.read_by_hook.size(), " of them while scanning)")
                         : "");
      }
      continue;
    }
    off = end;
    if (off >= list_size()) break;
  }
  if (matched) spdlog::info("run={} manifest unchanged since the last successful run: nothing to compare", run_id);
  {
    std::lock_guard<std::mutex> l(delivery_mu);
    hold_reports = false;  // no more compares: the next batch delivered reports the held ones
  }
  for (auto& u : set_aside) plan(std::move(u));
  set_aside.clear();
  std::sort(todo.begin(), todo.end(), [](const Planned& a, const Planned& b) { return a.entry < b.entry; });
  auto is_planned = [&](size_t entry) {
    return std::binary_search(todo.begin(), todo.end(), Planned{entry},
                              [](const Planned& a, const Planned& b) { return a.entry < b.entry; });
  };
  // Walks the manifest against the journal's indexed_files rows (both in path order): calls
  // differs(index, reason) for each entry whose content the index is not known to hold. Never
  // holds the job's indexed rows in memory.
  auto merge_indexed = [&](const std::function<void(size_t, const char*)>& differs) {
    size_t i = 0;
    absl::Status st = journal->ForEachIndexed(job.id, [&](const std::string& path, const IndexedContent& c) {
      for (; i < n && files[i].path < path; ++i) differs(i, "new");
      if (i < n && files[i].path == path) {
        const Manifest::Ref e = files[i];
        if (c.size != e.size || c.sha256 != Sha256DigestHex(*e.sha256)) differs(i, "changed");
        ++i;
      }
    });
    for (; i < n; ++i) differs(i, "new");
    return st;
  };
  // Remembers (for offline planning) that the index holds these entries, in bounded batches.
  auto remember = [&](const std::vector<size_t>& entries) {
    std::vector<std::pair<std::string, IndexedContent>> rows;
    absl::Status st = absl::OkStatus();
    for (size_t k = 0; k < entries.size() && st.ok(); ++k) {
      const Manifest::Ref e = files[entries[k]];
      rows.emplace_back(std::string(e.path), IndexedContent{e.size, Sha256DigestHex(*e.sha256)});
      if (rows.size() >= 10'000 || k + 1 == entries.size()) {
        st = journal->RememberIndexed(job.id, rows);
        rows.clear();
      }
    }
    if (!st.ok()) spdlog::warn("run={} {}", run_id, st);
  };
  if (online && !matched) {
    // Files the server did not plan are in the index: remember that for offline planning.
    std::vector<size_t> known;
    if (mode == Mode::kDelta) {
      // Only the delta can differ from what was remembered for the base (and the copies
      // compared while scanning were remembered then).
      for (uint32_t i : delta_entries) {
        if (!is_planned(i)) known.push_back(i);
      }
    } else if (mode == Mode::kRest) {
      // The copies compared while scanning were remembered then.
      for (uint32_t i : rest_entries) {
        if (!is_planned(i)) known.push_back(i);
      }
    } else {
      absl::Status st = merge_indexed([&](size_t i, const char*) {
        if (!is_planned(i)) known.push_back(i);
      });
      if (!st.ok()) spdlog::warn("run={} {}", run_id, st);
    }
    remember(known);
  } else if (!online) {
    outcome.offline = true;
    DS_RETURN_IF_ERROR(merge_indexed([&](size_t i, const char*) { todo.push_back(Planned{i}); }));
    spdlog::warn("run={} server unreachable: syncing offline onto {} and journaling the results", run_id,
                 storage_url);
  }
  spdlog::info("run={} {} file(s) to upload to {}", run_id, todo.size(), storage_url);
  if (o.counters != nullptr) {
    uint64_t bytes = 0;
    for (const Planned& p : todo) {
      if (p.entry != kNotInManifest) bytes += files[p.entry].size;
    }
    o.counters->files_total = streamed_planned + todo.size();
    o.counters->bytes_total = streamed_planned_bytes + bytes;
  }

  // 3. Upload in parallel, straight to storage; results are journaled, then reported in batches.
  //    Object storage: each instruction carries its own write grant (or says the content is
  //    already stored); only a directory/share is opened and written by the agent itself.
  if (!online) reporting = false;
  const bool direct = std::any_of(todo.begin(), todo.end(), [&](const Planned& p) {
    return p.detail == kNoDetail || (details[p.detail].url.empty() && !details[p.detail].already_present);
  });
  if (direct && !storage && storage_status.ok()) open_storage();
  // Directory storage: the workers stage files and this thread commits them in groups (see
  // `commit`). Object storage and already-present content give final results at once.
  std::mutex mu;
  std::condition_variable cv;
  std::vector<protocol::FileResult> pending;  // Protected by mu.
  std::vector<Staged> staged;                 // Protected by mu.
  uint64_t staged_bytes = 0;                  // Protected by mu.
  size_t finished_workers = 0;                // Protected by mu.
  std::atomic<size_t> next{0};
  const size_t threads = std::min<size_t>(static_cast<size_t>(std::max(1, o.upload_threads)), todo.size());
  auto writes = [&](const protocol::UploadInstruction& u, size_t entry) {
    return !u.already_present && (storage || !u.url.empty()) && entry != kNotInManifest;
  };
  auto worker = [&] {
    std::unique_ptr<http::Client> grant_client;  // this thread's, for renewing write grants
    std::vector<std::pair<std::string, std::string>> in_flight;
    std::vector<protocol::UploadInstruction> chunk_instructions;
    for (;;) {
      // Claim a chunk: one journal transaction marks all of it in flight. Chunks shrink towards
      // the end so that the threads finish together.
      const size_t claimed = next.load();
      const size_t left = claimed < todo.size() ? todo.size() - claimed : 0;
      const size_t chunk = std::clamp<size_t>(left / (threads * 4), 1, 256);
      const size_t begin = next.fetch_add(chunk);
      if (begin >= todo.size() || Stopped(o.stop)) break;
      const size_t end = std::min(todo.size(), begin + chunk);
      in_flight.clear();
      chunk_instructions.clear();
      for (size_t i = begin; i < end; ++i) {
        chunk_instructions.push_back(instruction(todo[i]));
        const auto& u = chunk_instructions.back();
        if (writes(u, todo[i].entry)) in_flight.emplace_back(u.path, u.key);
      }
      if (absl::Status st = journal->MarkInFlight(run_id, in_flight); !st.ok()) {
        spdlog::error("run={} journal: {}", run_id, st);
        break;  // without a journal we could lose track: stop uploading
      }
      for (size_t i = begin; i < end && !Stopped(o.stop); ++i) {
        {
          // Bounded: the loop below takes staged copies and results a group at a time, and a
          // commit waits for the disk while staging does not. A worker two groups ahead waits
          // (without this, a run of small files staged most of its files before the commits
          // caught up, and held them all in memory: heaptrack, 500,000 files offline).
          std::unique_lock<std::mutex> lock(mu);
          while (!Stopped(o.stop) && (staged.size() + pending.size() >= 2 * kCompleteBatch ||
                                      staged_bytes >= 2 * kCommitBytes)) {
            cv.wait_for(lock, std::chrono::milliseconds(100));
          }
        }
        const auto& u = chunk_instructions[i - begin];
        std::optional<protocol::ManifestEntry> wire;
        if (todo[i].entry != kNotInManifest) wire = files.Wire(todo[i].entry);
        const protocol::ManifestEntry* e = wire ? &*wire : nullptr;
        protocol::FileResult r;
        r.path = u.path;
        auto t0 = std::chrono::steady_clock::now();
        if (e == nullptr) {
          r.status = "failed";
          r.error = "server planned a path that is not in the manifest";
        } else if (!storage && u.url.empty() && !u.already_present) {
          r.status = "failed";
          r.error = std::string(storage_status.message());
        } else {
          PutOptions po;
          po.expected_sha256 = e->sha256;
          po.mtime_ns = e->mtime_ns;
          po.run_id = run_id;
          po.rate_limiter = o.rate_limiter;
          po.block_parallelism = o.block_parallelism;
          po.cancel = o.stop;
          po.verify = o.verify;
          const std::filesystem::path source = so.root / DiskPathOf(scan, u.path);
          std::string granted_kept_version;
          absl::StatusOr<PutResult> put = absl::UnknownError("not uploaded");
          // Read only while it is the file the scan hashed: a symlink, FIFO or other file put
          // in its place since is skipped, unread, for the next run to pick up.
          absl::StatusOr<UniqueFd> opened = absl::UnknownError("not opened");
          if (!u.already_present) opened = OpenScannedFile(source, scan.identities[todo[i].entry]);
          po.source_fd = opened.ok() ? opened->get() : -1;
          if (!u.already_present && !opened.ok()) {
            put = opened.status();
          } else if (u.already_present) {
            // The server found exactly this content under the key: nothing to send. `complete`
            // checks what is stored against this report like any upload.
            put = PutResult{ObjectInfo{u.key, e->size, e->mtime_ns, e->sha256}, ""};
            granted_kept_version = u.kept_version;
          } else if (!u.url.empty()) {
            put = PutWithGrant(u, source, po, o, &grant_client, &granted_kept_version);
          } else {
            auto s = storage->StagePut(u.key, source, po);
            if (absl::IsCancelled(s.status())) continue;  // stopping: stays in flight, replay cleans up
            if (s.ok()) {
              r.mtime_ns = e->mtime_ns;
              std::lock_guard<std::mutex> lock(mu);
              staged_bytes += (*s)->bytes();
              staged.push_back(Staged{std::move(*s), std::move(r), t0});
              if (staged.size() + pending.size() >= kCompleteBatch || staged_bytes >= kCommitBytes) {
                cv.notify_all();
              }
              continue;
            }
            put = s.status();
          }
          if (absl::IsCancelled(put.status())) continue;  // stopping: stays in flight, replay cleans up
          if (put.ok()) {
            r.status = "uploaded";
            r.size = put->info.size;
            r.mtime_ns = e->mtime_ns;
            r.sha256 = put->info.sha256.empty() ? e->sha256 : put->info.sha256;
            r.kept_version = put->kept_version.empty() ? granted_kept_version : put->kept_version;
          } else {
            RecordPutError(run_id, put.status(), &r, o.counters);
          }
        }
        r.duration_ms = finish_ms(t0);
        std::lock_guard<std::mutex> lock(mu);
        pending.push_back(std::move(r));
        if (pending.size() + staged.size() >= kCompleteBatch) cv.notify_all();
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    ++finished_workers;
    cv.notify_all();
  };
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) pool.emplace_back(worker);

  if (!pool.empty()) {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait_for(lock, kCompleteEvery, [&] {
        return pending.size() + staged.size() >= kCompleteBatch || staged_bytes >= kCommitBytes ||
               finished_workers == pool.size();
      });
      if (finished_workers == pool.size()) break;
      if (pending.empty() && staged.empty()) continue;
      std::vector<protocol::FileResult> batch;
      std::vector<Staged> to_commit;
      batch.swap(pending);
      to_commit.swap(staged);
      staged_bytes = 0;
      lock.unlock();
      cv.notify_all();  // workers waiting for room
      const auto t_commit = std::chrono::steady_clock::now();
      const size_t n_commit = to_commit.size();
      commit(std::move(to_commit), &batch);
      const auto t_deliver = std::chrono::steady_clock::now();
      enqueue_delivery(std::move(batch));
      spdlog::debug(
          "run={} {} committed in {} ms, queued for delivery in {} ms", run_id, n_commit,
          std::chrono::duration_cast<std::chrono::milliseconds>(t_deliver - t_commit).count(),
          finish_ms(t_deliver));
      lock.lock();
    }
    lock.unlock();
    for (auto& t : pool) t.join();
  }
  join_deliverer();

  // 4. The rest of the results and the scan's skipped files; the last batch closes the run.
  std::vector<protocol::FileResult> rest = std::move(pending);
  commit(std::move(staged), &rest);  // complete copies are committed even when stopping
  for (const auto& p : scan.skipped) {
    protocol::FileResult r;
    r.path = p.path;
    r.status = "skipped";
    r.error = p.error;
    if (ValidateRelativePath(r.path).ok()) {
      rest.push_back(std::move(r));
    } else {
      spdlog::warn("run={} skipped a file with an unsupported name: {}", run_id, p.error);
    }
  }
  absl::Status st = deliver(std::move(rest), true, false);
  if (!st.ok() && deliver_status.ok()) deliver_status = st;
  if (!deliver_status.ok()) {
    spdlog::error("run={} the server refused results: {}", run_id, deliver_status.message());
  }
  if (reporting && deliver_status.ok()) {
    DS_RETURN_IF_ERROR(journal->ForgetRun(run_id));
  } else {
    outcome.state = "journaled";
  }

  if (outcome.kept_versions > kKeptVersionsLogged) {
    spdlog::warn(
        "run={} {} more file(s) changed after they were synced; their previous versions were kept "
        "too (see the run's files)",
        run_id, outcome.kept_versions - kKeptVersionsLogged);
  }
  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("run={} job={} {}{}: {} uploaded ({} bytes), {} failed, {} skipped in {:.2f}s", run_id, job.name,
               outcome.state, outcome.offline ? " (offline)" : "", outcome.uploaded, outcome.bytes_uploaded,
               outcome.failed, outcome.skipped, secs);
  if (!deliver_status.ok()) return deliver_status;
  return outcome;
}

absl::Status ReplayJournal(http::Client* client, Journal* journal, const std::string& storage_url,
                           const std::atomic<bool>* stop, bool* temps_kept) {
  DS_ASSIGN_OR_RETURN(auto runs, journal->PendingRuns());
  LazyStorage storage(storage_url);
  bool kept = false;
  for (const auto& run : runs) {
    if (Stopped(stop)) return absl::CancelledError("stopping");
    const std::string& id = run.run_id;
    // Temp files of uploads a crash interrupted: never visible as measurements; removed here,
    // or (storage unreachable) their marks are kept for RemoveInterruptedTemps.
    DS_RETURN_IF_ERROR(RemoveReplayedRunTemps(journal, storage, id, &kept));
    if (temps_kept != nullptr) *temps_kept = kept;
    const bool interrupted = !run.closed || run.interrupted;
    const std::string error =
        run.error.empty() && !run.closed ? "the agent stopped during the run" : run.error;
    spdlog::info("run={} job={} replaying from the journal{}{}", id, run.job,
                 run.offline ? ", synced offline" : "", interrupted ? ", interrupted" : "");
    // The results stream from the journal a batch at a time (a run of a million files is never
    // in memory at once) and are reported as they come; an empty final report closes the run.
    // The server takes a result it already has as the same result, so a replay cut short by
    // the server going away again simply starts over next time.
    uint64_t replayed = 0;
    absl::Status status;
    std::string state;
    if (run.offline) {
      // The server never saw this run: compare what landed (≤ kCompareBatch files a request),
      // then report the ones the server planned (and the skipped ones). The run stays marked
      // offline until it is forgotten: a replay cut short compares again, and the server plans
      // only what it does not hold yet.
      std::vector<protocol::FileResult> group;  // results waiting for their compare
      uint64_t compared = 0;
      auto flush = [&](bool last) -> absl::Status {
        protocol::CompareRequest req;
        req.run_id = id;
        req.trigger = run.trigger.empty() ? "offline" : run.trigger + "+offline";
        for (const auto& r : group) {
          if (r.status == "uploaded") req.files.push_back({r.path, r.size, r.mtime_ns, r.sha256});
        }
        compared += req.files.size();
        req.last = last;
        req.total_files = compared;
        DS_ASSIGN_OR_RETURN(auto resp,
                            Post<protocol::CompareResponse>(client, CompareTarget(run.job),
                                                            protocol::Encode(req), id, stop, 2));
        std::set<std::string> planned;
        for (const auto& u : resp.upload) planned.insert(u.path);
        std::vector<protocol::FileResult> keep;
        for (auto& r : group) {
          if (r.status == "skipped" || planned.count(r.path)) keep.push_back(std::move(r));
        }
        group.clear();
        if (keep.empty() && !last) return absl::OkStatus();
        replayed += keep.size();
        DS_ASSIGN_OR_RETURN(state, Report(client, journal, id, keep, last, interrupted, error, stop,
                                          /*journaled=*/std::nullopt));
        return absl::OkStatus();
      };
      status = journal->ForEachUnreported(
          id, [&](std::vector<protocol::FileResult> batch) -> absl::Status {
            for (auto& r : batch) {
              if (group.size() == kCompareBatch) DS_RETURN_IF_ERROR(flush(/*last=*/false));
              group.push_back(std::move(r));
            }
            return absl::OkStatus();
          });
      if (status.ok()) status = flush(/*last=*/true);
    } else {
      status = journal->ForEachUnreported(
          id, [&](std::vector<protocol::FileResult> batch) -> absl::Status {
            replayed += batch.size();
            return Report(client, journal, id, batch, /*final=*/false, false, "", stop,
                          std::nullopt)
                .status();
          });
      if (status.ok()) {
        auto closed =
            Report(client, journal, id, {}, /*final=*/true, interrupted, error, stop, std::nullopt);
        if (closed.ok()) state = *closed;
        status = closed.status();
      }
    }
    if (!status.ok()) {
      if (Unreachable(status) || absl::IsCancelled(status)) return status;
      spdlog::error(
          "run={} replay refused ({}); dropping it from the journal "
          "(reconcile the job to be sure the index is complete)",
          id, status.message());
    } else {
      spdlog::info("run={} replayed {} result(s): server closed it as {}", id, replayed, state);
    }
    DS_RETURN_IF_ERROR(journal->ForgetRun(id));
  }
  return absl::OkStatus();
}

}  // namespace ds
