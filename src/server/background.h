// Background work of the server: reconciles (claimed through the index, so with several
// instances exactly one runs each), and the janitor (orphaned runs, retention, index budget).
#pragma once

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "index/state_index.h"

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
// prunes old run history, watches the index size budget.
class Janitor {
 public:
  Janitor(ServerContext* ctx);
  ~Janitor();
  // One pass now (tests, start-up). Returns what it did, for the log.
  std::string RunOnce();

 private:
  void Loop();

  ServerContext* const ctx_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;            // Protected by mu_.
  int64_t last_prune_ms_ = 0;
  std::thread thread_;
};

// The reconcile as JSON for the admin API (progress, rate, ETA, report).
std::string ReconcileJson(const Reconcile& r, int64_t now_ms);

}  // namespace ds
