#include "server/storage_walk.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/paths.h"

namespace ds {
namespace {
constexpr int kRowPage = 10'000;  // rows per index read
}  // namespace

StorageWalk::StorageWalk(StateIndex* index, Storage* storage, int64_t job_id, std::string prefix)
    : index_(index),
      storage_(storage),
      job_id_(job_id),
      prefix_(std::move(prefix)),
      features_(storage->Features()) {}

absl::Status StorageWalk::LoadRows() {
  for (std::string after;;) {
    DS_ASSIGN_OR_RETURN(auto page, index_->ListSyncedFiles(job_id_, after, kRowPage));
    if (page.empty()) break;
    after = page.back().path;
    const size_t n = page.size();
    for (auto& f : page) rows_.push_back(std::move(f));
    if (n < static_cast<size_t>(kRowPage)) break;
  }
  by_key_.reserve(rows_.size());
  for (const SyncedFile& f : rows_) {
    by_key_.emplace(features_.case_insensitive ? FoldedKey(features_, f.path) : f.path, &f);
  }
  return absl::OkStatus();
}

bool StorageWalk::HasRow(const std::string& path) const {
  return by_key_.count(features_.case_insensitive ? FoldedKey(features_, path) : path) > 0;
}

WalkItem StorageWalk::Classify(const ObjectInfo& o, std::string path) {
  WalkItem item;
  item.object = &o;
  auto it = by_key_.find(features_.case_insensitive ? FoldedKey(features_, path) : path);
  item.path = std::move(path);
  if (it == by_key_.end()) return item;  // kExtra
  const SyncedFile* row = it->second;
  matched_.insert(row);
  item.row = row;
  item.same_mtime = SameMtimeAt(features_, row->mtime_ns, o.mtime_ns);
  if (row->size != o.size) {
    item.finding = WalkFinding::kSizeMismatch;
  } else if (!o.sha256.empty() && o.sha256 != row->sha256) {
    item.finding = WalkFinding::kHashMismatch;
  } else {
    item.finding = WalkFinding::kMatched;
  }
  return item;
}

absl::Status StorageWalk::Run(const std::function<bool(const WalkItem&)>& fn) {
  bool go_on = true;
  return storage_->List(prefix_, [&](const ObjectInfo& o) {
    if (!go_on) return;
    std::string path = prefix_.empty() ? o.key : o.key.substr(prefix_.size() + 1);
    if (!ValidateRelativePath(path).ok()) return;
    ++objects_seen_;
    go_on = fn(Classify(o, std::move(path)));
  });
}

std::vector<const SyncedFile*> StorageWalk::Missing() const {
  std::vector<const SyncedFile*> out;
  for (const SyncedFile& f : rows_) {
    if (!matched_.count(&f)) out.push_back(&f);
  }
  std::sort(out.begin(), out.end(),
            [](const SyncedFile* a, const SyncedFile* b) { return a->path < b->path; });
  return out;
}

std::string StorageWalk::EmptyListingRefusal() const {
  if (objects_seen_ > 0 || rows_.empty()) return "";
  return absl::StrCat("storage holds nothing under '", prefix_, "' but the index has ",
                      rows_.size(),
                      " rows for this job; is the share mounted? Nothing was changed");
}

absl::StatusOr<FileDigest> HashAndRecord(Storage* storage, const ObjectInfo& o, bool* recorded) {
  *recorded = false;
  DS_ASSIGN_OR_RETURN(FileDigest digest, storage->HashObject(o.key));
  if (!o.sha256.empty() || digest.size != o.size) return digest;
  absl::Status st = storage->RecordContentHash(o, digest.sha256);
  *recorded = st.ok();
  if (!st.ok() && !absl::IsUnimplemented(st)) {
    spdlog::info("no hash record for {}: {}", o.key, st);  // read again next time; nothing lost
  }
  return digest;
}

absl::StatusOr<std::vector<TempFinding>> SweepTempObjects(Storage* storage,
                                                          const std::string& prefix,
                                                          int64_t now_ms) {
  DS_ASSIGN_OR_RETURN(auto temps, storage->ListTempObjects(prefix));
  std::vector<TempFinding> out;
  out.reserve(temps.size());
  const int64_t now_ns = now_ms * 1'000'000;
  for (ObjectInfo& o : temps) {
    TempFinding t;
    t.object = std::move(o);
    t.age_ns = now_ns - t.object.mtime_ns;
    if (t.age_ns > kStaleTempAgeNs) {
      absl::Status st = storage->RemoveTempObject(t.object.key);
      t.removed = st.ok();
      if (!st.ok()) spdlog::warn("removing temp debris {}: {}", t.object.key, st);
    }
    out.push_back(std::move(t));
  }
  return out;
}

}  // namespace ds
