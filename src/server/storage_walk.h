// One pass over a job's objects in storage, matched against the job's rows in the state index:
// the piece that reconcile and scrub share. Internal to src/server.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "index/state_index.h"
#include "storage/storage.h"

namespace ds {

// How one stored object compares with the index row it matches.
enum class WalkFinding {
  kMatched,       // a row with the object's size and (where stored metadata has one) SHA-256
  kExtra,         // no row: the object is stray to the index
  kSizeMismatch,  // the row's size differs from the object's
  kHashMismatch,  // same size, but the stored SHA-256 metadata differs from the row's
};

// One object as the walk hands it out. The pointers live as long as the walk.
struct WalkItem {
  const ObjectInfo* object = nullptr;
  std::string path;                 // relative to the job's prefix, as storage spells it
  const SyncedFile* row = nullptr;  // the matching row; null for kExtra
  WalkFinding finding = WalkFinding::kExtra;
  // The row's mtime equals the object's at the precision storage keeps (SameMtimeAt); false
  // without a row.
  bool same_mtime = false;
};

// Not thread-safe; one walk per job pass. REQUIRES: index and storage outlive it.
class StorageWalk {
 public:
  StorageWalk(StateIndex* index, Storage* storage, int64_t job_id, std::string prefix);

  // Reads every row of the job (keyset pages). Call once, before Run.
  [[nodiscard]] absl::Status LoadRows();
  size_t row_count() const { return rows_.size(); }
  // The job has a row for `path` (matched as Run matches objects).
  bool HasRow(const std::string& path) const;

  // Lists storage under the prefix and calls `fn` for each object whose relative path is valid
  // (others are passed over). Rows are matched by FoldedKey where storage is case-insensitive,
  // by exact path otherwise. Once `fn` returns false the remaining objects are passed over.
  // Returns the listing's status.
  [[nodiscard]] absl::Status Run(const std::function<bool(const WalkItem&)>& fn);
  // After Run: the rows no listed object matched, ordered by path.
  std::vector<const SyncedFile*> Missing() const;
  // Objects handed to `fn` (valid paths only).
  uint64_t objects_seen() const { return objects_seen_; }
  // After Run: "" unless the listing found nothing where the index has rows, which is far more
  // likely an unmounted share than a lost job; then the message refusing to act on it.
  std::string EmptyListingRefusal() const;

 private:
  WalkItem Classify(const ObjectInfo& o, std::string path);

  // Constant after construction.
  StateIndex* const index_;
  Storage* const storage_;
  const int64_t job_id_;
  const std::string prefix_;
  const StorageFeatures& features_;
  // Filled by LoadRows; matched_ by Run.
  std::vector<SyncedFile> rows_;
  std::unordered_map<std::string, const SyncedFile*> by_key_;  // FoldedKey or path -> row
  std::unordered_set<const SyncedFile*> matched_;
  uint64_t objects_seen_ = 0;
};

// Reads the object's content. Where the listing gave no SHA-256 (no record, or one the object no
// longer matches), records the one read in storage (Storage::RecordContentHash, best effort) so
// that later walks and an index recovery take it from storage; `*recorded` says whether it did.
[[nodiscard]] absl::StatusOr<FileDigest> HashAndRecord(Storage* storage, const ObjectInfo& o,
                                                       bool* recorded);

// Leftovers of interrupted uploads older than this are debris (younger ones may be in flight).
inline constexpr int64_t kStaleTempAgeNs = int64_t{3600} * 1'000'000'000;

// One leftover of an interrupted upload, as a sweep found it.
struct TempFinding {
  ObjectInfo object;
  int64_t age_ns = 0;    // now - its mtime
  bool removed = false;  // it was stale and is gone now
};
// Lists the temp objects under `prefix` ("" = everywhere) and removes those older than
// kStaleTempAgeNs (RemoveTempObject; a failed removal is logged and reported as not removed).
// Never touches anything but temp objects.
[[nodiscard]] absl::StatusOr<std::vector<TempFinding>> SweepTempObjects(Storage* storage,
                                                                        const std::string& prefix,
                                                                        int64_t now_ms);

}  // namespace ds
