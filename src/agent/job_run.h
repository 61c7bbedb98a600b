// One run of one job on the agent, as an object with parts: scan (copying while scanning),
// compare (ComparePlan), upload (Uploader, GroupCommitter), deliver (Deliverer), each in its own
// file; the policy decided once (RunPolicy); the server behind AgentServer. Internal to
// src/agent.
#pragma once

#include <atomic>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "agent/journal.h"
#include "agent/run_policy.h"
#include "agent/server_api.h"
#include "agent/source_roots.h"
#include "common/rate_limiter.h"
#include "common/status.h"
#include "protocol/messages.h"
#include "sync/hash_cache.h"
#include "sync/scanner.h"

namespace ds {

// Progress of one run, read by the heartbeat thread while the run updates it.
struct RunCounters {
  std::atomic<uint64_t> files_total{0}, files_done{0};  // to upload; uploaded or failed
  std::atomic<uint64_t> bytes_total{0}, bytes_done{0};  // bytes
};

struct JobRunOptions {
  std::string state_dir;
  std::string storage_url;  // as told by the server
  std::string run_id;       // correlation id (from a command, or fresh)
  std::string trigger;      // schedule | command | startup
  int upload_threads = 2;
  // The agent-wide bandwidth cap, shared by every upload thread and block (not owned; null =
  // unlimited).
  RateLimiter* rate_limiter = nullptr;
  int block_parallelism = 4;  // blocks of one file in flight (object storage)
  bool verify = false;        // re-read what landed in a directory/share (opt-in)
  const std::atomic<bool>* stop = nullptr;
  Journal* journal = nullptr;       // required: every result is journaled before it is reported
  size_t block_size = 8 << 20;      // bytes per staged block of an object-storage upload
  bool server_known_down = false;   // the heartbeat already failed: go offline without retrying
  RunCounters* counters = nullptr;  // optional: progress for heartbeats
  // On a directory/share, a first sync into an empty index copies each file while the scan
  // hashes it (read once) and compares the copies in batches during the scan; a delta run does
  // the same for new and changed files (agent flag --no-copy-while-scanning turns it off).
  bool copy_while_scanning = true;
  // A delta run's copies whose results it holds back until its compares are done, at most;
  // beyond that the rest is uploaded after the scan (bounds memory).
  size_t delta_copies_held = 20'000;
  // Required: the folders this agent may read; a source outside them fails the run unread.
  const SourceRoots* sources = nullptr;
};

struct JobRunOutcome {
  std::string state;     // as the server closed the run; "journaled" when it could not
                         // be reported (the journal replays it later)
  bool offline = false;  // planned locally because the server was unreachable
  uint64_t uploaded = 0, failed = 0, skipped = 0;
  uint64_t bytes_uploaded = 0;
  uint64_t kept_versions = 0;  // uploads that replaced an object (kept as a version)
};

class ComparePlan;
class CopyStream;
class Deliverer;
class GroupCommitter;
class RunStorage;
struct RunContext;

// REQUIRES: the server sessions carry the agent's API key. Never modifies the job's source folder.
// Directory/share storage: the agent writes the files itself. Object storage (Azure Blob): the
// agent holds no storage secret; it uploads each file with the write-only URL the server put in
// the compare answer, renewing it (AgentServer::Grant) when it expires.
// When the server cannot be reached and storage is a directory/share, the run goes on offline:
// files whose content the index is not known to hold are uploaded and journaled for replay. On
// object storage there is no upload without the server's grant: the run fails and the next
// cycle tries again.
class JobRun {
 public:
  // `server`: the session deliveries use (not owned). `connect` makes sessions for the other
  // threads (compares while deliveries run, grant renewals); may be empty.
  JobRun(AgentServer* server, AgentServerFactory connect, const protocol::JobSpec& job,
         const JobRunOptions& options);
  ~JobRun();
  JobRun(const JobRun&) = delete;
  JobRun& operator=(const JobRun&) = delete;

  // Runs the job once. Errors: the run could not go on (journal, the server's refusal, the
  // server unreachable on object storage); the journal then holds what must be reported.
  [[nodiscard]] absl::StatusOr<JobRunOutcome> Run();

 private:
  [[nodiscard]] absl::Status Begin();
  // The policy, from the options, the storage and (first sync) the opening compare.
  [[nodiscard]] absl::Status Decide();
  // The opening compare (no files): is the job's index empty?
  [[nodiscard]] absl::StatusOr<OpeningAnswer> OpeningCompare();
  void Scan();
  void FinishScan(absl::StatusOr<ScanResult> scanned);
  // The compare; false when the run goes offline.
  [[nodiscard]] absl::StatusOr<bool> Compare();
  // The server answered a compare request of the plan.
  [[nodiscard]] absl::Status Answered(protocol::CompareResponse answer);
  // Calls differs(i) for each manifest entry whose content the index is not known to hold.
  [[nodiscard]] absl::Status ForEachNotIndexed(const std::function<void(size_t)>& differs) const;
  // Remembers (for offline planning) what the server did not plan: the index holds it.
  void RememberKnown();
  // Offline: plans every entry whose content the index is not known to hold.
  [[nodiscard]] absl::Status PlanOffline();
  void CountPlanned();
  [[nodiscard]] absl::StatusOr<JobRunOutcome> Finish(std::vector<protocol::FileResult> rest);
  // Closes the run in the journal as failed with `st` (forgotten when the server never saw it).
  [[nodiscard]] absl::Status Fail(const absl::Status& st);
  // Keeps this scan's manifest as the job's hash cache for the next run.
  void KeepCache();

  // Constant after construction.
  AgentServer* const server_;
  const AgentServerFactory connect_;
  const protocol::JobSpec& job_;
  const JobRunOptions& options_;
  const std::unique_ptr<RunContext> run_;
  const std::string cache_key_;

  // The run's thread's (the parts get what they need by reference).
  std::chrono::steady_clock::time_point started_;
  std::unique_ptr<HashCache> cache_;
  std::string base_digest_;  // the previous manifest's digest: a delta compare's base
  std::string storage_url_;  // as the server last named it
  RunPolicy policy_;
  bool answered_ = false;  // the server answered a compare of this run
  JobRunOutcome outcome_;
  std::string run_error_;
  std::filesystem::path root_;  // the job's folder, as SourceRoots admit it
  ScanResult scan_;
  std::string digest_;  // ManifestDigest(scan_.files) after a complete scan
  bool scanned_ = false;
  std::unique_ptr<RunStorage> storage_;
  // Copying while scanning: the compares' own session (deliveries run meanwhile).
  std::unique_ptr<LazySession> compare_session_;
  std::unique_ptr<Deliverer> deliverer_;
  std::unique_ptr<GroupCommitter> committer_;
  std::unique_ptr<CopyStream> copies_;  // copying while scanning
  std::unique_ptr<ComparePlan> plan_;
};

}  // namespace ds
