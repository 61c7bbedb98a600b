#include "agent/job_runner.h"

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/paths.h"
#include "common/time_util.h"
#include "http/http_types.h"
#include "common/log.h"
#include "storage/storage.h"
#include "sync/hash_cache.h"
#include "sync/scanner.h"

namespace ds {
namespace {

constexpr size_t kCompareBatch = 5'000;
constexpr size_t kCompleteBatch = 1'000;
constexpr auto kCompleteEvery = std::chrono::seconds(2);

bool Stopped(const JobRunOptions& o) { return o.stop != nullptr && o.stop->load(); }

// POSTs `body` and decodes T, retrying transport failures and 503 with backoff (up to ~1 min)
// unless the agent is stopping. Other HTTP errors are returned at once.
template <typename T>
absl::StatusOr<T> PostWithRetry(http::Client* client, const std::string& target, const std::string& body,
                                const std::string& run_id, const JobRunOptions& o) {
  std::chrono::milliseconds delay(500);
  for (int attempt = 1;; ++attempt) {
    auto resp = client->Do("POST", target, body, {{"X-Correlation-Id", run_id}});
    absl::Status st = resp.ok() ? http::StatusFromResponse(*resp) : resp.status();
    if (st.ok()) return protocol::Decode<T>(resp->body);
    bool retryable = absl::IsUnavailable(st) || absl::IsDeadlineExceeded(st);
    if (!retryable || attempt >= 8 || (Stopped(o) && attempt >= 2)) return st;
    spdlog::warn("run={} POST {} failed ({}); retrying in {}", run_id, target, st.message(),
                 FormatDuration(delay));
    std::this_thread::sleep_for(delay);
    delay = std::min(delay * 2, std::chrono::milliseconds(10'000));
  }
}

}  // namespace

absl::StatusOr<JobRunOutcome> RunJob(http::Client* client, const protocol::JobSpec& job,
                                     const JobRunOptions& o) {
  const std::string& run_id = o.run_id;
  auto started = std::chrono::steady_clock::now();
  spdlog::info("run={} job={} starting ({}) in {}", run_id, job.name, o.trigger, job.source);

  // 1. Scan, reusing cached hashes.
  std::unique_ptr<HashCache> cache;
  auto opened = OpenHashCache((std::filesystem::path(o.state_dir) / "agent.db").string(),
                              std::to_string(job.id));
  if (opened.ok()) {
    cache = std::move(*opened);
  } else {
    spdlog::warn("run={} hash cache unavailable ({}); hashing every file", run_id, opened.status().message());
    cache = NewMemoryHashCache();
  }
  ScanOptions so;
  so.root = job.source;
  so.includes = job.includes;
  so.excludes = job.excludes;
  so.settle = std::chrono::milliseconds(job.settle_ms);
  so.now_ns = SystemClock()->NowUnixMs() * 1'000'000;
  so.cancel = o.stop;
  std::string run_error;
  ScanResult scan;
  if (auto r = ScanJob(so, cache.get()); r.ok()) {
    scan = std::move(*r);
    if (absl::Status st = cache->Flush(); !st.ok()) spdlog::warn("run={} hash cache flush: {}", run_id, st.message());
  } else {
    run_error = absl::StrCat("scan of ", job.source, " failed: ", r.status().message());
    spdlog::error("run={} {}", run_id, run_error);
  }
  spdlog::info("run={} scanned {} files ({} bytes), hashed {} ({} bytes), {} unsettled, {} skipped", run_id,
               scan.files.size(), scan.total_bytes, scan.files_hashed, scan.bytes_hashed,
               scan.files_unsettled, scan.skipped.size());

  // 2. Compare, in batches; the server records the plan.
  std::string compare_target = absl::StrCat("/api/v1/agent/jobs/", http::PercentEncode(job.name), "/compare");
  std::vector<protocol::UploadInstruction> todo;
  std::string storage_url = o.storage_url;
  size_t n = scan.files.size();
  for (size_t off = 0; off == 0 || off < n; off += kCompareBatch) {
    protocol::CompareRequest req;
    req.run_id = run_id;
    req.trigger = o.trigger;
    size_t end = std::min(n, off + kCompareBatch);
    req.files.assign(scan.files.begin() + static_cast<long>(off), scan.files.begin() + static_cast<long>(end));
    req.last = end == n;
    req.total_files = n;
    req.total_bytes = scan.total_bytes;
    DS_ASSIGN_OR_RETURN(auto resp, PostWithRetry<protocol::CompareResponse>(
                                       client, compare_target, protocol::Encode(req), run_id, o));
    if (!resp.storage_url.empty()) storage_url = resp.storage_url;
    for (auto& u : resp.upload) todo.push_back(std::move(u));
    if (n == 0) break;
  }
  std::unordered_map<std::string, const protocol::ManifestEntry*> by_path;
  by_path.reserve(scan.files.size());
  for (const auto& e : scan.files) by_path.emplace(e.path, &e);
  spdlog::info("run={} {} file(s) to upload to {}", run_id, todo.size(), storage_url);

  // 3. Upload in parallel, straight to storage; results flow to `complete` in batches.
  std::unique_ptr<Storage> storage;
  absl::Status storage_status = absl::OkStatus();
  if (!todo.empty()) {
    auto url = ParseStorageUrl(storage_url);
    absl::StatusOr<std::unique_ptr<Storage>> st = url.ok() ? OpenStorage(*url) : url.status();
    if (st.ok()) {
      storage = std::move(*st);
    } else {
      storage_status = st.status();
      spdlog::error("run={} storage {} unusable: {}", run_id, storage_url, storage_status.message());
    }
  }
  std::mutex mu;
  std::condition_variable cv;
  std::vector<protocol::FileResult> pending;  // Protected by mu.
  size_t finished_workers = 0;                // Protected by mu.
  std::atomic<size_t> next{0};
  JobRunOutcome outcome;
  auto worker = [&] {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= todo.size() || Stopped(o)) break;
      const auto& u = todo[i];
      const protocol::ManifestEntry* e = by_path.count(u.path) ? by_path.at(u.path) : nullptr;
      protocol::FileResult r;
      r.path = u.path;
      auto t0 = std::chrono::steady_clock::now();
      if (e == nullptr) {
        r.status = "failed";
        r.error = "server planned a path that is not in the manifest";
      } else if (!storage) {
        r.status = "failed";
        r.error = std::string(storage_status.message());
      } else {
        PutOptions po;
        po.expected_sha256 = e->sha256;
        po.mtime_ns = e->mtime_ns;
        po.run_id = run_id;
        po.max_bytes_per_second = o.max_bytes_per_second;
        po.cancel = o.stop;
        po.verify = o.verify;
        auto put = storage->PutFile(u.key, std::filesystem::path(job.source) / u.path, po);
        if (absl::IsCancelled(put.status())) continue;  // stopping: the file stays unreported
        if (put.ok()) {
          r.status = "uploaded";
          r.size = put->info.size;
          r.mtime_ns = e->mtime_ns;
          r.sha256 = put->info.sha256.empty() ? e->sha256 : put->info.sha256;
          r.kept_version = put->kept_version;
          if (!r.kept_version.empty()) {
            spdlog::warn("run={} {} changed after it was synced; previous version kept at {}", run_id,
                         u.path, r.kept_version);
          }
        } else {
          r.status = "failed";
          r.error = std::string(put.status().message());
          spdlog::warn("run={} upload of {} failed: {}", run_id, u.path, r.error);
        }
      }
      r.duration_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                          std::chrono::steady_clock::now() - t0).count();
      std::lock_guard<std::mutex> lock(mu);
      pending.push_back(std::move(r));
      if (pending.size() >= kCompleteBatch) cv.notify_all();
    }
    std::lock_guard<std::mutex> lock(mu);
    ++finished_workers;
    cv.notify_all();
  };
  int threads = static_cast<int>(std::min<size_t>(std::max(1, o.upload_threads), std::max<size_t>(1, todo.size())));
  std::vector<std::thread> pool;
  if (!todo.empty()) {
    for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  }
  std::string complete_target = absl::StrCat("/api/v1/agent/runs/", run_id, "/complete");
  auto account = [&](const std::vector<protocol::FileResult>& rs) {
    for (const auto& r : rs) {
      if (r.status == "uploaded") ++outcome.uploaded, outcome.bytes_uploaded += r.size;
      if (r.status == "failed") ++outcome.failed;
      if (r.status == "skipped") ++outcome.skipped;
    }
  };
  absl::Status report_status = absl::OkStatus();
  if (!pool.empty()) {
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      cv.wait_for(lock, kCompleteEvery, [&] {
        return pending.size() >= kCompleteBatch || finished_workers == pool.size();
      });
      bool done = finished_workers == pool.size();
      if (!pending.empty() && (pending.size() >= kCompleteBatch || !done)) {
        protocol::CompleteRequest batch;
        batch.results.swap(pending);
        lock.unlock();
        auto resp = PostWithRetry<protocol::CompleteResponse>(client, complete_target, protocol::Encode(batch), run_id, o);
        if (resp.ok()) {
          account(batch.results);
        } else {
          report_status = resp.status();
          spdlog::error("run={} reporting results failed: {}", run_id, report_status.message());
        }
        lock.lock();
        if (!report_status.ok()) {
          // Keep them for the final attempt below.
          pending.insert(pending.begin(), batch.results.begin(), batch.results.end());
          report_status = absl::OkStatus();
        }
        continue;
      }
      if (done) break;
    }
    lock.unlock();
    for (auto& t : pool) t.join();
  }

  // 4. Final batches: the rest of the results and the scan's skipped files; the last closes the run.
  std::vector<protocol::FileResult> rest = std::move(pending);
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
  size_t off = 0;
  do {
    protocol::CompleteRequest req;
    size_t end = std::min(rest.size(), off + kCompleteBatch);
    req.results.assign(rest.begin() + static_cast<long>(off), rest.begin() + static_cast<long>(end));
    req.final = end == rest.size();
    req.interrupted = req.final && Stopped(o);
    if (req.final) req.error = run_error;
    DS_ASSIGN_OR_RETURN(auto resp, PostWithRetry<protocol::CompleteResponse>(
                                       client, complete_target, protocol::Encode(req), run_id, o));
    account(req.results);
    if (req.final) outcome.state = resp.run_state;
    off = end;
  } while (off < rest.size());

  auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  spdlog::info("run={} job={} {}: {} uploaded ({} bytes), {} failed, {} skipped in {:.2f}s", run_id, job.name,
               outcome.state, outcome.uploaded, outcome.bytes_uploaded, outcome.failed, outcome.skipped, secs);
  return outcome;
}

}  // namespace ds
