#include "agent/temp_cleanup.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "agent/storage_profile.h"
#include "common/log.h"

namespace ds {
namespace {

// The folder of `key` ("" at the top).
std::string FolderOf(const std::string& key) {
  const size_t slash = key.rfind('/');
  return slash == std::string::npos ? "" : key.substr(0, slash);
}

// Keys of the temp objects directly in `folder`.
absl::StatusOr<std::set<std::string>> TempsIn(Storage& storage, const std::string& folder) {
  absl::StatusOr<std::vector<ObjectInfo>> listed = storage.ListTempObjects(folder);
  if (absl::IsNotFound(listed.status())) return std::set<std::string>{};
  DS_RETURN_IF_ERROR(listed.status());
  std::set<std::string> out;
  for (ObjectInfo& o : *listed) {
    if (FolderOf(o.key) == folder) out.insert(std::move(o.key));
  }
  return out;
}

// Every in-flight mark of `run_id` in the journal.
absl::StatusOr<InFlightMarks> MarksOf(Journal* journal, const std::string& run_id) {
  InFlightMarks marks;
  DS_RETURN_IF_ERROR(journal->ForEachInFlight(run_id, [&](InFlightMarks batch) -> absl::Status {
    for (auto& m : batch) marks.push_back(std::move(m));
    return absl::OkStatus();
  }));
  return marks;
}

// Object storage (written with the server's grants) has no temp files: an interrupted upload
// leaves only uncommitted blocks, which the service discards.
bool HasNoTempFiles(const std::string& url) {
  absl::StatusOr<StorageProfile> profile = ProfileStorage(url);
  return profile.ok() && !profile->agent_writes;
}

}  // namespace

Storage* LazyStorage::get() {
  if (tried_) return storage_.get();
  tried_ = true;
  auto url = ParseStorageUrl(url_);
  absl::StatusOr<std::unique_ptr<Storage>> opened = url.ok() ? OpenStorage(*url) : url.status();
  if (opened.ok()) {
    storage_ = std::move(*opened);
  } else {
    status_ = opened.status();
  }
  return storage_.get();
}

absl::StatusOr<size_t> RemoveUploadTemps(Storage& storage, const std::string& run_id,
                                         const InFlightMarks& marks) {
  std::map<std::string, std::set<std::string>> by_folder;  // folder -> keys
  for (const auto& mark : marks) by_folder[FolderOf(mark.second)].insert(mark.second);
  size_t removed = 0;
  absl::Status failed = absl::OkStatus();  // the first temp file that could not be removed
  for (const auto& [folder, keys] : by_folder) {
    DS_ASSIGN_OR_RETURN(std::set<std::string> before, TempsIn(storage, folder));
    if (before.empty()) continue;
    for (const std::string& key : keys) {
      if (absl::Status st = storage.AbandonUpload(key, run_id); !st.ok()) {
        spdlog::warn("run={} removing the temp file of {}: {}", run_id, key, st);
        if (failed.ok()) failed = st;
      }
    }
    DS_ASSIGN_OR_RETURN(std::set<std::string> after, TempsIn(storage, folder));
    for (const std::string& temp : before) removed += after.count(temp) == 0 ? 1 : 0;
  }
  DS_RETURN_IF_ERROR(failed);
  return removed;
}

absl::Status RemoveReplayedRunTemps(Journal* journal, LazyStorage& storage,
                                    const std::string& run_id, bool* kept) {
  DS_ASSIGN_OR_RETURN(InFlightMarks marks, MarksOf(journal, run_id));
  if (marks.empty() || HasNoTempFiles(storage.url())) return absl::OkStatus();
  absl::Status status = storage.get() != nullptr ? absl::OkStatus() : storage.status();
  if (status.ok()) {
    absl::StatusOr<size_t> removed = RemoveUploadTemps(*storage.get(), run_id, marks);
    if (removed.ok()) {
      if (*removed > 0) spdlog::info("run={} removed {} temp file(s) of interrupted uploads", run_id, *removed);
      return absl::OkStatus();
    }
    status = removed.status();
  }
  spdlog::warn(
      "run={} the temp files of {} interrupted upload(s) could not be removed ({}): kept in the "
      "journal, removed when storage {} answers",
      run_id, marks.size(), status.message(), storage.url());
  *kept = true;
  return journal->KeepInFlight(run_id, marks);
}

absl::Status RemoveInterruptedTemps(Journal* journal, const std::string& storage_url) {
  DS_ASSIGN_OR_RETURN(auto runs, journal->PendingRuns());
  DS_ASSIGN_OR_RETURN(auto kept, journal->KeptInFlight());
  std::vector<std::pair<std::string, InFlightMarks>> todo;
  for (const JournalRun& run : runs) {
    DS_ASSIGN_OR_RETURN(InFlightMarks marks, MarksOf(journal, run.run_id));
    if (!marks.empty()) todo.emplace_back(run.run_id, std::move(marks));
  }
  if (todo.empty() && kept.empty()) return absl::OkStatus();
  if (HasNoTempFiles(storage_url)) {
    for (const auto& [run_id, marks] : kept) DS_RETURN_IF_ERROR(journal->ForgetKeptInFlight(run_id));
    return absl::OkStatus();
  }
  LazyStorage storage(storage_url);
  auto unreachable = [&](const absl::Status& st) {
    spdlog::warn("temp files of interrupted uploads not removed yet: storage {} unusable ({}); trying again later",
                 storage_url, st.message());
    return absl::UnavailableError(st.message());
  };
  if (storage.get() == nullptr) return unreachable(storage.status());
  size_t removed = 0, uploads = 0;
  for (const auto& [run_id, marks] : todo) {
    absl::StatusOr<size_t> n = RemoveUploadTemps(*storage.get(), run_id, marks);
    if (!n.ok()) return unreachable(n.status());
    removed += *n;
    uploads += marks.size();
  }
  for (const auto& [run_id, marks] : kept) {
    absl::StatusOr<size_t> n = RemoveUploadTemps(*storage.get(), run_id, marks);
    if (!n.ok()) return unreachable(n.status());
    DS_RETURN_IF_ERROR(journal->ForgetKeptInFlight(run_id));
    removed += *n;
    uploads += marks.size();
  }
  spdlog::info("removed {} temp file(s) of this agent's interrupted uploads ({} upload(s) were marked in flight)",
               removed, uploads);
  return absl::OkStatus();
}

}  // namespace ds
