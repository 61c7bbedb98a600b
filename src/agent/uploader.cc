#include "agent/uploader.h"

#include <algorithm>
#include <thread>

#include "agent/object_put.h"
#include "common/log.h"

namespace ds {

bool GroupCommitter::Add(Staged item) {
  const uint64_t weight = item.put ? item.put->bytes() : 0;
  return queue_.Push(std::move(item), weight);
}

std::vector<protocol::FileResult> GroupCommitter::CommitGroups() {
  while (std::optional<std::vector<Staged>> group =
             queue_.PopBatch(kCompleteBatch, kCommitBytes, kCompleteEvery)) {
    if (group->empty()) continue;
    std::vector<protocol::FileResult> results;
    const SteadyTime t0 = std::chrono::steady_clock::now();
    const size_t n = group->size();
    Commit(std::move(*group), &results);
    if (queue_.closed() && queue_.size() == 0) return results;  // the last: the final batch
    const SteadyTime t_deliver = std::chrono::steady_clock::now();
    deliverer_->Enqueue(std::move(results));
    spdlog::debug("run={} {} committed in {} ms, queued for delivery in {} ms", run_.run_id, n,
                  std::chrono::duration_cast<std::chrono::milliseconds>(t_deliver - t0).count(),
                  MillisSince(t_deliver));
  }
  return {};
}

void GroupCommitter::Commit(std::vector<Staged> batch,
                            std::vector<protocol::FileResult>* out) const {
  std::vector<std::unique_ptr<StagedPut>> puts;
  std::vector<size_t> staged;  // indices in batch of the staged puts
  for (size_t k = 0; k < batch.size(); ++k) {
    if (batch[k].put) {
      puts.push_back(std::move(batch[k].put));
      staged.push_back(k);
    }
  }
  std::vector<absl::StatusOr<PutResult>> results;
  if (!puts.empty()) results = storage_->get()->CommitPuts(std::move(puts));
  for (size_t j = 0; j < staged.size(); ++j) {
    protocol::FileResult& r = batch[staged[j]].result;
    if (const absl::StatusOr<PutResult>& put = results[j]; put.ok()) {
      r.status = "uploaded";
      r.size = put->info.size;
      r.sha256 = put->info.sha256;
      r.kept_version = put->kept_version;
    } else {
      RecordPutError(run_, put.status(), &r);
    }
    r.duration_ms = MillisSince(batch[staged[j]].started);
  }
  for (Staged& s : batch) out->push_back(std::move(s.result));
}

Uploader::Uploader(const RunContext& run, const ScanResult& scan, std::filesystem::path root,
                   const ComparePlan& plan, RunStorage* storage, const AgentServerFactory& connect,
                   GroupCommitter* committer)
    : run_(run),
      scan_(scan),
      root_(std::move(root)),
      plan_(plan),
      storage_(storage),
      connect_(connect),
      committer_(committer),
      threads_(std::min<size_t>(static_cast<size_t>(std::max(1, run.options.upload_threads)),
                                plan.size())) {}

std::vector<protocol::FileResult> Uploader::Run() {
  if (threads_ == 0) committer_->Close();
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads_; ++t) pool.emplace_back([this] { Work(); });
  std::vector<protocol::FileResult> rest = committer_->CommitGroups();
  for (auto& t : pool) t.join();
  return rest;
}

void Uploader::Work() {
  LazySession grants(connect_);  // this thread's, for renewing write grants
  std::vector<protocol::UploadInstruction> chunk;
  size_t begin = 0, end = 0;
  while (Claim(&begin, &end) && MarkInFlight(begin, end, &chunk)) {
    for (size_t i = begin; i < end && !run_.stopped(); ++i) {
      std::optional<Staged> item = UploadOne(i, chunk[i - begin], &grants);
      if (item) (void)committer_->Add(std::move(*item));  // open until the last worker ends
    }
  }
  if (++finished_ == threads_) committer_->Close();
}

