// Copying while scanning, on a directory/share that stages unnamed files: the scan hands each
// file it must read to ReadNew(), which stages it into storage while hashing the bytes it copies
// (each byte read once); CompareLoop(), on the run's thread while the scan goes on, compares the
// copies in batches, commits the planned ones and hands their results to the deliverer, and
// drops the others (their content is indexed already). Instructions that say more than the
// manifest implies (a kept version, an unusual key) are set aside for the upload step. A failed
// compare stops the copying: what is left is compared after the scan, as usual.
// Internal to src/agent.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/deliverer.h"
#include "agent/run_parts.h"
#include "agent/run_policy.h"
#include "agent/server_api.h"
#include "agent/uploader.h"
#include "common/bounded_queue.h"
#include "common/crypto.h"
#include "common/log.h"
#include "platform/file.h"

namespace ds {

class CopyStream {
 public:
  // REQUIRES: every pointer and reference outlives this; `*answered` (did the server answer a
  // compare of this run) is read and set on the CompareLoop() thread only.
  CopyStream(const RunContext& run, const RunPolicy& policy, const std::string& storage_url,
             const std::string& base_digest, RunStorage* storage, LazySession* session,
             const GroupCommitter* committer, Deliverer* deliverer, bool* answered);

  // The scan's ScanOptions::read_new (thread-safe): the file's hash when it was copied, nullopt
  // when it was not (the scan then hashes it itself and it is uploaded as usual).
  [[nodiscard]] std::optional<Sha256Digest> ReadNew(const std::string& path,
                                                    const platform::File& file, uint64_t size,
                                                    int64_t mtime_ns);
  // The scan ended: CompareLoop() returns once the copies left are compared.
  void ScanDone() { copies_.Close(); }
  // Compares, commits and delivers copies until ScanDone().
  void CompareLoop();

  // After CompareLoop(): every copy was compared (the plan then needs only the rest).
  [[nodiscard]] bool streamed() const { return streamed_; }
  // The server could not be reached by a compare of copies (after retries).
  [[nodiscard]] bool unreachable() const { return unreachable_; }
  [[nodiscard]] uint64_t planned_files() const { return planned_files_; }
  [[nodiscard]] uint64_t planned_bytes() const { return planned_bytes_; }
  // Instructions for the upload step (ComparePlan::Plan).
  [[nodiscard]] std::vector<protocol::UploadInstruction> TakeSetAside() {
    return std::move(set_aside_);
  }

 private:
  struct Copy {
    std::string path;
    uint64_t size;
    int64_t mtime_ns;
    Sha256Digest sha256;
    std::unique_ptr<StagedPut> put;
    SteadyTime started;
  };
  // Stops copying for the rest of the scan (logs `why` the first time, at `level`).
  void StopCopying(spdlog::level::level_enum level, const std::string& why);
  [[nodiscard]] absl::StatusOr<std::unique_ptr<StagedPut>> Stage(Storage* to,
                                                                 const std::string& path,
                                                                 const platform::File& file,
                                                                 int64_t mtime_ns);
  // Compares one batch; the planned copies are committed and delivered.
  void CompareBatch(std::vector<Copy> batch);
  [[nodiscard]] absl::StatusOr<protocol::CompareResponse> SendCompare(
      const std::vector<Copy>& batch);
  // The copies the answer plans that can be committed as they are (the rest set aside or,
  // unplanned, remembered as indexed and dropped).
  [[nodiscard]] std::vector<Staged> Planned(std::vector<Copy>& batch,
                                            protocol::CompareResponse& answer);
  // A delta run's changed file takes a temp name at commit, for a moment: journaled like the
  // uploads' temp files, so that a crash there leaves nothing behind. False: the journal failed.
  [[nodiscard]] bool MarkInFlight(const std::vector<Staged>& to_commit);

  // Constant after construction.
  const RunContext& run_;
  const RunPolicy& policy_;
  const std::string& storage_url_;
  const std::string& base_digest_;
  RunStorage* const storage_;
  LazySession* const session_;  // not the deliveries': they run meanwhile
  const GroupCommitter* const committer_;
  Deliverer* const deliverer_;
  const bool delta_;
  // Copies waiting for their compare: with the batch in hand at most 2,048 files or 512 MiB
  // staged at once (each holds an open unnamed file).
  BoundedQueue<Copy> copies_;
  std::atomic<size_t> taken_{0};      // delta runs: slots ReadNew took (some past the bound)
  std::atomic<bool> stopped_{false};  // copying stopped (logged once)

  // The CompareLoop() thread's.
  bool* const answered_;
  bool streamed_ = true;
  bool unreachable_ = false;
  uint64_t planned_files_ = 0, planned_bytes_ = 0;
  std::vector<protocol::UploadInstruction> set_aside_;
};

}  // namespace ds
