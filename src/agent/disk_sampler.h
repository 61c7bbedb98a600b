// Free space of the agent's job folders for heartbeats, sampled where a hung share cannot stall
// anything else.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "protocol/messages.h"

namespace ds {

// Free space of the job folders, sampled on a thread of its own every `interval` and whenever
// the folders change. statvfs on a hung network share blocks until the share answers: then only
// this thread waits — heartbeats send the last sample, and shutdown does not wait for it (the
// thread is detached and owns, through a shared_ptr, everything it touches; no PeriodicWorker,
// which joins). Thread-safe.
class DiskSampler {
 public:
  using Folders = std::vector<std::pair<std::string, std::string>>;  // (job, folder)

  static std::shared_ptr<DiskSampler> Start(std::chrono::milliseconds interval);

  // The folders to sample from now on; a change is sampled at once.
  void SetFolders(Folders folders);

  // The last sample of each folder still configured: none before its first sample, while
  // statvfs fails on it, or once the last sample is older than 3 intervals (a share hangs the
  // sampler: then no figure is better than a stale one).
  std::vector<protocol::DiskFree> Last();

  // Ends the thread after its current sample (which may never end on a hung share).
  void Stop();

 private:
  using Clock = std::chrono::steady_clock;
  explicit DiskSampler(std::chrono::milliseconds interval) : interval_(interval) {}
  void Run();

  const std::chrono::milliseconds interval_;
  Mutex mu_;
  CondVar cv_;
  Folders folders_ ABSL_GUARDED_BY(mu_);
  std::vector<protocol::DiskFree> last_ ABSL_GUARDED_BY(mu_);
  Clock::time_point sampled_at_ ABSL_GUARDED_BY(mu_);  // when last_ was taken
  bool changed_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace ds
