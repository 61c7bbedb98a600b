// The continuous storage scrub (issue 16): every job's objects in storage are listed against its
// index rows on a schedule (or when an operator asks), at a capped rate, with an optional
// re-hash of a sample of the objects; what it finds is healed without touching stored data:
//   - an index row whose object is missing, or whose object differs (size, stored hash, or the
//     re-hashed content): the row is removed (so the job's next compare plans the file again and
//     the runner that still has the source uploads it) and the path is recorded in scrub_lost;
//   - an object the index lacks: indexed, as a reconcile adds it;
//   - temp debris of interrupted uploads older than an hour: removed.
// Lost files that a later run of the job did not upload again (the source is gone from the
// runner) or that no runner can upload (the runner was revoked) are reported as unhealed.
// With several server instances, the index lease "scrub" decides which one queues the scheduled
// scrubs, and scrubs are claimed through the index, so exactly one instance runs each.
#pragma once

#include <string>

#include "common/periodic_worker.h"
#include "index/state_index.h"
#include "server/lease.h"

namespace ds {

struct ServerContext;

// Queues scheduled scrubs and runs queued ones, one at a time, on its own thread. Thread-safe.
class ScrubService {
 public:
  // REQUIRES: ctx outlives the service.
  ScrubService(ServerContext* ctx, std::string worker_id);
  // Stops soon (between objects), then releases the lease; a half-done scrub is retaken later.
  ~ScrubService() { worker_.Stop(); }
  void Wake() { worker_.Wake(); }
  // Under the lease "scrub": queues a scheduled scrub of every job that is due (see
  // ServerConfig::scrub_interval). Returns how many it queued; 0 when another instance holds the
  // lease or scheduling is off. Not concurrently with itself.
  int ScheduleDue();

 private:
  // Queues the due scrubs (when it is time to look), then runs queued ones until none is left (or
  // stopping). On the worker thread.
  void Pass();
  void RunOne(Scrub s);
  bool Claim();

  ServerContext* const ctx_;
  const std::string worker_id_;
  IndexLease lease_;              // "scrub"; used by the service thread only
  int64_t last_schedule_ms_ = 0;  // used by the service thread only
  PeriodicWorker worker_;         // last: stops before the members it uses go
};

// The scrub as JSON for the admin API (docs/api.md).
std::string ScrubJson(const Scrub& s, int64_t now_ms);
// missing + extra + size_mismatches + hash_mismatches > 0.
bool ScrubHasDrift(const Scrub& s);
// Whether the object at `path` is in the re-hash sample of the scrub `scrub_id`: a deterministic
// choice of about `fraction` of the paths (all at 1, none at 0), different for each scrub so that
// successive scrubs cover every object.
bool InRehashSample(const std::string& scrub_id, const std::string& path, double fraction);
// When the job is next due for a scheduled scrub (Unix ms), given its newest scrub (null: never
// scrubbed) and its creation; 0 when scheduling is off (interval 0).
int64_t NextScrubDueMs(const Scrub* last, int64_t job_created_at_ms, int64_t interval_ms);

}  // namespace ds