bool Uploader::Claim(size_t* begin, size_t* end) {
  const size_t claimed = next_.load();
  const size_t left = claimed < plan_.size() ? plan_.size() - claimed : 0;
  const size_t chunk = std::clamp<size_t>(left / (threads_ * 4), 1, 256);
  *begin = next_.fetch_add(chunk);
  if (*begin >= plan_.size() || run_.stopped()) return false;
  *end = std::min(plan_.size(), *begin + chunk);
  return true;
}

bool Uploader::MarkInFlight(size_t begin, size_t end,
                            std::vector<protocol::UploadInstruction>* chunk) {
  std::vector<std::pair<std::string, std::string>> in_flight;
  chunk->clear();
  for (size_t i = begin; i < end; ++i) {
    const protocol::UploadInstruction& u = chunk->emplace_back(plan_.Instruction(i));
    const bool writes = !u.already_present && (storage_->get() != nullptr || !u.url.empty()) &&
                        plan_.entry(i) != ComparePlan::kNotInManifest;
    if (writes) in_flight.emplace_back(u.path, u.key);
  }
  if (absl::Status st = run_.journal->MarkInFlight(run_.run_id, in_flight); !st.ok()) {
    spdlog::error("run={} journal: {}", run_.run_id, st);
    return false;
  }
  return true;
}

std::optional<Staged> Uploader::UploadOne(size_t i, const protocol::UploadInstruction& u,
                                          LazySession* grants) {
  Staged out{nullptr, protocol::FileResult{}, std::chrono::steady_clock::now()};
  protocol::FileResult& r = out.result;
  r.path = u.path;
  if (plan_.entry(i) == ComparePlan::kNotInManifest) {
    r.status = "failed";
    r.error = "server planned a path that is not in the manifest";
  } else if (storage_->get() == nullptr && u.url.empty() && !u.already_present) {
    r.status = "failed";
    r.error = std::string(storage_->status().message());
  } else {
    const protocol::ManifestEntry e = scan_.files.Wire(plan_.entry(i));
    std::string kept_version;
    absl::StatusOr<PutResult> put = Put(i, u, e, grants, &out.put, &kept_version);
    if (absl::IsCancelled(put.status())) return std::nullopt;
    if (out.put) {  // staged: the committer gives its result
      r.mtime_ns = e.mtime_ns;
      return out;
    }
    if (put.ok()) {
      r.status = "uploaded";
      r.mtime_ns = e.mtime_ns;
      r.size = put->info.size;
      r.sha256 = put->info.sha256.empty() ? e.sha256 : put->info.sha256;
      r.kept_version = put->kept_version.empty() ? kept_version : put->kept_version;
    } else {
      RecordPutError(run_, put.status(), &r);
    }
  }
  r.duration_ms = MillisSince(out.started);
  return out;
}

absl::StatusOr<PutResult> Uploader::Put(size_t i, const protocol::UploadInstruction& u,
                                        const protocol::ManifestEntry& e, LazySession* grants, std::unique_ptr<StagedPut>* staged,
                                        std::string* kept_version) {
  if (u.already_present) {
    // The server found exactly this content under the key: nothing to send. `complete` checks
    // what is stored against this report like any upload.
    *kept_version = u.kept_version;
    return PutResult{ObjectInfo{u.key, e.size, e.mtime_ns, e.sha256}, ""};
  }
  // Read only while it is the file the scan hashed: a symlink, FIFO or other file put in its
  // place since is skipped, unread, for the next run to pick up.
  const std::filesystem::path source = root_ / DiskPathOf(scan_, u.path);
  DS_ASSIGN_OR_RETURN(platform::File opened,
                      OpenScannedFile(source, scan_.identities[plan_.entry(i)]));
  PutOptions po = RunPutOptions(run_, e.mtime_ns);
  po.expected_sha256 = e.sha256;
  po.source_file = &opened;
  if (!u.url.empty()) return PutWithGrant(run_, u, source, po, grants, kept_version);
  DS_ASSIGN_OR_RETURN(*staged, storage_->get()->StagePut(u.key, source, po));
  return PutResult{};
}

}  // namespace ds
