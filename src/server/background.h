// Background work of the server: reconciles (claimed through the index, so with several
// instances exactly one runs each), and the janitor (orphaned runs, retention, index budget).
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "index/state_index.h"
#include "server/lease.h"

namespace ds {

struct ServerContext;

// Runs reconciles one at a time on its own thread. Thread-safe.
class ReconcileService {
 public:
  // REQUIRES: ctx outlives the service.
  ReconcileService(ServerContext* ctx, std::string worker_id);
  ~ReconcileService();  // stops after the current batch; a half-done reconcile is retaken later
  void Wake();

 private:
  void Loop();
  void RunOne(Reconcile r);

  ServerContext* const ctx_;
  const std::string worker_id_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool wake_ = false;            // Protected by mu_.
  std::atomic<bool> stop_{false};
  std::thread thread_;           // started last
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
  ~Janitor();  // stops the thread and releases the lease if held
  // One pass now, if this instance holds (or can take) the lease; "" otherwise. Returns what it
  // did, for the log. Not to be called concurrently with itself.
  std::string RunOnce();

 private:
  void Loop();
  // Takes or renews the lease; false when another instance holds it or the index fails.
  bool Claim();
  // Removes stale temp debris under every job's prefix (SweepTempObjects); returns what it did.
  std::string SweepTemps();

  ServerContext* const ctx_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;            // Protected by mu_.
  // Used by the janitor thread (RunOnce) only.
  IndexLease lease_;
  int64_t last_prune_ms_ = 0;
  int64_t last_temp_sweep_ms_ = 0;
  std::thread thread_;  // started last
};

// The reconcile as JSON for the admin API (progress, rate, ETA, report).
std::string ReconcileJson(const Reconcile& r, int64_t now_ms);

}  // namespace ds
