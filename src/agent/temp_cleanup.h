// Temp files that this agent's interrupted uploads may have left in storage. An upload to a
// directory or share that is not an unnamed O_TMPFILE file is written under a temp name beside
// its target (.dstmp-<tag of the run id>-<hex>) and renamed at its commit; the journal marks
// every upload in flight before it writes (Journal::MarkInFlight), so after a crash the marks
// name everything such a file can be. Other agents' temp files are never touched (the server
// removes stale ones). Internal to src/agent.
#pragma once

#include <memory>
#include <string>

#include "agent/journal.h"
#include "common/status.h"
#include "storage/storage.h"

namespace ds {

// Storage opened on first use, at most once (a failed open is not tried again by this object).
class LazyStorage {
 public:
  explicit LazyStorage(std::string url) : url_(std::move(url)) {}
  // Null when it cannot be opened; status() says why.
  Storage* get();
  const absl::Status& status() const { return status_; }
  const std::string& url() const { return url_; }

 private:
  const std::string url_;
  bool tried_ = false;
  std::unique_ptr<Storage> storage_;
  absl::Status status_ = absl::OkStatus();
};

// Removes the temp files the uploads `marks` of run `run_id` may have left (Storage::AbandonUpload,
// only in folders that hold temp files at all); returns how many temp files it removed. The
// objects under the marks' keys are never touched. Errors: the first temp file that could not be
// removed (after trying them all), or listing failed. REQUIRES: no upload of `run_id` is running.
[[nodiscard]] absl::StatusOr<size_t> RemoveUploadTemps(Storage& storage, const std::string& run_id,
                                                        const InFlightMarks& marks);

// For a run being replayed (it leaves the journal afterwards): removes the temp files its
// uploads may have left. When storage cannot be opened it logs a warning and keeps the run's
// marks in the journal (Journal::KeepInFlight) for RemoveInterruptedTemps; `*kept` is then true.
// Errors: only the journal's.
[[nodiscard]] absl::Status RemoveReplayedRunTemps(Journal* journal, LazyStorage& storage,
                                                  const std::string& run_id, bool* kept);

// At agent start, and later until it succeeds: removes the temp files of the uploads of every
// run still in the journal and of the marks kept by earlier replays (then forgets those), and
// logs how many it removed. Unavailable when storage cannot be opened: nothing is forgotten, and
// the caller tries again later.
[[nodiscard]] absl::Status RemoveInterruptedTemps(Journal* journal, const std::string& storage_url);

}  // namespace ds
