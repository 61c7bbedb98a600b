// The compare of one run as a plain state machine (no I/O): which request goes next, what the
// server's answers plan. JobRun sends the requests; this class only decides them. Internal to
// src/agent.
//
// The no-op cycle: the digest of the whole manifest goes first, alone (kProbe); when the index
// holds exactly that manifest the server says so and no file list is sent. When it holds the
// previous manifest instead (base_match), only what changed since is sent (kDelta: the entries
// the scan hashed). Otherwise every entry goes (kWhole). A scan that failed or skipped files
// cannot end in a succeeded run, so it sends no digest and starts with kWhole. After a first
// sync copied while scanning, only the entries the scan hashed itself remain (kRest), the digest
// with the last batch; after a delta run copied while scanning, its delta is those entries.
// The plan is kept compactly (an index into the manifest per file); an instruction that says
// more than the manifest and the job's prefix imply is kept whole beside it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "agent/server_api.h"
#include "protocol/messages.h"
#include "sync/scanner.h"

namespace ds {

class ComparePlan {
 public:
  enum class Mode { kProbe, kDelta, kWhole, kRest };
  // A planned file whose entry is not in the manifest (the server planned a path the scan did
  // not see: it fails).
  static constexpr size_t kNotInManifest = SIZE_MAX;

  struct Inputs {
    std::string dest_prefix;  // the job's
    std::string digest;       // ManifestDigest of the scan's files
    std::string base_digest;  // the previous manifest's (empty: none)
    bool send_digest = true;  // the scan neither failed nor skipped a file
    // Copying while scanning compared the copies already (ScanResult::read_by_hook).
    bool streamed = false;
    bool first_sync = false;  // with streamed: a first sync (else a delta run)
  };
  // REQUIRES: `scan` outlives the plan.
  ComparePlan(const ScanResult& scan, Inputs in);

  // The next request to send; REQUIRES: !done().
  [[nodiscard]] protocol::CompareRequest Next(const std::string& run_id,
                                              const std::string& trigger);
  // The server answered the last request from Next(): plans its instructions and moves on.
  void OnAnswer(protocol::CompareResponse&& answer);
  // The server refused the last delta batch because the job's index moved on from the base:
  // the whole manifest goes after all, and the plan so far is planned again (the server keeps
  // one row a path). REQUIRES: mode() == kDelta.
  void OnBaseMoved();
  [[nodiscard]] bool done() const { return done_; }
  // The server holds exactly this manifest: nothing to upload.
  [[nodiscard]] bool matched() const { return matched_; }
  [[nodiscard]] Mode mode() const { return mode_; }

  // Adds an instruction to the plan (one set aside while copying, or from an answer).
  void Plan(protocol::UploadInstruction&& u);
  // Adds the manifest entry `entry` as planned (offline: the index is not known to hold it).
  void PlanEntry(size_t entry) { todo_.push_back(Planned{entry}); }
  // Orders the plan by manifest entry; REQUIRES: done(), before the calls below.
  void Seal();

  [[nodiscard]] size_t size() const { return todo_.size(); }
  // The i-th planned file's manifest entry (or kNotInManifest) and whole instruction.
  [[nodiscard]] size_t entry(size_t i) const { return todo_[i].entry; }
  [[nodiscard]] protocol::UploadInstruction Instruction(size_t i) const;
  // True when some planned file is written by the agent itself (no grant, not already present).
  [[nodiscard]] bool AnyDirectWrite() const;
  // Bytes of the planned files that are in the manifest.
  [[nodiscard]] uint64_t PlannedBytes() const;
  // The entries that the last requests listed and the server did not plan: their content is in
  // the index. nullopt in kWhole (every entry was sent: the caller walks the manifest itself).
  [[nodiscard]] std::optional<std::vector<size_t>> SentUnplanned() const;
  // REQUIRES: Seal() was called.
  [[nodiscard]] bool IsPlanned(size_t entry) const;

 private:
  static constexpr uint32_t kNoDetail = UINT32_MAX;
  struct Planned {
    size_t entry;                 // index in the manifest, or kNotInManifest
    uint32_t detail = kNoDetail;  // index in details_
  };
  // The entries batches are cut from in the current mode.
  [[nodiscard]] size_t ListSize() const;
  [[nodiscard]] size_t ListAt(size_t k) const;

  // Constant after construction.
  const ScanResult& scan_;
  const Inputs in_;
  std::vector<uint32_t> rest_;  // streamed: the entries the scan hashed itself

  Mode mode_;
  size_t off_ = 0, end_ = 0;  // the batch last sent: [off_, end_) of the current list
  bool done_ = false, matched_ = false;
  std::vector<Planned> todo_;
  std::vector<protocol::UploadInstruction> details_;
};

}  // namespace ds
