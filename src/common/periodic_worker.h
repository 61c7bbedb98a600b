// A background thread that calls one function every interval, the one the code uses instead of a
// thread, a stop flag, a mutex and a condition variable written again in each service (leveldb's
// background thread, ClickHouse's BackgroundSchedulePool task): woken early by Wake(), stopped by
// Stop() or the destructor, the interval optionally jittered so that instances sharing an index
// do not all call at once. A paced worker's function says itself how long to wait before its next
// call (a heartbeat's back-off after a failure, no wait while a backlog lasts).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "common/mutex.h"

namespace ds {

class PeriodicWorker {
 public:
  // Waits `d` on the worker thread (tests: record `d`, block on a test's signal, or return at
  // once). Called without the worker's lock; Wake() and Stop() do not interrupt it, so a test's
  // wait must return on its own. The worker checks for a stop and a wake after it returns.
  using WaitFn = std::function<void(std::chrono::milliseconds d)>;
  // A paced worker's function: returns the wait before its next call (>= 0; 0: at once).
  using PacedFn = std::function<std::chrono::milliseconds()>;

  struct Options {
    std::string name;  // for logs and the thread's name (first 15 characters)
    // Between the end of one call and the start of the next. REQUIRES: > 0.
    std::chrono::milliseconds interval{1000};
    // Each wait is drawn uniformly from interval * [1 - jitter, 1 + jitter]. REQUIRES: 0..1.
    double jitter = 0;
    // Calls once as soon as the thread starts, before the first wait.
    bool call_at_start = false;
    // For tests only; empty = wait real time on a condition variable (what Wake/Stop interrupt).
    WaitFn wait = nullptr;
    uint64_t seed = std::random_device{}();  // of the jitter; tests fix it
  };

  // Starts the thread. `fn` runs on it, never concurrently with itself; a long `fn` checks
  // stopping() between its steps. REQUIRES: whatever `fn` uses outlives Stop() (declare the
  // worker after the members `fn` uses, so it is destroyed first).
  PeriodicWorker(Options options, std::function<void()> fn);
  // A worker whose `fn` returns its next wait; Options::interval is unused, jitter applies to
  // the returned wait. Otherwise as above.
  static std::unique_ptr<PeriodicWorker> Paced(Options options, PacedFn fn);
  ~PeriodicWorker();  // Stop()
  PeriodicWorker(const PeriodicWorker&) = delete;
  PeriodicWorker& operator=(const PeriodicWorker&) = delete;

  // The next call starts now instead of at the end of the wait; a wake during a call makes the
  // next wait end at once. Thread-safe.
  void Wake();
  // Ends the wait, lets a running call finish, joins the thread. Idempotent, thread-safe; from
  // inside `fn` it only asks (the thread ends after the call returns).
  void Stop();

  // True once Stop() began: a long `fn` returns early.
  bool stopping() const { return stop_.load(std::memory_order_acquire); }
  // The same, for APIs that take a cancel flag (e.g. RateLimiter::Acquire).
  const std::atomic<bool>* stop_flag() const { return &stop_; }
  const std::string& name() const { return options_.name; }

 private:
  PeriodicWorker(Options options, PacedFn fn);
  void Loop();
  // Waits `d` (jittered), or until woken or stopped. False when stopped.
  bool WaitNext(std::chrono::milliseconds d);
  std::chrono::milliseconds Jittered(std::chrono::milliseconds d);

  // Constant after construction.
  const Options options_;
  const PacedFn fn_;

  std::atomic<bool> stop_{false};
  std::mt19937_64 rng_;  // used by the worker thread only
  Mutex mu_;
  CondVar cv_;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // started last
};

}  // namespace ds
