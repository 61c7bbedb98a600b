#include "common/periodic_worker.h"

#include <algorithm>
#include <utility>

#include "platform/system.h"

namespace ds {
namespace {
// The worker whose thread this is (Stop() from inside fn must not join itself).
thread_local const PeriodicWorker* current_worker = nullptr;
}  // namespace

PeriodicWorker::PeriodicWorker(Options options, std::function<void()> fn)
    : PeriodicWorker(options, PacedFn([fn = std::move(fn), interval = options.interval] {
        fn();
        return interval;
      })) {}

PeriodicWorker::PeriodicWorker(Options options, PacedFn fn)
    : options_(std::move(options)),
      fn_(std::move(fn)),
      rng_(options_.seed),
      thread_([this] { Loop(); }) {}

std::unique_ptr<PeriodicWorker> PeriodicWorker::Paced(Options options, PacedFn fn) {
  return std::unique_ptr<PeriodicWorker>(new PeriodicWorker(std::move(options), std::move(fn)));
}

PeriodicWorker::~PeriodicWorker() { Stop(); }

void PeriodicWorker::Wake() {
  MutexLock lock(&mu_);
  wake_ = true;
  cv_.SignalAll();
}

void PeriodicWorker::Stop() {
  {
    MutexLock lock(&mu_);
    stop_.store(true, std::memory_order_release);
    cv_.SignalAll();
  }
  if (current_worker == this) return;  // from fn: the loop sees the flag after it returns
  if (thread_.joinable()) thread_.join();
}

void PeriodicWorker::Loop() {
  current_worker = this;
  // The thread's name shows in top, gdb and TSan reports (Linux keeps 15 characters).
  platform::SetCurrentThreadName(options_.name);
  std::chrono::milliseconds next = options_.interval;
  if (options_.call_at_start && !stopping()) next = fn_();
  while (WaitNext(next)) next = fn_();
}

bool PeriodicWorker::WaitNext(std::chrono::milliseconds d) {
  d = Jittered(d);
  if (options_.wait) {
    if (stopping()) return false;
    {
      MutexLock lock(&mu_);
      if (wake_) {
        wake_ = false;
        return true;
      }
    }
    options_.wait(d);
    MutexLock lock(&mu_);
    wake_ = false;
    return !stopping();
  }
  const auto deadline = std::chrono::steady_clock::now() + d;
  MutexLock lock(&mu_);
  while (!wake_ && !stopping() && cv_.WaitUntil(&mu_, deadline)) {
  }
  wake_ = false;
  return !stopping();
}

std::chrono::milliseconds PeriodicWorker::Jittered(std::chrono::milliseconds d) {
  const double jitter = std::clamp(options_.jitter, 0.0, 1.0);
  if (jitter == 0 || d.count() <= 0) return std::max(d, std::chrono::milliseconds(0));
  std::uniform_real_distribution<double> factor(1 - jitter, 1 + jitter);
  const auto ms = static_cast<int64_t>(static_cast<double>(d.count()) * factor(rng_));
  return std::chrono::milliseconds(std::max<int64_t>(ms, 1));
}

}  // namespace ds
