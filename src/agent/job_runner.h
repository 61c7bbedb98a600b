// One run of one job on the agent: scan, compare (batched), upload in parallel, complete
// (batched, retried). Internal to src/agent.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "agent/journal.h"
#include "agent/source_roots.h"
#include "common/rate_limiter.h"
#include "common/status.h"
#include "http/http_client.h"
#include "protocol/messages.h"

namespace ds {

// Progress of one run, read by the heartbeat thread while the run updates it.
struct RunCounters {
  std::atomic<uint64_t> files_total{0}, files_done{0};  // to upload; uploaded or failed
  std::atomic<uint64_t> bytes_total{0}, bytes_done{0};  // bytes
};

struct JobRunOptions {
  std::string state_dir;
  std::string storage_url;        // as told by the server
  std::string run_id;             // correlation id (from a command, or fresh)
  std::string trigger;            // schedule | command | startup
  int upload_threads = 2;
  // The agent-wide bandwidth cap, shared by every upload thread and block (not owned; null =
  // unlimited).
  RateLimiter* rate_limiter = nullptr;
  int block_parallelism = 4;      // blocks of one file in flight (object storage)
  bool verify = false;            // re-read what landed in a directory/share (opt-in)
  const std::atomic<bool>* stop = nullptr;
  Journal* journal = nullptr;     // required: every result is journaled before it is reported
  size_t block_size = 8 << 20;    // bytes per staged block of an object-storage upload
  // Object storage: makes a client (carrying the API key) for renewing write grants from the
  // upload threads (http::Client is one per thread). Without it an expired grant fails the file.
  std::function<std::unique_ptr<http::Client>()> new_client;
  bool server_known_down = false; // the heartbeat already failed: go offline without retrying
  RunCounters* counters = nullptr; // optional: progress for heartbeats
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
  std::string state;              // as the server closed the run; "journaled" when it could not
                                  // be reported (the journal replays it later)
  bool offline = false;           // planned locally because the server was unreachable
  uint64_t uploaded = 0, failed = 0, skipped = 0;
  uint64_t bytes_uploaded = 0;
  uint64_t kept_versions = 0;     // uploads that replaced an object (kept as a version)
};

// REQUIRES: `client` carries the agent's API key. Never modifies the job's source folder.
// Directory/share storage: the agent writes the files itself. Object storage (Azure Blob): the
// agent holds no storage secret; it uploads each file with the write-only URL the server put in
// the compare answer, renewing it through POST /agent/runs/{run}/grant when it expires.
// When the server cannot be reached and storage is a directory/share, the run goes on offline:
// files whose content the index is not known to hold are uploaded and journaled for replay. On
// object storage there is no upload without the server's grant: the run fails and the next
// cycle tries again.
[[nodiscard]] absl::StatusOr<JobRunOutcome> RunJob(http::Client* client, const protocol::JobSpec& job,
                                                   const JobRunOptions& options);

// Reports what the journal holds that the server has not acknowledged: interrupted runs (their
// temp files removed, closed as abandoned with every result they produced) and offline runs
// (compared, then completed). Unavailable when the server stops answering; the rest stays.
// When storage cannot be opened to remove a run's temp files, the run is reported all the same
// and its in-flight marks are kept in the journal (`*temps_kept` set true, if given): the caller
// then calls RemoveInterruptedTemps later.
[[nodiscard]] absl::Status ReplayJournal(http::Client* client, Journal* journal,
                                         const std::string& storage_url,
                                         const std::atomic<bool>* stop,
                                         bool* temps_kept = nullptr);

}  // namespace ds
