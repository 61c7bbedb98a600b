#include "agent/copy_stream.h"

#include <filesystem>
#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "agent/upload_outcome.h"
#include "common/paths.h"
#include "http/http_types.h"

namespace ds {
namespace {

constexpr size_t kCopiesLive = 2048;
// A delta run's few copies go as they come (each batch is committed while the scan goes on); a
// first sync's wait for a full group, as one flush commits each group.
constexpr auto kDeltaCompareEvery = std::chrono::milliseconds(100);

}  // namespace

CopyStream::CopyStream(const RunContext& run, const RunPolicy& policy,
                       const std::string& storage_url, const std::string& base_digest,
                       RunStorage* storage, LazySession* session, const GroupCommitter* committer,
                       Deliverer* deliverer, bool* answered)
    : run_(run),
      policy_(policy),
      storage_url_(storage_url),
      base_digest_(base_digest),
      storage_(storage),
      session_(session),
      committer_(committer),
      deliverer_(deliverer),
      delta_(policy.copy == CopyMode::kDelta),
      copies_(kCopiesLive - kCompleteBatch, kCommitBytes / 2),
      answered_(answered) {}

void CopyStream::StopCopying(spdlog::level::level_enum level, const std::string& why) {
  if (!stopped_.exchange(true)) spdlog::log(level, "run={} {}", run_.run_id, why);
  copies_.Close();
}

std::optional<Sha256Digest> CopyStream::ReadNew(const std::string& path, const platform::File& file,
                                                uint64_t size, int64_t mtime_ns) {
  if (stopped_.load()) return std::nullopt;
  Storage* to = storage_->Open(run_, storage_url_);
  if (to == nullptr) {
    StopCopying(spdlog::level::warn, "storage unusable: not copying while scanning");
    return std::nullopt;
  }
  // A delta run's copies: their results are held until the compares are done (Deliverer), so
  // at most delta_copies_held are taken, each slot by one thread. Reaching the bound does not
  // close the queue: copies already taken by other threads still go.
  if (delta_ && taken_.fetch_add(1) >= run_.options.delta_copies_held) {
    if (!stopped_.exchange(true)) {
      spdlog::info(
          "run={} copied {} file(s) while scanning, as many as a delta run holds; the "
          "rest is uploaded after the scan",
          run_.run_id, run_.options.delta_copies_held);
    }
    return std::nullopt;
  }
  const SteadyTime t0 = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<StagedPut>> s = Stage(to, path, file, mtime_ns);
  Sha256Digest sha{};
  if (s.ok() && ((*s)->bytes() != size || !ParseSha256Hex((*s)->sha256(), &sha))) {
    s = absl::InternalError("staged size or hash unknown");
  }
  if (!s.ok()) {
    // A file that changed, a full budget of unnamed files, a file already under the key, a name
    // the storage refuses: this one is hashed and uploaded (or skipped) as usual. Anything else
    // (storage trouble): the rest too.
    if (ClassifyCopyDecline(s.status()) == CopyDecline::kStopCopying) {
      StopCopying(spdlog::level::warn,
                  absl::StrCat("copying while scanning stopped (", s.status().message(),
                               "); the rest is uploaded after the scan"));
    }
    return std::nullopt;
  }
  // Refused once the copying stopped meanwhile: the copy is dropped, the file goes as usual.
  if (!copies_.Push(Copy{path, size, mtime_ns, sha, std::move(*s), t0}, size)) return std::nullopt;
  return sha;
}

absl::StatusOr<std::unique_ptr<StagedPut>> CopyStream::Stage(Storage* to, const std::string& path,
                                                             const platform::File& file,
                                                             int64_t mtime_ns) {
  const StageFdOptions stage{
      .unnamed_only = true,       // nothing to journal: a crash leaves no trace of a staged copy
      .replace_unnamed = delta_,  // a changed file replaces its object (kept as a version)
  };
  // native(): StagePutFd still takes a descriptor (documented interop until it takes a File).
  return to->StagePutFd(JoinKey(run_.job.dest_prefix, path), file.native(),
                        (std::filesystem::path(run_.job.source) / path).string(),
                        RunPutOptions(run_, mtime_ns), stage);
}

void CopyStream::CompareLoop() {
  const auto wait = delta_ ? std::chrono::milliseconds(kDeltaCompareEvery)
                           : std::chrono::milliseconds(kCompleteEvery);
  while (std::optional<std::vector<Copy>> batch =
             copies_.PopBatch(kCompleteBatch, kCommitBytes / 2, wait)) {
    if (!batch->empty() && streamed_) CompareBatch(std::move(*batch));
    // (not streamed: the copies are dropped; they are compared and uploaded after the scan)
  }
}

void CopyStream::CompareBatch(std::vector<Copy> batch) {
  absl::StatusOr<protocol::CompareResponse> answer = SendCompare(batch);
  if (!answer.ok()) {
    streamed_ = false;
    unreachable_ = Unreachable(answer.status());
    if (delta_ && http::IsBaseMoved(answer.status())) {
      StopCopying(spdlog::level::info,
                  absl::StrCat("copying while scanning stopped: ", answer.status().message(),
                               "; the rest is compared after the scan"));
    } else {
      StopCopying(spdlog::level::warn,
                  absl::StrCat("compare while copying failed (", answer.status().message(),
                               "); the rest is compared after the scan"));
    }
    return;
  }
  if (!*answered_) {
    // A delta run's first answer (a first sync's came with its opening compare).
    if (absl::Status st = run_.journal->MarkOnline(run_.run_id); st.ok()) {
      *answered_ = true;
    } else {
      spdlog::error("run={} journal: {}", run_.run_id, st);
    }
  }
  std::vector<Staged> to_commit = Planned(batch, *answer);
  if (delta_ && !to_commit.empty() && !MarkInFlight(to_commit)) {
    to_commit.clear();  // dropped: compared and uploaded after the scan, as usual
    streamed_ = false;
    StopCopying(spdlog::level::err, "journal failed: copying while scanning stopped");
  }
  uint64_t bytes = 0;
  for (const Staged& s : to_commit) bytes += s.put->bytes();
  planned_files_ += to_commit.size();
  planned_bytes_ += bytes;
  if (RunCounters* c = run_.options.counters; c != nullptr) {
    c->files_total += to_commit.size();
    c->bytes_total += bytes;
  }
  std::vector<protocol::FileResult> results;
  committer_->Commit(std::move(to_commit), &results);
  spdlog::debug("run={} copied while scanning: {} compared, {} committed", run_.run_id,
                batch.size(), results.size());
  if (!results.empty()) deliverer_->Enqueue(std::move(results));
}

absl::StatusOr<protocol::CompareResponse> CopyStream::SendCompare(const std::vector<Copy>& batch) {
  protocol::CompareRequest req;
  req.run_id = run_.run_id;
  req.trigger = run_.options.trigger;
  req.last = false;
  if (delta_) req.base_digest = base_digest_;
  req.files.reserve(batch.size());
  for (const Copy& c : batch) {
    req.files.push_back(
        protocol::ManifestEntry{c.path, c.size, c.mtime_ns, Sha256DigestHex(c.sha256)});
  }
  absl::StatusOr<protocol::CompareResponse> answer =
      session_->get()->Compare(run_.job.name, req, policy_.compare_attempts);
  if (answer.ok() && !answer->storage_url.empty() && answer->storage_url != storage_url_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the server now names storage ", answer->storage_url));
  }
  return answer;
}

std::vector<Staged> CopyStream::Planned(std::vector<Copy>& batch,
                                        protocol::CompareResponse& answer) {
  std::unordered_map<std::string_view, protocol::UploadInstruction*> planned;
  for (auto& u : answer.upload) planned.emplace(u.path, &u);
  std::vector<Staged> to_commit;
  std::vector<std::pair<std::string, IndexedContent>> known;
  for (Copy& c : batch) {
    auto it = planned.find(c.path);
    if (it == planned.end()) {  // the index holds this content: drop the copy
      known.emplace_back(c.path, IndexedContent{c.size, Sha256DigestHex(c.sha256)});
      continue;
    }
    protocol::UploadInstruction& u = *it->second;
    if (!u.url.empty() || u.already_present || !u.kept_version.empty() ||
        u.key != JoinKey(run_.job.dest_prefix, c.path)) {
      set_aside_.push_back(std::move(u));
      continue;
    }
    protocol::FileResult r;
    r.path = c.path;
    r.mtime_ns = c.mtime_ns;
    to_commit.push_back(Staged{std::move(c.put), std::move(r), c.started});
  }
  if (!known.empty()) {
    if (absl::Status st = run_.journal->RememberIndexed(run_.job.id, known); !st.ok()) {
      spdlog::warn("run={} {}", run_.run_id, st);
    }
  }
  return to_commit;
}

bool CopyStream::MarkInFlight(const std::vector<Staged>& to_commit) {
  std::vector<std::pair<std::string, std::string>> in_flight;
  in_flight.reserve(to_commit.size());
  for (const Staged& s : to_commit) in_flight.emplace_back(s.result.path, s.put->key());
  absl::Status st = run_.journal->MarkInFlight(run_.run_id, in_flight);
  if (!st.ok()) spdlog::error("run={} journal: {}", run_.run_id, st);
  return st.ok();
}

}  // namespace ds
