// Background work of the server: reconciles (claimed through the index, so with several
// instances exactly one runs each), and the janitor (orphaned runs, retention, index budget).
#pragma once

#include <string>

#include "common/periodic_worker.h"
#include "index/state_index.h"
#include "server/lease.h"

namespace ds {

struct ServerContext;

// Runs reconciles one at a time on its own thread. Thread-safe.
class ReconcileService {
 public:
  // REQUIRES: ctx outlives the service.
  ReconcileService(ServerContext* ctx, std::string worker_id);
  // Stops after the current batch; a half-done reconcile is retaken later.
  ~ReconcileService() = default;
  void Wake() { worker_.Wake(); }

 private:
  // Runs queued reconciles until none is left (or stopping). On the worker thread.
  void RunQueued();
  void RunOne(Reconcile r);

  ServerContext* const ctx_;
  const std::string worker_id_;
  PeriodicWorker worker_;  // last: stops before the members it uses go
};

// Periodic housekeeping on its own thread: abandons runs whose runner stopped heartbeating,
// prunes old run history, removes stale temp debris of every job (hourly), watches the index
// size budget. With several instances on one index,
// only the holder of the index lease "janitor" does it: the holder renews the lease every pass
// (and between the steps of a pass); when it dies, another instance takes the lease over once it
// expires (3 janitor intervals), and a clean shutdown releases it at once.
class Janitor {
 public:
  // `holder` identifies this instance in the lease (unique among instances sharing the index).
  // REQUIRES: ctx outlives the janitor.
  Janitor(ServerContext* ctx, std::string holder);
  // Stops the thread, then releases the lease if held.
  ~Janitor() { worker_.Stop(); }
  // One pass now, if this instance holds (or can take) the lease; "" otherwise. Returns what it
  // did, for the log. Not to be called concurrently with itself.
  std::string RunOnce();

 private:
  // Takes or renews the lease; false when another instance holds it or the index fails.
  bool Claim();
  // Removes stale temp debris under every job's prefix (SweepTempObjects); returns what it did.
  std::string SweepTemps();

  ServerContext* const ctx_;
  // Used by the janitor thread (RunOnce) only.
  IndexLease lease_;
  int64_t last_prune_ms_ = 0;
  int64_t last_temp_sweep_ms_ = 0;
  PeriodicWorker worker_;  // last: stops before the members it uses go
};

// The reconcile as JSON for the admin API (progress, rate, ETA, report).
std::string ReconcileJson(const Reconcile& r, int64_t now_ms);

}  // namespace ds
